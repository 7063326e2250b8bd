import RealtimeTesting
import Testing

@testable import RealtimeCore

/// The race between an admission and a revocation: a connection admitted before the revocation was written but
/// activated after this server applied it is refused at activation.
@Suite(.timeLimit(.minutes(1))) struct RecentRevocationsTests {
    let fixture = HubFixture()

    @Test func userEntriesRefuseEarlierTokensUntilTheyEndAndKeepTheLaterInstants() {
        var recent = RecentRevocations()
        let now = ContinuousClock.now
        let revokedAt = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
        recent.noteUser("alice", issuedBefore: revokedAt, now: now, until: now + .seconds(20))
        func refuses(_ identity: VerifiedIdentity, at instant: ContinuousClock.Instant) -> Bool {
            recent.refusal(identity, admissionStarted: now - .seconds(1), now: instant) == .userRevoked
        }
        let old = VerifiedIdentity(userID: "alice", issuedAt: revokedAt - .seconds(1))
        let fresh = VerifiedIdentity(userID: "alice", issuedAt: revokedAt)
        #expect(refuses(old, at: now))
        #expect(refuses(VerifiedIdentity(userID: "alice"), at: now), "no iat: refused")
        #expect(!refuses(fresh, at: now))
        #expect(!refuses(VerifiedIdentity(userID: "bob", issuedAt: revokedAt - .seconds(1)), at: now))
        // An earlier, shorter revocation lowers nothing.
        recent.noteUser("alice", issuedBefore: revokedAt - .seconds(5), now: now, until: now + .seconds(1))
        #expect(refuses(old, at: now + .seconds(10)))
        #expect(!refuses(old, at: now + .seconds(20)), "forgotten at its end")
        recent.sweep(now: now + .seconds(20))
        #expect(recent.users.isEmpty)
    }

    @Test func sessionEntriesRefuseAdmissionsThatStartedBeforeTheyWereApplied() {
        var recent = RecentRevocations()
        let applied = ContinuousClock.now
        recent.noteSession("s1", appliedAt: applied, reason: "stolen laptop", until: applied + .seconds(20))
        let member = VerifiedIdentity(userID: "alice", sessionID: "s1")
        let refused = RecentRevocations.Refusal.sessionRevoked(reason: "stolen laptop")
        #expect(recent.refusal(member, admissionStarted: applied - .milliseconds(1), now: applied) == refused)
        #expect(recent.refusal(member, admissionStarted: applied, now: applied) == refused)
        // Started after the revocation was applied here, so after it was written: the session store decides.
        #expect(recent.refusal(member, admissionStarted: applied + .milliseconds(1), now: applied) == nil)
        #expect(
            recent.refusal(VerifiedIdentity(userID: "alice", sessionID: "s2"), admissionStarted: applied, now: applied)
                == nil
        )
        #expect(recent.refusal(VerifiedIdentity(userID: "alice"), admissionStarted: applied, now: applied) == nil)
        #expect(
            recent.refusal(member, admissionStarted: applied - .seconds(1), now: applied + .seconds(20)) == nil,
            "forgotten at its end"
        )
        // A later application of the same session moves its instant forward, never back.
        recent.noteSession("s1", appliedAt: applied + .seconds(5), reason: "again", until: applied + .seconds(25))
        recent.noteSession("s1", appliedAt: applied + .seconds(1), reason: "late copy", until: applied + .seconds(2))
        #expect(
            recent.refusal(member, admissionStarted: applied + .seconds(4), now: applied + .seconds(22))
                == .sessionRevoked(reason: "again")
        )
        recent.sweep(now: applied + .seconds(25))
        #expect(recent.sessions.isEmpty)
    }

    @Test func theEntriesAreBounded() {
        var recent = RecentRevocations()
        let now = ContinuousClock.now
        for index in 0..<(RecentRevocations.maxEntries + 10) {
            let until = now + .seconds(Int64(10 + index))
            recent.noteUser("u\(index)", issuedBefore: .now(), now: now, until: until)
            recent.noteSession("s\(index)", appliedAt: now, reason: "revoked", until: until)
        }
        #expect(recent.users.count == RecentRevocations.maxEntries)
        #expect(recent.sessions.count == RecentRevocations.maxEntries)
        #expect(recent.users["u\(RecentRevocations.maxEntries + 9)"] != nil, "the latest is kept")
        #expect(recent.sessions["s\(RecentRevocations.maxEntries + 9)"] != nil, "the latest is kept")
        #expect(recent.sessions["s0"] == nil, "the one closest to its end went first")
        // Entries that ended make room before any live one is dropped.
        let later = now + .seconds(Int64(10 + RecentRevocations.maxEntries + 100))
        recent.noteSession("fresh", appliedAt: later, reason: "revoked", until: later + .seconds(20))
        #expect(recent.sessions.count == 1)
    }

    @Test func aConnectionAdmittedBeforeItsUsersRevocationIsRefusedAtActivation() async throws {
        let hub = try fixture.hub()
        fixture.tokens.add(
            "dave-old",
            VerifiedIdentity(userID: "dave", sessionID: "s-dave", issuedAt: .now() - .seconds(5))
        )
        // Admitted (the store had no revocation yet), not yet connected.
        let ticket = try await hub.ticket(token: "dave-old")
        try await hub.revoke(userID: "dave")
        let client = TestClient(try await hub.connect(ticket))
        let (code, _) = try await client.nextClose()
        #expect(code == .sessionRevoked)
        #expect(await hub.stats().server.connections == 0)
    }

    @Test func aConnectionAdmittedBeforeItsSessionsRevocationIsRefusedAtActivation() async throws {
        let hub = try fixture.hub()
        let ticket = try await hub.ticket(token: "alice-token")
        try await hub.revoke(sessionID: "s-alice", reason: "stolen laptop")
        let client = TestClient(try await hub.connect(ticket))
        let (code, reason) = try await client.nextClose()
        #expect(code == .sessionRevoked)
        #expect(reason == "stolen laptop")
        #expect(await hub.stats().server.connections == 0)
        // Another session of the same user is not affected.
        let other = TestClient(try await hub.connect(try await hub.ticket(token: "alice-other-session")))
        #expect(try await other.next(type: "connected")["payload"]?["userId"] == "alice")
    }

    /// First-message authentication: the `auth` message's admission read the session before the revocation was
    /// written and is held at the user's slot claim while the revocation is applied; its activation is refused.
    @Test func anAuthMessageAdmittedBeforeItsSessionsRevocationIsRefusedAtActivation() async throws {
        let store = PausingConnectionStore(fixture.store)
        let hub = try fixture.hub(connectionStore: store) { $0.firstMessageAuthentication = true }
        let client = TestClient(try await hub.connect(try await hub.ticket()))
        let hold = store.holdNextRegister(at: .beforeWrite)
        defer { hold.release() }
        async let authenticated: Void = client.send(#"{"type":"auth","payload":{"token":"alice-token"}}"#)
        try await hold.arrived()
        try await hub.revoke(sessionID: "s-alice")
        hold.release()
        await authenticated
        let (code, _) = try await client.nextClose()
        #expect(code == .sessionRevoked)
        #expect(await hub.stats().server.connections == 0)
    }

    /// Registry mode: a session whose revocation was kept for no time (so its id may be created again) and that is
    /// created again admits connections whose admission started afterwards, even while this server remembers the
    /// revocation.
    @Test func aSessionCreatedAgainAdmitsNewConnections() async throws {
        let fixture = HubFixture(sessionMode: .registry)
        let hub = try fixture.hub()
        try await hub.createSession("s-alice", userID: "alice", expiresAt: .now() + .seconds(3_600))
        let early = try await hub.ticket(token: "alice-token")
        try await hub.revoke(sessionID: "s-alice", retainUntil: .now())
        try await hub.createSession("s-alice", userID: "alice", expiresAt: .now() + .seconds(3_600))
        let refused = TestClient(try await hub.connect(early))
        #expect(try await refused.nextClose().0 == .sessionRevoked)
        let again = TestClient(try await hub.connect(try await hub.ticket(token: "alice-token")))
        #expect(try await again.next(type: "connected")["payload"]?["userId"] == "alice")
    }

    /// Both modes: a revoked session cannot be created again while its revocation is kept, so whoever may create
    /// sessions cannot bring its tokens back (fifth probe: a service allowed only `create_session` undid an
    /// administrator's revocation); the refusal is `conflict` and nobody is told of a session.
    @Test(arguments: [SessionStoreMode.registry, .revocationList])
    func aRevokedSessionCannotBeCreatedAgain(mode: SessionStoreMode) async throws {
        let fixture = HubFixture(sessionMode: mode)
        let hub = try fixture.hub()
        try await hub.createSession("s-root", userID: "root", expiresAt: .now() + .seconds(3_600))
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        _ = try await admin.next(type: "connected")
        try await admin.subscribe(["session.*"])
        try await hub.createSession("s-alice", userID: "alice", expiresAt: .now() + .seconds(3_600))
        #expect(try await admin.next(type: "event")["payload"]?["type"] == "session.created")
        try await hub.revoke(sessionID: "s-alice", userID: "alice", reason: "stolen laptop")
        #expect(try await admin.next(type: "event")["payload"]?["type"] == "session.revoked")
        for user in ["alice", "mallory"] {
            let error = await #expect(throws: RealtimeError.self) {
                try await hub.createSession("s-alice", userID: user, expiresAt: .now() + .seconds(3_600))
            }
            #expect(error?.code == .conflict)
        }
        let request = UpgradeRequest(uri: "/ws/events?token=alice-token", remoteAddress: "127.0.0.1")
        let upgrade = await hub.authorizeUpgrade(request)
        guard case .reject = upgrade else {
            Issue.record("the revoked session's token was admitted")
            return
        }
        // A new session id is the way back in.
        try await hub.createSession("s-alice-2", userID: "alice", expiresAt: .now() + .seconds(3_600))
        let next = try await admin.next(type: "event")
        #expect(next["payload"]?["type"] == "session.created")
        #expect(next["payload"]?["sessionId"] == "s-alice-2", "no session.created for the refused creations")
    }
}
