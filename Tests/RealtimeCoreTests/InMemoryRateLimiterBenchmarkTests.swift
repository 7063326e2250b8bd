import RealtimeCore
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Throughput of ``InMemoryRateLimiter`` with 100k live keys. Prints decisions per second and asserts nothing
/// about time. Run it in release:
/// `REALTIME_BENCHMARK=1 swift test -c release --filter InMemoryRateLimiterBenchmarkTests`
@Suite(.enabled(if: getenv("REALTIME_BENCHMARK") != nil)) struct InMemoryRateLimiterBenchmarkTests {
    @Test func decisionsPerSecondWith100kLiveKeys() async throws {
        let limiter = InMemoryRateLimiter()
        // One unit earned every 3.6 s and a huge burst: every key stays live (TAT in the future) and allowed.
        let policy = RateLimitPolicy(name: "benchmark", limit: 1000, period: .seconds(3600), burst: 1_000_000)
        let keys = (0..<100_000).map { "203.0.113.\($0)" }
        for key in keys { _ = try limiter.decide(key, cost: 1, policy: policy) }
        let clock = ContinuousClock()
        let decisions = 5_000_000
        var allowed = 0
        let direct = try clock.measure {
            for index in 0..<decisions
            where try limiter.decide(keys[index % keys.count], cost: 1, policy: policy).allowed {
                allowed += 1
            }
        }
        let existential: any RateLimiter = limiter
        let throughProtocol = try await clock.measure {
            for index in 0..<decisions
            where try await existential.consume(keys[index % keys.count], policy: policy).allowed {
                allowed += 1
            }
        }
        #expect(limiter.keyCount == keys.count)
        #expect(allowed == 2 * decisions)
        print("InMemoryRateLimiter, 100k live keys, one task:")
        print("  decide (synchronous):          \(Int(Double(decisions) / direct.seconds)) decisions/s")
        print("  consume via any RateLimiter:   \(Int(Double(decisions) / throughProtocol.seconds)) decisions/s")
    }
}
