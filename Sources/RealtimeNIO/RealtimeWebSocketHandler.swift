// SPDX-License-Identifier: Apache-2.0

import DequeModule
public import Logging
public import NIOCore
public import NIOWebSocket
public import RealtimeCore
import Synchronization

/// Drives one accepted WebSocket for a ``RealtimeHub`` from inside the channel pipeline, with no task per
/// connection.
///
/// Add it as the last handler after the WebSocket upgrade (NIO's `WebSocketFrameDecoder` and
/// `WebSocketFrameEncoder` in front of it). When it is added it activates the hub's ``UpgradeTicket`` with
/// ``RealtimeHub/connect(_:)``, then:
/// - writes what the hub queues for the connection (``HubConnection/onOutboundReady(_:)`` +
///   ``HubConnection/drainOutbound(maxFrames:_:)``): every wake-up writes the queued frames as a batch with one
///   flush, only while the channel is writable — frames a slow client does not take stay in the hub's bounded
///   queue, which closes the connection as a slow consumer when it overflows;
/// - hands complete text messages to ``HubConnection/receive(text:)`` in order from a short-lived task that
///   exists only while messages are pending (reading pauses while more than a few wait), binary messages to
///   ``HubConnection/receive(binaryFrameOfSize:)``, and pongs to ``HubConnection/receivedPong()``;
/// - calls ``HubConnection/closed(code:)`` once the channel is inactive, with the close code that ended it.
///
/// It enforces the WebSocket rules the hub does not see: messages (fragments included) above the ticket's
/// ``UpgradeTicket/maxFrameBytes`` close with 1009, text that is not UTF-8 closes with 1007, unmasked client
/// frames, reserved bits, unknown opcodes and out-of-order continuation frames close with 1002. After a close
/// frame from the hub it waits `closeTimeout` for the client's, then drops the socket; a channel that stays
/// unwritable for `writeTimeout` (the client stopped reading) is dropped.
public final class RealtimeWebSocketHandler: ChannelDuplexHandler {
    public typealias InboundIn = WebSocketFrame
    public typealias OutboundIn = WebSocketFrame
    public typealias OutboundOut = WebSocketFrame

    /// Frames written per drain before writability is checked again.
    static let framesPerDrain = 64
    /// Server frames are unmasked: the header is at most 10 bytes. Text buffers keep this much room in front so
    /// NIO's encoder writes the header in place instead of as a separate buffer.
    static let headerRoom = 10

    let hub: RealtimeHub
    let ticket: UpgradeTicket
    let closeTimeout: TimeAmount
    let pingPayload: String
    let writeTimeout: TimeAmount
    let logger: Logger

    private var context: ChannelHandlerContext?
    private var eventLoop: (any EventLoop)?
    private var connection: HubConnection?
    private let inbound = InboundPump()

    // Close handshake.
    private var closeSent: CloseCode?
    private var closeReceived: CloseCode?
    private var outboundFinished = false
    private var closeTimer: Scheduled<Void>?
    private var inactive = false

    // Writing.
    private var draining = false
    private var drainAgain = false
    private var stallTimer: Scheduled<Void>?

