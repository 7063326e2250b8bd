import RealtimeCore
import RealtimeTesting
import Testing

/// The backend conformance suites, run against the in-memory backends on a manual clock.
@Suite(.timeLimit(.minutes(1))) struct InMemoryBackendTests {
    @Test func connectionStoreConforms() async throws {
        let clock = ManualClock()
        try await ConnectionStoreConformance.run(
            makeStore: { InMemoryConnectionStore(now: clock.timestampSource) },
            time: .manual(clock)
        )
    }

    @Test func eventBusConforms() async throws {
        try await EventBusConformance.run(makeCluster: { count in
            let bus = InMemoryEventBus()
            return Array(repeating: bus, count: count)
        })
    }

    @Test func rateLimiterConforms() async throws {
        let clock = ManualClock()
        try await RateLimiterConformance.run(
            makeLimiter: { InMemoryRateLimiter(clock: clock) },
            time: .manual(clock)
        )
    }

    @Test func rateLimiterConformsWithOneShardAndFewKeys() async throws {
        let clock = ManualClock()
        try await RateLimiterConformance.run(
            makeLimiter: { InMemoryRateLimiter(clock: clock, maxKeys: 64, shardCount: 1) },
            time: .manual(clock)
        )
    }

    @Test func sessionStoreConforms() async throws {
        let clock = ManualClock()
        try await SessionStoreConformance.run(
            makeStore: { mode in InMemorySessionStore(mode: mode, now: clock.timestampSource) },
            time: .manual(clock)
        )
    }

    /// The suites' real-time mode (what a Redis backend uses), checked against the in-memory backends on the
    /// system clocks.
    @Test func suitesWorkInRealTime() async throws {
        let time = ConformanceTime.realTime(ttl: .milliseconds(300), tolerance: .milliseconds(100))
        async let connections: Void = ConnectionStoreConformance.run(
            makeStore: { InMemoryConnectionStore() },
            time: time
        )
        async let limiter: Void = RateLimiterConformance.run(makeLimiter: { InMemoryRateLimiter() }, time: time)
        async let sessions: Void = SessionStoreConformance.run(
            makeStore: { mode in InMemorySessionStore(mode: mode) },
            time: time
        )
        _ = try await (connections, limiter, sessions)
    }
}
