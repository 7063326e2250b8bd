public import RealtimeCore
import Testing

/// Checks that a `SessionStore` keeps the contract of both `SessionStoreMode`s.
///
/// `makeStore(mode)` returns an empty store in `mode` (for a shared server, one in a fresh namespace).
/// Expiries are set `time.ttl` ahead and checked after `time.advance`.
public enum SessionStoreConformance: Sendable {
    /// A factory of empty stores in a given mode.
    public typealias MakeStore = @Sendable (_ mode: SessionStoreMode) async throws -> any SessionStore

    /// Runs every check, each on a new store.
    public static func run(makeStore: MakeStore, time: ConformanceTime) async throws {
        try await revocationListRevokesAndForgets(makeStore: makeStore, time: time)
        try await revocationListCreateClearsRevocation(makeStore: makeStore, time: time)
        try await registryAdmitsOnlyCreatedSessions(makeStore: makeStore, time: time)
        try await registrySessionsExpire(makeStore: makeStore, time: time)
        for mode in [SessionStoreMode.revocationList, .registry] {
            try await userRevocationsKeepTheLaterInstantsAndExpire(mode, makeStore: makeStore, time: time)
        }
        try await registryListsTheSessionsOfAUser(makeStore: makeStore, time: time)
    }

    /// Revocation list: sessions are active unless revoked; `revoke` reports whether the session was active;
    /// a revocation is kept until `retainUntil` and then forgotten.
    public static func revocationListRevokesAndForgets(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore(.revocationList)
        #expect(store.mode == .revocationList)
        let (session, other) = (uniqueName("sess"), uniqueName("sess"))
        #expect(try await store.isActive(session))
        #expect(try await store.revoke(session, retainUntil: time.now() + time.ttl * 2))
        #expect(try await !store.isActive(session))
        #expect(try await store.isActive(other))
        #expect(try await !store.revoke(session, retainUntil: time.now() + time.ttl * 2))

        _ = time.stalledSinceLastCheck("")
        try await time.advance(time.ttl)
        let stillRevoked = try await !store.isActive(session)
        if !time.stalledSinceLastCheck("a revocation is kept until retainUntil") {
            #expect(stillRevoked, "a revocation is kept until retainUntil")
        }
        try await time.advance(time.ttl * 2)
        #expect(try await store.isActive(session), "a revocation is forgotten after retainUntil")

        // A revocation whose retention has already passed changes nothing.
        let late = uniqueName("sess")
        #expect(try await store.revoke(late, retainUntil: time.now() - time.ttl))
        #expect(try await store.isActive(late))
    }

    /// Revocation list: `SessionStore.create(_:userID:expiresAt:)` clears an earlier revocation.
    public static func revocationListCreateClearsRevocation(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore(.revocationList)
        let session = uniqueName("sess")
        try await store.create(session, userID: uniqueName("user"), expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(session))
        // A revocation list knows no owners: any user's token naming an unrevoked session passes this check.
        #expect(try await store.isActive(session, userID: uniqueName("user")))
        try await store.revoke(session, retainUntil: time.now() + time.ttl * 10)
        #expect(try await !store.isActive(session))
        #expect(try await !store.isActive(session, userID: uniqueName("user")))
        try await store.create(session, userID: uniqueName("user"), expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(session))
    }

    /// Registry: only created sessions are active, until revoked.
    public static func registryAdmitsOnlyCreatedSessions(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore(.registry)
        #expect(store.mode == .registry)
        let (session, unknown) = (uniqueName("sess"), uniqueName("sess"))
        let (owner, other) = (uniqueName("user"), uniqueName("user"))
        #expect(try await !store.isActive(session))
        #expect(try await !store.isActive(session, userID: owner))
        try await store.create(session, userID: owner, expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(session))
        #expect(try await store.isActive(session, userID: owner))
        #expect(try await !store.isActive(session, userID: other), "a session admits its own user only")
        #expect(try await !store.isActive(unknown))
        #expect(try await !store.isActive(unknown, userID: owner))
        #expect(try await store.revoke(session, retainUntil: time.now() + time.ttl * 10))
        #expect(try await !store.isActive(session))
        #expect(try await !store.isActive(session, userID: owner))
        #expect(try await !store.revoke(session, retainUntil: time.now() + time.ttl * 10))
        #expect(try await !store.revoke(unknown, retainUntil: time.now() + time.ttl * 10))
        #expect(try await !store.isActive(unknown))
    }

