// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import NIOCore
import NIOHTTP1
import NIOPosix

/// `realtime-example publish` (the default subcommand): what a service that produces events does against a running
/// `realtime-server`: publishes authentication and security events, sends notifications, and prints health and
/// statistics, all through the HTTP API.
struct Publish: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Publish sample events and notifications to a running realtime-server and print its state."
    )

    @Option(help: "The server's host.")
    var host = "127.0.0.1"

    @Option(help: "The server's port.")
    var port = 3000

    @Option(help: "An admin (or service) token, e.g. the one realtime-server prints in development mode.")
    var token: String

    @Option(help: "The user the sample events are about.")
    var user = "dev-user"

    func run() async throws {
        let client = HTTPClient(host: host, port: port, token: token)
        let calls: [(String, String, String?)] = [
            ("GET", "/ws/health", nil),
            (
                "POST", "/api/v1/events",
                #"{"type":"authentication.login.success","userId":"\#(user)","data":{"method":"password","ip":"192.0.2.10"}}"#
            ),
            (
                "POST", "/api/v1/events",
                #"{"type":"authentication.mfa.challenge","userId":"\#(user)","data":{"factor":"totp"}}"#
            ),
            (
                "POST", "/api/v1/events",
                #"{"type":"security.suspicious.activity","userId":"\#(user)","data":{"ip":"203.0.113.9","risk":0.92,"reason":"impossible travel"}}"#
            ),
            (
                "POST", "/api/v1/notifications/user",
                #"{"userId":"\#(user)","level":"warning","title":"New sign-in","message":"A new device signed in to your account."}"#
            ),
            (
                "POST", "/api/v1/notifications/broadcast",
                #"{"level":"info","title":"Maintenance","message":"Short maintenance tonight at 02:00 UTC."}"#
            ),
            (
                "POST", "/api/v1/notifications/admin",
                #"{"level":"critical","title":"Risk alert","message":"High-risk activity for \#(user)."}"#
            ),
            ("GET", "/api/v1/stats", nil),
        ]
        for (method, path, body) in calls {
            let (status, text) = try await client.send(method, path, json: body)
            print("\(method) \(path) -> \(status)")
            print("  \(text)")
        }
    }
}

/// A minimal HTTP/1.1 client: one request per connection (`Connection: close`), the whole answer collected.
struct HTTPClient: Sendable {
    let host: String
    let port: Int
    let token: String

    func send(_ method: String, _ path: String, json: String?) async throws -> (Int, String) {
        let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: (Int, String).self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(ResponseCollector(promise: promise))
                }
            }
            .connect(host: host, port: port).get()
        var headers = HTTPHeaders([
            ("Host", "\(host):\(port)"), ("Connection", "close"), ("Authorization", "Bearer \(token)"),
        ])
        let body = ByteBuffer(string: json ?? "")
        if json != nil { headers.add(name: "Content-Type", value: "application/json") }
        headers.add(name: "Content-Length", value: String(body.readableBytes))
        let head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: method), uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil)
        try await channel.writeAndFlush(HTTPClientRequestPart.end(nil))
        defer { channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }
}

/// Collects one response and completes the promise with its status and body.
final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    let promise: EventLoopPromise<(Int, String)>
    var status = 0
    var body = ByteBuffer()

    init(promise: EventLoopPromise<(Int, String)>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status = Int(head.status.code)
        case .body(var part): body.writeBuffer(&part)
        case .end: promise.succeed((status, String(buffer: body)))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}
