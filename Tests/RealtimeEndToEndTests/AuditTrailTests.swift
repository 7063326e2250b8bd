// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Testing

/// The audit trail over real sockets: every HTTP API request an actor was admitted for, and every action of an
/// administrator's WebSocket, becomes an `admin.action.*` event for administrators, with no token in it.
@Suite("Audit trail")
struct AuditTrailTests {
    @Test("API actions reach administrators as admin.action.* with actor, target, result and address")
    func apiActions() async throws {
        try await TestServer.with { server in
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            try await admin.sendText(#"{"type":"subscribe","payload":{"eventTypes":["admin.action.*"]}}"#)
            _ = try await admin.nextMessage(type: "subscribed")
            // The subscription itself is an administrator's WebSocket action.
            let subscribed = try await admin.nextMessage(type: "event")
            #expect(subscribed["payload"]?["type"]?.stringValue == "admin.action.subscribe")
            #expect(subscribed["payload"]?["data"]?["actor"]?.stringValue == "root")
            #expect(subscribed["payload"]?["data"]?["channel"]?.stringValue == "websocket")
            #expect(subscribed["payload"]?["data"]?["target"]?.stringValue == "patterns:admin.action.*")

            let opsToken = TestKeys.token("ops", admin: true)
            let revoked = try await server.api("POST", "/api/v1/users/mallory/revoke", token: opsToken)
            #expect(revoked.status == 200, "\(revoked.text)")
            let event = try await admin.nextMessage(type: "event")
            let payload = try #require(event["payload"])
            #expect(payload["type"]?.stringValue == "admin.action.revoke_user")
            #expect(payload["data"]?["actor"]?.stringValue == "ops")
            #expect(payload["data"]?["action"]?.stringValue == "revoke_user")
            #expect(payload["data"]?["target"]?.stringValue == "user:mallory")
            #expect(payload["data"]?["result"]?.stringValue == "success")
            #expect(payload["data"]?["clientAddress"]?.stringValue == "127.0.0.1")
            #expect(payload["data"]?["channel"]?.stringValue == "http")
            #expect(payload["data"]?["status"]?.intValue == 200)
            #expect(!"\(event)".contains(opsToken), "the actor's token is never recorded")

            // A refused action is recorded as a failure with its error code.
            let refused = try await server.api(
                "POST",
                "/api/v1/sessions",
                token: opsToken,
                json: #"{"sessionId":"s9","userId":"bob","expiresAt":1}"#
            )
            #expect(refused.status == 400)
            let failure = try await admin.nextMessage(type: "event")
            #expect(failure["payload"]?["type"]?.stringValue == "admin.action.create_session")
            #expect(failure["payload"]?["data"]?["target"]?.stringValue == "session:s9")
            #expect(failure["payload"]?["data"]?["result"]?.stringValue == "failure")
            #expect(failure["payload"]?["data"]?["error"]?.stringValue == "invalid_field")

            // Reads are logged, not announced: the next event is the disconnect's. A user's own socket never
            // sees any of them.
            let alice = try await server.connect(TestKeys.token("alice"))
            try await alice.sendText(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
            _ = try await alice.nextMessage(type: "subscribed")
            #expect(try await server.api("GET", "/api/v1/users/bob/connections", token: opsToken).status == 200)
            #expect(try await server.api("POST", "/api/v1/users/bob/disconnect", token: opsToken).status == 200)
            let next = try await admin.nextMessage(type: "event")
            #expect(next["payload"]?["type"]?.stringValue == "admin.action.disconnect_user")
            #expect(next["payload"]?["data"]?["target"]?.stringValue == "user:bob")
            // Delivered to this server's recipients at once: had alice been one, it would be queued before the pong.
            let seen = try await alice.drainUntilPong()
            let events = seen.filter { $0["type"]?.stringValue == "event" }
            #expect(events.isEmpty)
            for socket in [admin, alice] { await socket.close() }
        }
    }
}
