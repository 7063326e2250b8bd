// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeRedisTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `realtime-server` child process on Redis, on a kernel-assigned loopback port read from its banner.
struct ClusterChild {
    let child: Child
    let port: Int

    static func start(redisURL: String, clusterSecret: String) async throws -> ClusterChild {
        try await start(redisEnvironment: ["REDIS_URL": redisURL], clusterSecret: clusterSecret)
    }

    /// Starts one on the Redis that `redisEnvironment` describes (`REDIS_URL`, or `REDIS_CLUSTER_*` and
    /// `REDIS_TLS_*`).
    static func start(redisEnvironment: [String: String], clusterSecret: String) async throws -> ClusterChild {
        let child = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--host", "127.0.0.1", "--port", "0", "--log-level", "warning"],
            environment: [
                "JWT_SECRET": TestKeys.secret,
                "JWT_AUDIENCE": TestKeys.audience,
                "REALTIME_CLUSTER_SECRET": clusterSecret,
            ].merging(redisEnvironment) { $1 }
        )
        do {
            let listening = try await child.line(containing: "listening on http://")
            guard let port = listening.split(separator: ":").last.flatMap({ Int($0) }) else {
                throw TestTimeout(description: "no port in '\(listening)'")
            }
            return ClusterChild(child: child, port: port)
        } catch {
            child.stop()
            throw error
        }
    }

    /// Waits (bounded, polling `/ws/health`: the process offers no event) until the hub's bus subscription is
    /// up, so that events published on the other server reach this one.
    func waitUntilSubscribed(timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < deadline {
            guard child.process.isRunning else { break }
            if let reply = try? await TestSocket.request(port: port, "GET", "/ws/health") {
                last = reply.text
                if (try? reply.json())?["components"]?["hub"]?["details"]?["subscribed"]?.boolValue == true { return }
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestTimeout(description: "server on \(port) did not subscribe: \(last) \(child.output.suffix(300))")
    }

    func connect(_ token: String) async throws -> TestSocket {
        let socket = try await TestSocket.connect(port: port)
        let reply = try await socket.handshake(path: "/ws/events?token=\(token)")
        guard reply.status == 101 else {
            throw TestTimeout(description: "handshake answered \(reply.status): \(reply.text)")
        }
        _ = try await socket.nextMessage(type: "connected")
        return socket
    }

    /// Publishes `security.high_risk.detected` (score 97) for `userID` through this server's HTTP API and expects it
    /// on `recipient` (a socket of that user on any server) and no event on `bystander`.
    func publishHighRiskEvent(userID: String, deliveredTo recipient: TestSocket, notTo bystander: TestSocket)
        async throws
    {
        let published = try await api(
            "POST",
            "/api/v1/events",
            json: #"{"type":"security.high_risk.detected","userId":""# + userID + #"","data":{"score":97}}"#
        )
        #expect(published.status == 202, "\(published.text)")
        #expect(try published.json()["publishedToCluster"]?.boolValue == true)
        let delivered = try await recipient.nextMessage(type: "event", timeout: .seconds(10))
        #expect(delivered["payload"]?["type"]?.stringValue == "security.high_risk.detected")
        #expect(delivered["payload"]?["data"]?["score"]?.intValue == 97)
        #expect(try await bystander.drainUntilPong().filter { $0["type"]?.stringValue == "event" }.isEmpty)
    }

    func api(_ method: String, _ path: String, json: String? = nil) async throws -> HTTPReply {
        var headers = [("Authorization", "Bearer \(TestKeys.token("ops", admin: true))")]
        if json != nil { headers.append(("Content-Type", "application/json")) }
        return try await TestSocket.request(port: port, method, path, headers: headers, body: Array((json ?? "").utf8))
    }
}

@Suite(
    "Two realtime-server processes on one Redis",
    .enabled(if: RedisTestServer.enabled, "needs redis-server or REDIS_URL")
)
struct ClusterExecutableTests {
    @Test("publish on A reaches B, revoke on B closes A with 4009, stats count 2 servers, SIGTERM exits 0")
    func twoServerProcesses() async throws {
        // A redis-server of its own even when REDIS_URL is set: the processes use the default key prefix, so on a
        // shared Redis they would count other tests' servers.
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let secret = "cluster-secret-for-the-process-tests-0123456789"
        let a = try await ClusterChild.start(redisURL: redis.url, clusterSecret: secret)
        defer { a.child.stop() }
        let b = try await ClusterChild.start(redisURL: redis.url, clusterSecret: secret)
        defer { b.child.stop() }
        #expect(a.port != b.port)
        try await a.waitUntilSubscribed()
        try await b.waitUntilSubscribed()

        let aliceOnA = try await a.connect(TestKeys.token("alice", session: "s-laptop"))
        let aliceOnB = try await b.connect(TestKeys.token("alice", session: "s-phone"))
        let bobOnB = try await b.connect(TestKeys.token("bob"))
        for socket in [aliceOnA, aliceOnB, bobOnB] {
            try await socket.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*","session.*"]}}"#)
            _ = try await socket.nextMessage(type: "subscribed")
        }

        // Published through A's HTTP API, delivered to alice on B and not to bob.
        try await a.publishHighRiskEvent(userID: "alice", deliveredTo: aliceOnB, notTo: bobOnB)
        _ = try await aliceOnA.nextMessage(type: "event", timeout: .seconds(10))

        // Stats through B see both processes.
        let stats = try await b.api("GET", "/api/v1/stats")
        #expect(stats.status == 200, "\(stats.text)")
        let global = try stats.json()["global"]
        #expect(global?["totalServers"]?.intValue == 2, "\(stats.text)")
        #expect(global?["totalConnections"]?.intValue == 3, "\(stats.text)")

        // Revoking alice's laptop session through B closes her socket on A with 4009.
        let revoked = try await b.api("POST", "/api/v1/sessions/s-laptop/revoke")
        #expect(revoked.status == 200, "\(revoked.text)")
        #expect(try await aliceOnA.nextClose(timeout: .seconds(10)).code == 4009)
        let revokedEvent = try await aliceOnB.nextMessage(type: "event", timeout: .seconds(10))
        #expect(revokedEvent["payload"]?["type"]?.stringValue == "session.revoked")
        for socket in [aliceOnA, aliceOnB, bobOnB] { await socket.close() }

        // SIGTERM: both drain and exit 0.
        for server in [a, b] { kill(server.child.process.processIdentifier, SIGTERM) }
        for server in [a, b] {
            let exit = try await server.child.finish()
            #expect(exit.status == 0, "\(exit.output.suffix(400))")
        }
    }
}
