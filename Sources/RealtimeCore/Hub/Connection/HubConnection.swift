import Synchronization

/// One accepted connection, as the host drives it.
///
/// The host writes every frame the hub queues for the connection to the socket, passes each inbound text frame
/// to ``receive(text:)``, reports pongs with ``receivedPong()``, and calls ``closed(code:)`` once the socket
/// is gone (always, whoever closed it).
///
/// Frames can be consumed in one of two ways — pick one per connection:
/// - iterate ``outbound`` from one task (simple; costs a suspended task per connection), or
/// - push-style, for hosts that write from an event loop: register ``onOutboundReady(_:)`` and call
///   ``drainOutbound(maxFrames:_:)`` whenever it fires or the socket becomes writable again. An idle connection
///   then costs no task at all, and every wake-up can write a batch of frames with a single flush.
public final class HubConnection: Sendable {
    let hub: RealtimeHub
    let core: ConnectionCore

    init(hub: RealtimeHub, core: ConnectionCore) {
        self.hub = hub
        self.core = core
    }

    public var id: ConnectionID { core.id }
    public var endpoint: Endpoint { core.endpoint }
    /// Who the connection authenticated as (`nil` until first-message authentication succeeds).
    public var identity: VerifiedIdentity? { core.identity }
    /// The frames to write, in order. Ends after a close frame.
    public var outbound: OutboundFrames { OutboundFrames(queue: core.queue) }

    /// Registers the push-style consumer's wake-up: `handler` is called (from whichever thread queued the frame)
    /// when frames are waiting after ``drainOutbound(maxFrames:_:)`` reported ``OutboundDrainResult/idle`` — at
    /// most once per drain — and right away if frames are already queued. It should only schedule a drain (for
    /// example `eventLoop.execute { … }`), not drain itself. Do not also iterate ``outbound``.
    public func onOutboundReady(_ handler: @escaping @Sendable () -> Void) {
        core.queue.onReady(handler)
    }

    /// Registers the push-style consumer's wake-up through the writer thread's coalescer: when frames are
    /// waiting, `coalescer` runs `handler` from its scheduled job — one job for every connection of that thread
    /// woken in the same batch, instead of one scheduled task per connection. `handler` runs on the writer thread
    /// and may call ``drainOutbound(maxFrames:_:)`` directly. Same rules as ``onOutboundReady(_:)`` otherwise.
    public func onOutboundReady(
        coalescedBy coalescer: OutboundWakeCoalescer,
        _ handler: @escaping @Sendable () -> Void
    ) {
        core.queue.onReady(coalescer: coalescer, handler)
    }

    /// Hands queued frames to `body` in order, at most `maxFrames` of them, and reports what is left:
    /// ``OutboundDrainResult/idle`` (the ready handler fires on the next frame), ``OutboundDrainResult/more``
    /// (drain again when the socket can take more; frames left in the queue count against its bounds, so a
    /// client that stops reading is closed as a slow consumer) or ``OutboundDrainResult/finished`` (the close
    /// frame was the last one; stop). `body` runs without any lock held.
    public func drainOutbound(
        maxFrames: Int = .max,
        _ body: (OutboundFrame) throws -> Void
    ) rethrows -> OutboundDrainResult {
        try core.queue.drain(maxFrames: maxFrames, body)
    }

    /// Moves queued frames to the end of `frames`, in order, at most `maxFrames` of them, taking the queue's lock
    /// once for all of them, and reports what is left, as ``drainOutbound(maxFrames:_:)`` does. The frames are out
    /// of the queue when this returns: write every one of them. For an event-loop writer that collects a pass's
    /// frames before writing them (one lock and no closure per frame).
    public func drainOutbound(maxFrames: Int = .max, into frames: inout [OutboundFrame]) -> OutboundDrainResult {
        core.queue.drain(maxFrames: maxFrames, into: &frames)
    }

    /// Handles one inbound text frame. Never throws: every problem is answered with an `error` message or,
    /// where a documented limit says so, a close frame on ``outbound``.
    public func receive(text: String) async {
        await hub.handleInbound(text, on: core)
    }

    /// Handles an inbound binary frame (the protocol is text-only: it is answered with an
    /// `unsupported_frame` error and counts as a protocol error).
    public func receive(binaryFrameOfSize size: Int) async {
        hub.handleBinary(size: size, on: core)
    }

    /// Reports a pong (or any sign of life that is not a text frame).
    public func receivedPong() {
        core.state.withLock { $0.lastActivity = .now }
    }

    /// Tells the hub the socket is closed. Idempotent.
    public func closed(code: CloseCode? = nil) async {
        await hub.connectionClosed(core, code: code)
    }
}
