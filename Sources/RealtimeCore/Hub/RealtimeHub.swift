public import CoreMetrics
public import Logging
public import ServiceLifecycle
import Synchronization

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
    /// The admission policy every token goes through, and the per-address abuse state.
    let admission: Admission
    let interest = InterestSignal()
    /// Bounds the recoveries running at once (``ReplayGateState``).
    let replayGate: ReplayGate
    let stopSignal = StopSignal()
    let runtime = Mutex(Runtime())
    let unregisterJobs: AsyncStream<ConnectionID>
    let unregisterContinuation: AsyncStream<ConnectionID>.Continuation
    /// Requests to check the live connections' sessions again (``revalidateSessions()``), one pending at most.
    let revalidationRequests: AsyncStream<Void>
    let revalidationContinuation: AsyncStream<Void>.Continuation
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
    ///   - configuration: limits, policies and timings (``HubConfiguration``); checked here.
    ///   - backends: the connection store, event bus, token verifier, rate limiter, session store and history store
    ///     the hub runs on (``HubBackends``).
    ///   - logger: where the hub logs (connection lifecycle, refusals, backend failures).
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
        self.state = Mutex(HubState())
        self.replayGate = ReplayGate(
            maxRunning: configuration.history.recovery.maxConcurrent,
            maxWaiting: configuration.history.recovery.maxWaiting
        )
        self.admission = Admission(configuration: configuration, backends: backends, counters: counters, logger: logger)
        (unregisterJobs, unregisterContinuation) = AsyncStream.makeStream(of: ConnectionID.self)
        (revalidationRequests, revalidationContinuation) = AsyncStream.makeStream(
            of: Void.self,
            bufferingPolicy: .bufferingNewest(1)
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
            await activate(
                core,
                identity: identity,
                userConnections: ticket.userConnections ?? 1,
                admissionStarted: ticket.admissionStarted
            )
        } else {
            core.state.withLock { $0.authDeadline = .now + configuration.authenticationTimeout }
        }
        return connection
    }

    /// Puts an authenticated connection into the routing indexes and greets it, unless a revocation this server
    /// applied after its admission started refuses it. `replyID` is the `id` of a first-message `auth`, echoed by
    /// its `connected` reply.
    func activate(
        _ core: ConnectionCore,
        identity: VerifiedIdentity,
        userConnections: Int,
        admissionStarted: ContinuousClock.Instant,
        replyID: JSONValue? = nil
    ) async {
        enum Activation {
            case closed
            case refused(RecentRevocations.Refusal)
            case active(generation: UInt64)
        }
        let activation = state.withLock { state -> Activation in
            state.reserved[core.id] = nil
            state.awaitingAuth[core.id] = nil
            // A close that came first (its `forget` found nothing to remove) must not be undone: the connection
            // would stay in the routing indexes with nobody to remove it.
            guard core.state.withLock({ $0.closeCode == nil }) else { return .closed }
            // Admitted before a revocation of its user or session that this server applied meanwhile.
            if let refusal = state.recentRevocations.refusal(identity, admissionStarted: admissionStarted, now: .now) {
                return .refused(refusal)
            }
            state.activate(core, identity: identity)
            counters.connectionsGauge.record(state.activeCount)
            counters.adminConnectionsGauge.record(state.adminSlots.count)
            return .active(generation: interest.request())
        }
        let generation: UInt64
        switch activation {
        case .closed: return
        case .refused(let refusal):
            close(core, .sessionRevoked, reason: refusal.reason)
            return
        case .active(let value): generation = value
        }
        _ = core.queue.enqueue(
            .text(
                WireProtocol.message(
                    "connected",
                    id: replyID,
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
                        "recovery": recoveryCapability(endpoint: core.endpoint, userID: identity.userID),
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
        applyRecoverQuery(to: core, userID: identity.userID)
        await deliverOfflineNotifications(to: core, userID: identity.userID)
        if userConnections == 1 {
            await publishResolvedEvent(
                RealtimeEvent(
                    type: .presenceUserOnline,
                    userID: identity.userID,
                    data: ["serverId": .string(serverID.rawValue)],
                    scope: .admins
                )
            )
        }
        if core.endpoint == .admin {
            await publishResolvedEvent(
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
            await auditAdminConnection(core, identity: identity, action: "connect", target: "endpoint:admin")
        }
    }

    // MARK: Close

    /// Closes a connection from the hub's side: queues the close frame, drops it from routing, and schedules
    /// its removal from the registry.
    func close(_ core: ConnectionCore, _ code: CloseCode, reason: String, flush: Bool = false) {
        let first = core.state.withLock { connection -> Bool in
            guard connection.closeCode == nil else { return false }
            connection.closeCode = code
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
        let first = core.state.withLock { connection -> Bool in
            guard connection.closeCode == nil else { return false }
            connection.closeCode = code ?? .normal
            return true
        }
        core.queue.terminate()
        _ = state.withLock { $0.closedCores.removeValue(forKey: core.id) }
        if first { forget(core, keepForUnregister: false) }
        await unregister(core)
    }
}
