public import RealtimeCore
import Testing

/// Checks that a `RateLimiter` implements GCRA as `RateLimitPolicy` describes.
///
/// `time.advance` must move the limiter's clock (a ``ManualClock`` passed to `InMemoryRateLimiter`, or real
/// sleeps for a server-side limiter); durations are compared within `time.tolerance`. The suite uses
/// emission intervals of `time.ttl` (refill checks) and random policy names, so limiters sharing a server
/// never share a budget.
public enum RateLimiterConformance: Sendable {
    /// A factory of limiters.
    public typealias MakeLimiter = @Sendable () async throws -> any RateLimiter

    /// Runs every check, each on a new limiter.
    public static func run(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        try await allowsBurstThenRefuses(makeLimiter: makeLimiter, time: time)
        try await refillsOverTime(makeLimiter: makeLimiter, time: time)
        try await chargesCost(makeLimiter: makeLimiter, time: time)
        try await isolatesKeysAndPolicies(makeLimiter: makeLimiter, time: time)
        try await resetRestoresBurst(makeLimiter: makeLimiter, time: time)
        try await neverOverAdmitsUnderConcurrency(makeLimiter: makeLimiter, time: time)
    }

    /// A policy earning one unit every `interval`, with a burst of `burst`.
    static func policy(interval: Duration, burst: Int) -> RateLimitPolicy {
        RateLimitPolicy(name: uniqueName("policy"), limit: 10, period: interval * 10, burst: burst)
    }

    static func expectClose(
        _ actual: Duration,
        _ expected: Duration,
        _ time: ConformanceTime,
        _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let difference = actual > expected ? actual - expected : expected - actual
        #expect(
            difference <= time.tolerance,
            "\(what): \(actual) is not within \(time.tolerance) of \(expected)",
            sourceLocation: sourceLocation
        )
    }

    /// A fresh key spends its burst back to back with exact `remaining`/`resetAfter`, and is then refused
    /// with the `retryAfter` of one emission interval.
    public static func allowsBurstThenRefuses(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let interval = time.ttl * 4
        let policy = policy(interval: interval, burst: 5)
        let key = uniqueName("key")
        for spent in 1...5 {
            let decision = try await limiter.consume(key, policy: policy)
            #expect(decision.allowed)
            #expect(decision.remaining == 5 - spent)
            #expect(decision.retryAfter == .zero)
            expectClose(decision.resetAfter, interval * spent, time, "resetAfter after \(spent)")
        }
        let refused = try await limiter.consume(key, policy: policy)
        #expect(!refused.allowed)
        #expect(refused.remaining == 0)
        expectClose(refused.retryAfter, interval, time, "retryAfter")
        expectClose(refused.resetAfter, interval * 5, time, "resetAfter when refused")
        // A refusal spends nothing.
        let again = try await limiter.consume(key, policy: policy)
        #expect(!again.allowed)
        expectClose(again.resetAfter, interval * 5, time, "resetAfter after two refusals")
    }

    /// One unit comes back per emission interval, up to the burst.
    public static func refillsOverTime(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let interval = time.ttl
        let policy = policy(interval: interval, burst: 3)
        let key = uniqueName("key")
        for _ in 0..<3 { #expect(try await limiter.consume(key, policy: policy).allowed) }
        #expect(try await !limiter.consume(key, policy: policy).allowed)

        _ = time.stalledSinceLastCheck("")
        try await time.advance(interval + time.tolerance)
        let refilled = try await limiter.consume(key, policy: policy)
        #expect(refilled.allowed)
        let again = try await limiter.consume(key, policy: policy)
        if !time.stalledSinceLastCheck("one unit refilled after one interval") {
            #expect(refilled.remaining == 0)
            #expect(!again.allowed)
        }

        // Idle for far longer than the burst takes to refill: exactly the burst, not more.
        try await time.advance(interval * 6)
        for spent in 1...3 {
            let decision = try await limiter.consume(key, policy: policy)
            #expect(decision.allowed)
            #expect(decision.remaining == 3 - spent)
        }
        #expect(try await !limiter.consume(key, policy: policy).allowed)
    }

    /// A cost of `n` spends `n` units; a cost that does not fit spends nothing; a cost above the burst is
    /// never allowed (refused or thrown as `RealtimeError.Code.invalidArgument`).
    public static func chargesCost(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let interval = time.ttl * 4
        let policy = policy(interval: interval, burst: 5)
        let key = uniqueName("key")
        let first = try await limiter.consume(key, cost: 3, policy: policy)
        #expect(first.allowed)
        #expect(first.remaining == 2)
        expectClose(first.resetAfter, interval * 3, time, "resetAfter after cost 3")

        let tooMuch = try await limiter.consume(key, cost: 3, policy: policy)
        #expect(!tooMuch.allowed)
        #expect(tooMuch.remaining == 2)
        expectClose(tooMuch.retryAfter, interval, time, "retryAfter for cost 3 with 2 left")

        let fits = try await limiter.consume(key, cost: 2, policy: policy)
        #expect(fits.allowed)
        #expect(fits.remaining == 0)

        do {
            let overBurst = try await limiter.consume(uniqueName("key"), cost: 6, policy: policy)
            #expect(!overBurst.allowed, "a cost above the burst can never be allowed")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    /// Keys never share a budget, nor do policies of different names.
    public static func isolatesKeysAndPolicies(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let policyA = policy(interval: time.ttl * 4, burst: 2)
        var policyB = policyA
        policyB.name = uniqueName("policy")
        let (key, other) = (uniqueName("key"), uniqueName("key"))
        for _ in 0..<2 { #expect(try await limiter.consume(key, policy: policyA).allowed) }
        #expect(try await !limiter.consume(key, policy: policyA).allowed)
        #expect(try await limiter.consume(other, policy: policyA).remaining == 1)
        #expect(try await limiter.consume(key, policy: policyB).remaining == 1)
    }

    /// `RateLimiter.reset(_:policy:)` gives the key its full burst back, and only that key.
    public static func resetRestoresBurst(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let policy = policy(interval: time.ttl * 4, burst: 3)
        let (key, other) = (uniqueName("key"), uniqueName("key"))
        for _ in 0..<3 {
            _ = try await limiter.consume(key, policy: policy)
            _ = try await limiter.consume(other, policy: policy)
        }
        #expect(try await !limiter.consume(key, policy: policy).allowed)
        try await limiter.reset(key, policy: policy)
        let fresh = try await limiter.consume(key, policy: policy)
        #expect(fresh.allowed)
        #expect(fresh.remaining == 2)
        #expect(try await !limiter.consume(other, policy: policy).allowed)
        try await limiter.reset(uniqueName("never-seen"), policy: policy)
    }

    /// 200 concurrent requests against a burst of 20 admit exactly 20.
    public static func neverOverAdmitsUnderConcurrency(makeLimiter: MakeLimiter, time: ConformanceTime) async throws {
        let limiter = try await makeLimiter()
        let policy = RateLimitPolicy(name: uniqueName("policy"), limit: 20, period: .seconds(3600), burst: 20)
        let key = uniqueName("key")
        let allowed = try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<200 { group.addTask { try await limiter.consume(key, policy: policy).allowed } }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(allowed == 20)
    }
}
