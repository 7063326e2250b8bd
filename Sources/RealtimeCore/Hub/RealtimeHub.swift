public import CoreMetrics
public import Logging
public import ServiceLifecycle
import Synchronization

/// The backends a hub is composed of.
public struct HubBackends: Sendable {
    public var tokenVerifier: any TokenVerifier
    public var connectionStore: any ConnectionStore
    public var eventBus: any EventBus
    public var rateLimiter: any RateLimiter
    public var sessionStore: any SessionStore

    public init(
        tokenVerifier: any TokenVerifier,
        connectionStore: any ConnectionStore,
        eventBus: any EventBus,
        rateLimiter: any RateLimiter,
        sessionStore: any SessionStore
    ) {
        self.tokenVerifier = tokenVerifier
        self.connectionStore = connectionStore
        self.eventBus = eventBus
        self.rateLimiter = rateLimiter
        self.sessionStore = sessionStore
    }
}

/// The real-time hub: authorizes upgrades, tracks connections, routes events and notifications to them, and
/// keeps the cluster registry current. It owns no sockets; a host drives it (see `Documentation/Architecture.md`).
///
/// ```swift
/// switch await hub.authorizeUpgrade(request) {
/// case .reject(let rejection): respond(status: rejection.status, body: rejection.jsonBody)
/// case .accept(let ticket):
///     // finish the WebSocket handshake, then:
///     let connection = try await hub.connect(ticket)
///     // write connection.outbound to the socket; pass each text frame to connection.receive(text:)
///     await connection.closed()
/// }
/// ```
///
/// Run ``run()`` (a swift-service-lifecycle `Service`) for heartbeats, expiry, the bus subscription and graceful
/// shutdown.
public final class RealtimeHub: Service, Sendable {
    public let configuration: HubConfiguration
    public var serverID: ServerID { configuration.serverID }
    /// The verifier the hub authenticates connections with (hosts reuse it for their own APIs).
    public var tokenVerifier: any TokenVerifier { backends.tokenVerifier }
    let backends: HubBackends
    let logger: Logger
    let state: Mutex<HubState>
    let counters: HubCounters
    let interest = InterestSignal()
    let stopSignal = StopSignal()
    let runtime = Mutex(Runtime())
    let unregisterJobs: AsyncStream<ConnectionID>
    let unregisterContinuation: AsyncStream<ConnectionID>.Continuation
    let startedAt = Timestamp.now()
    let startInstant = ContinuousClock.now

    struct Runtime: Sendable {
        var running = false
        var subscribed = false
        var lastServerHeartbeatError: String?
        var lastGap: (from: Timestamp, to: Timestamp)?
    }

