import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

@testable import RealtimeCore

/// Fuzz (third round): a server cut off from the bus while another server revoked a session missed the revocation,
/// and the revoked session's socket kept receiving events until its token expired. A gap makes the hub check its
/// connections again with admission's own session check.
@Suite struct RevalidationTests {
    let fixture = HubFixture()

    @Test func aGapClosesTheConnectionsWhoseSessionOrUserWasRevokedMeanwhile() async throws {
        let hub = try fixture.hub()
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            let aliceAgain = try await hub.connectClient(token: "alice-token-2")
            let aliceElsewhere = try await hub.connectClient(token: "alice-other-session")
            let bob = try await hub.connectClient(token: "bob-token")
            let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
            // What another server wrote while this one heard nothing of it: the store knows, the bus never said.
            let retain = Timestamp.now() + .seconds(3600)
            #expect(try await fixture.sessions.revoke("s-alice", retainUntil: retain))
            try await fixture.sessions.revokeUser("bob", issuedBefore: .now(), retainUntil: retain)

            // Without a gap nothing is checked: the connections stay.
            // (a ping answered: still open; the connection's `connected` greeting is all it was sent)
            #expect(try await alice.drainUntilPong().map { $0["type"] } == ["connected"])

            hub.handle(.gap(from: .now(), to: .now()))
            #expect(try await alice.nextClose().0 == .sessionRevoked)
            #expect(try await aliceAgain.nextClose().0 == .sessionRevoked, "every connection of the session")
            #expect(try await bob.nextClose().0 == .sessionRevoked, "a user revocation")
            // The others saw the gap and stay.
            for client in [aliceElsewhere, admin] {
                let messages = try await client.drainUntilPong()
                #expect(messages.contains { $0["type"] == "gap" })
            }
            // Called directly: nothing more to close.
            #expect(await hub.revalidateSessions() == 0)
            await aliceElsewhere.close()
            await admin.close()
        }
    }

    /// A store that cannot answer is no revocation: the connection stays, and the next gap checks it again.
    @Test func aFailingStoreKeepsTheConnectionsUntilTheNextGap() async throws {
        let sessions = SwitchableSessionStore()
        let hub = try RealtimeHub(
            configuration: HubConfiguration.testing(),
            backends: .inMemory(tokenVerifier: fixture.tokens, sessionStore: sessions)
        )
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            #expect(try await sessions.inner.revoke("s-alice", retainUntil: .now() + .seconds(3600)))
            sessions.failing.store(true, ordering: .relaxed)
            #expect(await hub.revalidateSessions() == 0)
            #expect(try await alice.drainUntilPong().map { $0["type"] } == ["connected"], "still open")
            sessions.failing.store(false, ordering: .relaxed)
            #expect(await hub.revalidateSessions() == 1)
            #expect(try await alice.nextClose().0 == .sessionRevoked)
        }
    }
}

/// An in-memory session store whose checks fail while `failing` is set.
final class SwitchableSessionStore: SessionStore {
    let inner = InMemorySessionStore()
    let failing = Atomic(false)

    var mode: SessionStoreMode { inner.mode }

    private func check() throws(RealtimeError) {
        if failing.load(ordering: .relaxed) { throw RealtimeError(.backendUnavailable, "switched off") }
    }

    func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
        try check()
        return try await inner.isActive(sessionID)
    }

    func isActive(_ sessionID: String, userID: String) async throws(RealtimeError) -> Bool {
        try check()
        return try await inner.isActive(sessionID, userID: userID)
    }

    func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
        try await inner.create(sessionID, userID: userID, expiresAt: expiresAt)
    }

    func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool {
        try await inner.revoke(sessionID, retainUntil: retainUntil)
    }

    func revokeUser(_ userID: String, issuedBefore: Timestamp, retainUntil: Timestamp) async throws(RealtimeError) {
        try await inner.revokeUser(userID, issuedBefore: issuedBefore, retainUntil: retainUntil)
    }

    func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp? {
        try check()
        return try await inner.userRevokedBefore(userID)
    }

    func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord? {
        try await inner.session(sessionID)
    }

    func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord] {
        try await inner.sessions(ofUser: userID, limit: limit)
    }
}
