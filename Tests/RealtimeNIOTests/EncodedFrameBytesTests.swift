// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOEmbedded
import NIOWebSocket
import RealtimeCore
import Testing

/// The shared frames the handler writes below NIO's `WebSocketFrameEncoder` (`EncodedTextFrame`, header and
/// payload encoded once per event) are byte for byte what that encoder writes for the same text frame, in every
/// length form of RFC 6455 §5.2: 7-bit (< 126), 16-bit (126…65,535) and 64-bit (> 65,535).
@Suite struct EncodedFrameBytesTests {
    /// What NIO's encoder puts on the wire for an unmasked, final text frame with `payload`.
    static func encodedByNIO(_ payload: String) throws -> [UInt8] {
        let channel = EmbeddedChannel(handler: WebSocketFrameEncoder())
        defer { _ = try? channel.finish() }
        let frame = WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: payload))
        try channel.writeOutbound(frame)
        var bytes: [UInt8] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            bytes += buffer.readableBytesView
        }
        return bytes
    }

    @Test(arguments: [0, 1, 125, 126, 300, 65_535, 65_536, 70_000])
    func theSharedFrameIsWhatNIOsEncoderWrites(length: Int) throws {
        // Not one repeated byte, so an offset or order mistake shows.
        let payload = String((0..<length).map { Character(UnicodeScalar(UInt8(0x61 + $0 % 26))) })
        let shared = EncodedTextFrame(text: payload)
        let nio = try Self.encodedByNIO(payload)
        #expect(nio.count == shared.webSocketFrame.count)
        #expect(nio == shared.webSocketFrame)
    }

    @Test func multiByteUTF8IsCountedInBytes() throws {
        let payload = String(repeating: "é€😀", count: 20)  // 9 bytes each, 180 in all: the 16-bit form
        #expect(try Self.encodedByNIO(payload) == EncodedTextFrame(text: payload).webSocketFrame)
    }
}