    /// Registry: a session stops being active at its `expiresAt`.
    public static func registrySessionsExpire(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore(.registry)
        let (short, long) = (uniqueName("sess"), uniqueName("sess"))
        try await store.create(short, userID: uniqueName("user"), expiresAt: time.now() + time.ttl)
        try await store.create(long, userID: uniqueName("user"), expiresAt: time.now() + time.ttl * 10)
        _ = time.stalledSinceLastCheck("")
        try await time.advance(time.ttl / 2)
        let activeBeforeExpiry = try await store.isActive(short)
        if !time.stalledSinceLastCheck("a registry session is active before its expiry") {
            #expect(activeBeforeExpiry)
        }
        try await time.advance(time.ttl)
        #expect(try await !store.isActive(short), "a registry session expires at expiresAt")
        #expect(try await store.isActive(long))
        #expect(try await !store.revoke(short, retainUntil: time.now() + time.ttl), "an expired session was not active")
    }

    /// User-wide revocations (in either mode): `userRevokedBefore` is `nil` until `revokeUser`, then the
    /// revocation's `issuedBefore`; another revocation keeps the later `issuedBefore` and the later `retainUntil`;
    /// the revocation is forgotten after `retainUntil`; one whose retention already passed changes nothing.
    public static func userRevocationsKeepTheLaterInstantsAndExpire(
        _ mode: SessionStoreMode,
        makeStore: MakeStore,
        time: ConformanceTime
    ) async throws {
        let store = try await makeStore(mode)
        let (user, other) = (uniqueName("user"), uniqueName("user"))
        #expect(try await store.userRevokedBefore(user) == nil)
        let first = time.now()
        try await store.revokeUser(user, issuedBefore: first, retainUntil: first + time.ttl * 3)
        #expect(try await store.userRevokedBefore(user) == first)
        #expect(try await store.userRevokedBefore(other) == nil)
        // An earlier instant and a shorter retention do not lower the revocation.
        try await store.revokeUser(user, issuedBefore: first - time.ttl, retainUntil: first + time.ttl)
        #expect(try await store.userRevokedBefore(user) == first, "a revocation keeps its later issuedBefore")
        let later = first + .milliseconds(5)
        try await store.revokeUser(user, issuedBefore: later, retainUntil: first + time.ttl)
        #expect(try await store.userRevokedBefore(user) == later, "a later revocation raises issuedBefore")

        _ = time.stalledSinceLastCheck("")
        try await time.advance(time.ttl * 2)
        let kept = try await store.userRevokedBefore(user)
        if !time.stalledSinceLastCheck("a user revocation keeps the later retainUntil") {
            #expect(kept == later, "a user revocation keeps the later retainUntil")
        }
        try await time.advance(time.ttl * 2)
        #expect(try await store.userRevokedBefore(user) == nil, "a user revocation is forgotten after retainUntil")

        try await store.revokeUser(other, issuedBefore: time.now(), retainUntil: time.now() - time.ttl)
        #expect(try await store.userRevokedBefore(other) == nil, "a revocation already past its retention is dropped")
    }

    /// Registry: `session(_:)` and `sessions(ofUser:limit:)` return the active sessions with their user and expiry,
    /// the earliest expiry first, at most `limit`; revoked and expired sessions are not listed. Revocation list:
    /// nothing is listed.
    public static func registryListsTheSessionsOfAUser(makeStore: MakeStore, time: ConformanceTime) async throws {
        let list = try await makeStore(.revocationList)
        let (user, other) = (uniqueName("user"), uniqueName("user"))
        try await list.create(uniqueName("sess"), userID: user, expiresAt: time.now() + time.ttl * 10)
        #expect(try await list.sessions(ofUser: user, limit: 10).isEmpty)

        let store = try await makeStore(.registry)
        let now = time.now()
        let (late, early, short) = (uniqueName("sess"), uniqueName("sess"), uniqueName("sess"))
        try await store.create(late, userID: user, expiresAt: now + time.ttl * 20)
        try await store.create(early, userID: user, expiresAt: now + time.ttl * 10)
        try await store.create(short, userID: user, expiresAt: now + time.ttl)
        try await store.create(uniqueName("sess"), userID: other, expiresAt: now + time.ttl * 10)
        #expect(try await store.sessions(ofUser: user, limit: 10).map(\.sessionID) == [short, early, late])
        #expect(try await store.sessions(ofUser: user, limit: 2).map(\.sessionID) == [short, early])
        #expect(try await store.sessions(ofUser: uniqueName("user"), limit: 10).isEmpty)
        let record = try await store.session(early)
        #expect(record == SessionRecord(sessionID: early, userID: user, expiresAt: now + time.ttl * 10))
        #expect(try await store.session(uniqueName("sess")) == nil)

        #expect(try await store.revoke(early, retainUntil: now + time.ttl * 10))
        #expect(try await store.session(early) == nil)
        try await time.advance(time.ttl * 2)
        #expect(
            try await store.sessions(ofUser: user, limit: 10).map(\.sessionID) == [late],
            "revoked and expired sessions are not listed"
        )
    }
}
