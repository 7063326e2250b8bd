// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOWebSocket
import RealtimeCore

/// The RFC 6455 rules for the frames a client sends and the close frames the server writes: pure functions of a
/// frame, kept apart from the handler's reading and writing.
extension RealtimeWebSocketHandler {
    /// The most fragments one message may have: a flood of empty continuation frames is one message to the rate
    /// limit but costs a frame's work each (fourth fuzz: 100,000 of them, 600 KB, cost 2.3 s of CPU).
    static let maxFragmentsPerMessage = 1024

    /// What a client's close frame says.
    enum CloseFrameReading: Equatable {
        /// Its status code (1005 when it has none).
        case code(CloseCode)
        /// A violation to fail the connection with.
        case violation(UInt16, String)
    }

    /// Reads a close frame's payload (RFC 6455 §5.5.1, §7.4): no payload, or a status code the client may send and a
    /// UTF-8 reason.
    static func readCloseFrame(_ payload: ByteBuffer) -> CloseFrameReading {
        var data = payload
        guard data.readableBytes != 1 else {
            return .violation(1002, "a close frame's payload is empty or starts with a two-byte code")
        }
        guard let raw = data.readInteger(as: UInt16.self) else { return .code(CloseCode(1005)) }
        guard mayBeReceived(CloseCode(raw)) else { return .violation(1002, "close code \(raw) may not be sent") }
        guard String(validating: data.readableBytesView, as: UTF8.self) != nil else {
            return .violation(1007, "the close reason is not valid UTF-8")
        }
        return .code(CloseCode(raw))
    }

    /// Whether a close frame from a peer may carry `code` (RFC 6455 §7.4): the defined codes an endpoint sends
    /// (1000–1003, 1007–1011, and 1012–1014 as IANA registered them) and those for libraries, frameworks and
    /// applications (3000–4999). Never 1004–1006 or 1015 (reserved, or only for reporting), nor undefined ones.
    static func mayBeReceived(_ code: CloseCode) -> Bool {
        switch code.rawValue {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
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
