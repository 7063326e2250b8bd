// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers
import NIOCore
import RealtimeCore

/// What every `RealtimeWebSocketHandler` on one event loop shares for writing: the loop's
/// `OutboundWakeCoalescer` (a fan-out schedules one job on the loop, not one task per connection) and the byte
/// buffers of the shared frames it writes (an event's WebSocket frame becomes a `ByteBuffer` once per loop, a run of
/// frames drained together one joined `ByteBuffer` once per loop, and every connection of the loop writes those same
/// buffers: see `SharedFrameBuffers`).
///
/// One per event loop while the loop has handlers (``attach(to:)``, ``detach()``); used only on its loop.
final class EventLoopOutboundWriter {
    let coalescer: OutboundWakeCoalescer
    /// The loop's buffers of shared frames and of runs of them.
    private var sharedBuffers = SharedFrameBuffers()
    /// The array a drain pass collects its frames in, lent to one connection at a time (its capacity is kept).
    private var scratchPass: [OutboundFrame] = []

    private let eventLoop: any EventLoop

    /// How long a write job waits for more wake-ups when the loop is writing a burst (see `WriteCoalescingWindow`).
    static let coalescingWindow = TimeAmount.milliseconds(1)

    private init(eventLoop: any EventLoop) {
        // Strong: nothing holds a weak reference to an event loop, or to this writer. (A weakly referenced object
        // keeps its reference count in a side table, and every retain of it then takes the runtime's slow path; NIO
        // retains the loop all along each write.)
        self.eventLoop = eventLoop
        let window = WriteCoalescingWindow(window: Self.coalescingWindow)
        self.coalescer = OutboundWakeCoalescer { job in window.schedule(job, on: eventLoop) }
    }

    /// The `ByteBuffer` of a shared frame, made on this loop's first write of it.
    func buffer(for frame: EncodedTextFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        sharedBuffers.buffer(for: frame, allocator: allocator)
    }

    /// One buffer holding a drain pass's shared frames back to back, made once per loop for each run of frames;
    /// `nil` when the pass is one frame, holds a frame that is not shared, or is too large to join.
    func joinedBuffer(for pass: [OutboundFrame], allocator: ByteBufferAllocator) -> ByteBuffer? {
        sharedBuffers.joinedBuffer(for: pass, allocator: allocator)
    }

    /// Lends the loop's (empty) pass array; give it back with ``returnPass(_:)``. Lent again before it came back
    /// (it cannot: drains do not nest across connections, wake-ups are always scheduled), it is a new array.
    func borrowPass() -> [OutboundFrame] {
        var pass: [OutboundFrame] = []
        swap(&pass, &scratchPass)
        return pass
    }

    /// Takes the pass array back, emptied, keeping its capacity.
    func returnPass(_ pass: inout [OutboundFrame]) {
        pass.removeAll(keepingCapacity: true)
        swap(&pass, &scratchPass)
    }

    // MARK: One writer per event loop

    /// Handlers of the loop using this writer (``attach(to:)`` minus ``detach()``); loop-confined.
    private var users = 0

    /// The registry: by event loop identity, the writer of each loop that has handlers. No weak reference: a writer
    /// keeps its loop alive (its coalescer schedules on it), so the loop's identity cannot be reused while its
    /// entry is there, and the entry goes when the loop's last handler detaches.
    private static let registry = NIOLockedValueBox<[ObjectIdentifier: NIOLoopBound<EventLoopOutboundWriter>]>([:])

    /// The writer of `eventLoop`, created when its first handler attaches. Call it on `eventLoop`, and
    /// ``detach()`` once when the handler is done with it.
    static func attach(to eventLoop: any EventLoop) -> EventLoopOutboundWriter {
        eventLoop.preconditionInEventLoop()
        let writer = registry.withLockedValue { entries in
            let key = ObjectIdentifier(eventLoop)
            if let entry = entries[key] { return entry.value }
            let writer = EventLoopOutboundWriter(eventLoop: eventLoop)
            entries[key] = NIOLoopBound(writer, eventLoop: eventLoop)
            return writer
        }
        writer.users += 1
        return writer
    }

    /// A handler is done with the writer (on its loop). The last one removes it from the registry, so a process
    /// that makes many event loop groups (a test suite) keeps no writer, and no loop, of a group that is gone.
    func detach() {
        eventLoop.preconditionInEventLoop()
        users -= 1
        guard users == 0 else { return }
        let key = ObjectIdentifier(eventLoop)
        Self.registry.withLockedValue { entries in
            if entries[key]?.value === self { entries[key] = nil }
        }
    }
}

@available(*, unavailable)
extension EventLoopOutboundWriter: Sendable {}
