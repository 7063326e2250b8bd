/// A rate-limit policy: `limit` units per `period`, with bursts of up to `burst` units.
///
/// Implementations use GCRA: one unit is earned every `period / limit`, and at most `burst` may be spent at
/// once (a client idle for long enough may send `burst` requests back to back).
public struct RateLimitPolicy: Sendable, Hashable {
    /// Names the policy; keys of different policies never share a budget.
    public var name: String
    public var limit: Int
    public var period: Duration
    public var burst: Int

    public init(name: String, limit: Int, period: Duration, burst: Int? = nil) {
        precondition(limit > 0, "a rate limit must allow at least one unit per period")
        precondition(period > .zero, "a rate-limit period must be positive")
        self.name = name
        self.limit = limit
        self.period = period
        self.burst = max(1, burst ?? limit)
    }

    /// The time in which one unit is earned back.
    public var emissionInterval: Duration { period / limit }
}

/// The outcome of one ``RateLimiter/consume(_:cost:policy:)``.
public struct RateLimitDecision: Sendable, Hashable {
    public var allowed: Bool
    /// Units that could still be spent right now after this decision.
    public var remaining: Int
    /// When the request would be allowed, if it was refused (zero when allowed).
    public var retryAfter: Duration
    /// When the full burst will be available again.
    public var resetAfter: Duration

    public init(allowed: Bool, remaining: Int, retryAfter: Duration, resetAfter: Duration) {
        self.allowed = allowed
        self.remaining = remaining
        self.retryAfter = retryAfter
        self.resetAfter = resetAfter
    }
}

/// Decides atomically whether a key may spend units now.
///
/// Implementations must forget idle keys (a client spraying random keys must not grow memory without bound).
public protocol RateLimiter: Sendable {
    /// Spends `cost` units of `key`'s budget under `policy` if the budget allows; otherwise spends nothing.
    func consume(_ key: String, cost: Int, policy: RateLimitPolicy) async throws(RealtimeError) -> RateLimitDecision

    /// Forgets `key`'s history under `policy`.
    func reset(_ key: String, policy: RateLimitPolicy) async throws(RealtimeError)

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension RateLimiter {
    public func healthCheck() async -> ComponentHealth { .healthy }

    /// Spends one unit.
    public func consume(_ key: String, policy: RateLimitPolicy) async throws(RealtimeError) -> RateLimitDecision {
        try await consume(key, cost: 1, policy: policy)
    }
}
