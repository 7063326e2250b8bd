import Logging
import ServiceLifecycle
import Synchronization

extension RealtimeHub {
    /// Runs the hub until graceful shutdown (swift-service-lifecycle), cancellation or ``shutdown()``: the bus
    /// subscription, heartbeats and idle detection, token expiry, the server registry heartbeat and purge of
    /// dead servers, periodic statistics to administrators, and cleanup. On the way out it drains connections in
    /// paced batches (each told when to reconnect, then closed with 1001) and unregisters the server.
    public func run() async throws {
        let alreadyRunning = runtime.withLock { runtime -> Bool in
            defer { runtime.running = true }
            return runtime.running
        }
        guard !alreadyRunning else { throw RealtimeError(.invalidArgument, "run() is already running") }
        logger.info("hub started")
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await withDiscardingTaskGroup { group in
                    group.addTask { await self.busLoop() }
                    group.addTask { await self.tickLoop() }
                    group.addTask { await self.unregisterLoop() }
                    group.addTask { await self.revalidationLoop() }
                    group.addTask { await self.serverHeartbeatLoop() }
                    if backends.historyStore != nil { group.addTask { await self.historyResetLoop() } }
                    await self.stopSignal.wait()
                    group.cancelAll()
                }
            } onCancel: {
                self.stopSignal.fire()
            }
        } onGracefulShutdown: {
            self.stopSignal.fire()
        }
        await drain()
        runtime.withLock { $0.running = false }
        logger.info("hub stopped")
    }

    /// Starts a graceful shutdown of a running hub; ``run()`` returns once it is done.
    public func shutdown() {
        stopSignal.fire()
    }

    // MARK: Loops

    private func busLoop() async {
        var backoff: Duration = .milliseconds(100)
        while !Task.isCancelled {
            let subscription: any EventBusSubscription
            do {
                // `handle` is synchronous and never waits, so a bus may call it on its read path (Redis does): one
                // thread hop less per message than handing each one to this task.
                subscription = try await backends.eventBus.subscribe(server: serverID) { self.handle($0) }
            } catch {
                logger.error("bus subscription failed; retrying", metadata: ["realtime.error": "\(error)"])
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(5))
                continue
            }
            backoff = .milliseconds(100)
            runtime.withLock { $0.subscribed = true }
            await withDiscardingTaskGroup { group in
                group.addTask { await self.reconcileInterest(subscription) }
                // Yields nothing: it tells when the subscription ended, and the default implementation of
                // `subscribe(server:handler:)` calls `handle` from this iteration.
                for await _ in subscription.deliveries {}
                group.cancelAll()
            }
            runtime.withLock { $0.subscribed = false }
            interest.expireWaiters(now: .now, all: true)
            await subscription.close()
            if !Task.isCancelled {
                logger.warning("bus subscription ended; resubscribing")
                try? await Task.sleep(for: backoff)
            }
        }
    }

    /// Keeps the subscription's user and admin routes equal to what this server's connections need.
    private func reconcileInterest(_ subscription: any EventBusSubscription) async {
        var applied = Set<BusRoute>()
        // A new subscription hears nothing yet: everything desired is pending.
        state.withLock { state in
            for route in state.desiredInterest { state.pendingInterest[route] = true }
        }
        var generation = interest.request()
        while !Task.isCancelled {
            let pending = state.withLock { state -> [BusRoute: Bool] in
                defer { state.pendingInterest = [:] }
                return state.pendingInterest
            }
            var failed: [BusRoute: Bool] = [:]
            for (route, wanted) in pending where wanted != applied.contains(route) {
                do {
                    if wanted {
                        try await subscription.addInterest(route)
                        applied.insert(route)
                    } else {
                        try await subscription.removeInterest(route)
                        applied.remove(route)
                    }
                } catch {
                    failed[route] = wanted
                    logger.warning("bus interest change failed", metadata: ["realtime.error": "\(error)"])
                }
            }
            if !failed.isEmpty {
                state.withLock { state in
                    for (route, wanted) in failed where state.pendingInterest[route] == nil {
                        state.pendingInterest[route] = wanted
                    }
                }
                try? await Task.sleep(for: .milliseconds(200))
                generation = max(generation, interest.request())
                continue
            }
            interest.applied(generation)
            generation = await interest.waitForRequest()
        }
    }

    private func revalidationLoop() async {
        for await _ in revalidationRequests {
            await revalidateSessions()
            if Task.isCancelled { break }
        }
    }

    private func unregisterLoop() async {
        for await id in unregisterJobs {
            await unregister(id: id)
            if Task.isCancelled { break }
        }
    }

    private func unregister(id: ConnectionID) async {
        guard let core = state.withLock({ $0.closedCores.removeValue(forKey: id) }) else { return }
        await unregister(core)
    }

    /// How often the run loop checks its deadlines: half the shortest of the authentication timeout, the upgrade
    /// ticket timeout and the two heartbeat intervals, so each is kept to within half its length; at most a second
    /// and at least 10 ms.
    static func tick(for configuration: HubConfiguration) -> Duration {
        let shortest = min(
            configuration.authenticationTimeout,
            configuration.upgradeTicketTimeout,
            configuration.heartbeatInterval,
            configuration.serverHeartbeatInterval
        )
        return max(.milliseconds(10), min(.seconds(1), shortest / 2))
    }

    /// Tries owed history resets again at every tick (at most a second apart), in a task of its own: a failing
    /// store's timeouts must not hold up the run loop's deadlines.
    private func historyResetLoop() async {
        let interval = Self.tick(for: configuration)
        while !Task.isCancelled {
            await retryHistoryResets()
            do { try await Task.sleep(for: interval) } catch { return }
        }
    }

    /// Server heartbeats, in a task of their own: a registry that fails or times out (a command timeout per attempt
    /// during a failover) must not hold up the run loop's deadlines (authentication, tickets, pings).
    private func serverHeartbeatLoop() async {
        let clock = ContinuousClock()
        var failures = 0
        while !Task.isCancelled {
            let started = clock.now
            failures = await serverHeartbeat() ? 0 : failures + 1
            let delay = Self.serverHeartbeatDelay(failures: failures, interval: configuration.serverHeartbeatInterval)
            do { try await Task.sleep(until: started + delay, clock: clock) } catch { return }
        }
    }

    private func tickLoop() async {
        let tick = Self.tick(for: configuration)
        let clock = ContinuousClock()
        var nextHeartbeat = clock.now + configuration.heartbeatInterval
        var nextStats = configuration.statsInterval.map { clock.now + $0 }
        var nextCleanup = clock.now + configuration.cleanupInterval
        while !Task.isCancelled {
            let now = clock.now
            for (core, identity) in expireDeadlines(now: now) {
                await publishResolvedEvent(Self.sessionExpired(core, identity: identity, serverID: serverID))
            }
            if now >= nextHeartbeat {
                nextHeartbeat = now + configuration.heartbeatInterval
                heartbeat(now: now)
            }
            if let due = nextStats, now >= due, let interval = configuration.statsInterval {
                nextStats = now + interval
                await sendStatsToAdmins()
            }
            if now >= nextCleanup {
                nextCleanup = now + configuration.cleanupInterval
                admission.sweepAbuse()
                state.withLock { $0.recentRevocations.sweep(now: now) }
            }
            try? await Task.sleep(for: tick)
        }
    }

    /// `session.expired` for a connection closed because its token expired (to its user and administrators).
    static func sessionExpired(_ core: ConnectionCore, identity: VerifiedIdentity, serverID: ServerID) -> RealtimeEvent
    {
        RealtimeEvent(
            type: .sessionExpired,
            userID: identity.userID,
            sessionID: identity.sessionID,
            data: [
                "reason": "token_expired", "connectionId": .string(core.id.rawValue),
                "serverId": .string(serverID.rawValue),
                "expiresAt": identity.expiresAt.map { .string($0.iso8601) } ?? .null,
            ]
        )
    }

    /// Authentication deadlines, unused tickets, token expiry and its warning. Returns the connections it closed
    /// because their token expired, with that token's identity (for `session.expired`).
    func expireDeadlines(now: ContinuousClock.Instant) -> [(ConnectionCore, VerifiedIdentity)] {
        let ticketTimeout = configuration.upgradeTicketTimeout
        let (awaiting, expiredTickets, active) = state.withLock { state in
            let expiredTickets = state.reserved.filter { id, reservation in
                state.awaitingAuth[id] == nil && now - reservation.since > ticketTimeout
            }.map(\.key)
            for id in expiredTickets {
                guard let core = state.reserved.removeValue(forKey: id)?.core else { continue }
                // Closed before its unregister is asked for, so a registration still to start never starts.
                core.state.withLock { connection in
                    if connection.closeCode == nil { connection.closeCode = .goingAway }
                }
                state.closedCores[id] = core
            }
            return (Array(state.awaitingAuth.values), expiredTickets, state.allCores)
        }
        if !expiredTickets.isEmpty {
            logger.debug("released unused upgrade tickets", metadata: ["realtime.count": "\(expiredTickets.count)"])
            // Each ticket holds (or is writing) a registration in the connection store: remove it.
            for id in expiredTickets { unregisterContinuation.yield(id) }
        }
        for core in awaiting {
            let late = core.state.withLock { $0.authDeadline.map { $0 <= now } ?? false }
            if late { close(core, .authenticationFailed, reason: "authentication timeout") }
        }
        let wallNow = Timestamp.now()
        let warning = configuration.tokenExpiryWarning
        var expired: [(ConnectionCore, VerifiedIdentity)] = []
        for core in active {
            enum Action {
                case none
                case warn(Timestamp)
                case expire(VerifiedIdentity)
            }
            let action: Action = core.state.withLock { connection in
                guard let identity = connection.identity, let expiresAt = identity.expiresAt else { return .none }
                if expiresAt <= wallNow { return connection.closeCode == nil ? .expire(identity) : .none }
                if !connection.warnedExpiry && expiresAt - warning <= wallNow {
                    connection.warnedExpiry = true
                    return .warn(expiresAt)
                }
                return .none
            }
            switch action {
            case .none: break
            case .expire(let identity):
                close(core, .tokenExpired, reason: "token expired")
                expired.append((core, identity))
            case .warn(let expiresAt):
                reply(
                    core,
                    WireProtocol.message(
                        "token_expiring",
                        payload: [
                            "expiresAt": .string(expiresAt.iso8601),
                            "message": "send refresh_token with a new token to keep this connection",
                        ]
                    )
                )
            }
        }
        return expired
    }

    /// Pings every connection and closes those that stayed silent for the idle timeout although they were pinged
    /// since their last sign of life (so a delayed tick never closes a connection that had no chance to answer).
    func heartbeat(now: ContinuousClock.Instant) {
        let cores = state.withLock { $0.allCores }
        for core in cores {
            let idle = core.state.withLock { connection -> Bool in
                let silentSincePing = connection.pingedAt.map { $0 > connection.lastActivity } ?? false
                if silentSincePing && now - connection.lastActivity > configuration.idleTimeout { return true }
                connection.pingedAt = now
                return false
            }
            if idle {
                close(core, .goingAway, reason: "idle timeout")
            } else {
                _ = core.queue.enqueue(.ping, force: true)
            }
        }
    }

    /// How long after the start of a server heartbeat the next one starts: the interval after a success. After
    /// `failures` failures in a row, 1, 2, 4 … seconds, up to the interval: a failure marks the hub unhealthy
    /// (`registryHeartbeat` in its health, 503 on `/health/ready`) until a heartbeat succeeds, and a registry failover
    /// is over in a few seconds, well within the 10 s interval (ninth probe, M1: every server stayed unready ≈ 10 s
    /// after the cluster had recovered); a failure that lasts is not retried every second for good.
    static func serverHeartbeatDelay(failures: Int, interval: Duration) -> Duration {
        guard failures > 0 else { return interval }
        return min(interval, .seconds(1 << min(failures - 1, 20)))
    }

    /// Writes this server's record, re-registers connections the registry lost, reconciles and purges expired
    /// servers. Returns whether it all succeeded.
    func serverHeartbeat() async -> Bool {
        let now = Timestamp.now()
        let count = state.withLock { $0.activeCount }
        let record = ServerRecord(
            id: serverID,
            startedAt: startedAt,
            lastHeartbeat: now,
            expiresAt: now + configuration.serverTTL,
            connectionCount: count,
            eventsDelivered: counters.eventsDelivered.load(ordering: .relaxed),
            eventsDropped: counters.eventsDropped.load(ordering: .relaxed)
        )
        do {
            try await backends.connectionStore.heartbeat(record)
            try await restoreLostRegistrations()
            try await reconcileRegistry()
            let purged = try await backends.connectionStore.purgeExpiredServers()
            runtime.withLock { $0.lastServerHeartbeatError = nil }
            for server in purged {
                logger.warning(
                    "purged a server that stopped heartbeating",
                    metadata: [
                        "realtime.purged.server": "\(server.serverID)", "realtime.count": "\(server.connections.count)",
                    ]
                )
                for userID in server.usersGoneOffline {
                    await publishResolvedEvent(
                        RealtimeEvent(
                            type: .presenceUserOffline,
                            userID: userID,
                            data: ["serverId": .string(server.serverID.rawValue), "reason": "server_purged"],
                            scope: .admins
                        )
                    )
                }
            }
            return true
        } catch {
            runtime.withLock { $0.lastServerHeartbeatError = "\(error)" }
            logger.warning("server heartbeat failed", metadata: ["realtime.error": "\(error)"])
            return false
        }
    }

    /// Re-registers local connections the registry no longer knows (Redis restarted without persistence, or a
    /// failover lost recent writes), so per-user limits, presence and global counts recover by themselves.
    func restoreLostRegistrations() async throws(RealtimeError) {
        let local = state.withLock { state in
            state.allCores.filter { state.registrations[$0.id]?.isRegistered == true }
        }
        let registered = try await backends.connectionStore.count(.server(serverID))
        guard registered < local.count else { return }
        var restored = 0
        for core in local {
            guard let identity = core.identity,
                try await backends.connectionStore.connection(core.id) == nil
            else { continue }
            // The connection exists: never refuse it on the per-user limit while restoring. A connection that
            // closed since it was listed is not registered again (or, closing during the write, removed after it).
            switch await register(core, identity: identity, maxConnectionsPerUser: nil) {
            case .registered: restored += 1
            case .closed, .limitReached: break
            case .failed(let error): throw error
            }
        }
        if restored > 0 {
            logger.notice(
                "re-registered connections the cluster registry had lost",
                metadata: ["realtime.count": "\(restored)"]
            )
        }
    }

    func sendStatsToAdmins() async {
        guard state.withLock({ !$0.adminSlots.isEmpty }) else { return }
        let stats = await stats()
        let frame = OutboundFrame.text(WireProtocol.message("stats", payload: stats.jsonObject))
        for core in state.withLock({ $0.adminCores }) {
            if core.queue.enqueue(frame) == .overflow {
                close(core, .slowConsumer, reason: "outbound queue overflow; reconnect and resynchronise")
            }
        }
    }

    /// Closes every connection in paced batches with a jittered reconnect hint, then leaves the cluster.
    func drain() async {
        let (cores, tickets) = state.withLock { state -> ([ConnectionCore], [ConnectionCore]) in
            state.draining = true
            let tickets = state.reserved.filter { state.awaitingAuth[$0.key] == nil }.map(\.value.core)
            return (state.allCores + Array(state.awaitingAuth.values), tickets)
        }
        // Unused tickets (some still writing their registration) will not be connected any more; no socket to
        // wait for either.
        for ticket in tickets { close(ticket, .goingAway, reason: "server shutting down") }
        let settings = configuration.shutdown
        logger.info("draining connections", metadata: ["realtime.count": "\(cores.count)"])
        var generator = SystemRandomNumberGenerator()
        var batchStart = 0
        while batchStart < cores.count {
            let batch = cores[batchStart..<min(batchStart + settings.batchSize, cores.count)]
            for core in batch {
                let jitter = settings.reconnectJitter.milliseconds
                let delay =
                    settings.reconnectDelay.milliseconds
                    + (jitter > 0 ? Int64.random(in: 0...jitter, using: &generator) : 0)
                _ = core.queue.enqueue(
                    .text(
                        WireProtocol.message(
                            "reconnect",
                            payload: ["reason": "server_shutdown", "retryAfterMs": .int(delay)]
                        )
                    ),
                    force: true
                )
                close(core, .goingAway, reason: "server shutting down", flush: true)
            }
            batchStart += settings.batchSize
            if batchStart < cores.count && settings.batchInterval > .zero {
                // Uninterruptible pacing would hold up a cancelled task; a cancelled sleep just ends the pacing.
                do { try await Task.sleep(for: settings.batchInterval) } catch { continue }
            }
        }
        await waitUntilClosed(cores, within: settings.closeWait)
        unregisterContinuation.finish()
        do {
            let removed = try await backends.connectionStore.removeServer(serverID)
            // Writes still in flight remove their record themselves once they complete.
            state.withLock { $0.serverRemovedRegistrations() }
            for userID in removed.usersGoneOffline {
                await publishResolvedEvent(
                    RealtimeEvent(
                        type: .presenceUserOffline,
                        userID: userID,
                        data: ["serverId": .string(serverID.rawValue), "reason": "server_shutdown"],
                        scope: .admins
                    )
                )
            }
        } catch {
            logger.warning("could not unregister the server", metadata: ["realtime.error": "\(error)"])
        }
        // The presence events above are the last publishes: a reset still owed is tried once more before leaving.
        await retryHistoryResets()
    }
}

extension RealtimeHub {
    /// Waits (polling, bounded by `limit`) until the host reported every one of `cores` closed: a host whose
    /// connections are not tasks of its server (an event-loop handler) relies on this to finish close handshakes
    /// before the server stops.
    func waitUntilClosed(_ cores: [ConnectionCore], within limit: Duration) async {
        guard limit > .zero else { return }
        let deadline = ContinuousClock.now + limit
        var open = cores
        while true {
            open.removeAll { $0.queue.isTerminated }
            if open.isEmpty { return }
            guard ContinuousClock.now < deadline else {
                logger.info("stopped waiting for drained connections", metadata: ["realtime.count": "\(open.count)"])
                return
            }
            // A cancelled wait just ends the wait.
            do { try await Task.sleep(for: .milliseconds(20)) } catch { return }
        }
    }
}
