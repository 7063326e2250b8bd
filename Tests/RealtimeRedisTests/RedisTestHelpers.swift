import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import Synchronization
import Testing

/// Polls `condition` until it holds or `timeout` passes (for things with no event to await, such as a reconnect
/// after its backoff or a key's expiry).
///
/// The default timeout is a hang guard, not a timing requirement: it is generous because CI runs every suite in
/// parallel on two cores. A test that asserts a deadline passes it explicitly (e.g. `timeout: .seconds(2)`).
/// Poll only for states that last: a transient state (a connection down for one 10 ms backoff) can be missed
/// between two polls; observe what it leaves behind instead (a reconnect counter, a new client id).
func eventually(
    timeout: Duration = .seconds(20),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

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
