// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import Testing

/// `POST /api/v1/users/{id}/revoke` over real sockets: on one server, and on two servers sharing one Redis.
@Suite("User-wide revocation")
struct UserRevocationTests {
    /// Tokens issued before the revocation: one second earlier, so their whole-second `iat` is surely earlier.
    static let before = Timestamp.now() - .seconds(2)

    @Test("revoking a user closes its sockets with 4009 and refuses its earlier tokens on every path")
    func oneServer() async throws {
        try await TestServer.with { server in
            let old = TestKeys.token("alice", session: "s-laptop", issuedAt: Self.before)
            let laptop = try await server.connect(old)
            let phone = try await server.connect(TestKeys.token("alice", session: "s-phone", issuedAt: Self.before))
            let bob = try await server.connect(TestKeys.token("bob", issuedAt: Self.before))

            let reply = try await server.api("POST", "/api/v1/users/alice/revoke", json: #"{"reason":"compromised"}"#)
            #expect(reply.status == 200, "\(reply.text)")
            #expect(try reply.json()["revokedUser"]?.stringValue == "alice")
            let issuedBefore = try #require(try reply.json()["issuedBefore"]?.stringValue)
            #expect(issuedBefore.hasSuffix("Z"))

            for socket in [laptop, phone] {
                let close = try await socket.nextClose()
                #expect(close.code == 4009)
                #expect(close.reason == "compromised")
            }
            _ = try await bob.drainUntilPong()

            // The upgrade refuses the earlier token, whichever session it names.
            let refused = try await server.handshake(path: "/ws/events?token=\(old)")
            #expect(refused.status == 401)
            #expect(try refused.json()["error"]?["code"]?.stringValue == "session_revoked")
            // So does the HTTP API for a revoked administrator.
            let opsToken = TestKeys.token("ops-2", admin: true, issuedAt: Self.before)
            #expect(try await server.api("GET", "/api/v1/stats", token: opsToken).status == 200)
            #expect(try await server.api("POST", "/api/v1/users/ops-2/revoke", token: opsToken).status == 200)
            let api = try await server.api("GET", "/api/v1/stats", token: opsToken)
            #expect(api.status == 401)
            #expect(try api.json()["error"]?["code"]?.stringValue == "session_revoked")
            // A token issued after the revocation (the next whole second) connects.
            let fresh = try await server.connect(
                TestKeys.token("alice", session: "s-laptop", issuedAt: .now() + .seconds(1))
            )
            for socket in [laptop, phone, bob, fresh] { await socket.close() }
        }
    }

    @Test("an in-band refresh with a revoked token is refused; a fresh one is accepted")
    func refresh() async throws {
        try await TestServer.with { server in
            // Issued "later" than the revocation below (within the verifier's leeway for `iat`), however slow the
            // machine: the connection stays open.
            let socket = try await server.connect(TestKeys.token("carol", issuedAt: .now() + .seconds(10)))
            try await server.hub.revoke(userID: "carol")
            let old = TestKeys.token("carol", issuedAt: Self.before)
            try await socket.sendText(#"{"type":"refresh_token","id":"r1","payload":{"token":"\#(old)"}}"#)
            let error = try await socket.nextMessage(type: "error")
            #expect(error["payload"]?["code"]?.stringValue == "session_revoked", "\(error)")
            await socket.close()
        }
    }

    @Test(
        "on two servers sharing Redis: revoking through one closes the user's sockets on both",
        .enabled(if: RedisTestServer.enabled, "needs redis-server or REDIS_URL")
    )
    func twoServers() async throws {
        try await withRedis { configuration, _ in
            try await withTwoServers(configuration) { serverA, serverB in
                let old = TestKeys.token("alice", session: "s-laptop", issuedAt: Self.before)
                let onA = try await serverA.connect(old)
                let onB = try await serverB.connect(
                    TestKeys.token("alice", session: "s-phone", issuedAt: Self.before)
                )
                let bobOnA = try await serverA.connect(TestKeys.token("bob", issuedAt: Self.before))

                let reply = try await serverB.api("POST", "/api/v1/users/alice/revoke")
                #expect(reply.status == 200, "\(reply.text)")
                for socket in [onA, onB] {
                    #expect(try await socket.nextClose().code == 4009)
                }
                _ = try await bobOnA.drainUntilPong()
                for server in [serverA, serverB] {
                    let refused = try await server.handshake(path: "/ws/events?token=\(old)")
                    #expect(refused.status == 401)
                    #expect(try refused.json()["error"]?["code"]?.stringValue == "session_revoked")
                }
                let fresh = try await serverA.connect(
                    TestKeys.token("alice", session: "s-laptop", issuedAt: .now() + .seconds(1))
                )
                for socket in [onA, onB, bobOnA, fresh] { await socket.close() }
            }
        }
    }
}
