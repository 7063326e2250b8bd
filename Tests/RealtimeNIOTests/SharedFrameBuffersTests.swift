// SPDX-License-Identifier: Apache-2.0

import NIOCore
import RealtimeCore
import Testing

@testable import RealtimeNIO

/// The buffers one event loop shares between its connections: a frame's bytes once, a run of frames joined once,
/// the bytes exactly the frames' in order, and the caches bounded.
@Suite struct SharedFrameBuffersTests {
    let allocator = ByteBufferAllocator()

    static func frame(_ text: String) -> EncodedTextFrame { EncodedTextFrame(text: text) }

    static func bytes(_ buffer: ByteBuffer) -> [UInt8] { Array(buffer.readableBytesView) }

    @Test func aFrameBecomesOneBufferWithItsExactBytes() {
        var buffers = SharedFrameBuffers()
        let first = Self.frame("{\"a\":1}")
        let second = Self.frame("{\"b\":2}")
        let buffer = buffers.buffer(for: first, allocator: allocator)
        #expect(Self.bytes(buffer) == first.webSocketFrame)
        let secondBuffer = buffers.buffer(for: second, allocator: allocator)
        #expect(Self.bytes(secondBuffer) == second.webSocketFrame)
        // Asked again (also after another frame): the same storage, not a copy.
        let again = buffers.buffer(for: first, allocator: allocator)
        #expect(again.withUnsafeReadableBytes { $0.baseAddress } == buffer.withUnsafeReadableBytes { $0.baseAddress })
        #expect(buffers.cachedCounts.frames == 2)
    }

    @Test func aRunOfSharedFramesIsJoinedInOrderOnceAndShared() throws {
        var buffers = SharedFrameBuffers()
        let frames = (0..<3).map { Self.frame("{\"n\":\($0)}") }
        let pass = frames.map(OutboundFrame.encodedText)
        let first = buffers.joinedBuffer(for: pass, allocator: allocator)
        let joined = try #require(first)
        #expect(Self.bytes(joined) == frames.flatMap(\.webSocketFrame))
        // Another connection draining the same frames gets the same buffer.
        let again = buffers.joinedBuffer(for: pass, allocator: allocator)
        let shared = try #require(again)
        #expect(shared.withUnsafeReadableBytes { $0.baseAddress } == joined.withUnsafeReadableBytes { $0.baseAddress })
        // The same texts in other frames, or a different run, are another buffer with their own bytes.
        let copies = (0..<3).map { Self.frame("{\"n\":\($0)}") }
        let fromCopies = buffers.joinedBuffer(for: copies.map(OutboundFrame.encodedText), allocator: allocator)
        let other = try #require(fromCopies)
        #expect(other.withUnsafeReadableBytes { $0.baseAddress } != joined.withUnsafeReadableBytes { $0.baseAddress })
        let extended = buffers.joinedBuffer(for: pass + [.encodedText(copies[0])], allocator: allocator)
        let longer = try #require(extended)
        #expect(Self.bytes(longer) == frames.flatMap(\.webSocketFrame) + copies[0].webSocketFrame)
        #expect(buffers.cachedCounts.runs == 3)
    }

    @Test func aPassIsNotJoinedWhenItIsOneFrameHoldsAnotherKindOrIsTooLarge() {
        var buffers = SharedFrameBuffers()
        let shared = OutboundFrame.encodedText(Self.frame("{}"))
        let passes: [[OutboundFrame]] = [
            [shared], [shared, .text("{}")], [shared, .ping], [.close(.normal, reason: ""), shared],
        ]
        for pass in passes {
            let joined = buffers.joinedBuffer(for: pass, allocator: allocator)
            #expect(joined == nil)
        }
        let big = String(repeating: "x", count: SharedFrameBuffers.maxJoinedBytes / 2)
        let large = [OutboundFrame.encodedText(Self.frame(big)), .encodedText(Self.frame(big))]
        let tooLarge = buffers.joinedBuffer(for: large, allocator: allocator)
        #expect(tooLarge == nil)
        #expect(buffers.cachedCounts.runs == 0)
    }

    @Test func theCachesStayBounded() {
        var buffers = SharedFrameBuffers()
        let frames = (0..<(SharedFrameBuffers.maxCachedFrames + 10)).map { Self.frame("{\"n\":\($0)}") }
        for frame in frames { _ = buffers.buffer(for: frame, allocator: allocator) }
        #expect(buffers.cachedCounts.frames <= SharedFrameBuffers.maxCachedFrames)
        for index in 0..<(SharedFrameBuffers.maxCachedRuns * 3) {
            let pass = [OutboundFrame.encodedText(frames[index]), .encodedText(frames[index + 1])]
            let joined = buffers.joinedBuffer(for: pass, allocator: allocator)
            #expect(joined.map(Self.bytes) == frames[index].webSocketFrame + frames[index + 1].webSocketFrame)
        }
        #expect(buffers.cachedCounts.runs == SharedFrameBuffers.maxCachedRuns)
    }
}
