import Logging
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Synchronization
import Testing

/// Hubs sharing one Redis, each with its own Redis client and backends, as separate servers of one cluster would.
final class RedisHubCluster: Sendable {
    static let secret = Array("cluster-secret-for-tests-0123456789".utf8)

    let tokens = HubClusterScenarios.tokens()
    let redis: RedisConfiguration
    let prefix = "hub\(RandomID.hex(bytes: 4)):"
    let clients = ClientList()
    /// A client and a store of the test itself, to look at the registry.
    let client: RedisClient
    let store: RedisConnectionStore
    /// What each hub's `RedisHistoryStore` keeps; `nil`: the hubs keep no history.
    let history: HistoryConfiguration?
    /// What each hub's `RedisOfflineNotificationStore` keeps; `nil`: the hubs keep no offline notifications.
    let offlineNotifications: OfflineNotificationLimits?

    init(
        _ configuration: RedisConfiguration,
        history: HistoryConfiguration? = nil,
        offlineNotifications: OfflineNotificationLimits? = nil
    ) {
        var redis = configuration
        // Quick recovery after a restart, so waits for it stay short.
        redis.initialReconnectDelay = .milliseconds(20)
        redis.maximumReconnectDelay = .milliseconds(200)
        self.redis = redis
        client = RedisClient(configuration: redis)
        store = RedisConnectionStore(client: client, prefix: prefix)
        self.history = history
        self.offlineNotifications = offlineNotifications
        tokens.add("carol-no-session", VerifiedIdentity(userID: "carol"))
    }

    /// A hub on Redis backends with its own client. Registry heartbeats every 100 ms (the run loop's tick follows
    /// them), so purges and re-registration happen within a test.
    ///
    /// `wrapStore` wraps the hub's connection store (e.g. in a `PausingConnectionStore`).
    func hub(
        _ adjust: (inout HubConfiguration) -> Void = { _ in },
        redis adjustRedis: (inout RedisConfiguration) -> Void = { _ in },
        wrapStore: (RedisConnectionStore) -> any ConnectionStore = { $0 }
    ) throws -> RealtimeHub {
        var logger = Logger(label: "realtime-hub-test")
        logger.logLevel = .critical
        return try RealtimeHub(
            configuration: HubConfiguration.testing {
                Self.configure(&$0)
                adjust(&$0)
            },
            backends: try backends(tokenVerifier: tokens, redis: adjustRedis, wrapStore: wrapStore),
            logger: logger
        )
    }

    /// What every hub of these tests runs with.
    static func configure(_ configuration: inout HubConfiguration) {
        configuration.serverHeartbeatInterval = .milliseconds(100)
        configuration.limits.outboundQueueFrames = 5000
    }

    /// The Redis backends of one more server, with a client of its own.
    func backends(
        tokenVerifier: any TokenVerifier,
        redis adjustRedis: (inout RedisConfiguration) -> Void = { _ in },
        wrapStore: (RedisConnectionStore) -> any ConnectionStore = { $0 }
    ) throws -> HubBackends {
        var redis = self.redis
        adjustRedis(&redis)
        var quiet = Logger(label: "realtime-redis-test")
        quiet.logLevel = .critical
        let client = RedisClient(configuration: redis, logger: quiet)
        clients.append(client)
        return HubBackends(
            tokenVerifier: tokenVerifier,
            connectionStore: wrapStore(RedisConnectionStore(client: client, prefix: prefix)),
            eventBus: try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix),
            rateLimiter: RedisRateLimiter(client: client, prefix: prefix),
            sessionStore: RedisSessionStore(client: client, prefix: prefix),
            historyStore: try history.map {
                try RedisHistoryStore(client: client, clusterSecret: Self.secret, prefix: prefix, configuration: $0)
            },
            offlineNotifications: try offlineNotifications.map {
                try RedisOfflineNotificationStore(
                    client: client,
                    clusterSecret: Self.secret,
                    prefix: prefix,
                    limits: $0
                )
            }
        )
    }

    /// This cluster for `HubClusterScenarios`.
    var scenarioCluster: HubClusterScenarios.Cluster {
        HubClusterScenarios.Cluster(
            makeBackends: { tokens in try self.backends(tokenVerifier: tokens) },
            registry: store,
            configure: { Self.configure(&$0) },
            shutdown: { await self.shutdown() }
        )
    }

    /// Whether every hub's client lost Redis.
    var allDisconnected: Bool { clients.all.allSatisfy { !$0.isConnected } }

    func shutdown() async {
        for client in clients.all { await client.shutdown() }
        await client.shutdown()
    }
}

