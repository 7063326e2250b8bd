import Synchronization

/// A ``RateLimiter`` in process memory, using GCRA (the generic cell rate algorithm).
///
/// For each `(policy.name, key)` the limiter stores one number, the theoretical arrival time (TAT). With the
/// emission interval `T = period / limit`, a request of `cost` units is allowed when
/// `max(TAT, now) + cost·T − now ≤ burst·T`, and then moves the TAT to `max(TAT, now) + cost·T`.
/// A refused request spends nothing.
///
/// Memory is bounded:
/// - A key whose TAT has passed has its whole burst available again, exactly as a key never seen, so it is
///   forgotten. Forgotten keys are swept when a shard's map has doubled since its last sweep (amortized O(1)).
/// - At most `maxKeys` keys are held. When a shard is full even after sweeping, the keys closest to expiry are
///   evicted and counted. **An evicted key starts fresh**: it gets its full burst back, so size `maxKeys` above
///   the number of keys you expect to be limited at once.
///
/// The map is split into shards by key hash, each under its own `Mutex`, so concurrent callers seldom
/// contend. The clock is monotonic and injectable: `InMemoryRateLimiter()` uses `ContinuousClock`; tests pass
/// a manual clock.
///
/// ```swift
/// let limiter = InMemoryRateLimiter()
/// let policy = RateLimitPolicy(name: "connect", limit: 10, period: .seconds(60), burst: 5)
/// let decision = try await limiter.consume("203.0.113.9", policy: policy)
/// ```
public final class InMemoryRateLimiter<C: Clock>: RateLimiter where C.Duration == Duration {
    private let clock: C
    private let epoch: C.Instant
    private let shards: [LockedShard]
    private let shardMask: Int
    /// The most keys held at once, over all policies.
    public let maxKeys: Int

    /// Creates a limiter on `clock`.
    /// - Parameters:
    ///   - clock: A monotonic clock.
    ///   - maxKeys: The most `(policy, key)` pairs held at once (at least 1).
    ///   - shardCount: How many independently locked shards the map is split into (rounded up to a power of
    ///     two, at most `maxKeys`).
    public init(clock: C, maxKeys: Int = 1_000_000, shardCount: Int = 16) {
        precondition(maxKeys > 0, "maxKeys must be positive")
        precondition(shardCount > 0, "shardCount must be positive")
        var count = 1
        while count < min(shardCount, maxKeys) { count <<= 1 }
        if count > maxKeys { count >>= 1 }
        self.clock = clock
        self.epoch = clock.now
        self.maxKeys = maxKeys
        self.shardMask = count - 1
        // Shard capacities add up to exactly maxKeys.
        self.shards = (0..<count).map { index in
            LockedShard(Shard(capacity: maxKeys / count + (index < maxKeys % count ? 1 : 0)))
        }
    }

    public func consume(
        _ key: String,
        cost: Int,
        policy: RateLimitPolicy
    ) async throws(RealtimeError) -> RateLimitDecision {
        try decide(key, cost: cost, policy: policy)
    }

    /// The synchronous form of ``consume(_:cost:policy:)``.
    public func decide(_ key: String, cost: Int, policy: RateLimitPolicy) throws(RealtimeError) -> RateLimitDecision {
        guard cost >= 0 else {
            throw RealtimeError(.invalidArgument, "a rate-limit cost must not be negative")
        }
        guard cost <= policy.burst else {
            throw RealtimeError(
                .invalidArgument,
                "a cost of \(cost) can never fit policy \(policy.name)'s burst of \(policy.burst)"
            )
        }
        // Same as `policy.emissionInterval` in whole nanoseconds, without a 128-bit division.
        let interval = max(1, Self.nanoseconds(policy.period) / Int64(policy.limit))
        let tolerance = Self.saturatingMultiply(interval, policy.burst)
        let increment = Self.saturatingMultiply(interval, cost)
        let now = Self.nanoseconds(epoch.duration(to: clock.now))
        let entry = Key(policy: policy.name, key: key)
        return shards[entry.hash & shardMask].lock.withLock { shard in
            let index = shard.tats.index(forKey: entry)
            let tat = max(index.map { shard.tats.values[$0] } ?? now, now)
            let newTAT = tat &+ increment
            let allowAt = newTAT &- tolerance
            if allowAt <= now {
                if let index {
                    shard.tats.values[index] = newTAT
                } else if increment > 0 {
                    shard.insert(entry, newTAT, now: now)
                }
                return RateLimitDecision(
                    allowed: true,
                    remaining: Int((tolerance - (newTAT - now)) / interval),
                    retryAfter: .zero,
                    resetAfter: .nanoseconds(newTAT - now)
                )
            }
            return RateLimitDecision(
                allowed: false,
                remaining: Int(max(0, tolerance - (tat - now)) / interval),
                retryAfter: .nanoseconds(allowAt - now),
                resetAfter: .nanoseconds(tat - now)
            )
        }
    }

