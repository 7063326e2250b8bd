// SPDX-License-Identifier: Apache-2.0

public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOWebSocket
public import RealtimeCore

/// Drives one accepted WebSocket for a ``RealtimeHub``: a writer task drains ``HubConnection/outbound`` to the
/// socket (text, ping and the hub's close frame), a reader loop hands text messages to
/// ``HubConnection/receive(text:)``, binary messages to ``HubConnection/receive(binaryFrameOfSize:)`` and pongs to
/// ``HubConnection/receivedPong()``, and ``HubConnection/closed(code:)`` is called when the socket ends.
///
/// The reader enforces the WebSocket rules the hub does not see: messages (fragments included) above the
/// ticket's ``UpgradeTicket/maxFrameBytes`` close with 1009, text that is not UTF-8 closes with 1007, unmasked
/// client frames, reserved bits, unknown opcodes and out-of-order continuation frames close with 1002.
public struct RealtimeWebSocketConnection: Sendable {
    let hub: RealtimeHub
    let ticket: UpgradeTicket
    let closeTimeout: Duration
    let pingPayload: String
    let writeTimeout: Duration
    let logger: Logger

    public init(
        hub: RealtimeHub,
        ticket: UpgradeTicket,
        closeTimeout: Duration = .seconds(5),
        pingPayload: String = "hb",
        writeTimeout: Duration = .seconds(30),
        logger: Logger
    ) {
        self.hub = hub
        self.ticket = ticket
        self.closeTimeout = closeTimeout
        self.pingPayload = pingPayload
        self.writeTimeout = writeTimeout
        self.logger = logger
    }

    /// Who ended the conversation, and with which code.
    struct CloseState: Sendable {
        /// The close frame the server sent (its code), if it sent one.
        var sent: CloseCode?
        /// The code the client's close frame carried, if it sent one.
        var received: CloseCode?
        /// Set when the socket was dropped without a close handshake.
        var abnormal = false
    }

