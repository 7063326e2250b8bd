import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// A primary of a real cluster dies (SIGKILL) and its replica is promoted: the client sees the degraded window in
    /// its health, refreshes its slot map by itself and the backends work again on the new primary. History ends the
    /// epoch of the promoted node's streams: the replica may have missed appends the dead primary acknowledged, so a
    /// position from before the failover is `unavailable` rather than read past offsets the new primary may reuse
    /// (ninth probe, H1).
    @Suite(.timeLimit(.minutes(3))) struct RedisClusterFailoverTests {
        @Test func backendsResumeAfterAPrimaryFailsOver() async throws {
            try await withRedisCluster { cluster in
                let client = RedisClient(configuration: cluster.configuration)
                try await client.checkReady()
                let store = RedisConnectionStore(client: client, prefix: "t\(RandomID.hex(bytes: 4)):")
                let limiter = RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):")
                let policy = RateLimitPolicy(name: "fo", limit: 1000, period: .seconds(60))
                let (user, server) = ("busy-\(RandomID.hex(bytes: 3))", ServerID("srv-fo"))
                func record() -> ConnectionRecord { RedisConnectionStoreTests.record(user, server: server) }
                #expect(
                    try await store.register(record(), maxConnectionsPerUser: nil) == .registered(userConnections: 1)
                )
                let history = try RedisHistoryStore(
                    client: client,
                    clusterSecret: Array("failover-cluster-secret-0123456789".utf8),
                    prefix: "t\(RandomID.hex(bytes: 4)):"
                )
                let held = try await history.append(HistoryStoreConformance.event(user, 1))
                // The primary that owns the busy user's slot (the key layout puts all of the user there).
                let primary = try await cluster.primary(serving: "{u:\(user)}")
                primary.stop()
                let killed = ContinuousClock.now

                // The degraded window shows in the client's health (what /health/ready reports).
                #expect(try await eventually(timeout: .seconds(10)) { await client.healthCheck().status != .healthy })
                try await cluster.waitUntilReady(primaries: 3, replicas: 2)
                let promoted = ContinuousClock.now

                // The client was told nothing: it must find the new primary itself. Goal: within 5 s of promotion.
                var resumedAt: ContinuousClock.Instant?
                while ContinuousClock.now < promoted + .seconds(5) {
                    if (try? await store.register(record(), maxConnectionsPerUser: nil)) != nil,
                        (try? await limiter.consume("\(user)", cost: 1, policy: policy)) != nil
                    {
                        resumedAt = ContinuousClock.now
                        break
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
                let resumed = try #require(resumedAt, "the backends did not resume within 5 s of the promotion")
                print(
                    "failover: promotion \(promoted - killed) after the kill, backends resumed \(resumed - promoted) "
                        + "after the promotion"
                )
                #expect(try await eventually(timeout: .seconds(10)) { await client.healthCheck().status == .healthy })
                #expect(try await store.count(.user(user)) >= 1)
                // The user's stream is on the failed-over slot (one hash tag for the user's keys).
                let read = try await history.read(.user(user), after: held, limit: .init())
                guard case .unavailable(.epochChanged, let current) = read else {
                    Issue.record("a position from before the failover read as \(read)")
                    return
                }
                #expect(current.epoch != held.epoch)
                await client.shutdown()
            }
        }
    }
}
