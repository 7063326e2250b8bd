/// A server-to-client WebSocket text frame, header and payload, encoded once and shared by every connection it is
/// queued for.
///
/// Server frames are unmasked (RFC 6455 §5.1), so a fanned-out message is byte for byte the same frame for every
/// recipient: the hub encodes it once per message (see ``OutboundFrame/encodedText(_:)``) and a host writes
/// ``webSocketFrame`` to each socket as it is — no per-recipient copy of the text, no per-recipient header.
public final class EncodedTextFrame: Sendable, Hashable, CustomStringConvertible {
    /// The complete frame: `0x81` (FIN, text), the payload length (7, 7+16 or 7+64 bits, RFC 6455 §5.2), then the
    /// UTF-8 payload.
    public let webSocketFrame: [UInt8]
    /// Where the payload starts in ``webSocketFrame``: 2, 4 or 10.
    public let payloadOffset: Int

    /// Encodes `text` as one unmasked final text frame.
    public init(text: String) {
        let payloadCount = text.utf8.count
        let headerCount = WebSocketFrameHeader.byteCount(payloadLength: payloadCount)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerCount + payloadCount)
        WebSocketFrameHeader.append(opcode: WebSocketFrameHeader.textOpcode, payloadLength: payloadCount, to: &bytes)
        bytes.append(contentsOf: text.utf8)
        self.webSocketFrame = bytes
        self.payloadOffset = headerCount
    }

    /// The payload's size in bytes (what the outbound queue's byte bound counts).
    public var payloadByteCount: Int { webSocketFrame.count - payloadOffset }

    /// The message (the frame's payload as a string).
    public var text: String {
        webSocketFrame.withUnsafeBufferPointer { String(decoding: $0[payloadOffset...], as: UTF8.self) }
    }

    public var description: String { "EncodedTextFrame(\(text))" }

    public static func == (lhs: EncodedTextFrame, rhs: EncodedTextFrame) -> Bool {
        lhs === rhs || lhs.webSocketFrame == rhs.webSocketFrame
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(webSocketFrame) }
}

/// The header of an unmasked, final server-to-client WebSocket frame (RFC 6455 §5.2): what every host needs to
/// write a frame, kept in one place.
package enum WebSocketFrameHeader {
    package static let textOpcode: UInt8 = 0x1
    package static let closeOpcode: UInt8 = 0x8
    package static let pingOpcode: UInt8 = 0x9
    package static let pongOpcode: UInt8 = 0xA

    /// 2 bytes up to 125 bytes of payload, 4 up to 65,535, 10 beyond.
    package static func byteCount(payloadLength: Int) -> Int {
        payloadLength <= 125 ? 2 : payloadLength <= 0xFFFF ? 4 : 10
    }

    /// Appends the header of a final, unmasked frame with `opcode` and a payload of `payloadLength` bytes.
    package static func append(opcode: UInt8, payloadLength: Int, to bytes: inout [UInt8]) {
        bytes.append(0x80 | opcode)
        if payloadLength <= 125 {
            bytes.append(UInt8(payloadLength))
        } else if payloadLength <= 0xFFFF {
            bytes.append(126)
            bytes.append(UInt8(truncatingIfNeeded: payloadLength >> 8))
            bytes.append(UInt8(truncatingIfNeeded: payloadLength))
        } else {
            bytes.append(127)
            for shift in stride(from: 56, through: 0, by: -8) {
                bytes.append(UInt8(truncatingIfNeeded: UInt64(payloadLength) >> UInt64(shift)))
            }
        }
    }
}
