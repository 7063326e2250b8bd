// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeRedisTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(
    "Recovery across realtime-server processes on one Redis",
    .enabled(if: RedisTestServer.enabled, "needs redis-server or REDIS_URL")
)
struct RecoveryExecutableTests {
    /// Reads messages up to `recovered`; returns the `n` of every event before it, and the `recovered` message.
    static func untilRecovered(_ socket: TestSocket) async throws -> ([Int64], JSONValue) {
        var numbers: [Int64] = []
        while true {
            let message = try await socket.nextMessage(timeout: .seconds(10))
            switch message["type"]?.stringValue {
            case "event": numbers.append(message["payload"]?["data"]?["n"]?.intValue ?? -1)
            case "recovered": return (numbers, message)
            default: continue
            }
        }
    }

    static func publish(_ server: ClusterChild, user: String, n: Int) async throws {
        let reply = try await server.api(
            "POST",
            "/api/v1/events",
            json: #"{"type":"security.test.recovery","userId":"\#(user)","data":{"n":\#(n)}}"#
        )
        #expect(reply.status == 202, "\(reply.text)")
    }

    @Test(
        "a client on A gets 1…50, leaves; 100 are published on A and B; A is killed; on B it recovers exactly the 100, then live"
    )
    func recoverAfterTheFirstServerWasKilled() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let secret = "cluster-secret-for-the-recovery-tests-0123456789"
        let a = try await ClusterChild.start(redisURL: redis.url, clusterSecret: secret)
        defer { a.child.stop() }
        let b = try await ClusterChild.start(redisURL: redis.url, clusterSecret: secret)
        defer { b.child.stop() }
        try await a.waitUntilSubscribed()
        try await b.waitUntilSubscribed()

        // realtime-server keeps history by default: the greeting announces recovery.
        let onA = try await TestSocket.connect(port: a.port)
        let token = TestKeys.token("alice")
        #expect(try await onA.handshake(path: "/ws/events?token=\(token)").status == 101)
        let connected = try await onA.nextMessage(type: "connected")
        #expect(connected["payload"]?["recovery"]?["streams"] == ["user:alice", "everyone"])
        try await onA.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
        _ = try await onA.nextMessage(type: "subscribed")
        var last: JSONValue = .null
        for n in 1...50 { try await Self.publish(a, user: "alice", n: n) }
        for n in Int64(1)...50 {
            let event = try await onA.nextMessage(type: "event", timeout: .seconds(10))
            #expect(event["payload"]?["data"]?["n"]?.intValue == n)
            #expect(event["payload"]?["position"]?["offset"]?.intValue == n)
            last = event["payload"]?["position"] ?? .null
        }
        await onA.close()

        for n in 51...150 { try await Self.publish(n % 2 == 0 ? a : b, user: "alice", n: n) }
        // A crashes.
        kill(a.child.process.processIdentifier, SIGKILL)
        _ = try await a.child.finish()

        let onB = try await b.connect(token)
        try await onB.sendText(
            #"{"type":"subscribe","payload":{"eventTypes":["security.*"],"recover":{"user:alice":\#(JSONWriter.string(last))}}}"#
        )
        _ = try await onB.nextMessage(type: "subscribed")
        let (numbers, recovered) = try await Self.untilRecovered(onB)
        #expect(numbers == Array(51...150), "exactly the 100 missed, in order")
        #expect(recovered["payload"]?["recovered"] == true, "\(recovered)")
        #expect(recovered["payload"]?["replayed"]?.intValue == 100)
        try await Self.publish(b, user: "alice", n: 151)
        let live = try await onB.nextMessage(type: "event", timeout: .seconds(10))
        #expect(live["payload"]?["data"]?["n"]?.intValue == 151)
        #expect(live["payload"]?["position"]?["offset"]?.intValue == 151)
        #expect(try await onB.drainUntilPong().filter { $0["type"] == "event" }.isEmpty, "no duplicates")
        await onB.close()
    }

    @Test("Redis restarted without persistence: recovery answers recovered: false, never a partial replay")
    func redisRestartedWithoutPersistence() async throws {
        let redis = try await RedisTestServer.start()
        defer { redis.stop() }
        let secret = "cluster-secret-for-the-recovery-tests-0123456789"
        let server = try await ClusterChild.start(redisURL: redis.url, clusterSecret: secret)
        defer { server.child.stop() }
        try await server.waitUntilSubscribed()
        let token = TestKeys.token("bob")
        let first = try await server.connect(token)
        try await first.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
        _ = try await first.nextMessage(type: "subscribed")
        for n in 1...5 { try await Self.publish(server, user: "bob", n: n) }
        var last: JSONValue = .null
        for _ in 1...5 { last = try await first.nextMessage(type: "event")["payload"]?["position"] ?? .null }
        await first.close()

        // Redis loses everything (no RDB, no AOF), comes back; events keep being published.
        redis.stop()
        try await redis.launch()
        try await server.waitUntilSubscribed(timeout: .seconds(30))
        let deadline = ContinuousClock.now + .seconds(20)
        var published = false
        while !published, ContinuousClock.now < deadline {
            let reply = try await server.api(
                "POST",
                "/api/v1/events",
                json: #"{"type":"security.test.recovery","userId":"bob","data":{"n":6}}"#
            )
            published = reply.status == 202 && (try? reply.json()["publishedToCluster"]?.boolValue) == true
            if !published { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(published)

        let again = try await server.connect(token)
        try await again.sendText(
            #"{"type":"subscribe","payload":{"eventTypes":["security.*"],"recover":{"user:bob":\#(JSONWriter.string(last))}}}"#
        )
        _ = try await again.nextMessage(type: "subscribed")
        let (numbers, recovered) = try await Self.untilRecovered(again)
        #expect(recovered["payload"]?["recovered"] == false, "\(recovered)")
        #expect(recovered["payload"]?["streams"]?["user:bob"]?["reason"] == "epoch_changed")
        #expect(numbers.isEmpty, "nothing replayed from a history that is not the client's")
        let now = recovered["payload"]?["positions"]?["user:bob"]
        #expect(now?["epoch"] != last["epoch"], "a new epoch to continue from")
        await again.close()
    }
}
