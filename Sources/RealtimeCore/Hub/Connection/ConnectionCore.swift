import Synchronization

/// Which endpoint a connection came through.
public enum Endpoint: String, Sendable, Hashable {
    /// `/ws/events`: a user's own events, everyone-scoped events and notifications.
    case events
    /// `/ws/admin`: every event matching the connection's patterns, plus statistics. Admin privilege required.
    case admin
}

/// A GCRA limiter for one key, kept locally (per-connection message limits never touch the shared limiter).
struct LocalGCRA: Sendable {
    private var theoreticalArrival: ContinuousClock.Instant?

    mutating func consume(now: ContinuousClock.Instant, policy: RateLimitPolicy) -> (
        allowed: Bool, retryAfter: Duration
    ) {
        let interval = policy.emissionInterval
        let tolerance = interval * policy.burst
        let tat = max(theoreticalArrival ?? now, now)
        let newTAT = tat + interval
        let allowAt = newTAT - tolerance
        if allowAt > now { return (false, allowAt - now) }
        theoreticalArrival = newTAT
        return (true, .zero)
    }
}

/// Counts events inside a sliding window (approximated by a fixed window per start time).
struct WindowCounter: Sendable {
    private var windowStart: ContinuousClock.Instant?
    private(set) var count = 0

    mutating func record(now: ContinuousClock.Instant, window: Duration) -> Int {
        if let start = windowStart, now - start < window {
            count += 1
        } else {
            windowStart = now
            count = 1
        }
        return count
    }
}

/// The state of one connection that does not belong in the hub-wide index.
final class ConnectionCore: Sendable {
    /// What changes over the connection's life, under its own lock.
    struct State: Sendable {
        /// `nil` while waiting for first-message authentication.
        var identity: VerifiedIdentity?
        var authDeadline: ContinuousClock.Instant?
        var lastActivity: ContinuousClock.Instant
        /// The last ping the hub queued; a connection is only closed as idle once it was pinged and stayed silent.
        var pingedAt: ContinuousClock.Instant?
        var messageLimiter = LocalGCRA()
        var violations = WindowCounter()
        var protocolErrors = WindowCounter()
        var warnedExpiry = false
        /// Set once the connection is closed (by the hub, the host, or because its ticket expired unused); its
        /// registry record is removed after this (see `RegistrationLifecycle`).
        var closeCode: CloseCode?
        /// The connection asked for recovery (it may once).
        var recoveryRequested = false
        /// The connection was told its streams' positions (in its first `subscribed` reply or `recovered`).
        var positionsSent = false
        /// The `recover` query parameter of the upgrade, until activation checks it (bounded: see `RecoverQuery`).
        var recoverQuery: String?
        /// The upgrade's checked `recover`, for the connection's first `subscribe` (see `RecoverQuery`).
        var pendingRecover: JSONObject?
    }

    let id: ConnectionID
    let endpoint: Endpoint
    let remoteAddress: IPAddress
    let origin: String?
    let connectedAt: Timestamp
    let queue: OutboundQueue
    let state: Mutex<State>

    init(
        id: ConnectionID,
        endpoint: Endpoint,
        remoteAddress: IPAddress,
        origin: String?,
        identity: VerifiedIdentity?,
        limits: HubConfiguration.Limits,
        now: ContinuousClock.Instant
    ) {
        self.id = id
        self.endpoint = endpoint
        self.remoteAddress = remoteAddress
        self.origin = origin
        self.connectedAt = .now()
        self.queue = OutboundQueue(maxFrames: limits.outboundQueueFrames, maxBytes: limits.outboundQueueBytes)
        self.state = Mutex(State(identity: identity, lastActivity: now))
    }

    var identity: VerifiedIdentity? { state.withLock { $0.identity } }

    func record(serverID: ServerID, identity: VerifiedIdentity) -> ConnectionRecord {
        ConnectionRecord(
            id: id,
            serverID: serverID,
            userID: identity.userID,
            sessionID: identity.sessionID,
            isAdmin: endpoint == .admin,
            remoteAddress: remoteAddress.description,
            origin: origin,
            connectedAt: connectedAt
        )
    }
}
