// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Foundation
import NIOCore
import NIOWebSocket
import Synchronization
import UnixSignals

/// `realtime-example listen`: what a client of the hub does: connects to `/ws/events` (or `/ws/admin`),
/// authenticates, subscribes and prints every message it receives, one line each, answering the server's pings.
struct Listen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Connect to a hub's WebSocket endpoint, subscribe, and print what arrives (one line each).",
        discussion: """
            Ends with exit code 0 on Ctrl-C or SIGTERM, or after --count events (it sends a close frame and waits \
            for the server's). Ends with exit code 1 when the server refuses the upgrade (its HTTP status and \
            error code are printed), refuses the subscription, closes the connection (its close code and reason \
            are printed), or the connection drops.
            """
    )

    @Option(help: "The WebSocket URL (ws:// only), e.g. ws://127.0.0.1:3000/ws/events or …/ws/admin.")
    var url = "ws://127.0.0.1:3000/ws/events"

    @Option(help: "An access token, sent as `Authorization: Bearer` on the upgrade request.")
    var token: String?

    @Flag(help: "Send the token in a first `auth` message instead (servers with WEBSOCKET_FIRST_MESSAGE_AUTH=true).")
    var authMessage = false

    @Option(
        name: .customLong("subscribe"),
        help: "An event pattern to subscribe to, e.g. 'security.*' (repeatable; default '*': every event)."
    )
    var patterns: [String] = []

    @Option(help: "Stop after this many events.")
    var count: Int?

    @Flag(help: "Also print the server's WebSocket pings (each is answered with a pong either way).")
    var showPings = false

    func validate() throws {
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if authMessage && token == nil { throw ValidationError("--auth-message needs --token") }
        if patterns.contains(where: \.isEmpty) { throw ValidationError("--subscribe needs a pattern") }
    }

    func run() async throws {
        let target = try WebSocketTarget(url)
        // Trapped before connecting, so a signal that comes while the client listens always closes it cleanly.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
        let headers = token.flatMap { authMessage ? nil : [("Authorization", "Bearer \($0)")] } ?? []
        let ending: ListenSession.Ending
        switch try await WebSocketTarget.Dialer.connect(target, headers: headers) {
        case .refused(let response):
            let (status, body) = try await response.get()
            Output.error("refused: HTTP \(status) \(Output.describeError(body)) (\(target.url))")
            throw ExitCode.failure
        case .webSocket(let channel):
            Output.line("open: \(target.url)")
            let session = ListenSession(
                patterns: patterns.isEmpty ? ["*"] : patterns,
                authToken: authMessage ? token : nil,
                count: count,
                showPings: showPings
            )
            ending = try await session.run(channel, signals: signals)
        }
        switch ending {
        case .byClient(let why):
            Output.line("closed: \(why)")
        case .byServer(let code, let reason):
            Output.error("closed by the server: \(Output.describeClose(code, reason))")
            throw ExitCode.failure
        case .subscriptionRefused(let error):
            Output.error("subscription refused: \(error)")
            throw ExitCode.failure
        case .dropped:
            Output.error("the connection dropped without a close frame")
            throw ExitCode.failure
        }
    }
}

/// One listening connection: subscribes once connected, prints every message, answers pings, and closes on
/// request (a signal, `--count`), always with a close frame.
struct ListenSession: Sendable {
    /// How the session ended.
    enum Ending: Sendable {
        /// The client closed (a signal or `--count`), and the server answered or the wait for it ran out.
        case byClient(String)
        /// The server closed the connection with this code and reason.
        case byServer(code: Int?, reason: String)
        /// The server answered the subscription with an `error`.
        case subscriptionRefused(String)
        /// The connection ended without a close frame.
        case dropped
    }

    let patterns: [String]
    let authToken: String?
    let count: Int?
    let showPings: Bool

    /// The largest message this client assembles from fragments.
    static let maxMessageBytes = 1 << 20
    /// How long to wait for the server's close frame after sending ours.
    static let closeTimeout = TimeAmount.seconds(5)
    static let subscribeID = "listen-subscribe"

