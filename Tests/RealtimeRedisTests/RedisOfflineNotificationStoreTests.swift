import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(2))) struct RedisOfflineNotificationStoreTests {
        static let secret = Array("offline-cluster-secret-0123456789".utf8)

        static func backend(_ client: RedisClient, peer: RedisClient) -> OfflineNotificationStoreConformance.Backend {
            OfflineNotificationStoreConformance.Backend(
                makeStore: { limits, now in
                    try RedisOfflineNotificationStore(
                        client: client,
                        clusterSecret: secret,
                        prefix: "t\(RandomID.hex(bytes: 4)):",
                        limits: limits,
                        now: now
                    )
                },
                makePeer: { store, now in
                    let store = try #require(store as? RedisOfflineNotificationStore)
                    return try RedisOfflineNotificationStore(
                        client: peer,
                        clusterSecret: secret,
                        prefix: store.prefix,
                        limits: store.limits,
                        now: now
                    )
                }
            )
        }

        @Test func conformsToTheOfflineNotificationStoreContract() async throws {
            try await withRedis { configuration, _ in
                let (client, peer) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                try await OfflineNotificationStoreConformance.run(Self.backend(client, peer: peer))
                await client.shutdown()
                await peer.shutdown()
            }
        }

        /// On Redis Cluster every script touches one key, so the contract holds there too; a user's queue shares
        /// the slot of the user's other keys.
        @Test func conformsOnARedisCluster() async throws {
            try await withRedisCluster { cluster in
                let (client, peer) = (
                    RedisClient(configuration: cluster.configuration), RedisClient(configuration: cluster.configuration)
                )
                try await client.checkReady()
                try await OfflineNotificationStoreConformance.run(Self.backend(client, peer: peer))
                let store = try RedisOfflineNotificationStore(client: client, clusterSecret: Self.secret)
                let queueSlot = try await client.send(RedisCommand("CLUSTER", "KEYSLOT", store.queueKey(of: "alice")))
                let userSlot = try await client.send(RedisCommand("CLUSTER", "KEYSLOT", "{u:alice}"))
                #expect(queueSlot == userSlot)
                await client.shutdown()
                await peer.shutdown()
            }
        }

        /// Entries written to Redis by anyone without the cluster secret (forged, or another user's entry moved
        /// into this user's queue) are refused and counted, never delivered; the genuine ones still are. The queue
        /// key expires after the retention.
        @Test func refusesForgedEntriesAndExpiresItsKeys() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                var limits = OfflineNotificationLimits()
                limits.retention = .seconds(60)
                let store = try RedisOfflineNotificationStore(
                    client: client,
                    clusterSecret: Self.secret,
                    prefix: "t\(RandomID.hex(bytes: 4)):",
                    limits: limits
                )
                let bob = OfflineNotificationStoreConformance.notification("bob's", for: "bob")
                _ = try await store.enqueue(bob, for: "bob")
                let bobsEntry = try await client.send(RedisCommand("LINDEX", store.queueKey(of: "bob"), "0"))
                let moved = try #require(bobsEntry.bytes)
                let genuine = OfflineNotificationStoreConformance.notification("genuine", for: "alice")
                _ = try await store.enqueue(genuine, for: "alice")
                let aliceKey = store.queueKey(of: "alice")
                let ttl = try #require(try await client.send(RedisCommand("PTTL", aliceKey)).int)
                #expect(ttl > 0 && ttl <= 60_000, "the queue expires after the retention")
                let future = String(Timestamp.now().millisecondsSinceEpoch + 60_000)
                var forged = RedisCommand("RPUSH", aliceKey)
                forged.append(bytes: moved)
                forged.append("\(future) abcdef " + String(repeating: "0", count: 64) + "forged")
                forged.append("garbage")
                _ = try await client.send(forged)
                #expect(try await store.take(for: "alice") == [genuine])
                #expect(store.refusedEntryCount == 3)
                #expect(await store.healthCheck().details["refusedEntries"] == 3)
                #expect(try await store.take(for: "bob") == [bob])
                await client.shutdown()
            }
        }
    }
}
