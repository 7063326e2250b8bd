import Synchronization

/// A snapshot of the hub's statistics, in the specification's shape (`server`, `global`, `notifications`).
public struct HubStats: Sendable {
    public struct Server: Sendable {
        public var serverID: ServerID
        public var startedAt: Timestamp
        public var uptime: Duration
        public var connections: Int
        public var adminConnections: Int
        public var users: Int
        public var pendingConnections: Int
        public var draining: Bool
        public var eventsPublished: Int
        public var eventsDelivered: Int
        public var eventsDropped: Int
        public var notificationsSent: Int
        public var messagesReceived: Int
        public var busMessagesReceived: Int
        public var busPublishFailures: Int
        public var gaps: Int
        public var slowConsumerCloses: Int
        public var rateLimitedMessages: Int
        public var protocolErrors: Int
        public var rejectionsByReason: [String: Int]
        public var authFailuresByReason: [String: Int]
        public var queuedFrames: Int
        public var queuedBytes: Int
        public var deepestQueue: Int
        public var residentMemoryBytes: Int?
        /// Recovery and history figures since the server started.
        public var history = History()
        /// What this server did with notifications to users who had no connection anywhere, since it started.
        public var offlineNotifications = OfflineNotifications()
    }

    /// Notifications to users with no connection anywhere, as this server handled them (the metrics
    /// `realtime_offline_notifications_kept_total` and `realtime_offline_notifications_dropped_total{reason}`).
    public struct OfflineNotifications: Sendable {
        /// Kept for the user's next connection.
        public var kept = 0
        /// Not kept: larger than ``OfflineNotificationLimits/maxNotificationBytes`` (reason `too_large`).
        public var tooLarge = 0
        /// Not kept: the store failed (reason `store_failed`).
        public var storeFailures = 0
        /// Kept ones dropped to make room for newer ones (reason `displaced`; see
        /// ``OfflineEnqueueResult/displaced``).
        public var displaced = 0

        public init() {}
    }

    /// What the server recorded and replayed (issue 14).
    public struct History: Sendable {
        /// Publishes whose history record failed (published without positions).
        public var recordFailures = 0
        /// Streams whose epoch the server ended because messages went out on them without positions, so that a
        /// recovery across those messages answers `recovered: false` (``HistoryStore/reset(_:)``).
        public var resets = 0
        /// Of such streams, those whose reset failed and waits for the next server heartbeat.
        public var resetsPending = 0
        /// Of such streams, those not remembered for a retry (more than 10,000 were waiting): a recovery on them may
        /// be told its replay is complete without the messages published meanwhile.
        public var resetsLost = 0
        /// Recoveries answered (each `recover` that ran or was refused for lack of history or capacity).
        public var recoveries = 0
        /// Of those, answered `recovered: false`.
        public var recoveriesFailed = 0
        /// Events replayed to recovering connections.
        public var eventsReplayed = 0
        /// Replays running and waiting now.
        public var replaysRunning = 0
        public var replaysWaiting = 0

        public init() {}
    }

    public struct ServerSummary: Sendable {
        public var serverID: ServerID
        public var connections: Int
        /// How old the server's last report is: global figures are only as fresh as this.
        public var lastReportAge: Duration
        /// Events the server had delivered since it started, at its last report (`nil`: not reported).
        public var eventsDelivered: Int?
        /// Events the server had dropped since it started, at its last report (`nil`: not reported).
        public var eventsDropped: Int?
    }

    public struct Global: Sendable {
        public var totalServers: Int
        public var totalConnections: Int
        public var servers: [ServerSummary]
        /// Set when the registry could not be read; the other global figures are then zero.
        public var error: String?
    }

    public var server: Server
    public var global: Global
    /// Notifications queued for users with no connection, cluster-wide (the specification's
    /// `notifications.queueLength`; see ``OfflineNotificationStore``), or, without an offline store, the frames
    /// waiting in this server's outbound queues.
    public var queueLength: Int

