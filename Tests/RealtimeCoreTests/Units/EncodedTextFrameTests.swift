import Testing

@testable import RealtimeCore

/// `EncodedTextFrame`: the unmasked server frame of RFC 6455 §5.2 for each length form, its text, and what the
/// outbound queue's byte bound counts.
@Suite struct EncodedTextFrameTests {
    @Test(arguments: [
        (0, [0x81, 0x00] as [UInt8]),
        (125, [0x81, 125]),
        (126, [0x81, 126, 0x00, 126]),
        (65_535, [0x81, 126, 0xFF, 0xFF]),
        (65_536, [0x81, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]),
    ])
    func theHeaderHasTheLengthFormOfThePayload(_ length: Int, _ header: [UInt8]) {
        let text = String(repeating: "a", count: length)
        let frame = EncodedTextFrame(text: text)
        #expect(Array(frame.webSocketFrame.prefix(header.count)) == header)
        #expect(frame.payloadOffset == header.count)
        #expect(frame.webSocketFrame.count == header.count + length)
        #expect(frame.payloadByteCount == length)
        #expect(frame.text == text)
    }

    @Test func thePayloadIsTheUTF8OfTheText() {
        let frame = EncodedTextFrame(text: #"{"type":"event","payload":{"x":"é"}}"#)
        #expect(
            Array(frame.webSocketFrame[frame.payloadOffset...]) == Array(#"{"type":"event","payload":{"x":"é"}}"#.utf8)
        )
        #expect(OutboundFrame.encodedText(frame).text == frame.text)
        #expect(OutboundFrame.encodedText(frame) == .encodedText(EncodedTextFrame(text: frame.text)))
    }

    @Test func theQueueBoundCountsPayloadBytesOfSharedFrames() {
        let queue = OutboundQueue(maxFrames: 100, maxBytes: 10)
        #expect(queue.enqueue(.encodedText(EncodedTextFrame(text: "12345"))) == .queued)
        #expect(queue.enqueue(.encodedText(EncodedTextFrame(text: "123456"))) == .overflow)
        #expect(queue.depth == (1, 5))
    }
}