    /// Creates a hub. Throws ``RealtimeError/Code/invalidConfiguration`` for an inconsistent configuration.
    ///
    /// - Parameters:
    ///   - metricsFactory: where the hub's swift-metrics instruments report (default: the bootstrapped global
    ///     factory). Counters: `realtime_events_published_total`, `…_delivered_total`, `…_dropped_total`,
    ///     `realtime_messages_received_total`, `realtime_upgrade_rejections_total{reason}`,
    ///     `realtime_auth_failures_total{reason}`, `realtime_rate_limited_total{policy}`; gauge
    ///     `realtime_connections{endpoint}`; timer `realtime_delivery_latency_seconds` (publish to local enqueue, for
    ///     events from other servers).
    public init(
        configuration: HubConfiguration,
        backends: HubBackends,
        logger: Logger = Logger(label: "realtime-hub"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) throws(RealtimeError) {
        try configuration.validate()
        self.counters = HubCounters(factory: metricsFactory)
        self.configuration = configuration
        self.backends = backends
        var logger = logger
        logger[metadataKey: "realtime.server.id"] = "\(configuration.serverID)"
        self.logger = logger
        self.state = Mutex(HubState(maxTrackedAddresses: configuration.rateLimits.maxTrackedAddresses))
        (unregisterJobs, unregisterContinuation) = AsyncStream.makeStream(of: ConnectionID.self)
    }

    // MARK: Upgrade

    /// Decides whether to accept a WebSocket upgrade. Checks, in order: the path, the origin policy, the
    /// client address's block and rate limit, the server-wide connection limit, the token (query or
    /// `Authorization: Bearer`), the session, admin privilege for the admin endpoint, the user's rate limit and
    /// the user's connection limit across the cluster.
    public func authorizeUpgrade(_ request: UpgradeRequest) async -> UpgradeDecision {
        switch await authorize(request) {
        case .success(let ticket): return .accept(ticket)
        case .failure(let rejection):
            counters.rejected(rejection.reason)
            logger.debug(
                "upgrade rejected",
                metadata: ["realtime.reason": "\(rejection.reason)", "realtime.remote": "\(request.remoteAddress)"]
            )
            return .reject(rejection)
        }
    }

    private func authorize(_ request: UpgradeRequest) async -> Result<UpgradeTicket, UpgradeRejection> {
        let endpoint: Endpoint
        switch request.path {
        case configuration.eventsPath: endpoint = .events
        case configuration.adminPath: endpoint = .admin
        default: return .failure(.init(status: 404, reason: "not_found", message: "no WebSocket endpoint here"))
        }
        if state.withLock({ $0.draining }) {
            return .failure(
                .init(
                    status: 503,
                    reason: "shutting_down",
                    message: "server is shutting down",
                    retryAfter: configuration.shutdown.reconnectDelay
                )
            )
        }
        let origin = request.header("Origin")
        guard configuration.origin.allows(origin) else {
            return .failure(.init(status: 403, reason: "origin_not_allowed", message: "origin not allowed"))
        }
        let address: IPAddress
        switch await admitAddress(request, policy: configuration.rateLimits.connectionsPerIP) {
        case .success(let admitted): address = admitted
        case .failure(let rejection): return .failure(rejection)
        }
        let addressKey = address.rateLimitKey
        let now = ContinuousClock.now
        if state.withLock({ $0.occupancy >= configuration.maxConnections }) {
            return .failure(
                .init(status: 503, reason: "server_full", message: "server is at capacity", retryAfter: .seconds(5))
            )
        }
        // The token: `Authorization: Bearer`, else the query (if allowed), else the first message (if allowed).
        var token: String?
        switch Self.bearerToken(request) {
        case .success(let bearer): token = bearer
        case .failure(let rejection): return .failure(rejection)
        }
        if token == nil, let queryToken = request.query("token") {
            guard configuration.allowQueryToken else {
                return .failure(
                    .init(
                        status: 400,
                        reason: "query_token_disabled",
                        message: "tokens in the URL are disabled here; use Authorization: Bearer"
                    )
                )
            }
            token = queryToken
        }
        var identity: VerifiedIdentity?
        if let token {
            switch await verifyForConnection(token, endpoint: endpoint, addressKey: addressKey) {
            case .success(let verified): identity = verified
            case .failure(let rejection): return .failure(rejection)
            }
        } else if !configuration.firstMessageAuthentication {
            return .failure(.init(status: 401, reason: "missing_token", message: "authentication required"))
        }
        // Per-user attempts and the cluster-wide per-user limit.
        let connectionID = ConnectionID.random()
        let core = ConnectionCore(
            id: connectionID,
            endpoint: endpoint,
            remoteAddress: address,
            origin: origin,
            identity: identity,
            limits: configuration.limits,
            now: now
        )
        let reserved = state.withLock { state -> Bool in
            guard state.occupancy < configuration.maxConnections else { return false }
            state.reserved[connectionID] = .init(since: now, core: core)
            return true
        }
        guard reserved else {
            return .failure(
                .init(status: 503, reason: "server_full", message: "server is at capacity", retryAfter: .seconds(5))
            )
        }
        var userConnections: Int?
        if let identity {
            switch await claimUserSlot(core, identity: identity) {
            case .success(let count) where state.withLock({ $0.reserved[connectionID] != nil }):
                userConnections = count
            case .success:
                // The ticket expired while the registry was slow: no handshake for a connection already released.
                abandon(core, .goingAway)
                return .failure(Self.registryUnavailable)
            case .failure(let rejection):
                // Releases the reservation, and the record if a failed write may have left one.
                abandon(core, .internalError)
                return .failure(rejection)
            }
        }
        return .success(
            UpgradeTicket(
                connectionID: connectionID,
                endpoint: endpoint,
                identity: identity,
                maxFrameBytes: configuration.limits.maxFrameBytes,
                core: core,
                userConnections: userConnections
            )
        )
    }

    /// Admits an HTTP API request with the checks of a WebSocket upgrade: the client address (trusted
    /// proxies, blocks from earlier abuse), the API rate limit per address
    /// (``HubConfiguration/RateLimits-swift.struct/apiRequestsPerIP``), the `Authorization: Bearer` token
    /// (size, signature and claims, token type), the session (revoked sessions, registry mode), and the
    /// accounting of authentication failures per address. Hosts call it for every request of their HTTP API;
    /// authorization (which identities may use which route) stays with the host.
    ///
    /// - Parameters:
    ///   - request: the request's target, headers and socket peer (an empty peer skips the per-address checks:
    ///     for hosts that cannot tell it).
    ///   - verifier: the verifier for the API's tokens, if not the hub's own.
    /// - Returns: the verified identity, or the refusal to answer with (its ``UpgradeRejection/status``,
    ///   ``UpgradeRejection/reason`` as the error code, `Retry-After` for 429 and 503).
    public func authenticateRequest(
        _ request: UpgradeRequest,
        verifier: (any TokenVerifier)? = nil
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        let result = await admitRequest(request, verifier: verifier ?? backends.tokenVerifier)
        if case .failure(let rejection) = result {
            counters.rejected(rejection.reason)
            logger.debug(
                "API request refused",
                metadata: ["realtime.reason": "\(rejection.reason)", "realtime.remote": "\(request.remoteAddress)"]
            )
        }
        return result
    }

    private func admitRequest(
        _ request: UpgradeRequest,
        verifier: any TokenVerifier
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        var addressKey = "unknown"
        if !request.remoteAddress.isEmpty {
            switch await admitAddress(request, policy: configuration.rateLimits.apiRequestsPerIP) {
            case .success(let admitted): addressKey = admitted.rateLimitKey
            case .failure(let rejection): return .failure(rejection)
            }
        }
        switch Self.bearerToken(request) {
        case .success(let token?):
            return await verifyForConnection(token, endpoint: nil, addressKey: addressKey, verifier: verifier)
        case .success(nil):
            return .failure(.init(status: 401, reason: "missing_token", message: "send Authorization: Bearer <token>"))
        case .failure(let rejection):
            return .failure(rejection)
        }
    }

    /// The client address of a request, unless it is unusable, blocked for earlier abuse, or over `policy`.
    private func admitAddress(
        _ request: UpgradeRequest,
        policy: RateLimitPolicy
    ) async -> Result<IPAddress, UpgradeRejection> {
        guard let address = configuration.clientAddress.resolve(peer: request.remoteAddress, headers: request.headers)
        else {
            return .failure(.init(status: 400, reason: "bad_remote_address", message: "unusable client address"))
        }
        let addressKey = address.rateLimitKey
        if let blocked = state.withLock({ $0.abuse.blockedFor(addressKey, now: .now) }) {
            return .failure(
                .init(status: 429, reason: "address_blocked", message: "too many violations", retryAfter: blocked)
            )
        }
        if let refusal = await consumeRateLimit("ip:" + addressKey, policy) {
            return .failure(refusal)
        }
        return .success(address)
    }

    /// The token of an `Authorization: Bearer` header: `nil` without the header, a refusal for any other scheme
    /// or an empty token.
    static func bearerToken(_ request: UpgradeRequest) -> Result<String?, UpgradeRejection> {
        guard let authorization = request.header("Authorization") else { return .success(nil) }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        let token = parts.count == 2 ? parts[1].trimmingSpaces() : ""
        guard parts.count == 2, parts[0].lowercased() == "bearer", !token.isEmpty else {
            return .failure(
                .init(status: 401, reason: "invalid_authorization", message: "expected Authorization: Bearer <token>")
            )
        }
        return .success(token)
    }

    /// Verifies a token for a connection (or, with no `endpoint`, an API request): size, signature and claims,
    /// session, admin privilege for the admin endpoint.
    func verifyForConnection(
        _ token: String,
        endpoint: Endpoint?,
        addressKey: String,
        verifier: (any TokenVerifier)? = nil
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        let identity: VerifiedIdentity
        if token.utf8.count > configuration.limits.maxTokenBytes {
            await authenticationFailed(reason: TokenVerificationError.Reason.tooLarge.rawValue, addressKey: addressKey)
            return .failure(.init(status: 401, reason: "invalid_token", message: "authentication failed"))
        }
        do {
            identity = try await (verifier ?? backends.tokenVerifier).verify(token)
        } catch {
            await authenticationFailed(reason: error.reason.rawValue, addressKey: addressKey)
            logger.info(
                "token refused",
                metadata: ["realtime.reason": "\(error.reason)", "realtime.remote": "\(addressKey)"]
            )
            // The one reason told to the client: a genuine token of the wrong kind, such as a refresh token.
            guard error.reason != .wrongTokenType else {
                return .failure(
                    .init(
                        status: 401,
                        reason: "wrong_token_type",
                        message: "this kind of token (e.g. a refresh token) cannot be used here"
                    )
                )
            }
            return .failure(.init(status: 401, reason: "invalid_token", message: "authentication failed"))
        }
        if let sessionID = identity.sessionID {
            do {
                guard try await backends.sessionStore.isActive(sessionID) else {
                    // In revocation-list mode an inactive session is a revoked one; a registry cannot tell a
                    // revoked session from an unknown or expired one.
                    let rejection: UpgradeRejection =
                        backends.sessionStore.mode == .revocationList
                        ? .init(status: 401, reason: "session_revoked", message: "the session was revoked")
                        : .init(status: 401, reason: "session_inactive", message: "session is not active")
                    await authenticationFailed(reason: rejection.reason, addressKey: addressKey)
                    return .failure(rejection)
                }
            } catch {
                logger.error("session store failed", metadata: ["realtime.error": "\(error)"])
                return .failure(
                    .init(
                        status: 503,
                        reason: "backend_unavailable",
                        message: "try again later",
                        retryAfter: .seconds(2)
                    )
                )
            }
        } else if backends.sessionStore.mode == .registry {
            await authenticationFailed(reason: "session_required", addressKey: addressKey)
            return .failure(.init(status: 401, reason: "session_required", message: "token names no session"))
        }
        if endpoint == .admin && !identity.isAdmin {
            return .failure(.init(status: 403, reason: "admin_required", message: "administrator privilege required"))
        }
        return .success(identity)
    }

    private func claimUserSlot(_ core: ConnectionCore, identity: VerifiedIdentity) async -> Result<
        Int, UpgradeRejection
    > {
        if let refusal = await consumeRateLimit("user:" + identity.userID, configuration.rateLimits.connectionsPerUser)
        {
            return .failure(refusal)
        }
        switch await register(core, identity: identity, maxConnectionsPerUser: configuration.maxConnectionsPerUser) {
        case .registered(let count):
            return .success(count)
        case .closed:
            // The ticket expired (or the server began draining) while the registry was slow.
            return .failure(Self.registryUnavailable)
        case .failed(let error):
            logger.error("connection store failed", metadata: ["realtime.error": "\(error)"])
            return .failure(Self.registryUnavailable)
        case .limitReached(let count):
            await publishInternal(
                RealtimeEvent(
                    type: .sessionConcurrentLimit,
                    userID: identity.userID,
                    sessionID: identity.sessionID,
                    data: [
                        "connections": .int(Int64(count)),
                        "limit": .int(Int64(configuration.maxConnectionsPerUser ?? 0)),
                        "serverId": .string(serverID.rawValue),
                    ]
                )
            )
            return .failure(
                .init(
                    status: 429,
                    reason: "too_many_connections",
                    message: "connection limit per user reached",
                    retryAfter: .seconds(5)
                )
            )
        }
    }

    /// The upgrade's registration failed, or outlived its ticket.
    private static let registryUnavailable = UpgradeRejection(
        status: 503,
        reason: "backend_unavailable",
        message: "try again later",
        retryAfter: .seconds(2)
    )

    /// Spends one unit of a shared rate limit; `nil` when allowed. Fails open (with a log) if the limiter is
    /// unreachable: availability over strictness, and the Redis limiter falls back to a local one itself.
    private func consumeRateLimit(_ key: String, _ policy: RateLimitPolicy) async -> UpgradeRejection? {
        do {
            let decision = try await backends.rateLimiter.consume(key, cost: 1, policy: policy)
            if decision.allowed { return nil }
            counters.increment("realtime_rate_limited_total", ("policy", policy.name))
            return UpgradeRejection(
                status: 429,
                reason: "rate_limited",
                message: "too many connection attempts",
                retryAfter: decision.retryAfter
            )
        } catch {
            logger.warning("rate limiter failed; allowing", metadata: ["realtime.error": "\(error)"])
            return nil
        }
    }

    /// Counts an authentication failure and publishes `security.suspicious.activity` when one address fails
    /// too often.
    func authenticationFailed(reason: String, addressKey: String) async {
        counters.authFailed(reason)
        let window = configuration.rateLimits.abuseWindow
        let count = state.withLock { $0.abuse.recordAuthFailure(addressKey, window: window, now: .now) }
        if count == configuration.rateLimits.authFailuresBeforeAlert {
            await publishInternal(
                RealtimeEvent(
                    type: .securitySuspiciousActivity,
                    data: [
                        "reason": "repeated_authentication_failures",
                        "address": .string(addressKey),
                        "failures": .int(Int64(count)),
                        "windowSeconds": .int(window.milliseconds / 1000),
                        "serverId": .string(serverID.rawValue),
                    ],
                    scope: .admins
                )
            )
        }
    }

    /// Records an HTTP-level violation that a host detected before the request reached the hub (see
    /// ``HubConfiguration/HTTPLimits``): the counter `realtime_http_violations_total{reason}` and, unless `peer`
    /// is a trusted proxy (whose clients cannot be told apart), the address's violation count. At
    /// ``HubConfiguration/RateLimits-swift.struct/violationsBeforeBlock`` violations within the abuse window the
    /// address is blocked for ``HubConfiguration/RateLimits-swift.struct/blockDuration`` (upgrades and API
    /// requests get `429 address_blocked`) and administrators get `security.suspicious.activity`.
    ///
    /// - Parameters:
    ///   - reason: a stable, metric-safe reason such as `request_line_too_long`, `header_too_large`,
    ///     `header_timeout` or `malformed_request`.
    ///   - peer: the socket peer's IP address.
    public func reportHTTPViolation(reason: String, peer: String) async {
        counters.increment("realtime_http_violations_total", ("reason", reason))
        guard let address = IPAddress(peer), !configuration.clientAddress.isTrusted(address) else { return }
        let key = address.rateLimitKey
        let limits = configuration.rateLimits
        let now = ContinuousClock.now
        let count = state.withLock { state -> Int in
            let count = state.abuse.recordHTTPViolation(key, window: limits.abuseWindow, now: now)
            if count == limits.violationsBeforeBlock { state.abuse.block(key, for: limits.blockDuration, now: now) }
            return count
        }
        guard count == limits.violationsBeforeBlock else { return }
        logger.notice(
            "address blocked for repeated HTTP violations",
            metadata: ["realtime.remote": "\(key)", "realtime.reason": "\(reason)"]
        )
        await publishInternal(
            RealtimeEvent(
                type: .securitySuspiciousActivity,
                data: [
                    "reason": "repeated_http_violations",
                    "lastViolation": .string(reason),
                    "address": .string(key),
                    "violations": .int(Int64(count)),
                    "blockedForSeconds": .int(limits.blockDuration.milliseconds / 1000),
                    "serverId": .string(serverID.rawValue),
                ],
                scope: .admins
            )
        )
    }

    // MARK: Connect

    /// Activates an accepted upgrade once the host finished the handshake. The connection receives its
    /// `connected` message (or, with first-message authentication, waits for `auth`).
    public func connect(_ ticket: UpgradeTicket) async throws(RealtimeError) -> HubConnection {
        let core = ticket.core
        let stillReserved = state.withLock { state -> Bool in
            guard state.reserved.removeValue(forKey: core.id) != nil else { return false }
            if ticket.identity == nil {
                state.awaitingAuth[core.id] = core
                // Keeps counting against the server-wide limit until authenticated.
                state.reserved[core.id] = .init(since: .now, core: core)
            }
            return true
        }
        guard stillReserved else {
            throw RealtimeError(.timeout, "the upgrade ticket expired or was already used")
        }
        counters.connectionsOpened.add(1, ordering: .relaxed)
        let connection = HubConnection(hub: self, core: core)
        if let identity = ticket.identity {
            await activate(core, identity: identity, userConnections: ticket.userConnections ?? 1)
        } else {
            core.mutable.withLock { $0.authDeadline = .now + configuration.authenticationTimeout }
        }
        return connection
    }

    /// Puts an authenticated connection into the routing indexes and greets it.
    func activate(_ core: ConnectionCore, identity: VerifiedIdentity, userConnections: Int) async {
        let generation = state.withLock { state -> UInt64? in
            state.reserved[core.id] = nil
            state.awaitingAuth[core.id] = nil
            // A close that came first (its `forget` found nothing to remove) must not be undone: the connection
            // would stay in the routing indexes with nobody to remove it.
            guard core.mutable.withLock({ $0.closeCode == nil }) else { return nil }
            state.activate(core, identity: identity)
            counters.connectionsGauge.record(state.activeCount)
            counters.adminConnectionsGauge.record(state.adminSlots.count)
            return interest.request()
        }
        guard let generation else { return }
        _ = core.queue.enqueue(
            .text(
                WireProtocol.message(
                    "connected",
                    payload: [
                        "connectionId": .string(core.id.rawValue),
                        "serverId": .string(serverID.rawValue),
                        "userId": .string(identity.userID),
                        "endpoint": .string(core.endpoint.rawValue),
                        "heartbeatIntervalMs": .int(configuration.heartbeatInterval.milliseconds),
                        "expiresAt": identity.expiresAt.map { .string($0.iso8601) } ?? .null,
                        "limits": [
                            "maxMessageBytes": .int(Int64(configuration.limits.maxMessageBytes)),
                            "maxSubscriptions": .int(Int64(configuration.limits.maxSubscriptionsPerConnection)),
                            "messagesPerSecond": .int(Int64(configuration.rateLimits.messagesPerConnection.limit)),
                        ],
                    ]
                )
            ),
            force: true
        )
        var metadata = logger
        metadata[metadataKey: "realtime.connection.id"] = "\(core.id)"
        metadata[metadataKey: "realtime.user.id"] = "\(identity.userID)"
        metadata.debug("connection opened", metadata: ["realtime.endpoint": "\(core.endpoint.rawValue)"])
        // Hear this user's (and, for admins, the admins') events from other servers before returning.
        await interest.waitUntilApplied(generation, whileRunning: runtime.withLock { $0.subscribed })
        if userConnections == 1 {
            await publishInternal(
                RealtimeEvent(
                    type: .presenceUserOnline,
                    userID: identity.userID,
                    data: ["serverId": .string(serverID.rawValue)],
                    scope: .admins
                )
            )
        }
        if core.endpoint == .admin {
            await publishInternal(
                RealtimeEvent(
                    type: .adminConnectionOpened,
                    userID: identity.userID,
                    sessionID: identity.sessionID,
                    data: [
                        "connectionId": .string(core.id.rawValue),
                        "serverId": .string(serverID.rawValue),
                        "remoteAddress": .string(core.remoteAddress.description),
                        "origin": core.origin.map { .string($0) } ?? .null,
                    ],
                    scope: .admins
                )
            )
        }
    }

    // MARK: Close

    /// Closes a connection from the hub's side: queues the close frame, drops it from routing, and schedules
    /// its removal from the registry.
    func close(_ core: ConnectionCore, _ code: CloseCode, reason: String, flush: Bool = false) {
        let first = core.mutable.withLock { mutable -> Bool in
            guard mutable.closeCode == nil else { return false }
            mutable.closeCode = code
            return true
        }
        guard first else { return }
        core.queue.close(code, reason: Self.closeReason(reason), flush: flush)
        forget(core, keepForUnregister: true)
        if code == .slowConsumer { counters.slowConsumerCloses.add(1, ordering: .relaxed) }
        logger.debug(
            "connection closed by hub",
            metadata: ["realtime.connection.id": "\(core.id)", "realtime.close.code": "\(code)"]
        )
        unregisterContinuation.yield(core.id)
    }

    /// A close reason within the 123 bytes a WebSocket close frame allows, cut at a character boundary.
    static func closeReason(_ reason: String) -> String {
        guard reason.utf8.count > 123 else { return reason }
        var cut = ""
        for character in reason {
            guard cut.utf8.count + character.utf8.count <= 120 else { break }
            cut.append(character)
        }
        return cut + "…"
    }

    /// Drops a connection from routing, reservations and first-message authentication, and wakes the interest
    /// reconciler if its user's or the admins' route is no longer needed. `keepForUnregister` hands the core to the
    /// run loop, which removes its registry entry.
    private func forget(_ core: ConnectionCore, keepForUnregister: Bool) {
        state.withLock { state in
            state.deactivate(core.id)
            state.awaitingAuth[core.id] = nil
            state.reserved[core.id] = nil
            if keepForUnregister { state.closedCores[core.id] = core }
            if !state.pendingInterest.isEmpty { _ = interest.request() }
            counters.connectionsGauge.record(state.activeCount)
            counters.adminConnectionsGauge.record(state.adminSlots.count)
        }
    }

    /// The host reports the socket closed.
    func connectionClosed(_ core: ConnectionCore, code: CloseCode?) async {
        let first = core.mutable.withLock { mutable -> Bool in
            guard mutable.closeCode == nil else { return false }
            mutable.closeCode = code ?? .normal
            return true
        }
        core.queue.terminate()
        _ = state.withLock { $0.closedCores.removeValue(forKey: core.id) }
        if first { forget(core, keepForUnregister: false) }
        await unregister(core)
    }
}

/// Wakes the interest reconciler and lets `connect` wait until a user's route is heard.
final class InterestSignal: Sendable {
    private struct State {
        var requested: UInt64 = 0
        var applied: UInt64 = 0
        var waiters:
            [(generation: UInt64, deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Void, Never>)] =
                []
        var wakeup: CheckedContinuation<Void, Never>?
        var wakePending = false
    }

