import DequeModule
import Synchronization

/// The bounded queue of frames waiting to be written to one connection's socket.
///
/// Producers (fan-out, replies) never wait: a frame that does not fit is refused and the hub closes the
/// connection as a slow consumer. One consumer (the host's writer) either iterates it as an async sequence or
/// drains it from a ready handler (`onReady` + `drain`), never both.
final class OutboundQueue: Sendable {
    enum EnqueueResult {
        case queued
        case overflow
        case closed
        /// Queued, and the push-style consumer waits for frames: the caller must call ``wakeConsumer()`` once it
        /// released its own locks (only from ``enqueueDeferringWake(_:)``).
        case queuedConsumerToWake
    }

    /// How the push-style consumer is woken: its handler, called directly or through the writer thread's
    /// ``OutboundWakeCoalescer`` (one scheduled job for every connection that thread serves).
    struct ConsumerWake: Sendable {
        let handler: @Sendable () -> Void
        let coalescer: OutboundWakeCoalescer?

        func fire() {
            if let coalescer { coalescer.wake(handler) } else { handler() }
        }
    }

    fileprivate struct State: ~Copyable {
        var frames = Deque<OutboundFrame>()
        var bytes = 0
        var waiter: UnsafeContinuation<OutboundFrame?, Never>?
        /// Set when the push-style consumer found the queue empty; cleared when the handler is called.
        var armed = false
        /// The push-style consumer's wake-up, fired (outside the lock) when a frame arrives while `armed`.
        var readyHandler: ConsumerWake?
        /// No more frames are accepted (a close frame may be the last one queued).
        var closed = false
        /// The consumer went away: drop everything.
        var terminated = false
    }

    private let state = Mutex(State())
    let maxFrames: Int
    let maxBytes: Int

    init(maxFrames: Int, maxBytes: Int) {
        self.maxFrames = maxFrames
        self.maxBytes = maxBytes
    }

    /// Queues a frame. `force` ignores the bounds (for replies to the client's own requests, which the
    /// inbound rate limit bounds already). Wakes the push-style consumer itself when it waits for frames.
    func enqueue(_ frame: OutboundFrame, force: Bool = false) -> EnqueueResult {
        let result = append(frame, force: force)
        guard result == .queuedConsumerToWake else { return result }
        wakeConsumer()
        return .queued
    }

    /// Queues a fan-out frame within the bounds without waking the consumer: a result of
    /// ``EnqueueResult/queuedConsumerToWake`` asks the caller to call ``wakeConsumer()`` after it released its
    /// locks (the hub's fan-out runs under the state lock and wakes nobody while it holds it).
    // Inlined into the fan-out loop: as a call (after the push-style consumer was added) broadcast fell from
    // ≈ 0.9 to ≈ 0.5 of the HubBenchmarks reference; inlined it is back to ≈ 0.8–1.1.
    @inline(__always)
    func enqueueDeferringWake(_ frame: OutboundFrame) -> EnqueueResult {
        append(frame, force: false)
    }

    @inline(__always)
    private func append(_ frame: OutboundFrame, force: Bool) -> EnqueueResult {
        enum Outcome {
            case result(EnqueueResult)
            case handOver(UnsafeContinuation<OutboundFrame?, Never>)
        }
        let byteCount = frame.byteCount
        let outcome: Outcome = state.withLock { state in
            if state.closed { return .result(.closed) }
            if let waiter = state.waiter {
                state.waiter = nil
                return .handOver(waiter)
            }
            if !force && (state.frames.count >= maxFrames || state.bytes + byteCount > maxBytes) {
                return .result(.overflow)
            }
            state.frames.append(frame)
            state.bytes += byteCount
            // (The handler is read after the lock: keeping closures out of this path keeps it free of reference
            // counting.)
            return .result(state.disarm() ? .queuedConsumerToWake : .queued)
        }
        switch outcome {
        case .result(let result):
            return result
        case .handOver(let waiter):
            waiter.resume(returning: frame)
            return .queued
        }
    }

