/// The revocations this server applied recently, so that a connection admitted just before a revocation (its
/// admission read the session store before the revocation was written) but activated after the revocation's control
/// message was applied here is refused at activation rather than kept. Held in ``HubState`` and read under its lock
/// with the routing indexes, so for each connection either the activation or the revocation comes first: a
/// connection activated first is closed by the revocation, one activated later is refused here.
///
/// Two kinds, each with the rule its control message closes connections by:
/// - a user-wide revocation refuses the user's tokens issued before its watermark (or that do not say when), as
///   `revoke_user` closes the user's connections authenticated with such tokens;
/// - a session's (`disconnectSession`: a revocation, or an operator's disconnect of the session) refuses every
///   connection of the session whose admission started before this server applied it, as that message closes every
///   connection of the session. An admission that started later read the session store after the revocation was
///   written (the control message follows the write), so the store decides it alone; a session that was deleted
///   and created again (registry mode) admits its new connections.
///
/// An entry is kept for the longest time an admitted connection may take to activate (the upgrade ticket's timeout,
/// twice over), after which the session store decides alone. At most ``maxEntries`` users and as many sessions are
/// held; past that the entries closest to their end are dropped first (revocations come from administrators, not
/// outsiders).
struct RecentRevocations: Sendable {
    struct UserEntry: Sendable, Hashable {
        /// Tokens of the user issued before this are refused.
        var issuedBefore: Timestamp
        /// When the entry is forgotten.
        var until: ContinuousClock.Instant
    }

    struct SessionEntry: Sendable, Hashable {
        /// When this server applied the session's revocation: admissions that started earlier are refused.
        var appliedAt: ContinuousClock.Instant
        /// The reason of the revocation, for the close frame of a refused activation.
        var reason: String
        /// When the entry is forgotten.
        var until: ContinuousClock.Instant
    }

    /// What an activation is refused for.
    enum Refusal: Sendable, Hashable {
        case userRevoked
        case sessionRevoked(reason: String)

        /// The reason of the close frame that refuses the connection (4009).
        var reason: String {
            switch self {
            case .userRevoked: "every session of the user revoked"
            case .sessionRevoked(let reason): reason
            }
        }
    }

    static let maxEntries = 10_000

    private(set) var users: [String: UserEntry] = [:]
    private(set) var sessions: [String: SessionEntry] = [:]

    /// Records, at `now`, a revocation of `userID`'s tokens issued before `issuedBefore`, kept until `until` (the
    /// later of each when the user has an entry).
    mutating func noteUser(
        _ userID: String,
        issuedBefore: Timestamp,
        now: ContinuousClock.Instant,
        until: ContinuousClock.Instant
    ) {
        Self.makeRoom(for: userID, in: &users, now: now, end: \.until)
        let earlier = users[userID]
        users[userID] = UserEntry(
            issuedBefore: max(issuedBefore, earlier?.issuedBefore ?? issuedBefore),
            until: max(until, earlier?.until ?? until)
        )
    }

    /// Records that the connections of `sessionID` were closed at `appliedAt` (a revocation or a disconnect of the
    /// session), kept until `until` (the later of each, and the reason of the later application, when the session
    /// has an entry).
    mutating func noteSession(
        _ sessionID: String,
        appliedAt: ContinuousClock.Instant,
        reason: String,
        until: ContinuousClock.Instant
    ) {
        Self.makeRoom(for: sessionID, in: &sessions, now: appliedAt, end: \.until)
        let earlier = sessions[sessionID]
        let isLater = earlier.map { appliedAt >= $0.appliedAt } ?? true
        sessions[sessionID] = SessionEntry(
            appliedAt: max(appliedAt, earlier?.appliedAt ?? appliedAt),
            reason: isLater ? reason : earlier?.reason ?? reason,
            until: max(until, earlier?.until ?? until)
        )
    }

    /// Whether a connection with `identity`, whose admission started at `admissionStarted`, must be refused at
    /// `now`, and why.
    func refusal(
        _ identity: VerifiedIdentity,
        admissionStarted: ContinuousClock.Instant,
        now: ContinuousClock.Instant
    ) -> Refusal? {
        if let entry = users[identity.userID], entry.until > now,
            Admission.isRevoked(issuedAt: identity.issuedAt, before: entry.issuedBefore)
        {
            return .userRevoked
        }
        if let sessionID = identity.sessionID, let entry = sessions[sessionID], entry.until > now,
            admissionStarted <= entry.appliedAt
        {
            return .sessionRevoked(reason: entry.reason)
        }
        return nil
    }

    /// Forgets the entries whose time has passed.
    mutating func sweep(now: ContinuousClock.Instant) {
        users = users.filter { $0.value.until > now }
        sessions = sessions.filter { $0.value.until > now }
    }

    /// Before a new key is added to a full table: drops the entries that ended by `now`, then, if it is still full,
    /// the one closest to its end.
    private static func makeRoom<Entry>(
        for key: String,
        in entries: inout [String: Entry],
        now: ContinuousClock.Instant,
        end: KeyPath<Entry, ContinuousClock.Instant>
    ) {
        guard entries[key] == nil, entries.count >= maxEntries else { return }
        entries = entries.filter { $0.value[keyPath: end] > now }
        if entries.count >= maxEntries,
            let earliest = entries.min(by: { $0.value[keyPath: end] < $1.value[keyPath: end] })
        {
            entries[earliest.key] = nil
        }
    }
}