    /// The JSON form served by `/ws/health`-style endpoints and sent to administrators.
    public var jsonObject: JSONObject {
        func counts(_ dictionary: [String: Int]) -> JSONValue {
            .object(dictionary.mapValues { .int(Int64($0)) })
        }
        return [
            "server": [
                "serverId": .string(server.serverID.rawValue),
                "startedAt": .string(server.startedAt.iso8601),
                "uptimeSeconds": .int(server.uptime.milliseconds / 1000),
                "connections": .int(Int64(server.connections)),
                "adminConnections": .int(Int64(server.adminConnections)),
                "users": .int(Int64(server.users)),
                "pendingConnections": .int(Int64(server.pendingConnections)),
                "draining": .bool(server.draining),
                "eventsPublished": .int(Int64(server.eventsPublished)),
                "eventsDelivered": .int(Int64(server.eventsDelivered)),
                "eventsDropped": .int(Int64(server.eventsDropped)),
                "notificationsSent": .int(Int64(server.notificationsSent)),
                "messagesReceived": .int(Int64(server.messagesReceived)),
                "busMessagesReceived": .int(Int64(server.busMessagesReceived)),
                "busPublishFailures": .int(Int64(server.busPublishFailures)),
                "gaps": .int(Int64(server.gaps)),
                "slowConsumerCloses": .int(Int64(server.slowConsumerCloses)),
                "rateLimitedMessages": .int(Int64(server.rateLimitedMessages)),
                "protocolErrors": .int(Int64(server.protocolErrors)),
                "rejections": counts(server.rejectionsByReason),
                "authFailures": counts(server.authFailuresByReason),
                "queues": [
                    "queuedFrames": .int(Int64(server.queuedFrames)),
                    "queuedBytes": .int(Int64(server.queuedBytes)),
                    "deepestQueue": .int(Int64(server.deepestQueue)),
                ],
                "memory": ["residentBytes": server.residentMemoryBytes.map { .int(Int64($0)) } ?? .null],
                "history": [
                    "recordFailures": .int(Int64(server.history.recordFailures)),
                    "resets": .int(Int64(server.history.resets)),
                    "resetsPending": .int(Int64(server.history.resetsPending)),
                    "resetsLost": .int(Int64(server.history.resetsLost)),
                    "recoveries": .int(Int64(server.history.recoveries)),
                    "recoveriesFailed": .int(Int64(server.history.recoveriesFailed)),
                    "eventsReplayed": .int(Int64(server.history.eventsReplayed)),
                    "replaysRunning": .int(Int64(server.history.replaysRunning)),
                    "replaysWaiting": .int(Int64(server.history.replaysWaiting)),
                ],
                "offlineNotifications": [
                    "kept": .int(Int64(server.offlineNotifications.kept)),
                    "tooLarge": .int(Int64(server.offlineNotifications.tooLarge)),
                    "storeFailures": .int(Int64(server.offlineNotifications.storeFailures)),
                    "displaced": .int(Int64(server.offlineNotifications.displaced)),
                ],
            ],
            "global": [
                "totalServers": .int(Int64(global.totalServers)),
                "totalConnections": .int(Int64(global.totalConnections)),
                "servers": .array(
                    global.servers.map {
                        [
                            "serverId": .string($0.serverID.rawValue),
                            "connections": .int(Int64($0.connections)),
                            "lastReportAgeMs": .int($0.lastReportAge.milliseconds),
                            "eventsDelivered": $0.eventsDelivered.map { .int(Int64($0)) } ?? .null,
                            "eventsDropped": $0.eventsDropped.map { .int(Int64($0)) } ?? .null,
                        ]
                    }
                ),
                "error": global.error.map { .string($0) } ?? .null,
            ],
            "notifications": ["queueLength": .int(Int64(queueLength))],
        ]
    }
}

/// The hub's health, in the specification's shape plus per-component detail.
public struct HubHealth: Sendable {
    public var healthy: Bool
    /// The worst status of the hub and its components.
    public var status: ComponentHealth.Status
    public var serverID: ServerID
    public var connections: Int
    /// Whether the hub is draining (not ready for new connections).
    public var draining: Bool
    public var components: [String: ComponentHealth]

    /// `{"healthy":…,"status":…,"serverId":…,"connections":…,"redisConnected":…,"components":{…}}`.
    /// `redisConnected` appears when a backend reports it.
    public var jsonObject: JSONObject {
        var object: JSONObject = [
            "healthy": .bool(healthy),
            "status": .string(status.rawValue),
            "serverId": .string(serverID.rawValue),
            "connections": .int(Int64(connections)),
            "draining": .bool(draining),
            "components": .object(
                components.mapValues { ["status": .string($0.status.rawValue), "details": .object($0.details)] }
            ),
        ]
        let redis = components.values.compactMap { $0.details["redisConnected"]?.boolValue }
        if !redis.isEmpty { object["redisConnected"] = .bool(redis.allSatisfy { $0 }) }
        return object
    }
}

