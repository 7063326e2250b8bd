// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import RealtimeCore
import RealtimeNIO
import Synchronization
import Testing

/// `configureRealtimeHubPipeline` in a plain SwiftNIO server, no Hummingbird: upgrades the hub accepts, refusals
/// it answers itself, and requests that are no upgrade handed to the caller's handler. Loopback only.
@Suite struct RealtimeHubPipelineTests {
    /// The caller's HTTP handling for requests that are no upgrade: `200 plain` once the request ended.
    final class PlainHandler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .end = unwrapInboundIn(data) else { return }
            let body = context.channel.allocator.buffer(string: "plain")
            let headers: HTTPHeaders = ["Content-Length": "5", "Connection": "close"]
            context.write(wrapOutboundOut(.head(.init(version: .http1_1, status: .ok, headers: headers))), promise: nil)
            context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
                channel.close(promise: nil)
            }
        }
    }

    /// What each connection's first request ended as, in the order the negotiations completed.
    final class Outcomes: Sendable {
        let values = Mutex<[String]>([])

        /// The outcomes once there is one: the response can reach the client just before the negotiation's
        /// future completes on the server's event loop.
        func settled() async throws -> [String] {
            for _ in 0..<200 {
                let values = values.withLock { $0 }
                if !values.isEmpty { return values }
                try await Task.sleep(for: .milliseconds(10))
            }
            return []
        }
    }

    /// Runs a hub and a plain NIO server on loopback around `body`, which gets the server's port.
    static func withServer(_ body: (Int, Outcomes) async throws -> Void) async throws {
        let tokens = StaticTokenVerifier()
        tokens.add("alice-token", VerifiedIdentity(userID: "alice", sessionID: "s-alice"))
        let logger = {
            var logger = Logger(label: "realtime-nio-test")
            logger.logLevel = .error
            return logger
        }()
        let hub = try RealtimeHub(
            configuration: HubConfiguration(),
            backends: .inMemory(tokenVerifier: tokens),
            logger: logger
        )
        let outcomes = Outcomes()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let negotiated = try channel.pipeline.syncOperations.configureRealtimeHubPipeline(
                        hub: hub,
                        logger: logger
                    ) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(PlainHandler())
                            return "plain"
                        }
                    }
                    negotiated.whenSuccess { result in
                        let outcome =
                            switch result {
                            case .notUpgraded(let value): value
                            case .rejected(let rejection): "rejected \(rejection.code)"
                            case .webSocket: "webSocket"
                            }
                        outcomes.values.withLock { $0.append(outcome) }
                    }
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let hubTask = Task { try await hub.run() }
        do {
            try await body(try #require(server.localAddress?.port), outcomes)
        } catch {
            hubTask.cancel()
            try await server.close().get()
            throw error
        }
        hubTask.cancel()
        try await server.close().get()
    }

    /// Sends `request` and collects what the server sends until it closes the connection or `until` matches.
    static func exchange(port: Int, _ request: String, until: (String) -> Bool = { _ in false }) async throws
        -> String
    {
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await client.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: request))
            var received = ""
            for try await buffer in inbound {
                received += String(decoding: buffer.readableBytesView, as: UTF8.self)
                if until(received) { break }
            }
            return received
        }
    }

    static func upgrade(_ target: String) -> String {
        "GET \(target) HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    }

    @Test func requestsThatAreNoUpgradeGoToTheCallersHandlers() async throws {
        try await Self.withServer { port, outcomes in
            let response = try await Self.exchange(port: port, "GET /other HTTP/1.1\r\nHost: localhost\r\n\r\n")
            #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
            #expect(response.hasSuffix("\r\n\r\nplain"))
            #expect(try await outcomes.settled() == ["plain"])
        }
    }

    @Test func refusedUpgradesAreAnsweredWithTheRejection() async throws {
        try await Self.withServer { port, outcomes in
            let response = try await Self.exchange(port: port, Self.upgrade("/ws/events"))
            #expect(response.hasPrefix("HTTP/1.1 401 Unauthorized\r\n"))
            let head = response.lowercased()
            #expect(head.contains("content-type: application/json; charset=utf-8\r\n"))
            #expect(head.contains("connection: close\r\n"))
            #expect(head.contains(#"www-authenticate: bearer realm="realtime""#))
            #expect(response.contains(#""code":"missing_token""#))
            #expect(try await outcomes.settled() == ["rejected missing_token"])
        }
    }

    @Test func acceptedUpgradesAreDrivenByTheHandler() async throws {
        try await Self.withServer { port, outcomes in
            let response = try await Self.exchange(port: port, Self.upgrade("/ws/events?token=alice-token")) {
                $0.contains(#""type":"connected""#)
            }
            #expect(response.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n"))
            // The hub's first frame, written by RealtimeWebSocketHandler.
            #expect(response.contains(#""type":"connected""#))
            #expect(try await outcomes.settled() == ["webSocket"])
        }
    }

    @Test func requestHeadsAreBoundedBeforeTheParser() async throws {
        try await Self.withServer { port, _ in
            let target = "/ws/events?token=" + String(repeating: "a", count: 20_000)
            let response = try await Self.exchange(port: port, Self.upgrade(target))
            #expect(response.hasPrefix("HTTP/1.1 414 URI Too Long\r\n"))
            #expect(response.contains(#""code":"uri_too_long""#))
        }
    }
}