/// The next event whose data carries `marker`, skipping everything else.
private func event(marked marker: String, on client: TestClient) async throws -> JSONValue {
    while true {
        let event = try await client.next(type: "event")
        if event["payload"]?["data"]?["marker"]?.stringValue == marker { return event }
    }
}

extension RedisIntegrationTests {
    /// Redis-only cluster scenarios (the shared ones run in `RedisClusterScenarioTests`), and what hubs do when Redis
    /// fails.
    @Suite(.timeLimit(.minutes(1))) struct HubOnRedisTests {
        @Test func theLimitPerUserHoldsAcrossServers() async throws {
            try await withRedis { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                let hubA = try cluster.hub { $0.maxConnectionsPerUser = 2 }
                let hubB = try cluster.hub { $0.maxConnectionsPerUser = 2 }
                try await hubA.running {
                    try await hubB.running {
                        let onA = try await hubA.connectClient(token: "alice-token")
                        _ = try await hubB.connectClient(token: "alice-other-session")
                        for hub in [hubA, hubB] {
                            let refused = await hub.rejection(uri: "/ws/events?token=alice-token-2")
                            #expect(refused?.status == 429)
                            #expect(refused?.code == "too_many_connections")
                        }
                        #expect(try await cluster.store.count(.user("alice")) == 2)
                        // Concurrent attempts on both servers never admit more than the limit.
                        await onA.close()
                        #expect(try await eventually { try await cluster.store.count(.user("alice")) == 1 })
                        let admitted = await withTaskGroup(of: Bool.self) { group in
                            for index in 0..<6 {
                                group.addTask {
                                    let hub = index % 2 == 0 ? hubA : hubB
                                    return await hub.rejection(uri: "/ws/events?token=alice-token-2") == nil
                                }
                            }
                            return await group.reduce(0) { $0 + ($1 ? 1 : 0) }
                        }
                        #expect(admitted == 1)
                        #expect(try await cluster.store.count(.user("alice")) == 2)
                    }
                }
                await cluster.shutdown()
            }
        }

        @Test func globalStatsCountEveryServerAndStayFresh() async throws {
            try await withRedis { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                let hubA = try cluster.hub()
                let hubB = try cluster.hub()
                try await hubA.running {
                    try await hubB.running {
                        _ = try await hubA.connectClient(token: "alice-token")
                        _ = try await hubA.connectClient(token: "bob-token")
                        _ = try await hubB.connectClient(token: "admin-token", path: "/ws/admin")
                        // Connection counts per server arrive with the next registry heartbeat (every 100 ms).
                        #expect(
                            try await eventually {
                                let global = await hubB.stats().global
                                return global.totalServers == 2 && global.totalConnections == 3
                                    && Set(global.servers.map(\.connections)) == [2, 1]
                            }
                        )
                        // Heartbeats keep coming: every server's registry record is renewed, twice (waited for,
                        // not timed). A server that stopped heartbeating would never renew it.
                        var renewed: [ServerID: Timestamp] = [:]
                        for record in try await cluster.store.servers() { renewed[record.id] = record.lastHeartbeat }
                        for _ in 0..<2 {
                            let previous = renewed
                            #expect(
                                try await eventually {
                                    let records = try await cluster.store.servers()
                                    let all =
                                        records.count == 2
                                        && records.allSatisfy { record in
                                            previous[record.id].map { record.lastHeartbeat > $0 } ?? false
                                        }
                                    if all { for record in records { renewed[record.id] = record.lastHeartbeat } }
                                    return all
                                }
                            )
                        }
                        for hub in [hubA, hubB] {
                            let stats = await hub.stats()
                            #expect(stats.global.error == nil)
                            #expect(
                                Set(stats.global.servers.map(\.serverID)) == [hubA.serverID, hubB.serverID]
                            )
                            for server in stats.global.servers {
                                #expect(server.lastReportAge >= .zero)
                                // The stats report a heartbeat at least as recent as the last renewal seen above.
                                let renewal = try #require(renewed[server.serverID])
                                #expect(server.lastReportAge <= Timestamp.now() - renewal + .milliseconds(1))
                            }
                            let json = stats.jsonObject
                            #expect(json["global"]?["totalServers"] == 2)
                            #expect(json["global"]?["totalConnections"] == 3)
                        }
                    }
                }
                await cluster.shutdown()
            }
        }

        // MARK: When Redis fails

        @Test func redisDownKeepsClientsAndLocalDeliveryThenEverythingRecovers() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                let cluster = RedisHubCluster(configuration)
                let strictIP = RateLimitPolicy(name: "conn-ip-strict", limit: 3, period: .seconds(60))
                let hubA = try cluster.hub { $0.rateLimits.connectionsPerIP = strictIP }
                let hubB = try cluster.hub()
                try await hubA.running {
                    try await hubB.running {
                        let alice = try await hubA.connectClient(token: "alice-token", address: "192.0.2.1")
                        let bob = try await hubB.connectClient(token: "bob-token")
                        try await alice.subscribe(["*"])
                        try await bob.subscribe(["*"])
                        try await hubA.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "bob",
                            data: ["marker": "before"]
                        )
                        _ = try await event(marked: "before", on: bob)

                        let stoppedAt = Timestamp.now()
                        server.stop()
                        #expect(try await eventually { cluster.allDisconnected })

                        // Clients stay connected and local delivery goes on.
                        #expect(try await alice.drainUntilPong().isEmpty)
                        #expect(try await bob.drainUntilPong().isEmpty)
                        let receipt = try await hubA.publish(
                            RealtimeEvent(
                                type: .systemMaintenanceScheduled,
                                data: ["marker": "during"],
                                scope: .everyone
                            )
                        )
                        #expect(receipt.localDeliveries == 1)
                        _ = try await event(marked: "during", on: alice)

                        // Health: unhealthy (registry and bus down), the rate limiter degraded on its fallback.
                        let health = await hubA.healthCheck()
                        #expect(!health.healthy)
                        #expect(health.status == .unhealthy)
                        #expect(health.components["connectionStore"]?.status == .unhealthy)
                        #expect(health.components["eventBus"]?.status == .unhealthy)
                        #expect(health.components["sessionStore"]?.status == .unhealthy)

                        // Upgrades fail with 503 (fail closed: the session check and the cluster-wide per-user
                        // limit need Redis), with a Retry-After; the per-IP limit still holds, locally.
                        for token in ["alice-token-2", "carol-no-session", "admin-token"] {
                            let refused = await hubA.rejection(uri: "/ws/events?token=\(token)", address: "192.0.2.9")
                            #expect(refused?.status == 503)
                            #expect(refused?.code == "backend_unavailable")
                            #expect(refused?.retryAfter == .seconds(2))
                        }
                        let limited = await hubA.rejection(
                            uri: "/ws/events?token=carol-no-session",
                            address: "192.0.2.9"
                        )
                        #expect(limited?.status == 429)
                        #expect(limited?.code == "rate_limited")
                        let limiter = try #require(health.components["rateLimiter"])
                        #expect(limiter.status == .degraded)
                        // At least the four per-IP decisions came from the fallback (a token without a session
                        // also spends its user's budget there).
                        let fallbackDecisions = await hubA.healthCheck().components["rateLimiter"]?
                            .details["fallbackDecisions"]?.intValue
                        #expect((fallbackDecisions ?? 0) >= 4)

                        // Redis comes back empty (no persistence).
                        let relaunchedAt = Timestamp.now()
                        try await server.launch()
                        for client in [alice, bob] {
                            let gap = try await client.next(type: "gap")
                            let from = try #require(gap["payload"]?["from"]?.stringValue)
                            let to = try #require(gap["payload"]?["to"]?.stringValue)
                            // ISO 8601 with milliseconds in UTC: the strings order like the instants.
                            #expect(from >= (stoppedAt - .milliseconds(1)).iso8601)
                            #expect(from <= relaunchedAt.iso8601)
                            #expect(to >= relaunchedAt.iso8601)
                        }
                        // Each hub writes its registrations again on its next registry heartbeat.
                        // (The test's own client reconnects with backoff too: until it does, "not yet".)
                        #expect(
                            try await eventually {
                                let onA = try? await cluster.store.count(.server(hubA.serverID))
                                let onB = try? await cluster.store.count(.server(hubB.serverID))
                                let ofAlice = try? await cluster.store.count(.user("alice"))
                                return onA == 1 && onB == 1 && ofAlice == 1
                            }
                        )
                        // Cross-server delivery resumes, both ways.
                        try await hubA.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "bob",
                            data: ["marker": "after-a"]
                        )
                        _ = try await event(marked: "after-a", on: bob)
                        try await hubB.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "alice",
                            data: ["marker": "after-b"]
                        )
                        _ = try await event(marked: "after-b", on: alice)
                        // Upgrades work again, and decisions come from Redis again.
                        _ = try await hubA.connectClient(token: "alice-token-2", address: "192.0.2.10")
                        #expect(try await eventually { await hubA.healthCheck().status == .healthy })
                        #expect(try await eventually { await hubB.healthCheck().status == .healthy })
                    }
                }
                await cluster.shutdown()
            }
        }

        @Test func killedPubSubConnectionsTellClientsOfTheGapAndDeliveryResumes() async throws {
            try await withRedis { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                let hubA = try cluster.hub()
                let hubB = try cluster.hub()
                try await hubA.running {
                    try await hubB.running {
                        let alice = try await hubA.connectClient(token: "alice-token")
                        let bob = try await hubB.connectClient(token: "bob-token")
                        try await alice.subscribe(["authentication.*"])
                        try await bob.subscribe(["authentication.*"])
                        let before = Timestamp.now()
                        _ = try await cluster.client.send(RedisCommand("CLIENT", "KILL", "TYPE", "pubsub"))
                        for client in [alice, bob] {
                            let gap = try await client.next(type: "gap")
                            let from = try #require(gap["payload"]?["from"]?.stringValue)
                            let to = try #require(gap["payload"]?["to"]?.stringValue)
                            #expect(from >= (before - .milliseconds(1)).iso8601)
                            #expect(to >= from)
                        }
                        try await hubA.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "bob",
                            data: ["marker": "after-kill-a"]
                        )
                        _ = try await event(marked: "after-kill-a", on: bob)
                        try await hubB.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "alice",
                            data: ["marker": "after-kill-b"]
                        )
                        _ = try await event(marked: "after-kill-b", on: alice)
                        #expect(await hubA.stats().server.gaps == 1)
                    }
                }
                await cluster.shutdown()
            }
        }

        /// Fuzz (third round): server B, cut off from Redis's pub/sub while a session was revoked through A, never
        /// closed the session's socket. The revocation is in the store; the gap makes B check again.
        @Test func aRevocationMissedDuringABusOutageClosesTheSocketsAfterTheGap() async throws {
            try await withRedis { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                let hubB = try cluster.hub()
                try await hubB.running {
                    let alice = try await hubB.connectClient(token: "alice-token")
                    let bob = try await hubB.connectClient(token: "bob-token")
                    // What A wrote while B's subscriber was gone: the store has it, B's bus never delivered it.
                    let sessions = RedisSessionStore(client: cluster.client, prefix: cluster.prefix)
                    #expect(try await sessions.revoke("s-alice", retainUntil: .now() + .seconds(3600)))
                    _ = try await cluster.client.send(RedisCommand("CLIENT", "KILL", "TYPE", "pubsub"))
                    #expect(try await alice.nextClose().0 == .sessionRevoked)
                    let messages = try await bob.drainUntilPong()
                    #expect(messages.contains { $0["type"] == "gap" }, "bob stays, told of the gap")
                    await bob.close()
                }
                await cluster.shutdown()
            }
        }

        @Test func aSleepingRedisHangsNeitherPublishesNorUpgrades() async throws {
            try await withRedis(ownServer: true) { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                let commandTimeout = Duration.milliseconds(300)
                let hubA = try cluster.hub(redis: { $0.commandTimeout = commandTimeout })
                let hubB = try cluster.hub(redis: { $0.commandTimeout = commandTimeout })
                var slow = cluster.redis
                slow.commandTimeout = .seconds(10)
                let admin = RedisClient(configuration: slow)
                try await hubA.running {
                    try await hubB.running {
                        let alice = try await hubA.connectClient(token: "alice-token")
                        let bob = try await hubB.connectClient(token: "bob-token")
                        try await alice.subscribe(["*"])
                        try await bob.subscribe(["*"])
                        // Redis answers no client for 2000 ms; `awake` is set once it answers again.
                        let (awake, watcher) = try await pauseRedis(admin, milliseconds: 2000)

                        // A publish returns without waiting for Redis: its PUBLISH times out and is queued.
                        let receipt = try await hubA.publish(
                            RealtimeEvent(
                                type: .systemMaintenanceScheduled,
                                data: ["marker": "asleep"],
                                scope: .everyone
                            )
                        )
                        #expect(!awake.isSet, "the publish waited for Redis")
                        #expect(receipt.localDeliveries == 1)
                        _ = try await event(marked: "asleep", on: alice)

                        // An upgrade is decided on command timeouts: the IP limit falls back to the local limiter
                        // on its timeout, then the session check times out: 503.
                        let refused = await hubA.rejection(uri: "/ws/events?token=alice-token-2")
                        #expect(refused?.status == 503)
                        #expect(refused?.code == "backend_unavailable")
                        // All of this happened while Redis was still paused.
                        #expect(!awake.isSet, "the upgrade was decided only after Redis answered")

                        await watcher.value
                        // The queued publish reaches the other server once Redis answers again.
                        _ = try await event(marked: "asleep", on: bob)
                        try await hubB.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "alice",
                            data: ["marker": "awake"]
                        )
                        _ = try await event(marked: "awake", on: alice)
                        _ = try await hubA.connectClient(token: "alice-token-2")
                    }
                }
                await admin.shutdown()
                await cluster.shutdown()
            }
        }
    }
}
