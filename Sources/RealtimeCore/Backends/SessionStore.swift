/// How a ``SessionStore`` decides whether a session is active.
public enum SessionStoreMode: String, Sendable, Hashable {
    /// Every session is active unless revoked. Tokens from any issuer work out of the box; revocations are kept
    /// until the session would have expired anyway. The default.
    case revocationList = "revocation_list"
    /// A session is active only if it was created (by the auth service or the publishing API), has not
    /// expired and was not revoked.
    case registry
}

/// A session as a registry knows it.
public struct SessionRecord: Sendable, Hashable {
    /// The session id (the token's `sid`).
    public var sessionID: String
    /// The user the session belongs to.
    public var userID: String
    /// When the session stops being active.
    public var expiresAt: Timestamp

    public init(sessionID: String, userID: String, expiresAt: Timestamp) {
        self.sessionID = sessionID
        self.userID = userID
        self.expiresAt = expiresAt
    }
}

/// Which sessions may connect.
public protocol SessionStore: Sendable {
    /// The store's mode.
    var mode: SessionStoreMode { get }

    /// Whether tokens of `sessionID` may connect now.
    func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool

    /// Whether a token of `userID` naming `sessionID` may connect now: in registry mode the session must be active
    /// **and belong to `userID`** (a session is one user's: another user's token naming it is refused, whoever
    /// signed it); in revocation-list mode, which knows no owners, the session must not be revoked. Admission asks
    /// this. The default implementation asks ``session(_:)`` in registry mode and ``isActive(_:)`` otherwise; a
    /// store can answer it in one round trip.
    func isActive(_ sessionID: String, userID: String) async throws(RealtimeError) -> Bool

    /// Records a session: registry mode needs this before its tokens connect; in revocation-list mode, where every
    /// session not revoked is active, it records nothing.
    ///
    /// A revoked session id stays revoked while its revocation is kept (until the `retainUntil` of
    /// ``revoke(_:retainUntil:)``, by when every token naming it has expired), in both modes: creating it again
    /// throws ``RealtimeError/Code/conflict`` and changes nothing.
    /// Otherwise whoever may create sessions could bring back the tokens of a session someone revoked.
    func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError)

    /// Revokes a session, remembering the revocation until `retainUntil` (the latest expiry of its tokens; a later
    /// revocation of the same id keeps the later instant). Returns whether the session was active before. In
    /// registry mode an id the registry does not hold is remembered as revoked too.
    @discardableResult
    func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool

    /// Revokes every token of a user issued before `issuedBefore` (in both modes): admission refuses a token of
    /// `userID` whose `iat` is earlier, or that has no `iat`, until `retainUntil` (the longest token lifetime from
    /// now), when the revocation is forgotten. A later call keeps the later of each instant, so revoking again
    /// never re-admits tokens.
    func revokeUser(_ userID: String, issuedBefore: Timestamp, retainUntil: Timestamp) async throws(RealtimeError)

    /// The instant before which tokens of `userID` are refused, while a revocation of the user is retained; `nil`
    /// when the user has none.
    func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp?

    /// Registry mode: the active session `sessionID`, if there is one. Revocation-list mode: always `nil` (the store
    /// records revocations, not sessions).
    func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord?

    /// Registry mode: up to `limit` active sessions of `userID`, the earliest expiry first. Revocation-list mode:
    /// always empty.
    func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord]

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension SessionStore {
    public func healthCheck() async -> ComponentHealth { .healthy }

    public func isActive(_ sessionID: String, userID: String) async throws(RealtimeError) -> Bool {
        switch mode {
        case .revocationList: return try await isActive(sessionID)
        case .registry: return try await session(sessionID)?.userID == userID
        }
    }
}

extension RealtimeError {
    /// The error of ``SessionStore/create(_:userID:expiresAt:)`` for a session id whose revocation is still kept.
    package static func sessionStillRevoked(_ sessionID: String, until: Timestamp) -> RealtimeError {
        RealtimeError(
            .conflict,
            "session \(sessionID.prefix(IdentifierPolicy.maxBytes)) was revoked: a revoked session id cannot be created "
                + "again until its revocation is forgotten at \(until.iso8601); issue a new session id"
        )
    }
}
