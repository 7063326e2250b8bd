import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Synchronization
import Testing

/// Every suite that talks to Redis, run one test at a time: each starts its own redis-server and several measure
/// time (TTLs, rate-limit refills, timeouts), which is only meaningful when the 2 cores are not shared with every
/// other test at once.
@Suite(.enabled(if: RedisTestServer.enabled, "needs redis-server or REDIS_URL"), .serialized)
enum RedisIntegrationTests {}

/// A flag set once by one task and read by another.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}

/// Pauses every client of the Redis `admin` talks to for `milliseconds` (`CLIENT PAUSE … ALL`: its OK means the
/// pause is in effect, so nothing needs to sleep until it is) and returns a flag set once Redis answers a command
/// again, with the task that sets it. A test shows that something happened while Redis was paused by reading the
/// flag, instead of measuring time.
func pauseRedis(_ admin: RedisClient, milliseconds: Int) async throws -> (awake: Flag, watcher: Task<Void, Never>) {
    let paused = try await admin.send(RedisCommand("CLIENT", "PAUSE", String(milliseconds), "ALL"))
    #expect(paused == .simpleString("OK"))
    let awake = Flag()
    let watcher = Task {
        _ = try? await admin.send(RedisCommand("PING"))
        awake.set()
    }
    return (awake, watcher)
}

/// The connection store, session store, rate limiter and event bus conformance suites on one Redis setup (a TLS
/// node, a cluster): `client` for the stores, new clients on `configuration` for the buses.
func runBackendConformance(client: RedisClient, configuration: RedisConfiguration) async throws {
    let time = ConformanceTime.realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))
    try await ConnectionStoreConformance.run(
        makeStore: { RedisConnectionStore(client: client, prefix: "t\(RandomID.hex(bytes: 4)):") },
        time: time
    )
    try await SessionStoreConformance.run(
        makeStore: { mode in RedisSessionStore(client: client, mode: mode, prefix: "t\(RandomID.hex(bytes: 4)):") },
        time: time
    )
    try await RateLimiterConformance.run(
        makeLimiter: { RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):") },
        time: time
    )
    try await RedisIntegrationTests.RedisEventBusTests.runConformance(configuration)
}

/// The error `checkReady()` of a fresh client on `configuration` fails with (nil if it succeeds); the client is shut
/// down either way.
func readinessFailure(_ configuration: RedisConfiguration) async -> RealtimeError? {
    let client = RedisClient(configuration: configuration)
    var failure: RealtimeError?
    do {
        try await client.checkReady()
    } catch {
        failure = error
    }
    await client.shutdown()
    return failure
}
