// SPDX-License-Identifier: Apache-2.0

import Logging
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import Testing

/// A hub's Redis backends with a client of its own (run it as a service), under `prefix` so that tests sharing
/// one Redis (`REDIS_URL`) never see each other's servers.
func clusterBackends(_ configuration: RedisConfiguration, prefix: String, secret: String) throws -> (
    client: RedisClient, backends: HubBackends
) {
    var logger = Logger(label: "e2e-redis")
    logger.logLevel = .warning
    var configuration = configuration
    configuration.poolSize = 2
    configuration.connectTimeout = .seconds(2)
    let client = RedisClient(configuration: configuration, logger: logger)
    let backends = HubBackends(
        tokenVerifier: TestKeys.verifier(),
        connectionStore: RedisConnectionStore(client: client, prefix: prefix),
        eventBus: try RedisEventBus(client: client, clusterSecret: Array(secret.utf8), prefix: prefix),
        rateLimiter: RedisRateLimiter(client: client, prefix: prefix, fallback: InMemoryRateLimiter()),
        sessionStore: RedisSessionStore(client: client, prefix: prefix)
    )
    return (client, backends)
}

/// Runs `body` with two servers of one cluster on the Redis of `configuration` (a fresh key prefix), both subscribed
/// to the bus.
func withTwoServers(
    _ configuration: RedisConfiguration,
    _ body: (TestServer, TestServer) async throws -> Void
) async throws {
    let secret = "cluster-secret-for-the-e2e-tests-0123456789"
    let prefix = "e2e\(RandomID.hex(bytes: 4)):"
    let a = try clusterBackends(configuration, prefix: prefix, secret: secret)
    let b = try clusterBackends(configuration, prefix: prefix, secret: secret)
    try await TestServer.with(backends: a.backends, services: [a.client]) { serverA in
        try await TestServer.with(backends: b.backends, services: [b.client]) { serverB in
            try await serverA.waitUntilSubscribed()
            try await serverB.waitUntilSubscribed()
            try await body(serverA, serverB)
        }
    }
}

@Suite("Two servers on one Redis", .enabled(if: RedisTestServer.enabled, "needs redis-server or REDIS_URL"))
struct ClusterTests {
    @Test("delivery, notifications, revocation and stats across two servers")
    func twoServers() async throws {
        try await withRedis { configuration, _ in
            try await Self.twoServers(configuration)
        }
    }

    static func twoServers(_ configuration: RedisConfiguration) async throws {
        try await withTwoServers(configuration) { serverA, serverB in
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
