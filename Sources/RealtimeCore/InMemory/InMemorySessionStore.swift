import Synchronization

/// A ``SessionStore`` in process memory, in either ``SessionStoreMode``.
///
/// - ``SessionStoreMode/revocationList``: a session is active unless revoked; a revocation is kept until its
///   `retainUntil` and then forgotten (the session's tokens have expired by then).
/// - ``SessionStoreMode/registry``: a session is active only between ``create(_:userID:expiresAt:)`` and the
///   earlier of its `expiresAt` and ``revoke(_:retainUntil:)``; a revoked id is remembered until its `retainUntil`.
///
/// In both modes a revoked session id cannot be created again while its revocation is kept
/// (``RealtimeError/Code/conflict``).
///
/// In both modes, ``revokeUser(_:issuedBefore:retainUntil:)`` records a user-wide revocation until its
/// `retainUntil`.
///
/// Memory is bounded: entries past their time are swept when the map has doubled since the last sweep, and at
/// most `maxEntries` sessions, `maxEntries` session revocations and `maxEntries` user revocations are held; a `create`, `revoke` or `revokeUser`
/// that would need more is refused with ``RealtimeError/Code/limitExceeded`` (fail closed for revocations: the
/// caller learns the revocation was not recorded).
public final class InMemorySessionStore: SessionStore {
    public let mode: SessionStoreMode
    /// The most sessions (registry mode) or revocations (revocation-list mode) held at once.
    public let maxEntries: Int
    private let now: @Sendable () -> Timestamp
    private let state: Mutex<State>

    /// Creates an empty store.
    /// - Parameters:
    ///   - mode: How the store decides whether a session is active.
    ///   - maxEntries: The most entries held at once.
    ///   - now: The wall clock deciding expiry (tests pass a manual clock).
    public init(
        mode: SessionStoreMode = .revocationList,
        maxEntries: Int = 1_000_000,
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) {
        precondition(maxEntries > 0, "maxEntries must be positive")
        self.mode = mode
        self.maxEntries = maxEntries
        self.now = now
        self.state = Mutex(State(sweepAt: min(maxEntries, 1024)))
    }

    public func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
        let now = self.now()
        return state.withLock { $0.isActive(sessionID, mode: mode, now: now) }
    }

    public func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
        let now = self.now()
        let (mode, maxEntries) = (self.mode, self.maxEntries)
        try state.withLock { state throws(RealtimeError) in
            switch mode {
            case .revocationList:
                if let until = state.entries[sessionID], until > now {
                    throw RealtimeError.sessionStillRevoked(sessionID, until: until)
                }
            case .registry:
                if let until = state.revoked[sessionID], until > now {
                    throw RealtimeError.sessionStillRevoked(sessionID, until: until)
                }
                guard expiresAt > now else {
                    state.remove(sessionID)
                    return
                }
                try state.makeRoom(for: sessionID, now: now, maxEntries: maxEntries)
                state.remove(sessionID)
                state.entries[sessionID] = expiresAt
                state.owners[sessionID] = userID
                state.byUser[userID, default: []].insert(sessionID)
            }
        }
    }

    @discardableResult
    public func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool {
        let now = self.now()
        let (mode, maxEntries) = (self.mode, self.maxEntries)
        return try state.withLock { state throws(RealtimeError) in
            let wasActive = state.isActive(sessionID, mode: mode, now: now)
            switch mode {
            case .revocationList:
                let until = max(retainUntil, state.entries[sessionID] ?? retainUntil)
                guard until > now else { return wasActive }
                try state.makeRoom(for: sessionID, now: now, maxEntries: maxEntries)
                state.entries[sessionID] = until
            case .registry:
                let until = max(retainUntil, state.revoked[sessionID] ?? retainUntil)
                if until > now {
                    // Room first: a revocation that cannot be remembered is refused whole (fail closed).
                    try state.makeRoomForRevocation(of: sessionID, now: now, maxEntries: maxEntries)
                    state.revoked[sessionID] = until
                }
                state.remove(sessionID)
            }
            return wasActive
        }
    }

    public func revokeUser(
        _ userID: String,
        issuedBefore: Timestamp,
        retainUntil: Timestamp
    ) async throws(RealtimeError) {
        let now = self.now()
        let maxEntries = self.maxEntries
        try state.withLock { state throws(RealtimeError) in
            let earlier = state.users[userID].flatMap { $0.retainUntil > now ? $0 : nil }
            let revocation = UserRevocation(
                issuedBefore: max(issuedBefore, earlier?.issuedBefore ?? issuedBefore),
                retainUntil: max(retainUntil, earlier?.retainUntil ?? retainUntil)
            )
            guard revocation.retainUntil > now else { return }
            if state.users[userID] == nil && state.users.count >= state.userSweepAt {
                state.sweepUsers(now: now, maxEntries: maxEntries)
                if state.users.count >= maxEntries {
                    throw RealtimeError(
                        .limitExceeded,
                        "the session store holds its maximum of \(maxEntries) user revocations"
                    )
                }
            }
            state.users[userID] = revocation
        }
    }

    public func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp? {
        let now = self.now()
        return state.withLock { state in
            guard let revocation = state.users[userID], revocation.retainUntil > now else { return nil }
            return revocation.issuedBefore
        }
    }

    public func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord? {
        let now = self.now()
        return state.withLock { state in
            guard mode == .registry, let expiresAt = state.entries[sessionID], expiresAt > now,
                let userID = state.owners[sessionID]
            else { return nil }
            return SessionRecord(sessionID: sessionID, userID: userID, expiresAt: expiresAt)
        }
    }

    public func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord] {
        let now = self.now()
        return state.withLock { state in
            guard mode == .registry, limit > 0 else { return [] }
            let records = (state.byUser[userID] ?? []).compactMap { id -> SessionRecord? in
                guard let expiresAt = state.entries[id], expiresAt > now else { return nil }
                return SessionRecord(sessionID: id, userID: userID, expiresAt: expiresAt)
            }
            return Array(records.sorted { ($0.expiresAt, $0.sessionID) < ($1.expiresAt, $1.sessionID) }.prefix(limit))
        }
    }

    /// Entries currently held (including expired ones not yet swept).
    package var entryCount: Int { state.withLock { $0.entries.count } }

    /// Registry mode: session revocations currently held (including expired ones not yet swept).
    package var sessionRevocationCount: Int { state.withLock { $0.revoked.count } }

    /// User revocations currently held (including expired ones not yet swept).
    package var userRevocationCount: Int { state.withLock { $0.users.count } }

    /// Forgets every expired entry now.
    package func sweep() {
        let now = self.now()
        state.withLock {
            $0.sweep(now: now, maxEntries: maxEntries)
            $0.sweepUsers(now: now, maxEntries: maxEntries)
            $0.sweepRevoked(now: now, maxEntries: maxEntries)
        }
    }
}

