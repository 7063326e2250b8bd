import RealtimeTesting
import Testing

@testable import RealtimeCore

/// User and session ids two users could share never get in: Swift compares strings by canonical equivalence, so
/// "Kate" and "\u{212A}ate" (KELVIN SIGN) would be one user to every dictionary and comparison of the hub.
@Suite(.timeLimit(.minutes(1))) struct IdentifierPolicyTests {
    let fixture = HubFixture()

    @Test func onlyShortNFCIdsWithoutControlCharactersAreUsable() {
        for usable in ["alice", "Kate", "Zo\u{00EB}", "user:42", "a b", "日本語", String(repeating: "u", count: 256)] {
            #expect(IdentifierPolicy.problem(with: usable) == nil, "\(usable)")
        }
        // Canonically equivalent to usable ids, but other bytes.
        #expect("\u{212A}ate" == "Kate", "the reason for the rule: String equality is canonical equivalence")
        #expect(IdentifierPolicy.problem(with: "\u{212A}ate") == "is not in Unicode Normalization Form C")
        #expect(IdentifierPolicy.problem(with: "Zoe\u{0308}") == "is not in Unicode Normalization Form C")
        #expect(IdentifierPolicy.problem(with: "A\u{030A}sa") == "is not in Unicode Normalization Form C")
        #expect(IdentifierPolicy.problem(with: "") == "is empty")
        #expect(IdentifierPolicy.problem(with: String(repeating: "u", count: 257)) == "is longer than 256 bytes")
        #expect(IdentifierPolicy.problem(with: "a\u{0007}b") == "contains control characters")
        #expect(IdentifierPolicy.problem(with: "a\u{0085}b") == "contains control characters")
    }

    @Test func aTokenWhoseUserOrSessionIdIsNotUsableIsRefused() async throws {
        let hub = try fixture.hub()
        fixture.tokens.add("kelvin", VerifiedIdentity(userID: "\u{212A}ate", sessionID: "s-kelvin"))
        fixture.tokens.add("kate-decomposed-session", VerifiedIdentity(userID: "kate", sessionID: "s-Zoe\u{0308}"))
        #expect(await hub.rejection(uri: "/ws/events?token=kelvin")?.code == "invalid_token")
        #expect(await hub.rejection(uri: "/ws/events?token=kate-decomposed-session")?.code == "invalid_token")
        let api = await hub.authenticateRequest(
            UpgradeRequest(uri: "/api/v1/stats", headers: [("Authorization", "Bearer kelvin")], remoteAddress: "")
        )
        #expect((try? api.get()) == nil)
    }

    @Test func nothingAddressedToAnEquivalentIdReachesAnotherUser() async throws {
        let hub = try fixture.hub()
        fixture.tokens.add("kate", VerifiedIdentity(userID: "Kate", sessionID: "s-kate"))
        let kate = try await hub.connectClient(token: "kate")
        await kate.send(#"{"type":"subscribe","id":"s","payload":{"eventTypes":["*"]}}"#)
        _ = try await kate.next(type: "subscribed")

        await #expect(throws: RealtimeError.self) {
            try await hub.publishSecurityEvent("security.suspicious.activity", userID: "\u{212A}ate")
        }
        await #expect(throws: RealtimeError.self) {
            try await hub.publish(RealtimeEvent(type: "security.suspicious.activity", scope: .user("\u{212A}ate")))
        }
        let receipt = await hub.send(
            RealtimeNotification(level: .warning, title: "t", message: "m", target: .user("\u{212A}ate"))
        )
        #expect(receipt.localDeliveries == 0)
        #expect(!receipt.publishedToCluster)
        await #expect(throws: RealtimeError.self) { try await hub.disconnect(userID: "\u{212A}ate") }
        await #expect(throws: RealtimeError.self) { try await hub.revoke(userID: "\u{212A}ate") }
        await #expect(throws: RealtimeError.self) { try await hub.revoke(sessionID: "s-Zoe\u{0308}") }
        await #expect(throws: RealtimeError.self) {
            try await hub.connections(ofUser: "\u{212A}ate", after: nil, limit: 10)
        }

        // Kate still gets what is hers, and nothing came before it.
        try await hub.publishSecurityEvent("security.suspicious.activity", userID: "Kate")
        let event = try await kate.next(type: "event")
        #expect(event["payload"]?["userId"] == "Kate")
        await kate.send(#"{"type":"ping","id":"p"}"#)
        #expect(try await kate.next()["type"] == "pong")
    }
}
