import RealtimeCore
import Testing

@Suite struct JSONTests {
    let parser = JSONParser()

    @Test func parsesEveryKindOfValue() throws {
        let value = try parser.parse(#" {"a":[1,-2.5,true,false,null,"x\u00e9\n"],"b":{"c":1e3}} "#)
        #expect(value["a"] == [1, -2.5, true, false, nil, "xé\n"])
        #expect(value["b"]?["c"]?.doubleValue == 1000)
    }

    @Test func roundTripsThroughTheWriter() throws {
        let value: JSONValue = [
            "text": "quote \" backslash \\ control \u{01} tab \t emoji 🎉",
            "numbers": [0, 7, -12345678901234, 0.5, 1e300],
            "nested": ["empty": [:], "list": []],
        ]
        let encoded = JSONWriter.string(value)
        #expect(try parser.parse(encoded) == value)
    }

    @Test(arguments: [
        "", "{", "[1,]", "{\"a\":1,}", "01", "1.", "-", "tru", "\"\\x\"", "\"a", "{'a':1}", "[1] 2",
        "\"\u{01}\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "NaN", "{\"a\" 1}", "[", "/* */ 1",
    ])
    func refusesMalformedInput(_ text: String) {
        #expect(throws: JSONParseError.self) { try parser.parse(text) }
    }

    @Test func refusesInvalidUTF8() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        #expect(throws: JSONParseError(.invalidUTF8, offset: 1)) { try parser.parse(bytes) }
    }

    @Test func refusesDuplicateKeysUnlessAllowed() throws {
        #expect(throws: JSONParseError.self) { try parser.parse(#"{"exp":1,"exp":2}"#) }
        let lenient = JSONParser(limits: .init(rejectDuplicateKeys: false))
        #expect(try lenient.parse(#"{"exp":1,"exp":2}"#)["exp"] == 2)
    }

    @Test func boundsNestingDepthAndSize() throws {
        let bomb = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try parser.parse(bomb) }
        let small = JSONParser(limits: .init(maxBytes: 10))
        #expect(throws: JSONParseError(.tooLarge, offset: 10)) { try small.parse("[1,2,3,4,5,6]") }
        #expect(try JSONParser(limits: .init(maxDepth: 3)).parse("[[[1]]]") == [[[1]]])
        #expect(throws: JSONParseError.self) { try JSONParser(limits: .init(maxDepth: 3)).parse("[[[[1]]]]") }
    }

    @Test func integersStayIntegers() throws {
        #expect(try parser.parse("9223372036854775807") == .int(.max))
        #expect(try parser.parse("9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(JSONWriter.string(.int(.min)) == "-9223372036854775808")
        #expect(JSONWriter.string(.double(.nan)) == "null")
    }

    @Test func timestampsFormatAsISO8601() {
        #expect(Timestamp(millisecondsSinceEpoch: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(millisecondsSinceEpoch: 1_795_940_572_123).iso8601 == "2026-11-29T08:22:52.123Z")
        #expect(Timestamp(millisecondsSinceEpoch: 951_782_400_000).iso8601 == "2000-02-29T00:00:00.000Z")
    }

    @Test func busMessagesRoundTrip() throws {
        let event = RealtimeEvent(
            type: .securityHighRiskDetected,
            userID: "user-123",
            sessionID: "session-456",
            data: ["riskScore": 85, "factors": ["unusual_location", "new_device"]]
        )
        let messages = [
            BusMessage(origin: "srv_a", route: .user("user-123"), payload: .event(event)),
            BusMessage(
                origin: "srv_a",
                route: .everyone,
                payload: .notification(.init(level: .warning, title: "t", message: "m", target: .everyone))
            ),
            BusMessage(
                origin: "srv_b",
                route: .control,
                payload: .control(.disconnectSession(sessionID: "s", reason: "r"))
            ),
            BusMessage(
                origin: "srv_b",
                route: .server("srv_a"),
                payload: .control(.disconnectConnection("c1", reason: "r"))
            ),
        ]
        for message in messages {
            #expect(try BusMessage(jsonBytes: message.jsonBytes()) == message)
        }
    }
}
