import Testing

@testable import RealtimeCore

@Suite struct RecoverQueryTests {
    @Test func parsesItemsAtTheirLastTwoColons() throws {
        let object = try RecoverQuery.parse("user:a:b:c:e1:42,everyone:e2:0")
        #expect(object["user:a:b:c"] == ["epoch": "e1", "offset": 42], "a user id with colons keeps them")
        #expect(object["everyone"] == ["epoch": "e2", "offset": 0])
        #expect(object.count == 2)
        // The parsed object passes the checks of `subscribe`'s `recover` for the user's own streams only.
        _ = try RecoveryRequest(object, endpoint: .events, userID: "a:b:c", id: nil)
        #expect(throws: WireError.self) { try RecoveryRequest(object, endpoint: .events, userID: "a", id: nil) }
    }

    @Test(arguments: [
        "", "garbage", "everyone:1", ":e:1", "everyone:e:x", "everyone:e:1.5", "everyone:e:99999999999999999999",
        "everyone:e:1,", ",everyone:e:1", "everyone:e:1,everyone:e:2", String(repeating: "a", count: 1025),
        "everyone:e:+1", "everyone:e:-1", "everyone:e:00001", "everyone:e:", "everyone:e: 1",
    ])
    func refusesMalformedValuesWithInvalidPosition(_ value: String) {
        do {
            _ = try RecoverQuery.parse(value)
            Issue.record("accepted \(value.prefix(40))")
        } catch {
            #expect(error.code == .invalidPosition)
        }
    }
}