    func run(
        _ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>,
        signals: UnixSignalsSequence
    ) async throws -> Ending {
        let closer = Closer(channel: channel.channel)
        return try await channel.executeThenClose { inbound, outbound in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await signal in signals {
                        try await closer.close(outbound, because: "\(signal) received")
                        return
                    }
                }
                defer { group.cancelAll() }
                if let authToken {
                    try await outbound.write(
                        Self.text(#"{"type":"auth","payload":{"token":\#(Output.quoted(authToken))}}"#)
                    )
                }
                return try await read(inbound, outbound, closer)
            }
        }
    }

    private func read(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
        _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
        _ closer: Closer
    ) async throws -> Ending {
        var events = 0
        var message = ByteBuffer()
        for try await frame in inbound {
            switch frame.opcode {
            case .ping:
                try await outbound.write(
                    WebSocketFrame(fin: true, opcode: .pong, maskKey: .random(), data: frame.unmaskedData)
                )
                if showPings { Output.line("ping (answered)") }
                continue
            case .connectionClose:
                var data = frame.unmaskedData
                let code = data.readInteger(as: UInt16.self).map(Int.init)
                let reason = data.readString(length: data.readableBytes) ?? ""
                if let why = closer.reason {
                    return .byClient("\(why); the server answered \(Output.describeClose(code, reason))")
                }
                // Echo the server's close (RFC 6455 §5.5.1), then end.
                var echo = ByteBuffer()
                if let code { echo.writeInteger(UInt16(code)) }
                try? await outbound.write(
                    WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: echo)
                )
                return .byServer(code: code, reason: reason)
            case .text, .continuation:
                var data = frame.unmaskedData
                guard message.readableBytes + data.readableBytes <= Self.maxMessageBytes else {
                    try await closer.close(
                        outbound,
                        because: "a message above \(Self.maxMessageBytes) bytes",
                        code: 1009
                    )
                    continue
                }
                message.writeBuffer(&data)
                guard frame.fin else { continue }
            default:
                continue
            }
            let text = String(buffer: message)
            message.clear()
            guard let received = Received(text) else {
                Output.line("unparsed: \(text.prefix(200))")
                continue
            }
            Output.line(received.line)
            switch received.type {
            case "connected":
                let subscribe =
                    #"{"type":"subscribe","id":"\#(Self.subscribeID)","payload":{"eventTypes":[\#(patterns.map(Output.quoted).joined(separator: ","))]}}"#
                try await outbound.write(Self.text(subscribe))
            case "error" where received.id == Self.subscribeID:
                try await closer.close(outbound, because: "the subscription was refused")
                return .subscriptionRefused(String(received.line.dropFirst("error ".count)))
            case "event":
                events += 1
                if let count, events >= count {
                    try await closer.close(outbound, because: "\(events) event\(events == 1 ? "" : "s") received")
                }
            default:
                break
            }
        }
        if let why = closer.reason { return .byClient("\(why); the server sent no close frame") }
        return .dropped
    }

    static func text(_ string: String) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, maskKey: .random(), data: ByteBuffer(string: string))
    }
}

/// Sends the client's close frame once, from whichever task asks first, and drops the connection if the server
/// does not answer within ``ListenSession/closeTimeout``.
final class Closer: Sendable {
    private let state = Mutex<String?>(nil)
    private let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    /// Why the client closed, once it did.
    var reason: String? { state.withLock { $0 } }

    func close(
        _ outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
        because reason: String,
        code: UInt16 = 1000
    ) async throws {
        let first = state.withLock { current in
            guard current == nil else { return false }
            current = reason
            return true
        }
        guard first else { return }
        var data = ByteBuffer()
        data.writeInteger(code)
        try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, maskKey: .random(), data: data))
        channel.eventLoop.scheduleTask(in: ListenSession.closeTimeout) { [channel] in channel.close(promise: nil) }
    }
}
