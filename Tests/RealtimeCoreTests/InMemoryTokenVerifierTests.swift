import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct InMemoryTokenVerifierTests {
    let clock = ManualClock()

    @Test func verifiesKnownTokensAndRefusesOthers() async throws {
        let alice = VerifiedIdentity(userID: "alice", sessionID: "s1", expiresAt: clock.timestamp + .seconds(60))
        let verifier = StaticTokenVerifier(["t-alice": alice], now: clock.timestampSource)
        #expect(try await verifier.verify("t-alice") == alice)
        await #expect(throws: TokenVerificationError(.unknownToken, "the token is not in the table")) {
            try await verifier.verify("t-bob")
        }
        verifier.add("t-bob", VerifiedIdentity(userID: "bob", isAdmin: true))
        #expect(try await verifier.verify("t-bob").isAdmin)
        #expect(verifier.remove("t-bob"))
        #expect(!verifier.remove("t-bob"))
        await #expect(throws: TokenVerificationError.self) { try await verifier.verify("t-bob") }
    }

    @Test func refusesExpiredTokens() async throws {
        let alice = VerifiedIdentity(userID: "alice", expiresAt: clock.timestamp + .seconds(60))
        let verifier = StaticTokenVerifier(["t": alice], now: clock.timestampSource)
        clock.advance(by: .seconds(60))
        do {
            _ = try await verifier.verify("t")
            Issue.record("an expired token was accepted")
        } catch {
            #expect(error.reason == .expired)
        }
    }
}
