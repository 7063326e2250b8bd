// SPDX-License-Identifier: Apache-2.0

public import Logging
public import NIOCore
public import NIOWebSocket
public import RealtimeCore

/// Drives one accepted WebSocket for a `RealtimeHub` from inside the channel pipeline, with no
/// task per connection.
///
/// ``NIOCore/ChannelPipeline/SynchronousOperations/configureRealtimeHubPipeline(hub:configuration:logger:notUpgrading:)``
/// installs it after every upgrade the hub accepts. To install it yourself, add it as the last handler after the
/// WebSocket upgrade (NIO's `WebSocketFrameDecoder` and `WebSocketFrameEncoder` in front of it). When it is added
/// it activates the hub's `UpgradeTicket` with `RealtimeHub.connect(_:)`, then:
/// - writes what the hub queues for the connection (`HubConnection.onOutboundReady(coalescedBy:_:)` +
///   `HubConnection.drainOutbound(maxFrames:_:)`): the wake-ups of every connection on one event loop are
///   coalesced into one job on the loop (which, while the loop is busy writing, starts up to 1 ms after the last
///   one so a burst's frames share writes), and every wake-up writes the queued frames as a batch with one flush
///   (one gathering write), only while the channel is writable — frames a slow client does not take stay in the
///   hub's bounded queue, which closes the connection as a slow consumer when it overflows. Shared frames
///   (`OutboundFrame.encodedText(_:)`, events and notifications) are written as they were encoded, once per
///   event: the same bytes, in one `ByteBuffer` per event loop, for every connection;
/// - hands complete text messages to `HubConnection.receive(text:)` in order from a short-lived
///   task that exists only while messages are pending (reading pauses while more than a few wait), binary
///   messages to `HubConnection.receive(binaryFrameOfSize:)`, and pongs to
///   `HubConnection.receivedPong()`;
/// - calls `HubConnection.closed(code:)` once the channel is inactive, with the close code that
///   ended it.
///
/// It enforces the WebSocket rules the hub does not see: messages (fragments included) above the ticket's
/// `UpgradeTicket.maxFrameBytes` close with 1009, text that is not UTF-8 closes with 1007, unmasked
/// client frames, reserved bits, unknown opcodes and out-of-order continuation frames close with 1002. After a
/// close frame from the hub it waits `closeTimeout` for the client's, then drops the socket; a channel that stays
/// unwritable for `writeTimeout` (the client stopped reading) is dropped.
///
/// The close handshake, the drain, the write-stall timer, the answers to the client's pings (one pong owed, for the
/// latest ping, while the channel is not writable) and the read back-pressure are decided by a value-type state
/// machine; the handler performs its actions. A client's close frame with a code a peer may not send closes with
/// 1002, one whose reason is not UTF-8 with 1007. It is not `Sendable`: use it on its channel's event loop.
public final class RealtimeWebSocketHandler: ChannelDuplexHandler {
    public typealias InboundIn = WebSocketFrame
    public typealias OutboundIn = WebSocketFrame
    public typealias OutboundOut = WebSocketFrame

    typealias StateMachine = WebSocketConnectionStateMachine

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

    /// The close handshake, the drain, the write stall and the read back-pressure: this handler performs what
    /// the state machine decides, and holds only the I/O resources below.
    private var state = StateMachine()
    private var context: ChannelHandlerContext?
    /// The context of NIO's `WebSocketFrameEncoder`: shared frames, already encoded, are written from there
    /// (straight to the socket, in order with what the encoder writes), not through the encoder again.
    private var encodedFrameOutput: ChannelHandlerContext?
    /// The event loop's shared writer: wake-up coalescing and the loop's buffers of shared frames.
    private var loopWriter: EventLoopOutboundWriter?
    private var connection: HubConnection?
    private let inbound = InboundPump()
    private var closeTimer: Scheduled<Void>?
    private var stallTimer: Scheduled<Void>?
    /// The text or binary message being assembled from fragments, and how many it has had.
    private var message: (opcode: WebSocketOpcode, bytes: ByteBuffer, fragments: Int)?
    /// The payload of the latest ping not answered yet: a pong waits while the channel is not writable, and
    /// answers only the latest ping (see the state machine).
    private var unansweredPing: ByteBuffer?
    /// A ping arrived in the current socket read: answered once at its end (`channelReadComplete`), for the latest.
    private var pingInThisRead = false
    /// The channel's allocator (read once: the write path does not go through the channel for it).
    private var allocator = ByteBufferAllocator()

