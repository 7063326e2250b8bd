// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Where `listen` connects: a `ws://` URL split into what the TCP connection and the upgrade request need.
struct WebSocketTarget: Sendable {
    /// The URL without its query, for messages: a `?token=` must not end up in logs.
    let url: String
    let host: String
    let port: Int
    /// The request target: path and query.
    let uri: String
    /// The `Host` header: the URL's authority.
    let authority: String

    init(_ url: String) throws {
        guard let components = URLComponents(string: url), components.scheme?.lowercased() == "ws",
            let rawHost = components.host, !rawHost.isEmpty
        else {
            let shown = url.prefix { $0 != "?" }  // a query may hold a token
            throw ValidationError("--url must look like ws://HOST[:PORT]/PATH (no wss://), not '\(shown)'")
        }
        let host = rawHost.hasPrefix("[") ? String(rawHost.dropFirst().dropLast()) : rawHost
        let port = components.port ?? 80
        guard (1...65535).contains(port) else { throw ValidationError("--url has an invalid port") }
        self.host = host
        self.port = port
        let path = components.percentEncodedPath.isEmpty ? "/" : components.percentEncodedPath
        self.uri = path + (components.percentEncodedQuery.map { "?" + $0 } ?? "")
        self.authority = (host.contains(":") ? "[\(host)]" : host) + (components.port.map { ":\($0)" } ?? "")
        self.url = "ws://" + authority + path
    }

    /// The outcome of an upgrade request.
    enum Upgrade: Sendable {
        /// The server switched protocols: WebSocket frames in and out (frames out must be masked).
        case webSocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>)
        /// The server answered with another status: its status and body, once read.
        case refused(EventLoopFuture<(Int, String)>)
    }

    /// Opens a connection and asks for the upgrade with NIO's WebSocket client upgrader.
    enum Dialer {
        /// The largest frame the client accepts (the hub's messages are far smaller).
        static let maxFrameSize = 1 << 20

        static func connect(_ target: WebSocketTarget, headers extra: [(String, String)]) async throws -> Upgrade {
            let negotiated = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: target.host, port: target.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let upgrader = NIOTypedWebSocketClientUpgrader<Upgrade>(
                            maxFrameSize: maxFrameSize,
                            upgradePipelineHandler: { channel, _ in
                                channel.eventLoop.makeCompletedFuture {
                                    .webSocket(try NIOAsyncChannel(wrappingChannelSynchronously: channel))
                                }
                            }
                        )
                        var headers = HTTPHeaders([("Host", target.authority), ("Content-Length", "0")])
                        headers.add(contentsOf: extra)
                        let configuration = NIOTypedHTTPClientUpgradeConfiguration<Upgrade>(
                            upgradeRequestHead: HTTPRequestHead(
                                version: .http1_1,
                                method: .GET,
                                uri: target.uri,
                                headers: headers
                            ),
                            upgraders: [upgrader],
                            notUpgradingCompletionHandler: { channel in
                                // The refusal's parts reach the handler added here once this future completes.
                                channel.eventLoop.makeCompletedFuture {
                                    let response = channel.eventLoop.makePromise(of: (Int, String).self)
                                    try channel.pipeline.syncOperations.addHandler(
                                        ResponseCollector(promise: response)
                                    )
                                    return .refused(response.futureResult)
                                }
                            }
                        )
                        var pipeline = NIOUpgradableHTTPClientPipelineConfiguration(
                            upgradeConfiguration: configuration
                        )
                        // The hub sends `connected` right behind the 101, often in the same read: keep those bytes
                        // for the WebSocket decoder (NIO's default drops what follows the response).
                        pipeline.leftOverBytesStrategy = .forwardBytes
                        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
                            configuration: pipeline
                        )
                    }
                }
            return try await negotiated.get()
        }
    }
}
