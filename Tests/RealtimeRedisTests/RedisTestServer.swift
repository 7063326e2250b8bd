import Foundation
import RealtimeCore
import RealtimeRedis
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `redis-server` started by a test on a free loopback port, stopped by its PID.
///
/// `@unchecked Sendable`: `process` is only touched by `start()` (before the value is shared) and `stop()`,
/// which the owning test calls once it no longer uses the server; `port` and `arguments` are immutable.
final class RedisTestServer: @unchecked Sendable {
    static let binary = "/usr/bin/redis-server"

    /// Whether integration tests run: a redis-server binary exists, or CI is set (then a missing binary must fail
    /// the run, not skip it).
    static let enabled: Bool = {
        let available = FileManager.default.isExecutableFile(atPath: binary) || redisURL != nil
        if !available {
            print("RealtimeRedisTests: redis-server not found at \(binary) and REDIS_URL unset; skipping Redis tests")
        }
        return available || ProcessInfo.processInfo.environment["CI"] == "true"
    }()

    static let redisURL: String? = ProcessInfo.processInfo.environment["REDIS_URL"]

    let port: Int
    private let extraArguments: [String]
    private var process: Process?

    var url: String { "redis://127.0.0.1:\(port)" }

    var configuration: RedisConfiguration {
        RedisConfiguration(port: port, poolSize: 2, connectTimeout: .seconds(2), commandTimeout: .seconds(2))
    }

    private init(port: Int, extraArguments: [String]) {
        self.port = port
        self.extraArguments = extraArguments
    }

    /// Starts a server on a free port (several tries, in case another process takes the port first).
    static func start(_ extraArguments: [String] = []) async throws -> RedisTestServer {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw RealtimeError(.backendUnavailable, "redis-server is not installed (apt-get install redis-server)")
        }
        var lastError: (any Error)?
        for _ in 0..<5 {
            let server = RedisTestServer(port: try freePort(), extraArguments: extraArguments)
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                server.stop()
            }
        }
        throw lastError ?? RealtimeError(.backendUnavailable, "could not start redis-server")
    }

    /// Starts (or restarts, on the same port) the process and waits until it answers PING.
    func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments =
            [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--enable-debug-command", "local", "--loglevel", "warning",
            ] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { break }
            if Self.canConnect(port: port) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RealtimeError(.backendUnavailable, "redis-server on port \(port) did not come up")
    }

    /// Stops the process (SIGKILL to its PID, like a crash) and waits for it to exit.
    func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    deinit { stop() }

    private static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RealtimeError(.internalError, "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw RealtimeError(.internalError, "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Runs `body` against a Redis: `REDIS_URL` when set and `ownServer` is false, else a fresh redis-server.
func withRedis(
    ownServer: Bool = false,
    _ body: (RedisConfiguration, RedisTestServer?) async throws -> Void
) async throws {
    if !ownServer, let url = RedisTestServer.redisURL {
        try await body(try RedisConfiguration(url: url), nil)
        return
    }
    let server = try await RedisTestServer.start()
    defer { server.stop() }
    try await body(server.configuration, server)
}

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