    /// Fires the push-style consumer's wake-up (kept out of line: it is rare next to plain enqueues).
    @inline(never)
    func wakeConsumer() {
        // `terminate` may have cleared it meanwhile; then there is nothing left to wake.
        state.withLock { $0.readyHandler }?.fire()
    }

    /// Queues a close frame after dropping whatever is queued (a slow consumer must not first read a backlog),
    /// or after the queue when `flush` is true. Returns false if the queue was already closed.
    @discardableResult
    func close(_ code: CloseCode, reason: String, flush: Bool = false) -> Bool {
        let frame = OutboundFrame.close(code, reason: reason)
        let (accepted, waiter, wake) = state.withLock {
            state -> (Bool, UnsafeContinuation<OutboundFrame?, Never>?, Bool) in
            if state.closed { return (false, nil, false) }
            state.closed = true
            if !flush {
                state.frames.removeAll()
                state.bytes = 0
            }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter, false)
            }
            state.frames.append(frame)
            // Counted like every frame, so draining it brings the bytes back to zero.
            state.bytes += frame.byteCount
            return (true, nil, state.disarm())
        }
        waiter?.resume(returning: frame)
        if wake { wakeConsumer() }
        return accepted
    }

    /// Whether a close frame was queued (or the consumer finished).
    var isClosed: Bool { state.withLock { $0.closed } }

    /// Whether the consumer went away (the host reported the socket closed).
    var isTerminated: Bool { state.withLock { $0.terminated } }

    /// Frames and bytes currently queued.
    var depth: (frames: Int, bytes: Int) { state.withLock { ($0.frames.count, $0.bytes) } }

    /// The consumer stopped reading: drop the backlog and refuse further frames.
    func terminate() {
        let (waiter, wake) = state.withLock {
            state -> (UnsafeContinuation<OutboundFrame?, Never>?, ConsumerWake?) in
            state.closed = true
            state.terminated = true
            state.frames.removeAll()
            state.bytes = 0
            let waiter = state.waiter
            state.waiter = nil
            // The handler usually captures the host's connection object, which holds this queue: let it go.
            let handler = state.readyHandler
            state.readyHandler = nil
            return (waiter, state.disarm() ? handler : nil)
        }
        waiter?.resume(returning: nil)
        wake?.fire()
    }

    // MARK: Push-style consumer

    /// Installs the push-style consumer's wake-up. It fires once when frames are already queued (or the
    /// queue is closed), and afterwards whenever a frame arrives after ``drain(maxFrames:_:)`` found the queue
    /// empty — at most once per drain, from the producer's thread (or, with a `coalescer`, from the job it
    /// schedules).
    func onReady(coalescer: OutboundWakeCoalescer? = nil, _ handler: @escaping @Sendable () -> Void) {
        let wake = ConsumerWake(handler: handler, coalescer: coalescer)
        let wakeNow = state.withLock { state -> Bool in
            state.readyHandler = wake
            if !state.frames.isEmpty || state.closed { return true }
            state.armed = true
            return false
        }
        if wakeNow { wake.fire() }
    }

    /// Hands queued frames to `body` one at a time, in order, without holding the queue's lock while `body`
    /// runs (so `body` may write to a socket, or even enqueue). Stops after `maxFrames` frames.
    func drain(maxFrames: Int, _ body: (OutboundFrame) throws -> Void) rethrows -> OutboundDrainResult {
        enum Step {
            case frame(OutboundFrame)
            case stop(OutboundDrainResult)
        }
        var handed = 0
        while true {
            let step: Step = state.withLock { state in
                if state.frames.isEmpty {
                    if state.closed { return .stop(.finished) }
                    state.armed = true
                    return .stop(.idle)
                }
                if handed >= maxFrames { return .stop(.more) }
                let frame = state.frames.removeFirst()
                state.bytes -= frame.byteCount
                return .frame(frame)
            }
            switch step {
            case .frame(let frame):
                handed += 1
                try body(frame)
            case .stop(let result):
                return result
            }
        }
    }

    /// Moves up to `maxFrames` queued frames, in order, to the end of `frames` under one lock (not one lock per
    /// frame), and reports what is left, as ``drain(maxFrames:_:)`` does. The frames are out of the queue (and off
    /// its bounds) when this returns: the caller writes all of them.
    func drain(maxFrames: Int, into frames: inout [OutboundFrame]) -> OutboundDrainResult {
        state.withLock { state in
            var taken = 0
            while taken < maxFrames, let frame = state.frames.popFirst() {
                state.bytes -= frame.byteCount
                frames.append(frame)
                taken += 1
            }
            if state.frames.isEmpty {
                if state.closed { return .finished }
                state.armed = true
                return .idle
            }
            return .more
        }
    }

    /// The next frame, or `nil` once the queue is closed and drained.
    func next() async -> OutboundFrame? {
        // Fast path: something is queued.
        enum Immediate {
            case frame(OutboundFrame)
            case end
            case wait
        }
        let immediate: Immediate = state.withLock { state in
            if let frame = state.frames.popFirst() {
                state.bytes -= frame.byteCount
                return .frame(frame)
            }
            return state.closed ? .end : .wait
        }
        switch immediate {
        case .frame(let frame): return frame
        case .end: return nil
        case .wait: break
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<OutboundFrame?, Never>) in
                let resumeNow: OutboundFrame?? = state.withLock { state in
                    if let frame = state.frames.popFirst() {
                        state.bytes -= frame.byteCount
                        return .some(frame)
                    }
                    if state.closed || Task.isCancelled { return .some(nil) }
                    state.waiter = continuation
                    return .none
                }
                if let resumeNow { continuation.resume(returning: resumeNow) }
            }
        } onCancel: {
            self.terminate()
        }
    }
}

