// SPDX-License-Identifier: Apache-2.0

import NIOCore
import RealtimeCore

/// The byte buffers of the shared frames one event loop writes: each frame's bytes once, and each run of
/// consecutive frames that connections of the loop drain together joined once, so a connection writes one buffer
/// per drain pass whatever the number of frames in it (NIO's per-write bookkeeping is paid once per connection, not
/// once per frame).
///
/// In a burst most connections of a loop find the same frames in their queues when its job drains them (the same
/// events, in the same order), so a joined run is built once and written by each of them: a reference, not a copy.
/// Bounded: at most ``maxCachedFrames`` frames and ``maxCachedRuns`` runs of at most ``maxJoinedBytes`` bytes each;
/// the entries keep their frames alive, so an identity is never reused while it is cached.
struct SharedFrameBuffers {
    static let maxCachedFrames = 256
    static let maxCachedRuns = 8
    /// Larger runs are written frame by frame (their frames' buffers are cached anyway).
    static let maxJoinedBytes = 64 * 1024

    private var frames: [ObjectIdentifier: (frame: EncodedTextFrame, buffer: ByteBuffer)] = [:]
    /// The frame asked for last: in a fan-out every connection of the loop asks for the same one in a row.
    private var lastFrame: (frame: EncodedTextFrame, buffer: ByteBuffer)?
    /// Joined runs, replaced in turn once full.
    private var runs: [(frames: [EncodedTextFrame], buffer: ByteBuffer)] = []
    private var nextRunSlot = 0

    /// The `ByteBuffer` of a shared frame, made on the loop's first write of it.
    mutating func buffer(for frame: EncodedTextFrame, allocator: ByteBufferAllocator) -> ByteBuffer {
        if let lastFrame, lastFrame.frame === frame { return lastFrame.buffer }
        let key = ObjectIdentifier(frame)
        let buffer: ByteBuffer
        if let cached = frames[key] {
            buffer = cached.buffer
        } else {
            if frames.count >= Self.maxCachedFrames { frames.removeAll(keepingCapacity: true) }
            buffer = allocator.buffer(bytes: frame.webSocketFrame)
            frames[key] = (frame, buffer)
        }
        lastFrame = (frame, buffer)
        return buffer
    }

    /// One buffer with the frames of `pass` back to back, when it holds two or more frames, all shared
    /// (``OutboundFrame/encodedText(_:)``), of at most ``maxJoinedBytes`` together; otherwise `nil` (write them one
    /// by one).
    mutating func joinedBuffer(for pass: [OutboundFrame], allocator: ByteBufferAllocator) -> ByteBuffer? {
        guard pass.count > 1 else { return nil }
        for run in runs where Self.isSameRun(run.frames, pass) { return run.buffer }
        var run: [EncodedTextFrame] = []
        run.reserveCapacity(pass.count)
        var byteCount = 0
        for frame in pass {
            guard case .encodedText(let shared) = frame else { return nil }
            byteCount += shared.webSocketFrame.count
            guard byteCount <= Self.maxJoinedBytes else { return nil }
            run.append(shared)
        }
        var buffer = allocator.buffer(capacity: byteCount)
        for shared in run { buffer.writeBytes(shared.webSocketFrame) }
        if runs.count < Self.maxCachedRuns {
            runs.append((run, buffer))
        } else {
            runs[nextRunSlot] = (run, buffer)
            nextRunSlot = (nextRunSlot + 1) % Self.maxCachedRuns
        }
        return buffer
    }

    /// Whether `pass` is exactly the frames of `run`, by identity.
    private static func isSameRun(_ run: [EncodedTextFrame], _ pass: [OutboundFrame]) -> Bool {
        guard run.count == pass.count else { return false }
        for (cached, frame) in zip(run, pass) {
            guard case .encodedText(let shared) = frame, shared === cached else { return false }
        }
        return true
    }

    /// Frames and runs cached (for tests).
    var cachedCounts: (frames: Int, runs: Int) { (frames.count, runs.count) }
}
