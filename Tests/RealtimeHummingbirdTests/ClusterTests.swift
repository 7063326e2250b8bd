// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging
import NIOCore
import NIOPosix
import RealtimeCore
import RealtimeRedis
import Testing

/// A `redis-server` started by the test on a free loopback port and stopped by its PID.
///
/// `@unchecked Sendable`: `process` is set in `start()` before the value is shared and only read by `stop()`;
/// `port` is immutable.
final class ClusterRedis: @unchecked Sendable {
    static let binary = "/usr/bin/redis-server"

    /// Whether the cluster tests run: redis-server is installed, or CI is set (then a missing binary fails the
    /// run instead of skipping it).
    static var enabled: Bool {
        FileManager.default.isExecutableFile(atPath: binary) || ProcessInfo.processInfo.environment["CI"] == "true"
    }

    let port: Int
    private var process: Process?

    private init(port: Int) { self.port = port }

    static func start() async throws -> ClusterRedis {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw TestTimeout(description: "redis-server is not installed (scripts/install-system-packages)")
        }
        var lastError: (any Error)?
        for _ in 0..<5 {
            let server = ClusterRedis(port: try await freePort())
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                server.stop()
            }
        }
        throw lastError ?? TestTimeout(description: "could not start redis-server")
    }

    private func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = [
            "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--protected-mode", "yes", "--daemonize", "no", "--loglevel", "warning",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Ready when it accepts a TCP connection: bounded, 5 s.
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw TestTimeout(description: "redis-server exited") }
            if let socket = try? await TestSocket.connect(port: port) {
                await socket.close()
                return
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestTimeout(description: "redis-server did not listen on \(port)")
    }

    func stop() {
        guard let process, process.isRunning else { return }
        // SIGKILL: a throwaway server with nothing to save, and SIGTERM may be ignored by a child of a process
        // that installed signal handlers through Dispatch (the disposition is inherited).
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A port the kernel just handed out (bind to 0, read it, close).
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    /// A hub's Redis backends with a client of its own (run it as a service).
    func backends(secret: String) throws -> (client: RedisClient, backends: HubBackends) {
        var logger = Logger(label: "e2e-redis")
        logger.logLevel = .warning
        let client = RedisClient(
            configuration: RedisConfiguration(port: port, poolSize: 2, connectTimeout: .seconds(2)),
            logger: logger
        )
        let backends = HubBackends(
            tokenVerifier: TestKeys.verifier(),
            connectionStore: RedisConnectionStore(client: client),
            eventBus: try RedisEventBus(client: client, clusterSecret: Array(secret.utf8)),
            rateLimiter: RedisRateLimiter(client: client, fallback: InMemoryRateLimiter()),
            sessionStore: RedisSessionStore(client: client)
        )
        return (client, backends)
    }
}

@Suite("Two servers on one Redis", .enabled(if: ClusterRedis.enabled))
struct ClusterTests {
    @Test("delivery, notifications, revocation and stats across two servers")
    func twoServers() async throws {
        let redis = try await ClusterRedis.start()
        defer { redis.stop() }
        let secret = "cluster-secret-for-the-e2e-tests-0123456789"
        let a = try redis.backends(secret: secret)
        let b = try redis.backends(secret: secret)
        try await TestServer.with(backends: a.backends, services: [a.client]) { serverA in
            try await TestServer.with(backends: b.backends, services: [b.client]) { serverB in
                try await serverA.waitUntilSubscribed()
                try await serverB.waitUntilSubscribed()
                let aliceOnA = try await serverA.connect(TestKeys.token("alice", session: "s-laptop"))
                let aliceOnB = try await serverB.connect(TestKeys.token("alice", session: "s-phone"))
                let bobOnB = try await serverB.connect(TestKeys.token("bob"))
                for socket in [aliceOnA, aliceOnB, bobOnB] {
                    try await socket.sendText(
                        #"{"type":"subscribe","payload":{"eventTypes":["security.*","session.*"]}}"#
                    )
                    _ = try await socket.nextMessage(type: "subscribed")
                }

                // Published through A's HTTP API, delivered on both servers to alice only.
                let published = try await serverA.api(
                    "POST",
                    "/api/v1/events",
                    json: #"{"type":"security.high_risk.detected","userId":"alice","data":{"score":97}}"#
                )
                #expect(published.status == 202, "\(published.text)")
                #expect(try published.json()["publishedToCluster"]?.boolValue == true)
                for socket in [aliceOnA, aliceOnB] {
                    let event = try await socket.nextMessage(type: "event")
                    #expect(event["payload"]?["type"]?.stringValue == "security.high_risk.detected")
                    #expect(event["payload"]?["data"]?["score"]?.intValue == 97)
                }
                #expect(try await bobOnB.drainUntilPong().filter { $0["type"]?.stringValue == "event" }.isEmpty)

                // A notification sent through B reaches alice on A.
                let notified = try await serverB.api(
                    "POST",
                    "/api/v1/notifications/user",
                    json: #"{"userId":"alice","title":"Hello","message":"from B"}"#
                )
                #expect(notified.status == 202)
                let notification = try await aliceOnA.nextMessage(type: "notification")
                #expect(notification["payload"]?["message"]?.stringValue == "from B")

                // Stats through A see both servers.
                let stats = try await serverA.api("GET", "/api/v1/stats")
                let global = try stats.json()["global"]
                #expect(global?["totalServers"]?.intValue == 2)
                #expect(global?["totalConnections"]?.intValue == 3)

                // Revoking alice's laptop session through B closes her socket on A with 4009.
                let revoked = try await serverB.api("POST", "/api/v1/sessions/s-laptop/revoke")
                #expect(revoked.status == 200, "\(revoked.text)")
                #expect(try await aliceOnA.nextClose().code == 4009)
                let event = try await aliceOnB.nextMessage(type: "event")
                #expect(event["payload"]?["type"]?.stringValue == "session.revoked")
                // And the revoked session's token is refused by A as well.
                let refused = try await serverA.handshake(
                    path: "/ws/events?token=\(TestKeys.token("alice", session: "s-laptop"))"
                )
                #expect(refused.status == 401)
                for socket in [aliceOnA, aliceOnB, bobOnB] { await socket.close() }
            }
        }
    }
}