    // Reading.
    private var message: (opcode: WebSocketOpcode, bytes: ByteBuffer)?
    private var readPaused = false
    private var readPending = false

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
        self.closeTimeout = TimeAmount(closeTimeout)
        self.pingPayload = pingPayload
        self.writeTimeout = TimeAmount(writeTimeout)
        self.logger = logger
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let eventLoop = context.eventLoop
        self.eventLoop = eventLoop
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        let (hub, ticket, logger) = (self.hub, self.ticket, self.logger)
        Task {
            do {
                let connection = try await hub.connect(ticket)
                eventLoop.execute { this.value.attach(connection) }
            } catch {
                logger.debug("hub refused the accepted connection", metadata: ["error.type": "\(error)"])
                eventLoop.execute { this.value.refuse() }
            }
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    /// The hub activated the connection: start writing its frames and handing it messages.
    private func attach(_ connection: HubConnection) {
        guard let eventLoop else { return }
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        // Also when the socket went away while the hub was connecting: the pump then reports the close.
        inbound.attach(connection) { eventLoop.execute { this.value.resumeReading() } }
        guard !inactive else { return }
        self.connection = connection
        // Always scheduled, even from this event loop: the wake-up may come from inside the hub's fan-out (for
        // example a bus delivery handled on this loop), which must not write to sockets while it routes.
        connection.onOutboundReady { eventLoop.execute { this.value.drainOutbound() } }
    }

    /// The hub could not activate the upgrade (it expired or the server is going away).
    private func refuse() {
        guard let context, !inactive else { return }
        closeSent = CloseCode(1011)
        writeCloseThenDrop(code: 1011, reason: "server unavailable", context: context)
    }

    /// The channel is gone: report the close to the hub once, with the code that ended the conversation.
    private func finish() {
        guard !inactive else { return }
        inactive = true
        closeTimer?.cancel()
        stallTimer?.cancel()
        closeTimer = nil
        stallTimer = nil
        message = nil
        let code = closeSent ?? closeReceived ?? CloseCode(1006)
        inbound.finish(code: code)
    }

    // MARK: Writer

    private func drainOutbound() {
        guard let context, let connection, !outboundFinished, !inactive else { return }
        if draining {
            drainAgain = true
            return
        }
        draining = true
        defer { draining = false }
        var result: OutboundDrainResult
        repeat {
            // The flush can make the channel writable again, which re-enters here (`channelWritabilityChanged`)
            // while this loop still runs: that call only sets `drainAgain`, so go round again for it.
            drainAgain = false
            result = .more
            var wrote = false
            while result == .more && context.channel.isWritable {
                result = connection.drainOutbound(maxFrames: Self.framesPerDrain) { frame in
                    wrote = write(frame, context: context) || wrote
                }
            }
            if wrote { context.flush() }
        } while drainAgain && result != .finished
        switch result {
        case .finished:
            outboundFinished = true
            if closeSent == nil && closeReceived == nil {
                // The hub ended the queue without a close frame (it was told the socket closed): drop it.
                context.close(promise: nil)
            }
        case .more:
            // Not writable: resume from `channelWritabilityChanged`; drop the socket if that never comes.
            armStallTimer(context: context)
        case .idle:
            break
        }
    }

    /// Writes one frame without flushing. Returns whether anything was written.
    private func write(_ frame: OutboundFrame, context: ChannelHandlerContext) -> Bool {
        switch frame {
        case .text(let text):
            var buffer = context.channel.allocator.buffer(capacity: Self.headerRoom + text.utf8.count)
            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
            buffer.writeString(text)
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
            return true
        case .ping:
            let data = context.channel.allocator.buffer(string: pingPayload)
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: data)), promise: nil)
            return true
        case .close(let code, let reason):
            guard closeSent == nil && closeReceived == nil else { return false }
            closeSent = code
            context.write(wrapOutboundOut(Self.closeFrame(code: code.rawValue, reason: reason)), promise: nil)
            // Wait (bounded) for the client's close frame; its arrival closes the socket sooner.
            closeTimer = context.eventLoop.scheduleTask(in: closeTimeout) { [channel = context.channel] in
                channel.close(promise: nil)
            }
            return true
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stallTimer?.cancel()
            stallTimer = nil
            drainOutbound()
        }
        context.fireChannelWritabilityChanged()
    }

    private func armStallTimer(context: ChannelHandlerContext) {
        guard stallTimer == nil else { return }
        let logger = self.logger
        stallTimer = context.eventLoop.scheduleTask(in: writeTimeout) { [channel = context.channel] in
            logger.debug("dropping a connection whose client stopped reading")
            channel.close(promise: nil)
        }
    }

    // MARK: Reader

    public func read(context: ChannelHandlerContext) {
        if readPaused {
            readPending = true
        } else {
            context.read()
        }
    }

    private func resumeReading() {
        guard readPaused else { return }
        readPaused = false
        if readPending, let context {
            readPending = false
            context.read()
        }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // After a close frame from the client nothing more is read; after the server's, only the client's reply.
        guard !inactive, closeReceived == nil, closeSent == nil || frame.opcode == .connectionClose else { return }
        if frame.maskKey == nil {
            fail(1002, "client frames must be masked", context: context)
            return
        }
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            fail(1002, "reserved bits set", context: context)
            return
        }
        switch frame.opcode {
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self).map(CloseCode.init) ?? CloseCode(1005)
            closeReceived = code
            closeTimer?.cancel()
            if closeSent == nil {
                // Echo the status code (RFC 6455 §5.5.1); 1005/1006 are never sent on the wire.
                let echo: UInt16 = code.rawValue == 1005 ? 1000 : code.rawValue
                writeCloseThenDrop(code: echo, reason: "", context: context)
            } else {
                context.close(promise: nil)
            }
        case .ping:
            connection?.receivedPong()
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(wrapOutboundOut(pong), promise: nil)
        case .pong:
            connection?.receivedPong()
        case .text, .binary:
            guard message == nil else {
                fail(1002, "expected a continuation frame", context: context)
                return
            }
            guard frame.length <= ticket.maxFrameBytes else {
                fail(1009, "message too big", context: context)
                return
            }
            if frame.fin {
                deliver(frame.opcode, frame.unmaskedData, context: context)
            } else {
                message = (frame.opcode, frame.unmaskedData)
            }
        case .continuation:
            guard var pending = message else {
                fail(1002, "unexpected continuation frame", context: context)
                return
            }
            guard pending.bytes.readableBytes + frame.length <= ticket.maxFrameBytes else {
                fail(1009, "message too big", context: context)
                return
            }
            var data = frame.unmaskedData
            pending.bytes.writeBuffer(&data)
            if frame.fin {
                message = nil
                deliver(pending.opcode, pending.bytes, context: context)
            } else {
                message = pending
            }
        default:
            fail(1002, "unknown opcode", context: context)
        }
    }

    /// Hands a complete message to the hub (through the pump, in order).
    private func deliver(_ opcode: WebSocketOpcode, _ bytes: ByteBuffer, context: ChannelHandlerContext) {
        let item: InboundPump.Message
        if opcode == .binary {
            item = .binary(size: bytes.readableBytes)
        } else {
            guard let text = String(validating: bytes.readableBytesView, as: UTF8.self) else {
                fail(1007, "text is not valid UTF-8", context: context)
                return
            }
            item = .text(text)
        }
        if inbound.enqueue(item) {
            // Too many messages wait for the hub: stop reading until it caught up.
            readPaused = true
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7): sends a close frame for the violation, unless one was already
    /// sent, and drops the socket once it is written.
    private func fail(_ code: UInt16, _ reason: String, context: ChannelHandlerContext) {
        message = nil
        guard closeSent == nil && closeReceived == nil else { return }
        closeSent = CloseCode(code)
        writeCloseThenDrop(code: code, reason: reason, context: context)
    }

    /// Writes a close frame and drops the socket once it is written (no wait for the client's close frame).
    private func writeCloseThenDrop(code: UInt16, reason: String, context: ChannelHandlerContext) {
        context.writeAndFlush(wrapOutboundOut(Self.closeFrame(code: code, reason: reason)))
            .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError {
            // NIO's decoder refused the frame; its error handler already sent the matching close frame.
            let code: UInt16 =
                switch error {
                case .invalidFrameLength: 1009
                default: 1002
                }
            if closeSent == nil && closeReceived == nil { closeSent = CloseCode(code) }
            // That handler also closes the channel once its close frame is written.
            return
        }
        logger.trace("WebSocket channel error", metadata: ["error.type": "\(error)"])
        context.close(promise: nil)
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

@available(*, unavailable)
extension RealtimeWebSocketHandler: Sendable {}

/// Hands a connection's inbound messages to the hub in order, from a task that exists only while messages are
/// pending, and reports the close once the last one was handled.
final class InboundPump: Sendable {
    enum Message: Sendable {
        case text(String)
        case binary(size: Int)
    }

    /// More pending messages than this pause reading from the socket.
    static let highWatermark = 8
    /// Reading resumes once the hub worked the backlog down to this many.
    static let lowWatermark = 2

    fileprivate struct State: Sendable {
        var messages = Deque<Message>()
        var connection: HubConnection?
        var resumeReading: (@Sendable () -> Void)?
        var running = false
        var readingPaused = false
        /// Set when the channel is gone; reported to the hub after the running task (if any) finishes.
        var closeCode: CloseCode?
        var closeReported = false
    }

    private let state = Mutex(State())

    /// The hub activated the connection: handle what arrived meanwhile.
    func attach(_ connection: HubConnection, resumeReading: @escaping @Sendable () -> Void) {
        let start = state.withLock { state -> Bool in
            state.connection = connection
            if state.closeCode == nil { state.resumeReading = resumeReading }
            return state.startIfNeeded()
        }
        if start { startTask() }
    }

    /// Queues a message. Returns `true` when the caller should pause reading.
    func enqueue(_ message: Message) -> Bool {
        let (start, pause) = state.withLock { state -> (Bool, Bool) in
            guard state.closeCode == nil else { return (false, false) }
            state.messages.append(message)
            let pause = state.messages.count > Self.highWatermark
            if pause { state.readingPaused = true }
            return (state.startIfNeeded(), pause)
        }
        if start { startTask() }
        return pause
    }

    /// The channel is gone: drop pending messages and tell the hub (after the running task, if any).
    func finish(code: CloseCode) {
        let start = state.withLock { state -> Bool in
            guard state.closeCode == nil else { return false }
            state.closeCode = code
            state.messages.removeAll()
            // It captures the channel handler, which holds this pump: break the cycle.
            state.resumeReading = nil
            return state.startIfNeeded()
        }
        if start { startTask() }
    }

    private func startTask() {
        Task { await self.run() }
    }

    private func run() async {
        enum Step {
            case handle(Message, HubConnection, resume: (@Sendable () -> Void)?)
            case reportClose(HubConnection, CloseCode)
            case stop
        }
        while true {
            let step: Step = state.withLock { state in
                guard let connection = state.connection else {
                    state.running = false
                    return .stop
                }
                if let message = state.messages.popFirst() {
                    var resume: (@Sendable () -> Void)?
                    if state.readingPaused && state.messages.count <= Self.lowWatermark {
                        state.readingPaused = false
                        resume = state.resumeReading
                    }
                    return .handle(message, connection, resume: resume)
                }
                if let code = state.closeCode, !state.closeReported {
                    state.closeReported = true
                    return .reportClose(connection, code)
                }
                state.running = false
                return .stop
            }
            switch step {
            case .handle(let message, let connection, let resume):
                resume?()
                switch message {
                case .text(let text): await connection.receive(text: text)
                case .binary(let size): await connection.receive(binaryFrameOfSize: size)
                }
            case .reportClose(let connection, let code):
                await connection.closed(code: code)
                state.withLock { $0.connection = nil }
            case .stop:
                return
            }
        }
    }
}

extension InboundPump.State {
    /// Marks the pump running when there is work and a connection to do it for; returns whether to start a task.
    fileprivate mutating func startIfNeeded() -> Bool {
        guard !running, connection != nil, !messages.isEmpty || (closeCode != nil && !closeReported) else {
            return false
        }
        running = true
        return true
    }
}