extension RealtimeHub {
    /// Statistics of this server and of the cluster.
    public func stats() async -> HubStats {
        let snapshot = state.withLock { state in
            (
                connections: state.activeCount,
                admins: state.adminSlots.count,
                users: state.localUserCount,
                pending: state.reserved.count,
                draining: state.draining,
                cores: state.allCores
            )
        }
        var queuedFrames = 0
        var queuedBytes = 0
        var deepest = 0
        for core in snapshot.cores {
            let depth = core.queue.depth
            queuedFrames += depth.frames
            queuedBytes += depth.bytes
            deepest = max(deepest, depth.frames)
        }
        var server = HubStats.Server(
            serverID: serverID,
            startedAt: startedAt,
            uptime: ContinuousClock.now - startInstant,
            connections: snapshot.connections,
            adminConnections: snapshot.admins,
            users: snapshot.users,
            pendingConnections: snapshot.pending,
            draining: snapshot.draining,
            eventsPublished: counters.eventsPublished.load(ordering: .relaxed),
            eventsDelivered: counters.eventsDelivered.load(ordering: .relaxed),
            eventsDropped: counters.eventsDropped.load(ordering: .relaxed),
            notificationsSent: counters.notificationsSent.load(ordering: .relaxed),
            messagesReceived: counters.messagesReceived.load(ordering: .relaxed),
            busMessagesReceived: counters.busMessagesReceived.load(ordering: .relaxed),
            busPublishFailures: counters.busPublishFailures.load(ordering: .relaxed),
            gaps: counters.gaps.load(ordering: .relaxed),
            slowConsumerCloses: counters.slowConsumerCloses.load(ordering: .relaxed),
            rateLimitedMessages: counters.rateLimitedMessages.load(ordering: .relaxed),
            protocolErrors: counters.protocolErrors.load(ordering: .relaxed),
            rejectionsByReason: counters.rejectionsByReason,
            authFailuresByReason: counters.authFailuresByReason,
            queuedFrames: queuedFrames,
            queuedBytes: queuedBytes,
            deepestQueue: deepest,
            residentMemoryBytes: configuration.residentMemoryBytes?()
        )
        server.offlineNotifications.kept = counters.offlineKept.load(ordering: .relaxed)
        server.offlineNotifications.tooLarge = counters.offlineTooLarge.load(ordering: .relaxed)
        server.offlineNotifications.storeFailures = counters.offlineStoreFailures.load(ordering: .relaxed)
        server.offlineNotifications.displaced = counters.offlineDisplaced.load(ordering: .relaxed)
        let replays = replayGate.load
        server.history = HubStats.History()
        server.history.recordFailures = counters.historyFailures.load(ordering: .relaxed)
        server.history.resets = counters.historyResets.load(ordering: .relaxed)
        server.history.resetsPending = state.withLock { $0.pendingHistoryResets.count }
        server.history.resetsLost = counters.historyResetsLost.load(ordering: .relaxed)
        server.history.recoveries = counters.recoveries.load(ordering: .relaxed)
        server.history.recoveriesFailed = counters.recoveriesFailed.load(ordering: .relaxed)
        server.history.eventsReplayed = counters.eventsReplayed.load(ordering: .relaxed)
        server.history.replaysRunning = replays.running
        server.history.replaysWaiting = replays.waiting
        var global = HubStats.Global(totalServers: 0, totalConnections: 0, servers: [], error: nil)
        do {
            let servers = try await backends.connectionStore.servers()
            // After the read: a heartbeat written while it ran is not from the future. Never below zero, though:
            // another server's clock may be ahead of this one's.
            let now = Timestamp.now()
            global.servers = servers.map {
                HubStats.ServerSummary(
                    serverID: $0.id,
                    connections: $0.connectionCount,
                    lastReportAge: max(.zero, now - $0.lastHeartbeat),
                    eventsDelivered: $0.eventsDelivered,
                    eventsDropped: $0.eventsDropped
                )
            }
            global.totalServers = servers.count
            global.totalConnections = try await backends.connectionStore.count(.total)
        } catch {
            global.error = "\(error.code)"
        }
        var queueLength = queuedFrames
        if let offline = backends.offlineNotifications, let queued = try? await offline.queueLength() {
            queueLength = queued
        }
        return HubStats(server: server, global: global, queueLength: queueLength)
    }

    /// Health of the hub and its backends. Unhealthy when a backend is unhealthy or the registry heartbeat
    /// fails; degraded when a backend is degraded or the bus subscription is down.
    public func healthCheck() async -> HubHealth {
        var components: [String: ComponentHealth] = [:]
        components["eventBus"] = await backends.eventBus.healthCheck()
        components["connectionStore"] = await backends.connectionStore.healthCheck()
        components["rateLimiter"] = await backends.rateLimiter.healthCheck()
        components["sessionStore"] = await backends.sessionStore.healthCheck()
        components["tokenVerifier"] = await backends.tokenVerifier.healthCheck()
        if let historyStore = backends.historyStore { components["historyStore"] = await historyStore.healthCheck() }
        if let offline = backends.offlineNotifications {
            components["offlineNotifications"] = await offline.healthCheck()
        }
        let runtime = runtime.withLock { $0 }
        var hub = ComponentHealth(
            status: .healthy,
            details: ["running": .bool(runtime.running), "subscribed": .bool(runtime.subscribed)]
        )
        if runtime.running && !runtime.subscribed {
            hub.status = .degraded
            hub.details["subscription"] = "down"
        }
        if let error = runtime.lastServerHeartbeatError {
            hub.status = .unhealthy
            hub.details["registryHeartbeat"] = .string(error)
        }
        if let gap = runtime.lastGap {
            hub.details["lastGap"] = ["from": .string(gap.from.iso8601), "to": .string(gap.to.iso8601)]
        }
        components["hub"] = hub
        let status = components.values.map(\.status).max() ?? .healthy
        let (connections, draining) = state.withLock { ($0.activeCount, $0.draining) }
        return HubHealth(
            healthy: status != .unhealthy && !draining,
            status: status,
            serverID: serverID,
            connections: connections,
            draining: draining,
            components: components
        )
    }
}