extension OutboundQueue.State {
    /// Disarms the push-style consumer; returns whether it was waiting for frames (and must be woken).
    fileprivate mutating func disarm() -> Bool {
        guard armed else { return false }
        armed = false
        return true
    }
}

/// What ``HubConnection/drainOutbound(maxFrames:_:)`` left behind.
public enum OutboundDrainResult: Sendable, Hashable {
    /// The queue is empty; the ready handler is called when the next frame arrives.
    case idle
    /// `maxFrames` frames were handed over and more are queued: drain again when the socket can take more.
    case more
    /// The queue is closed and empty: the last frame (normally the close frame) was handed over. Nothing
    /// follows; the ready handler is not called again.
    case finished
}

extension OutboundFrame {
    /// The payload size counted against the queue's byte bound.
    var byteCount: Int {
        switch self {
        case .text(let text): return text.utf8.count
        case .encodedText(let frame): return frame.payloadByteCount
        case .ping: return 0
        case .close(_, let reason): return reason.utf8.count
        }
    }
}

/// The frames the hub sends to one connection, for the host to write in order.
///
/// Iterate it from exactly one task. It finishes after a ``OutboundFrame/close(_:reason:)`` frame, or when the
/// connection is closed by ``HubConnection/closed(code:)``.
public struct OutboundFrames: AsyncSequence, Sendable {
    public typealias Element = OutboundFrame
    public typealias Failure = Never

    let queue: OutboundQueue

    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: OutboundQueue

        public mutating func next() async -> OutboundFrame? {
            await queue.next()
        }

        public mutating func next(isolation actor: isolated (any Actor)?) async -> OutboundFrame? {
            await queue.next()
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: queue) }
}

@available(*, unavailable)
extension OutboundFrames.AsyncIterator: Sendable {}

extension OutboundQueue {
    /// Drops every queued frame without closing (benchmarks drain queues between rounds with it).
    func discardQueued() -> Int {
        state.withLock { state in
            let count = state.frames.count
            state.frames.removeAll(keepingCapacity: true)
            state.bytes = 0
            return count
        }
    }
}
