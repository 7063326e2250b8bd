import RealtimeTesting
import Testing

@testable import RealtimeCore

/// The race between an admission and a user-wide revocation: a connection admitted before the revocation was
/// written but activated after this server applied it is refused at activation.
@Suite struct RecentUserRevocationsTests {
    let fixture = HubFixture()

    @Test func entriesRefuseEarlierTokensUntilTheyEndAndKeepTheLaterInstants() {
        var recent = RecentUserRevocations()
        let now = ContinuousClock.now
        let revokedAt = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
        recent.note("alice", issuedBefore: revokedAt, until: now + .seconds(20))
        let old = VerifiedIdentity(userID: "alice", issuedAt: revokedAt - .seconds(1))
        let fresh = VerifiedIdentity(userID: "alice", issuedAt: revokedAt)
        #expect(recent.refuses(old, now: now))
        #expect(recent.refuses(VerifiedIdentity(userID: "alice"), now: now), "no iat: refused")
        #expect(!recent.refuses(fresh, now: now))
        #expect(!recent.refuses(VerifiedIdentity(userID: "bob", issuedAt: revokedAt - .seconds(1)), now: now))
        // An earlier, shorter revocation lowers nothing.
        recent.note("alice", issuedBefore: revokedAt - .seconds(5), until: now + .seconds(1))
        #expect(recent.refuses(old, now: now + .seconds(10)))
        #expect(!recent.refuses(old, now: now + .seconds(20)), "forgotten at its end")
        recent.sweep(now: now + .seconds(20))
        #expect(recent.entries.isEmpty)
    }

    @Test func theEntriesAreBounded() {
        var recent = RecentUserRevocations()
        let now = ContinuousClock.now
        for index in 0..<(RecentUserRevocations.maxEntries + 10) {
            recent.note("u\(index)", issuedBefore: .now(), until: now + .seconds(Int64(10 + index)))
        }
        #expect(recent.entries.count == RecentUserRevocations.maxEntries)
        #expect(recent.entries["u\(RecentUserRevocations.maxEntries + 9)"] != nil, "the latest is kept")
    }

    @Test func aConnectionAdmittedBeforeTheRevocationIsRefusedAtActivation() async throws {
        let hub = try fixture.hub()
        fixture.tokens.add(
            "dave-old",
            VerifiedIdentity(userID: "dave", sessionID: "s-dave", issuedAt: .now() - .seconds(5))
        )
        // Admitted (the store had no revocation yet), not yet connected.
        guard
            case .accept(let ticket) = await hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events?token=dave-old", remoteAddress: "127.0.0.1")
            )
        else {
            Issue.record("upgrade refused")
            return
        }
        try await hub.revoke(userID: "dave")
        let client = TestClient(try await hub.connect(ticket))
        let (code, _) = try await client.nextClose()
        #expect(code == .sessionRevoked)
        #expect(await hub.stats().server.connections == 0)
    }
}