    /// Runs the connection until the socket is closed.
    public func run(_ asyncChannel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async {
        let connection: HubConnection
        do {
            connection = try await hub.connect(ticket)
        } catch {
            logger.debug("hub refused the accepted connection", metadata: ["error.type": "\(error)"])
            let frame = Self.closeFrame(code: 1011, reason: "server unavailable")
            try? await asyncChannel.executeThenClose { _, outbound in try await outbound.write(frame) }
            return
        }
        let state = NIOLockedValueBox(CloseState())
        do {
            try await asyncChannel.executeThenClose { inbound, outbound in
                await withTaskGroup(of: Void.self) { group in
                    group.addTask {
                        await writeOutbound(connection, outbound: outbound, channel: asyncChannel.channel, state: state)
                    }
                    await readInbound(inbound, connection: connection, outbound: outbound, state: state)
                    group.cancelAll()
                }
            }
        } catch {
            logger.trace("WebSocket channel error", metadata: ["error.type": "\(error)"])
            state.withLockedValue { if $0.received == nil && $0.sent == nil { $0.abnormal = true } }
        }
        let final = state.withLockedValue { $0 }
        let code: CloseCode = final.sent ?? final.received ?? CloseCode(1006)
        await connection.closed(code: code)
    }

    // MARK: Writer

    private func writeOutbound(
        _ connection: HubConnection,
        outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
        channel: any Channel,
        state: NIOLockedValueBox<CloseState>
    ) async {
        let allocator = channel.allocator
        let writeTimeout = TimeAmount(self.writeTimeout)
        let logger = self.logger
        /// Writes one frame; a one-shot event-loop timer drops the socket if the write waits longer than the write
        /// timeout (the client stopped reading). No task and no periodic wake-up per idle connection.
        func write(_ frame: WebSocketFrame) async throws {
            let watchdog = channel.eventLoop.scheduleTask(in: writeTimeout) {
                state.withLockedValue { if $0.sent == nil && $0.received == nil { $0.abnormal = true } }
                logger.debug("dropping a connection whose client stopped reading")
                channel.close(promise: nil)
            }
            defer { watchdog.cancel() }
            try await outbound.write(frame)
        }
        do {
            for await frame in connection.outbound {
                switch frame {
                case .text(let text):
                    try await write(WebSocketFrame(fin: true, opcode: .text, data: allocator.buffer(string: text)))
                case .ping:
                    try await write(
                        WebSocketFrame(fin: true, opcode: .ping, data: allocator.buffer(string: pingPayload))
                    )
                case .close(let code, let reason):
                    let alreadyClosing = state.withLockedValue { state -> Bool in
                        defer { if state.sent == nil && state.received == nil { state.sent = code } }
                        return state.sent != nil || state.received != nil
                    }
                    if !alreadyClosing {
                        try await write(Self.closeFrame(code: code.rawValue, reason: reason))
                    }
                    // Wait (bounded) for the client's close frame; the reader ends the group when it arrives.
                    try await Task.sleep(for: closeTimeout)
                    channel.close(promise: nil)
                    return
                }
            }
        } catch {
            // Cancelled (the reader finished) or the socket is gone.
            return
        }
        // The hub ended the sequence without a close frame (it was told the socket closed): drop the socket.
        channel.close(promise: nil)
    }

    // MARK: Reader

    private func readInbound(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
        connection: HubConnection,
        outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>,
        state: NIOLockedValueBox<CloseState>
    ) async {
        var message: (opcode: WebSocketOpcode, bytes: [UInt8])?
        let maxBytes = ticket.maxFrameBytes

        /// Sends a close frame unless one was already sent, and records the code.
        func fail(_ code: UInt16, _ reason: String) async {
            let send = state.withLockedValue { state -> Bool in
                guard state.sent == nil && state.received == nil else { return false }
                state.sent = CloseCode(code)
                return true
            }
            if send { try? await outbound.write(Self.closeFrame(code: code, reason: reason)) }
        }

        do {
            for try await frame in inbound {
                if frame.maskKey == nil {
                    await fail(1002, "client frames must be masked")
                    return
                }
                if frame.rsv1 || frame.rsv2 || frame.rsv3 {
                    await fail(1002, "reserved bits set")
                    return
                }
                switch frame.opcode {
                case .connectionClose:
                    var data = frame.unmaskedData
                    let code = data.readInteger(as: UInt16.self).map(CloseCode.init) ?? CloseCode(1005)
                    let reply = state.withLockedValue { state -> Bool in
                        if state.received == nil { state.received = code }
                        return state.sent == nil
                    }
                    if reply {
                        // Echo the status code (RFC 6455 §5.5.1); 1005/1006 are never sent on the wire.
                        let echo: UInt16 = code.rawValue == 1005 ? 1000 : code.rawValue
                        try? await outbound.write(Self.closeFrame(code: echo, reason: ""))
                    }
                    return
                case .ping:
                    connection.receivedPong()
                    let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
                    try await outbound.write(pong)
                case .pong:
                    connection.receivedPong()
                case .text, .binary:
                    guard message == nil else {
                        await fail(1002, "expected a continuation frame")
                        return
                    }
                    guard frame.length <= maxBytes else {
                        await fail(1009, "message too big")
                        return
                    }
                    let bytes = Array(buffer: frame.unmaskedData)
                    if frame.fin {
                        guard await deliver(frame.opcode, bytes, to: connection, fail: fail) else { return }
                    } else {
                        message = (frame.opcode, bytes)
                    }
                case .continuation:
                    guard var pending = message else {
                        await fail(1002, "unexpected continuation frame")
                        return
                    }
                    guard pending.bytes.count + frame.length <= maxBytes else {
                        await fail(1009, "message too big")
                        return
                    }
                    pending.bytes.append(contentsOf: frame.unmaskedData.readableBytesView)
                    if frame.fin {
                        message = nil
                        guard await deliver(pending.opcode, pending.bytes, to: connection, fail: fail) else { return }
                    } else {
                        message = pending
                    }
                default:
                    await fail(1002, "unknown opcode")
                    return
                }
            }
            // The peer went away without a close frame.
            state.withLockedValue { if $0.received == nil && $0.sent == nil { $0.abnormal = true } }
        } catch let error as NIOWebSocketError {
            // NIO's decoder refused the frame; its error handler already sent the matching close frame.
            let code: UInt16 =
                switch error {
                case .invalidFrameLength: 1009
                default: 1002
                }
            state.withLockedValue { if $0.sent == nil && $0.received == nil { $0.sent = CloseCode(code) } }
        } catch {
            state.withLockedValue { if $0.received == nil && $0.sent == nil { $0.abnormal = true } }
        }
    }

    /// Hands a complete message to the hub. Returns `false` when the connection must close.
    private func deliver(
        _ opcode: WebSocketOpcode,
        _ bytes: [UInt8],
        to connection: HubConnection,
        fail: (UInt16, String) async -> Void
    ) async -> Bool {
        if opcode == .binary {
            await connection.receive(binaryFrameOfSize: bytes.count)
            return true
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            await fail(1007, "text is not valid UTF-8")
            return false
        }
        await connection.receive(text: text)
        return true
    }

    static func closeFrame(code: UInt16, reason: String) -> WebSocketFrame {
        var data = ByteBuffer()
        data.writeInteger(code)
        // A control frame's payload is at most 125 bytes: 2 for the code, up to 123 for the reason.
        var reasonBytes = Array(reason.utf8.prefix(123))
        while String(validating: reasonBytes, as: UTF8.self) == nil { reasonBytes.removeLast() }
        data.writeBytes(reasonBytes)
        return WebSocketFrame(fin: true, opcode: .connectionClose, data: data)
    }
}
