/// What the admission policy asks of the hub.
protocol AdmissionHost: Sendable {
    /// The server is draining: no new connections.
    var isDraining: Bool { get }
    /// The server holds as many connections (active or reserved) as it may.
    var isFull: Bool { get }
    /// Reserves a server slot for a connection being admitted; `false` when full.
    func reserve(_ connection: ConnectionCore) -> Bool
    /// Gives up a connection this admission reserved and then refused.
    func abandon(_ connection: ConnectionCore, _ code: CloseCode)
    /// Binds `identity` to the connection and claims its user slot in the cluster registry.
    func claimUserSlot(_ connection: ConnectionCore, identity: VerifiedIdentity) async -> UserSlotClaim
    /// Publishes an event of the admission (`session.concurrent_limit`, `security.suspicious.activity`).
    func publishAdmissionEvent(_ event: RealtimeEvent) async
}

/// The outcome of ``AdmissionHost/claimUserSlot(_:identity:)``.
enum UserSlotClaim: Sendable, Hashable {
    /// Claimed; the user has this many connections in the cluster.
    case claimed(userConnections: Int)
    /// The user's limit refused it.
    case limitReached(userConnections: Int)
    /// The registry failed, or the connection closed (or its ticket expired) meanwhile.
    case unavailable
}
