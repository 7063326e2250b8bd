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
        try await registryAdmitsOnlyCreatedSessions(makeStore: makeStore, time: time)
        try await registrySessionsExpire(makeStore: makeStore, time: time)
        for mode in [SessionStoreMode.revocationList, .registry] {
            try await aRevokedSessionCannotBeCreatedAgain(mode, makeStore: makeStore, time: time)
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

    /// Both modes: a revoked session id cannot be created again while its revocation is kept (`conflict`, nothing
    /// changes), whoever it is created for; a later revocation of the id keeps the later retention; once the
    /// revocation is forgotten the id may be created again. In registry mode an id revoked before it was ever
    /// created is refused as well. (Otherwise whoever may create sessions could revive revoked tokens.)
    public static func aRevokedSessionCannotBeCreatedAgain(
        _ mode: SessionStoreMode,
        makeStore: MakeStore,
        time: ConformanceTime
    ) async throws {
        let store = try await makeStore(mode)
        let (session, neverCreated) = (uniqueName("sess"), uniqueName("sess"))
        let (owner, other) = (uniqueName("user"), uniqueName("user"))
        try await store.create(session, userID: owner, expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(session, userID: owner))
        try await store.revoke(session, retainUntil: time.now() + time.ttl * 2)
        // A second revocation with a shorter retention keeps the first one's.
        try await store.revoke(session, retainUntil: time.now() + time.ttl / 2)
        try await store.revoke(neverCreated, retainUntil: time.now() + time.ttl * 2)
        for (id, user) in [(session, owner), (session, other), (neverCreated, owner)] {
            let error = await #expect(throws: RealtimeError.self, "\(mode): creating a revoked id again") {
                try await store.create(id, userID: user, expiresAt: time.now() + time.ttl * 10)
            }
            #expect(error?.code == .conflict)
            #expect(error?.message.contains("revoked") == true)
            #expect(try await !store.isActive(id), "\(mode): a refused create changes nothing")
            #expect(try await !store.isActive(id, userID: user))
        }
        if mode == .registry {
            #expect(try await store.session(session) == nil)
            #expect(try await store.sessions(ofUser: owner, limit: 10).isEmpty)
        }

        _ = time.stalledSinceLastCheck("")
        try await time.advance(time.ttl)
        let refusedAfterTheShorterRetention: Bool
        do {
            try await store.create(session, userID: owner, expiresAt: time.now() + time.ttl * 10)
            refusedAfterTheShorterRetention = false
        } catch {
            refusedAfterTheShorterRetention = error.code == .conflict
        }
        if !time.stalledSinceLastCheck("a later revocation keeps the later retention") {
            #expect(refusedAfterTheShorterRetention, "\(mode): a later revocation keeps the later retention")
        }

        // Every token naming the id has expired by `retainUntil`: after it the id may be used again.
        try await time.advance(time.ttl * 2)
        try await store.create(session, userID: other, expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(session, userID: other))
        try await store.create(neverCreated, userID: owner, expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(neverCreated, userID: owner))

        // A revocation whose retention has already passed does not keep the id.
        let late = uniqueName("sess")
        try await store.create(late, userID: owner, expiresAt: time.now() + time.ttl * 10)
        try await store.revoke(late, retainUntil: time.now() - time.ttl)
        try await store.create(late, userID: owner, expiresAt: time.now() + time.ttl * 10)
        #expect(try await store.isActive(late, userID: owner))
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
