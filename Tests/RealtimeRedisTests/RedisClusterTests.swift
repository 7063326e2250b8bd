import NIOCore
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// Every Redis backend on a real six-node Redis Cluster (three primaries, three replicas) started once for the
    /// suite's main test, plus the cluster client's own behaviours (routing, redirects, start-up errors).
    @Suite(.timeLimit(.minutes(5))) struct RedisClusterTests {
        static let secret = Array("cluster-secret-for-tests-0123456789".utf8)
        static let time = ConformanceTime.realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))

        @Test func everyBackendConformsOnACluster() async throws {
            try await withRedisCluster { cluster in
                let configuration = cluster.configuration
                let client = RedisClient(configuration: configuration)
                let peer = RedisClient(configuration: configuration)
                try await client.checkReady()
                #expect(client.isCluster)
                #expect(await client.healthCheck().status == .healthy)

                // The client's slot function agrees with the server's, hash tags included.
                for key in ["foo", "bar", "rthub:cs:{u:alice}", "{u:alice}", "a{b}c", "x{}y", "é{{z}}", "123456789"] {
                    let slot = try await client.send(RedisCommand("CLUSTER", "KEYSLOT", key)).int
                    let node = try await cluster.primary(serving: key)
                    _ = try await client.send(RedisCommand("SET", key, "v"))
                    let local = try await cluster.send(RedisCommand("GET", key), to: node)
                    #expect(local.string == "v", "\(key) (slot \(slot ?? -1)) is stored on its slot's primary")
                }

                try await Self.runConformance(on: cluster, client: client, peer: peer)
                await client.shutdown()
                await peer.shutdown()
            }
        }

        /// Every backend's conformance suite (connection store, session store, rate limiter, event bus, history
        /// store), history recorded by publishing, and `ASK`/`MOVED` during a slot migration, on `cluster` through
        /// `client` (and `peer`, another server's client). Shared by the plain and the TLS cluster tests.
        static func runConformance(on cluster: RedisTestCluster, client: RedisClient, peer: RedisClient) async throws {
            let configuration = cluster.configuration
            try await runBackendConformance(client: client, configuration: configuration)
            do {
                var primaryNodes: [RedisTestServer] = []
                for node in cluster.nodes where try await cluster.role(of: node).primary { primaryNodes.append(node) }
                let primaries = primaryNodes.map { RedisClient(configuration: $0.configuration) }
                try await HistoryStoreConformance.run(
                    HistoryStoreConformance.Backend(
                        makeStore: { historyConfiguration, now in
                            try RedisHistoryStore(
                                client: client,
                                clusterSecret: Self.secret,
                                prefix: "t\(RandomID.hex(bytes: 4)):",
                                configuration: historyConfiguration,
                                now: now
                            )
                        },
                        makePeer: { store, now in
                            let store = try #require(store as? RedisHistoryStore)
                            return try RedisHistoryStore(
                                client: peer,
                                clusterSecret: Self.secret,
                                prefix: store.prefix,
                                configuration: store.configuration,
                                now: now
                            )
                        },
                        loseHistory: { store in
                            let store = try #require(store as? RedisHistoryStore)
                            try await RedisHistoryStoreTests.deleteKeys(
                                prefix: store.prefix,
                                on: client,
                                scanning: primaries
                            )
                            return store
                        },
                        time: Self.time
                    )
                )

                // Publishing through the bus records in history on the cluster too (each route on its own slot).
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let servers = try [client, peer].map { serverClient in
                    (
                        bus: try RedisEventBus(client: serverClient, clusterSecret: Self.secret, prefix: prefix)
                            as any EventBus,
                        store: try RedisHistoryStore(client: serverClient, clusterSecret: Self.secret, prefix: prefix)
                            as any HistoryStore
                    )
                }
                let subscriberClient = RedisClient(configuration: configuration)
                let subscriber = try RedisEventBus(client: subscriberClient, clusterSecret: Self.secret, prefix: prefix)
                try await HistoryStoreConformance.publishingKeepsOffsetOrder(servers: servers, subscriber: subscriber)

                try await Self.followsAskAndMovedDuringASlotMigration(cluster: cluster, client: client)

                for primary in primaries { await primary.shutdown() }
                await subscriberClient.shutdown()
            }
        }

        /// Migrates one slot by hand (the steps `redis-cli --cluster reshard` takes) while the client keeps its old
        /// slot map: a key not yet moved is served by the old owner, a new key gets `ASK` and is written on the
        /// importing node, then every command gets `MOVED` and follows it, scripts included (`NOSCRIPT` there).
        static func followsAskAndMovedDuringASlotMigration(
            cluster: RedisTestCluster,
            client: RedisClient
        ) async throws {
            let tag = "{mig:\(RandomID.hex(bytes: 4))}"
            let (old, new) = ("\(tag)old", "\(tag)new")
            let limiter = RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):\(tag)")
            // An hour's period: no token comes back while the migration runs (a TLS cluster's steps take longer).
            let policy = RateLimitPolicy(name: "mig", limit: 100, period: .seconds(3600))
            _ = try await client.send(RedisCommand("SET", old, "1"))
            #expect(try await limiter.consume("k", cost: 1, policy: policy).allowed)
            let slot = try #require(try await client.send(RedisCommand("CLUSTER", "KEYSLOT", old)).int)
            let source = try await cluster.primary(serving: old)
            var target: RedisTestServer?
            for node in cluster.nodes where node.port != source.port {
                if try await cluster.role(of: node).primary { target = node }
            }
            let destination = try #require(target)
            let sourceID = try #require(try await cluster.send(RedisCommand("CLUSTER", "MYID"), to: source).string)
            let destinationID = try #require(
                try await cluster.send(RedisCommand("CLUSTER", "MYID"), to: destination).string
            )
            let slotText = String(slot)
            _ = try await cluster.send(
                RedisCommand("CLUSTER", "SETSLOT", slotText, "IMPORTING", sourceID),
                to: destination
            )
            _ = try await cluster.send(
                RedisCommand("CLUSTER", "SETSLOT", slotText, "MIGRATING", destinationID),
                to: source
            )

            // Mid-migration: the old key is still on the source; a new one is created on the destination (ASK).
            #expect(try await client.send(RedisCommand("GET", old)).string == "1")
            _ = try await client.send(RedisCommand("SET", new, "2"))
            // (The source answers ASK for a key it lacks: the SET above succeeded only by following it.)
            #expect(try await client.send(RedisCommand("GET", new)).string == "2")

            // The rest moves, and the slot is handed over: every node learns the new owner.
            var keys: [String] = []
            let listed = try await cluster.send(RedisCommand("CLUSTER", "GETKEYSINSLOT", slotText, "100"), to: source)
            for key in listed.array ?? [] { keys.append(try #require(key.string)) }
            if !keys.isEmpty {
                _ = try await cluster.send(
                    RedisCommand(
                        ["MIGRATE", "127.0.0.1", String(destination.port), "", "0", "5000", "KEYS"] + keys
                    ),
                    to: source
                )
            }
            for node in cluster.nodes where try await cluster.role(of: node).primary {
                _ = try await cluster.send(
                    RedisCommand("CLUSTER", "SETSLOT", slotText, "NODE", destinationID),
                    to: node
                )
            }

            // The client's map still says source: MOVED, followed; a script runs there after NOSCRIPT.
            #expect(try await client.send(RedisCommand("GET", old)).string == "1")
            #expect(try await client.send(RedisCommand("GET", new)).string == "2")
            #expect(try await limiter.consume("k", cost: 1, policy: policy).remaining == 98)
            #expect(
                try await client.pipeline([RedisCommand("GET", old), RedisCommand("GET", new)]) == [
                    .bulkString(ByteBuffer(string: "1")), .bulkString(ByteBuffer(string: "2")),
                ]
            )
        }
    }
}