extension InMemorySessionStore {
    private struct UserRevocation {
        var issuedBefore: Timestamp
        var retainUntil: Timestamp
    }

    private struct State {
        /// Revocation-list mode: revoked session → until when the revocation is kept.
        /// Registry mode: registered session → when it expires.
        var entries: [String: Timestamp] = [:]
        var sweepAt: Int
        /// Registry mode: registered session → its user, and user → their registered sessions.
        var owners: [String: String] = [:]
        var byUser: [String: Set<String>] = [:]
        /// Registry mode: revoked session → until when its id may not be created again.
        var revoked: [String: Timestamp] = [:]
        var revokedSweepAt: Int
        /// User-wide revocations (both modes).
        var users: [String: UserRevocation] = [:]
        var userSweepAt: Int

        init(sweepAt: Int) {
            self.sweepAt = sweepAt
            self.revokedSweepAt = sweepAt
            self.userSweepAt = sweepAt
        }

        mutating func makeRoomForRevocation(of sessionID: String, now: Timestamp, maxEntries: Int)
            throws(RealtimeError)
        {
            guard revoked[sessionID] == nil, revoked.count >= revokedSweepAt else { return }
            sweepRevoked(now: now, maxEntries: maxEntries)
            if revoked.count >= maxEntries {
                throw RealtimeError(
                    .limitExceeded,
                    "the session store holds its maximum of \(maxEntries) session revocations"
                )
            }
        }

        mutating func sweepRevoked(now: Timestamp, maxEntries: Int) {
            revoked = revoked.filter { $0.value > now }
            revokedSweepAt = min(maxEntries, max(1024, revoked.count * 2))
        }

        mutating func sweepUsers(now: Timestamp, maxEntries: Int) {
            users = users.filter { $0.value.retainUntil > now }
            userSweepAt = min(maxEntries, max(1024, users.count * 2))
        }

        func isActive(_ sessionID: String, mode: SessionStoreMode, now: Timestamp) -> Bool {
            switch mode {
            case .revocationList:
                guard let until = entries[sessionID] else { return true }
                return until <= now
            case .registry:
                guard let expiresAt = entries[sessionID] else { return false }
                return expiresAt > now
            }
        }

        mutating func makeRoom(for sessionID: String, now: Timestamp, maxEntries: Int) throws(RealtimeError) {
            guard entries[sessionID] == nil, entries.count >= sweepAt else { return }
            sweep(now: now, maxEntries: maxEntries)
            if entries.count >= maxEntries {
                throw RealtimeError(.limitExceeded, "the session store holds its maximum of \(maxEntries) entries")
            }
        }

        /// Forgets a registry session and its place in the user index.
        mutating func remove(_ sessionID: String) {
            entries[sessionID] = nil
            guard let userID = owners.removeValue(forKey: sessionID) else { return }
            byUser[userID]?.remove(sessionID)
            if byUser[userID]?.isEmpty == true { byUser[userID] = nil }
        }

        mutating func sweep(now: Timestamp, maxEntries: Int) {
            for (id, until) in entries where until <= now { remove(id) }
            entries = entries.filter { $0.value > now }
            sweepAt = min(maxEntries, max(1024, entries.count * 2))
        }
    }
}