    public func reset(_ key: String, policy: RateLimitPolicy) async throws(RealtimeError) {
        let entry = Key(policy: policy.name, key: key)
        shards[entry.hash & shardMask].lock.withLock { _ = $0.tats.removeValue(forKey: entry) }
    }

    /// Keys currently held (including idle ones not yet swept).
    package var keyCount: Int { shards.reduce(0) { $0 + $1.lock.withLock { $0.tats.count } } }
    /// Keys evicted because the limiter was full.
    package var evictionCount: Int { shards.reduce(0) { $0 + $1.lock.withLock { $0.evictions } } }
    /// Forgets every idle key now.
    package func sweep() {
        let now = Self.nanoseconds(epoch.duration(to: clock.now))
        for shard in shards { shard.lock.withLock { $0.sweep(now: now) } }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? Int64.min / 4 : Int64.max / 4 }
        return scaled &+ attoseconds / 1_000_000_000
    }

    private static func saturatingMultiply(_ value: Int64, _ factor: Int) -> Int64 {
        let (product, overflow) = value.multipliedReportingOverflow(by: Int64(factor))
        return overflow ? Int64.max / 4 : product
    }
}

extension InMemoryRateLimiter where C == ContinuousClock {
    /// Creates a limiter on the continuous clock.
    /// - Parameters:
    ///   - maxKeys: The most `(policy, key)` pairs held at once.
    ///   - shardCount: How many independently locked shards the map is split into.
    public convenience init(maxKeys: Int = 1_000_000, shardCount: Int = 16) {
        self.init(clock: ContinuousClock(), maxKeys: maxKeys, shardCount: shardCount)
    }
}

/// One shard's lock (`Mutex` is not copyable, so the array holds references).
private final class LockedShard: Sendable {
    let lock: Mutex<Shard>
    init(_ shard: Shard) { lock = Mutex(shard) }
}

/// A `(policy, key)` pair that hashes its strings once: the hash picks the shard and is reused by the
/// shard's dictionary.
private struct Key: Hashable {
    let policy: String
    let key: String
    let hash: Int

    init(policy: String, key: String) {
        self.policy = policy
        self.key = key
        var hasher = Hasher()
        hasher.combine(policy)
        hasher.combine(key)
        self.hash = hasher.finalize()
    }

    static func == (lhs: Key, rhs: Key) -> Bool {
        lhs.hash == rhs.hash && lhs.key == rhs.key && lhs.policy == rhs.policy
    }
    func hash(into hasher: inout Hasher) { hasher.combine(hash) }
}

private struct Shard {
    /// The most keys this shard holds.
    let capacity: Int
    /// Theoretical arrival times in nanoseconds since the limiter's epoch.
    var tats: [Key: Int64] = [:]
    /// The map size at which the next sweep of idle keys runs.
    var sweepAt: Int
    var evictions = 0

    init(capacity: Int) {
        self.capacity = capacity
        self.sweepAt = min(capacity, 1024)
    }

    /// Adds a key not in the map, making room first if needed.
    mutating func insert(_ key: Key, _ tat: Int64, now: Int64) {
        if tats.count >= sweepAt {
            sweep(now: now)
            if tats.count >= capacity { evict() }
        }
        tats[key] = tat
    }

    /// Forgets keys whose TAT has passed (they have their full burst, like a key never seen).
    mutating func sweep(now: Int64) {
        tats = tats.filter { $0.value > now }
        sweepAt = min(capacity, max(1024, tats.count * 2))
    }

    /// Evicts the eighth of the keys closest to expiry (at least one), so evictions stay amortized.
    mutating func evict() {
        let victims = max(1, capacity / 8)
        let cutoff = tats.values.sorted()[min(victims, tats.count) - 1]
        var removed = 0
        tats = tats.filter { _, tat in
            if tat <= cutoff, removed < victims {
                removed += 1
                return false
            }
            return true
        }
        evictions += removed
        sweepAt = capacity
    }
}