    /// Creates the handler for one accepted upgrade.
    ///
    /// - Parameters:
    ///   - hub: The hub that accepted the upgrade.
    ///   - ticket: The accepted upgrade; the handler activates it with `RealtimeHub.connect(_:)`
    ///     when it is added to the pipeline.
    ///   - closeTimeout: How long to wait for the client's close frame after the server sent one.
    ///   - pingPayload: The payload of the server's ping frames.
    ///   - writeTimeout: How long the channel may stay unwritable before the socket is dropped.
    ///   - logger: The connection's logger.
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
        // The machine starts writable; a channel that is not yet is reported like a later change.
        if !context.channel.isWritable { perform(state.writabilityChanged(isWritable: false)) }
        self.allocator = context.channel.allocator
        self.encodedFrameOutput = try? context.pipeline.syncOperations.context(handlerType: WebSocketFrameEncoder.self)
        self.loopWriter = EventLoopOutboundWriter.attach(to: context.eventLoop)
        let eventLoop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: eventLoop)
        let (hub, ticket, logger) = (self.hub, self.ticket, self.logger)
        Task {
            do {
                let connection = try await hub.connect(ticket)
                eventLoop.execute { this.value.attach(connection) }
            } catch {
                logger.debug("hub refused the accepted connection", metadata: ["error.type": "\(error)"])
                eventLoop.execute { this.value.perform(this.value.state.hubRefused()) }
            }
        }
        // The client may leave before the upgrade adds this handler: no channelInactive follows then, so report
        // the close now (the pump hands it to the hub once `connect` returned).
        if !context.channel.isActive { finish() }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        finish()
        self.context = nil
        self.encodedFrameOutput = nil
        loopWriter?.detach()
        loopWriter = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    /// The hub activated the connection: start writing its frames and handing it messages.
    private func attach(_ connection: HubConnection) {
        // Also when the socket went away while the hub was connecting: the pump then reports the close.
        inbound.attach(connection)
        self.connection = connection
        perform(state.hubConnected())
    }

    /// The channel is gone: report the close to the hub once, with the code that ended the conversation.
    private func finish() {
        message = nil
        perform(state.channelInactive())
    }

    // MARK: Actions

    private func perform(_ actions: StateMachine.Actions) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: StateMachine.Action) {
        switch action {
        case .startOutbound:
            guard let context, let connection, let loopWriter else { return }
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            // Through the loop's coalescer: one job on this loop wakes every connection a fan-out reached here. The
            // job is always scheduled, even from this event loop: the wake-up may come from inside the hub's
            // fan-out (for example a bus delivery handled on this loop), which must not write while it routes.
            connection.onOutboundReady(coalescedBy: loopWriter.coalescer) {
                let handler = this.value
                handler.perform(handler.state.outboundReady())
            }
        case .drain:
            guard let context, let connection else { return }
            drain(connection, context: context)
        case .sendClose(let code, let reason):
            // Part of a drain's batch: flushed with it.
            context?.write(wrapOutboundOut(Self.closeFrame(code: code.rawValue, reason: reason)), promise: nil)
        case .sendCloseThenDrop(let code, let reason):
            guard let context else { return }
            context.writeAndFlush(wrapOutboundOut(Self.closeFrame(code: code.rawValue, reason: reason)))
                .whenComplete { [channel = context.channel] _ in channel.close(promise: nil) }
        case .dropSocket:
            context?.close(promise: nil)
        case .armTimer(let timer):
            guard let context else { return }
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            switch timer {
            case .closeHandshake:
                // Wait (bounded) for the client's close frame; its arrival closes the socket sooner.
                closeTimer = context.eventLoop.scheduleTask(in: closeTimeout) {
                    this.value.perform(this.value.state.closeTimerFired())
                }
            case .writeStall:
                stallTimer = context.eventLoop.scheduleTask(in: writeTimeout) {
                    this.value.writeStallTimerFired()
                }
            }
        case .cancelTimer(.closeHandshake):
            closeTimer?.cancel()
            closeTimer = nil
        case .cancelTimer(.writeStall):
            stallTimer?.cancel()
            stallTimer = nil
        case .sendPong:
            guard let context, let payload = unansweredPing else { return }
            unansweredPing = nil
            context.writeAndFlush(
                wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: payload)),
                promise: nil
            )
        case .read:
            context?.read()
        case .pauseReading(let resumeAtOrBelow):
            guard let context else { return }
            let eventLoop = context.eventLoop
            let this = NIOLoopBound(self, eventLoop: eventLoop)
            inbound.reportWhenDrained(atMost: resumeAtOrBelow) { pending in
                eventLoop.execute { this.value.perform(this.value.state.inboundDrained(pending: pending)) }
            }
        case .reportClosed(let code):
            inbound.finish(code: code)
        }
    }

    private func writeStallTimerFired() {
        let actions = state.writeStallTimerFired()
        if !actions.isEmpty { logger.debug("dropping a connection whose client stopped reading") }
        perform(actions)
    }

    // MARK: Writer

    /// Writes what the hub queued while the channel is writable, a batch per pass with one flush.
    private func drain(_ connection: HubConnection, context: ChannelHandlerContext) {
        var result: OutboundDrainResult
        repeat {
            result = .more
            var written = Written.nothing
            while result == .more && state.isWritable {
                // The pass's frames are taken from the queue under one lock, then written. The array is the loop's
                // (no allocation per pass, no buffer kept per connection).
                var pass = loopWriter?.borrowPass() ?? []
                result = connection.drainOutbound(maxFrames: Self.framesPerDrain, into: &pass)
                written.add(write(pass, context: context))
                loopWriter?.returnPass(&pass)
            }
            // The flush can make the channel writable again, which re-enters `channelWritabilityChanged` while
            // this loop still runs: the state machine then asks for another pass.
            switch written {
            case .nothing: break
            // Only shared frames, written below NIO's frame encoder: flushed from there as well (the encoder
            // keeps nothing to flush), which skips the pipeline hops between this handler and the encoder.
            case .encodedFrames: encodedFrameOutput?.flush()
            case .throughPipeline: context.flush()
            }
        } while state.drainPassEnded(result)
        perform(state.drainEnded(result))
    }

    /// What a pass wrote, and so where its flush starts.
    enum Written {
        case nothing
        /// Only shared frames, from the context of NIO's `WebSocketFrameEncoder`.
        case encodedFrames
        /// Something went through this handler's context (replies, pings, the close frame).
        case throughPipeline

        mutating func add(_ other: Written) {
            switch (self, other) {
            case (_, .nothing), (.throughPipeline, _): break
            default: self = other
            }
        }
    }

    /// Writes the frames of a pass, in order, without flushing. Two or more shared frames go out as one buffer that
    /// every connection of the loop draining the same frames shares (one NIO write, not one per frame).
    private func write(_ pass: [OutboundFrame], context: ChannelHandlerContext) -> Written {
        if pass.count > 1, let encodedFrameOutput, let loopWriter,
            let joined = loopWriter.joinedBuffer(for: pass, allocator: allocator)
        {
            encodedFrameOutput.write(NIOAny(joined), promise: nil)
            return .encodedFrames
        }
        var written = Written.nothing
        for frame in pass { written.add(write(frame, context: context)) }
        return written
    }

    /// Writes one frame without flushing.
    private func write(_ frame: OutboundFrame, context: ChannelHandlerContext) -> Written {
        switch frame {
        case .text(let text):
            var buffer = allocator.buffer(capacity: Self.headerRoom + text.utf8.count)
            buffer.moveWriterIndex(forwardBy: Self.headerRoom)
            buffer.moveReaderIndex(forwardBy: Self.headerRoom)
            buffer.writeString(text)
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: buffer)), promise: nil)
            return .throughPipeline
        case .encodedText(let frame):
            // The frame is encoded once per event and its buffer made once per event loop: every connection writes
            // the same buffer (a reference, not a copy).
            let buffer =
                loopWriter?.buffer(for: frame, allocator: allocator) ?? allocator.buffer(bytes: frame.webSocketFrame)
            if let encodedFrameOutput {
                encodedFrameOutput.write(NIOAny(buffer), promise: nil)
                return .encodedFrames
            }
            // No NIO frame encoder in this pipeline: hand the payload to whatever encodes frames here.
            let payload = buffer.getSlice(at: frame.payloadOffset, length: frame.payloadByteCount) ?? ByteBuffer()
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .text, data: payload)), promise: nil)
            return .throughPipeline
        case .ping:
            let data = allocator.buffer(string: pingPayload)
            context.write(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .ping, data: data)), promise: nil)
            return .throughPipeline
        case .close(let code, let reason):
            let actions = state.closeRequestedByHub(code, reason: reason)
            perform(actions)
            return actions.isEmpty ? .nothing : .throughPipeline
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        perform(state.writabilityChanged(isWritable: context.channel.isWritable))
        context.fireChannelWritabilityChanged()
    }

    // MARK: Reader

    public func read(context: ChannelHandlerContext) {
        perform(state.readRequested())
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        if pingInThisRead {
            pingInThisRead = false
            perform(state.pingReceived())
        }
        context.fireChannelReadComplete()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // After a close frame from the client nothing more is read; after the server's, only the client's reply.
        guard state.acceptsFrame(isClose: frame.opcode == .connectionClose) else { return }
        if frame.maskKey == nil {
            fail(1002, "client frames must be masked")
            return
        }
        if frame.rsv1 || frame.rsv2 || frame.rsv3 {
            fail(1002, "reserved bits set")
            return
        }
        switch frame.opcode {
        case .connectionClose:
            switch Self.readCloseFrame(frame.unmaskedData) {
            case .code(let code): perform(state.closeFrameReceived(code))
            case .violation(let code, let reason): fail(code, reason)
            }
        case .ping:
            connection?.receivedPong()
            // Answered when the read is over, once, for the latest of its pings (RFC 6455 5.5.3 allows it): a ping
            // flood costs one pong write per socket read instead of one per ping.
            unansweredPing = frame.unmaskedData
            pingInThisRead = true
        case .pong:
            connection?.receivedPong()
        case .text, .binary:
            guard message == nil else {
                fail(1002, "expected a continuation frame")
                return
            }
            guard frame.length <= ticket.maxFrameBytes else {
                fail(1009, "message too big")
                return
            }
            if frame.fin {
                deliver(frame.opcode, frame.unmaskedData)
            } else {
                message = (frame.opcode, frame.unmaskedData, 1)
            }
        case .continuation:
            guard var pending = message else {
                fail(1002, "unexpected continuation frame")
                return
            }
            guard pending.bytes.readableBytes + frame.length <= ticket.maxFrameBytes else {
                fail(1009, "message too big")
                return
            }
            guard pending.fragments < Self.maxFragmentsPerMessage else {
                fail(1009, "a message has more than \(Self.maxFragmentsPerMessage) fragments")
                return
            }
            pending.fragments += 1
            var data = frame.unmaskedData
            pending.bytes.writeBuffer(&data)
            if frame.fin {
                message = nil
                deliver(pending.opcode, pending.bytes)
            } else {
                message = pending
            }
        default:
            fail(1002, "unknown opcode")
        }
    }

    /// Hands a complete message to the hub (through the pump, in order).
    private func deliver(_ opcode: WebSocketOpcode, _ bytes: ByteBuffer) {
        let item: InboundPump.Message
        if opcode == .binary {
            item = .binary(size: bytes.readableBytes)
        } else {
            guard let text = String(validating: bytes.readableBytesView, as: UTF8.self) else {
                fail(1007, "text is not valid UTF-8")
                return
            }
            item = .text(text)
        }
        guard let pending = inbound.enqueue(item) else { return }
        perform(state.inboundQueued(pending: pending))
    }

    /// Fails the connection (RFC 6455 §7.1.7): sends a close frame for the violation, unless one was already
    /// sent, and drops the socket once it is written.
    private func fail(_ code: UInt16, _ reason: String) {
        message = nil
        perform(state.protocolViolation(CloseCode(code), reason: reason))
    }

    /// The client shut its side of the TCP connection (the server allows half-closure): it is gone, close frame
    /// or not. Without this the connection would stay open, counted and registered, until the idle timeout.
    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOWebSocketError {
            // NIO's decoder refused the frame; its error handler already sent the matching close frame.
            let code: UInt16 =
                switch error {
                case .invalidFrameLength: 1009
                default: 1002
                }
            state.decoderRejectedFrame(CloseCode(code))
            // That handler also closes the channel once its close frame is written.
            return
        }
        logger.trace("WebSocket channel error", metadata: ["error.type": "\(error)"])
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension RealtimeWebSocketHandler: Sendable {}