    private let state = Mutex(State())

    /// Records that the desired interest changed; returns the generation to wait for.
    func request() -> UInt64 {
        let (generation, wakeup) = state.withLock { state -> (UInt64, CheckedContinuation<Void, Never>?) in
            state.requested += 1
            let wakeup = state.wakeup
            state.wakeup = nil
            if wakeup == nil { state.wakePending = true }
            return (state.requested, wakeup)
        }
        wakeup?.resume()
        return generation
    }

    /// Suspends the reconciler until something changed. Returns the generation it should apply up to.
    func waitForRequest() async -> UInt64 {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.wakePending || Task.isCancelled {
                        state.wakePending = false
                        return true
                    }
                    state.wakeup = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let wakeup = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.wakeup = nil }
                return state.wakeup
            }
            wakeup?.resume()
        }
        return state.withLock { $0.requested }
    }

    /// Marks everything up to `generation` applied and releases those waiting for it.
    func applied(_ generation: UInt64) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.applied = max(state.applied, generation)
            let applied = state.applied
            let ready = state.waiters.filter { $0.generation <= applied }.map(\.continuation)
            state.waiters.removeAll { $0.generation <= applied }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until `generation` is applied, at most two seconds, and only while a subscription is running.
    func waitUntilApplied(_ generation: UInt64, whileRunning running: Bool) async {
        guard running else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.applied >= generation { return true }
                state.waiters.append((generation, .now + .seconds(2), continuation))
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Releases waiters past their deadline (the bus is slow or down: don't hold connections hostage).
    func expireWaiters(now: ContinuousClock.Instant, all: Bool = false) {
        let expired = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let expired = state.waiters.filter { all || $0.deadline <= now }.map(\.continuation)
            state.waiters.removeAll { all || $0.deadline <= now }
            return expired
        }
        for continuation in expired { continuation.resume() }
    }
}

/// A one-shot signal that ends ``RealtimeHub/run()``.
final class StopSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var fired: Bool { state.withLock { $0.fired } }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

extension HubBackends {
    /// In-memory backends for one process (development, tests). Pass the same `connectionStore` and `eventBus`
    /// to several hubs to make them behave like the servers of one cluster.
    public static func inMemory(
        tokenVerifier: any TokenVerifier,
        connectionStore: any ConnectionStore = InMemoryConnectionStore(),
        eventBus: any EventBus = InMemoryEventBus(),
        rateLimiter: any RateLimiter = InMemoryRateLimiter(),
        sessionStore: any SessionStore = InMemorySessionStore()
    ) -> HubBackends {
        HubBackends(
            tokenVerifier: tokenVerifier,
            connectionStore: connectionStore,
            eventBus: eventBus,
            rateLimiter: rateLimiter,
            sessionStore: sessionStore
        )
    }
}
