// SPDX-License-Identifier: Apache-2.0

// The one Redis fixture of the test suite, shared by RealtimeRedisTests and the end-to-end tests. A target of its
// own (not a product; see Documentation/Architecture.md, "Tests"): test targets cannot depend on each other, and
// RealtimeTesting, a product for backend authors, should neither import RealtimeRedis nor launch processes.

import Foundation
import RealtimeCore
public import RealtimeRedis

#if canImport(Glibc)
    import Glibc
#endif

/// A `redis-server` started by a test on a free loopback port, stopped by its PID.
///
/// `@unchecked Sendable`: `process` is only touched by `start()` (before the value is shared) and `stop()`,
/// which the owning test calls once it no longer uses the server; `port` and `arguments` are immutable.
public final class RedisTestServer: @unchecked Sendable {
    public static let binary = "/usr/bin/redis-server"

    /// Whether the tests that need Redis run: `REDIS_URL` is set or a redis-server binary exists. Under `CI=true`
    /// they always run, so a missing binary fails the run (``start(_:)`` throws) instead of skipping it; locally
    /// they are skipped with the reason printed.
    public static let enabled: Bool = {
        let available = FileManager.default.isExecutableFile(atPath: binary) || redisURL != nil
        if !available {
            print("redis-server not found at \(binary) and REDIS_URL unset: skipping the tests that need Redis")
        }
        return available || ProcessInfo.processInfo.environment["CI"] == "true"
    }()

    public static let redisURL: String? = ProcessInfo.processInfo.environment["REDIS_URL"]

    public let port: Int
    private let extraArguments: [String]
    private var process: Process?

    public var url: String { "redis://127.0.0.1:\(port)" }

    public var configuration: RedisConfiguration {
        RedisConfiguration(port: port, poolSize: 2, connectTimeout: .seconds(2), commandTimeout: .seconds(2))
    }

    private init(port: Int, extraArguments: [String]) {
        self.port = port
        self.extraArguments = extraArguments
    }

    /// Starts a server on a free port (several tries, in case another process takes the port first).
    public static func start(_ extraArguments: [String] = []) async throws -> RedisTestServer {
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
    public func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments =
            [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--protected-mode", "yes", "--daemonize", "no", "--enable-debug-command", "local", "--loglevel",
                "warning",
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
    public func stop() {
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
public func withRedis(
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
