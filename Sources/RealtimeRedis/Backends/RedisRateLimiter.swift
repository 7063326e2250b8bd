import Metrics
public import RealtimeCore
import Synchronization

/// A cluster-wide `RateLimiter`: GCRA in one Lua script, one round trip per decision.
///
/// The script is loaded once and called with `EVALSHA` (reloaded on `NOSCRIPT`). It reads Redis's own clock
/// (`TIME`), so servers with skewed clocks share one budget correctly. Keys expire when their budget is full
/// again, so idle keys cost no memory.
///
/// A script call costs Redis several microseconds of its single thread: use this limiter where the limit must
/// hold across the cluster (connection attempts per IP and per user) and keep per-connection message limits in
/// a local limiter.
///
/// When Redis cannot be reached, decisions come from `fallback` (by default an `InMemoryRateLimiter`, so each
/// server enforces the limit alone) and ``healthCheck()`` reports degraded until Redis answers again.
public final class RedisRateLimiter: RateLimiter, Sendable {
    private let client: RedisClient
    private let prefix: String
    private let fallback: any RateLimiter
    private let state = Mutex<FallbackState>(FallbackState())

    private struct FallbackState {
        var degradedSince: Timestamp?
        var fallbackDecisions = 0
        var lastError: String?
    }

    /// The GCRA script's Lua source (for benchmarks that call it with `redis-benchmark`).
    public static var scriptSource: String { script.source }

    static let script = RedisScript(
        """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
        local interval = tonumber(ARGV[1])
        local burst = tonumber(ARGV[2])
        local cost = tonumber(ARGV[3])
        local tolerance = interval * burst
        local increment = interval * cost
        local stored = tonumber(redis.call('GET', KEYS[1]) or now)
        local tat = math.max(stored, now)
        local newTat = tat + increment
        local allowAt = newTat - tolerance
        if allowAt <= now then
          if increment > 0 then
            redis.call('SET', KEYS[1], string.format('%.0f', newTat), 'PX',
              string.format('%.0f', math.ceil((newTat - now) / 1000)))
          end
          return {1, math.floor((tolerance - (newTat - now)) / interval), 0, newTat - now}
        end
        return {0, math.floor(math.max(0, tolerance - (tat - now)) / interval), allowAt - now, tat - now}
        """
    )

    /// - Parameters:
    ///   - client: the Redis client.
    ///   - prefix: the prefix of every key (`<prefix>rl:…`).
    ///   - fallback: decides while Redis is unreachable; an `InMemoryRateLimiter` when nil.
    public init(client: RedisClient, prefix: String = "rthub:", fallback: (any RateLimiter)? = nil) {
        self.client = client
        self.prefix = prefix
        self.fallback = fallback ?? InMemoryRateLimiter()
    }

    private func key(_ key: String, _ policy: RateLimitPolicy) -> String {
        "\(prefix)rl:\(policy.name.utf8.count):\(policy.name):\(key)"
    }

    public func consume(
        _ key: String,
        cost: Int,
        policy: RateLimitPolicy
    ) async throws(RealtimeError) -> RateLimitDecision {
        guard cost >= 0 else { throw RealtimeError(.invalidArgument, "a rate-limit cost must not be negative") }
        guard cost <= policy.burst else {
            throw RealtimeError(
                .invalidArgument,
                "a cost of \(cost) can never fit policy \(policy.name)'s burst of \(policy.burst)"
            )
        }
        let interval = max(1, policy.emissionInterval.microseconds)
        let reply: RESPValue
        do {
            reply = try await Self.script.run(
                on: client,
                keys: [self.key(key, policy)],
                arguments: [String(interval), String(policy.burst), String(cost)]
            )
        } catch {
            return try await fallBack(error, key: key, cost: cost, policy: policy)
        }
        guard let fields = reply.array, fields.count == 4, let allowed = fields[0].int, let remaining = fields[1].int,
            let retry = fields[2].int, let reset = fields[3].int
        else {
            throw RealtimeError(.protocolViolation, "the rate-limit script returned \(reply)")
        }
        recovered()
        return RateLimitDecision(
            allowed: allowed == 1,
            remaining: Int(remaining),
            retryAfter: .microseconds(retry),
            resetAfter: .microseconds(reset)
        )
    }

    public func reset(_ key: String, policy: RateLimitPolicy) async throws(RealtimeError) {
        do {
            _ = try await client.send(RedisCommand("DEL", self.key(key, policy)))
            recovered()
        } catch {
            guard Self.isOutage(error) else { throw error }
            markDegraded(error)
        }
        try await fallback.reset(key, policy: policy)
    }

    private static func isOutage(_ error: RealtimeError) -> Bool {
        error.code == .backendUnavailable || error.code == .timeout || error.code == .shutDown
    }

    private func fallBack(
        _ error: RealtimeError,
        key: String,
        cost: Int,
        policy: RateLimitPolicy
    ) async throws(RealtimeError) -> RateLimitDecision {
        // A script error (a bug, or a key of the wrong type) is not an outage: report it.
        if error.underlying is RedisServerError, (error.underlying as? RedisServerError)?.code != "LOADING" {
            throw error
        }
        guard Self.isOutage(error) else { throw error }
        markDegraded(error)
        client.metrics.fallbackDecisions.increment()
        return try await fallback.consume(key, cost: cost, policy: policy)
    }

    private func markDegraded(_ error: RealtimeError) {
        state.withLock { state in
            if state.degradedSince == nil { state.degradedSince = .now() }
            state.fallbackDecisions += 1
            state.lastError = error.description
        }
    }

    private func recovered() {
        state.withLock { state in
            if state.degradedSince != nil { state.degradedSince = nil }
        }
    }

    /// Healthy while decisions come from Redis; degraded (with `fallbackSince`) while the local fallback decides.
    public func healthCheck() async -> ComponentHealth {
        let snapshot = state.withLock { $0 }
        var details: JSONObject = [
            "redisConnected": .bool(client.isConnected),
            "fallbackDecisions": .int(Int64(snapshot.fallbackDecisions)),
        ]
        if let since = snapshot.degradedSince {
            details["fallbackSince"] = .string(since.iso8601)
            if let error = snapshot.lastError { details["lastError"] = .string(error) }
            return ComponentHealth(status: .degraded, details: details)
        }
        return ComponentHealth(status: client.isConnected ? .healthy : .degraded, details: details)
    }
}

extension Duration {
    /// The duration in whole microseconds (rounded toward zero).
    var microseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds &* 1_000_000 &+ attoseconds / 1_000_000_000_000
    }
}
