import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(1))) struct RedisRateLimiterTests {
        @Test func conformsToTheRateLimiterContract() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                try await RateLimiterConformance.run(
                    makeLimiter: { RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):") },
                    time: .realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))
                )
                await client.shutdown()
            }
        }

        @Test func twoServersShareOneBudget() async throws {
            try await withRedis { configuration, _ in
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let limiterA = RedisRateLimiter(client: clientA, prefix: prefix)
                let limiterB = RedisRateLimiter(client: clientB, prefix: prefix)
                let policy = RateLimitPolicy(name: "connect-ip", limit: 4, period: .seconds(3600))
                var allowed = 0
                for index in 0..<10 {
                    let limiter = index.isMultiple(of: 2) ? limiterA : limiterB
                    if try await limiter.consume("192.0.2.7", policy: policy).allowed { allowed += 1 }
                }
                #expect(allowed == 4)
                // Idle keys are forgotten: the key expires when its budget would be full again.
                let ttl = try await clientA.send(RedisCommand("PTTL", "\(prefix)rl:10:connect-ip:192.0.2.7")).int ?? -1
                #expect(ttl > 3_500_000 && ttl <= 3_600_000)
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func reloadsTheScriptAfterNOSCRIPT() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let limiter = RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):")
                let policy = RateLimitPolicy(name: "p", limit: 3, period: .seconds(60))
                #expect(try await limiter.consume("k", policy: policy).remaining == 2)
                _ = try await client.send(RedisCommand("SCRIPT", "FLUSH"))
                #expect(try await limiter.consume("k", policy: policy).remaining == 1)
                #expect(await limiter.healthCheck().status == .healthy)
                await client.shutdown()
            }
        }

        @Test func fallsBackToTheLocalLimiterWhileRedisIsDown() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                var configuration = configuration
                configuration.maximumReconnectDelay = .milliseconds(200)
                let client = RedisClient(configuration: configuration)
                let limiter = RedisRateLimiter(client: client, prefix: "t:")
                let policy = RateLimitPolicy(name: "p", limit: 2, period: .seconds(60))
                #expect(try await limiter.consume("k", policy: policy).allowed)
                server.stop()
                #expect(try await eventually { !client.isConnected })
                // The local limiter knows nothing of Redis's budget: it enforces the limit alone.
                #expect(try await limiter.consume("k", policy: policy).allowed)
                #expect(try await limiter.consume("k", policy: policy).allowed)
                #expect(try await !limiter.consume("k", policy: policy).allowed)
                let degraded = await limiter.healthCheck()
                #expect(degraded.status == .degraded)
                #expect(degraded.details["fallbackDecisions"] == .int(3))
                try await server.launch()
                // A fresh Redis (no saved data): once it answers again, decisions come from it and its budget has
                // started over. Healthy right after an allowed decision means that decision came from Redis (a
                // fallback decision marks the limiter degraded); `isConnected` alone would race with a decision
                // taken locally just before a connection came back.
                #expect(
                    try await eventually {
                        let allowed = (try? await limiter.consume("k2", policy: policy).allowed) == true
                        let health = await limiter.healthCheck()
                        return allowed && health.status == .healthy
                    }
                )
                await client.shutdown()
            }
        }
    }
}
