// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers
import NIOCore
import RealtimeCore

/// What every `RealtimeWebSocketHandler` on one event loop shares for writing: the loop's
/// `OutboundWakeCoalescer` (a fan-out schedules one job on the loop, not one task per connection) and the byte
/// buffers of the shared frames it writes (an event's WebSocket frame becomes a `ByteBuffer` once per loop, and
/// every connection of the loop writes that same buffer).
///
/// Created once per event loop by ``forEventLoop(_:)``; used only on its loop.
final class EventLoopOutboundWriter {
    let coalescer: OutboundWakeCoalescer
    /// Buffers of recently written shared frames, by frame identity (the entry keeps the frame alive, so the
    /// identity cannot be reused while it is cached). Bounded: emptied when full.
    private var buffers: [ObjectIdentifier: (frame: EncodedTextFrame, buffer: ByteBuffer)] = [:]
    static let maxCachedBuffers = 256

    private init(eventLoop: any EventLoop) {
        // Weak: the registry below must not keep event loops alive; a job for a loop that is gone has no one to
        // wake.
        self.coalescer = OutboundWakeCoalescer { [weak eventLoop] job in eventLoop?.execute(job) }
    }

    /// The `ByteBuffer` of a shared frame, made on this loop's first write of it.
    func buffer(for frame: EncodedTextFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        let key = ObjectIdentifier(frame)
        if let cached = buffers[key] { return cached.buffer }
        if buffers.count >= Self.maxCachedBuffers { buffers.removeAll(keepingCapacity: true) }
        let buffer = frame.webSocketFrame.withUnsafeBytes { bytes in
            var buffer = allocator.buffer(capacity: bytes.count)
            buffer.writeBytes(bytes)
            return buffer
        }
        buffers[key] = (frame, buffer)
        return buffer
    }

    // MARK: One writer per event loop

    /// The registry: by event loop identity, the loop held weakly (a dead loop's entry is replaced).
    private struct Entry {
        weak var eventLoop: (any EventLoop)?
        let writer: NIOLoopBound<EventLoopOutboundWriter>
    }
    private static let registry = NIOLockedValueBox<[ObjectIdentifier: Entry]>([:])

    /// The writer of `eventLoop`, created on first use. Call it on `eventLoop`.
    static func forEventLoop(_ eventLoop: any EventLoop) -> EventLoopOutboundWriter {
        eventLoop.preconditionInEventLoop()
        let key = ObjectIdentifier(eventLoop)
        return registry.withLockedValue { entries in
            if let entry = entries[key], entry.eventLoop === eventLoop { return entry.writer.value }
            // Drop entries of loops that are gone (a process that makes many event loop groups, such as a test
            // suite, keeps no dead ones).
            entries = entries.filter { $0.value.eventLoop != nil }
            let writer = EventLoopOutboundWriter(eventLoop: eventLoop)
            entries[key] = Entry(eventLoop: eventLoop, writer: NIOLoopBound(writer, eventLoop: eventLoop))
            return writer
        }
    }
}

@available(*, unavailable)
extension EventLoopOutboundWriter: Sendable {}
