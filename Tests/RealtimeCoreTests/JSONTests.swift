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

    @Test func integersAreReadWithoutLosingRangeOrSign() throws {
        #expect(try parser.parse("-9223372036854775808") == .int(.min))
        #expect(try parser.parse("-9223372036854775809") == .double(-9_223_372_036_854_775_809))
        #expect(try parser.parse("-0") == .int(0))
        #expect(try parser.parse("0") == .int(0))
        #expect(try parser.parse("1234567890123456789") == .int(1_234_567_890_123_456_789))
        #expect(try parser.parse("9999999999999999999") == .double(9_999_999_999_999_999_999))
        #expect(try parser.parse("18446744073709551616") == .double(18_446_744_073_709_551_616))
        #expect(try parser.parse("123456789012345678901234") == .double(123_456_789_012_345_678_901_234))
        #expect(try parser.parse("[7,-7,1e2,1.5]") == [7, -7, 100.0, 1.5])
        // Beyond a double's range: refused (it would be written on as `null`), wherever it is.
        #expect(throws: JSONParseError(.invalidNumber, offset: 0)) { try parser.parse("1e999") }
        #expect(throws: JSONParseError(.invalidNumber, offset: 6)) { try parser.parse(#"{"a":[-1e400]}"#) }
        #expect(try parser.parse("1.7976931348623157e308") == .double(.greatestFiniteMagnitude))
    }

    @Test func duplicateKeysAreFoundInLargeAndNestedObjects() throws {
        let members = (0..<40).map { "\"k\($0)\":\($0)" }
        let large = "{" + members.joined(separator: ",") + "}"
        #expect(try parser.parse(large)["k39"] == 39)
        #expect(try parser.parse(large).objectValue?.count == 40)
        for duplicate in [1, 15, 16, 17, 39] {
            let text = "{" + (members + ["\"k\(duplicate)\":0"]).joined(separator: ",") + "}"
            let offset = text.utf8.count - "\"k\(duplicate)\":0}".utf8.count
            #expect(throws: JSONParseError(.duplicateKey, offset: offset)) { try parser.parse(text) }
        }
        // The same name at different levels is no duplicate; a duplicate inside a nested object is.
        #expect(try parser.parse(#"{"a":{"a":{"a":1}},"b":[{"a":2},{"a":3}]}"#)["b"] == [["a": 2], ["a": 3]])
        #expect(throws: JSONParseError(.duplicateKey, offset: 19)) { try parser.parse(#"{"a":[{"x":1,"y":2,"x":3}]}"#) }
        // A value's own error comes before the duplicate it would have made.
        #expect(throws: JSONParseError(.invalidNumber, offset: 12)) { try parser.parse(#"{"a":1,"a":01}"#) }
        let lenient = JSONParser(limits: .init(rejectDuplicateKeys: false))
        #expect(try lenient.parse(#"{"a":1,"b":2,"a":3}"#) == ["a": 3, "b": 2])
    }

    @Test func duplicateNamesAreComparedAsStringsNotBytes() throws {
        // Escaped and unescaped spellings of one name, and canonically equivalent names, are the same name.
        #expect(throws: JSONParseError(.duplicateKey, offset: 9)) { try parser.parse(#"{"exp":1,"\u0065xp":2}"#) }
        #expect(throws: JSONParseError(.duplicateKey, offset: 7)) { try parser.parse(#"{"K":1,"\u212A":2}"#) }
        #expect(throws: JSONParseError(.duplicateKey, offset: 8)) { try parser.parse(#"{"é":1,"e\u0301":2}"#) }
        #expect(try parser.parse(#"{"é":1,"e":2,"E":3}"#).objectValue?.count == 3)
        let members = try Array(#"{"K":1,"\u00e9":2,"x":3}"#.utf8).withUnsafeBufferPointer {
            try parser.parseObjectMembers($0)
        }
        #expect(members?.value(forKey: "\u{212A}") == 1)
        #expect(members?.value(forKey: "e\u{301}") == 2)
        #expect(members?.value(forKey: "x") == 3)
        #expect(members?.value(forKey: "y") == nil)
        #expect(members?.object == ["K": 1, "é": 2, "x": 3])
    }

    @Test func shortAndLongStringsKeepTheirText() throws {
        for text in ["", "a", "fifteen-chars!!", "sixteen-chars!!!", "ascii then é", "tab\there", "€uro", "🎉"] {
            #expect(try parser.parse(JSONWriter.string(.string(text))) == .string(text))
        }
    }

    @Test func topLevelMembersMatchTheParsedObject() throws {
        let text = #" {"sub":"u","exp":17,"roles":["a"],"n":{"x":null}} "#
        let members = try Array(text.utf8).withUnsafeBufferPointer { try parser.parseObjectMembers($0) }
        #expect(members?.map(\.key) == ["sub", "exp", "roles", "n"])
        #expect(members?.map(\.value) == ["u", 17, ["a"], ["x": nil]])
        #expect(try Array("{}".utf8).withUnsafeBufferPointer { try parser.parseObjectMembers($0) }?.isEmpty == true)
        #expect(try Array("[1]".utf8).withUnsafeBufferPointer { try parser.parseObjectMembers($0) } == nil)
        for bad in [#"{"a":1,"a":2}"#, #"{"a":1} x"#, #"{"a":1,}"#, "{"] {
            let expected = #expect(throws: JSONParseError.self) { try parser.parse(bad) }
            let actual = #expect(throws: JSONParseError.self) {
                try Array(bad.utf8).withUnsafeBufferPointer { try parser.parseObjectMembers($0) }
            }
            #expect(actual == expected)
        }
    }

    @Test func timestampsFormatAsISO8601() {
        #expect(Timestamp(millisecondsSinceEpoch: 0).iso8601 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(millisecondsSinceEpoch: 1_795_940_572_123).iso8601 == "2026-11-29T08:22:52.123Z")
        #expect(Timestamp(millisecondsSinceEpoch: 951_782_400_000).iso8601 == "2000-02-29T00:00:00.000Z")
    }
}
