// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Testing

/// The session registry over the HTTP API (`POST /api/v1/sessions`, `DELETE /api/v1/sessions/{id}`,
/// `GET /api/v1/users/{id}/sessions`) and the session events the hub emits for what it does itself.
@Suite("Session registry and session events")
struct SessionRegistryTests {
    /// In-memory backends with a registry that already holds the operators' sessions (`TestKeys.token` names
    /// `s-<user>`): in registry mode the API's own tokens need a registered session too.
    static func registry() async throws -> HubBackends {
        let sessions = InMemorySessionStore(mode: .registry)
        for name in ["ops", "root"] {
            try await sessions.create("s-\(name)", userID: name, expiresAt: .now() + .seconds(3600))
        }
        return .inMemory(tokenVerifier: TestKeys.verifier(), sessionStore: sessions)
    }

    static var inAnHour: Int64 { (Timestamp.now() + .seconds(3600)).secondsSinceEpoch }

    @Test("create, list and end sessions; tokens connect only while their session is registered")
    func lifecycle() async throws {
        try await TestServer.with(backends: try await Self.registry()) { server in
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            try await admin.sendText(#"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
            _ = try await admin.nextMessage(type: "subscribed")

            let token = TestKeys.token("alice", session: "s-1")
            let unknown = try await server.handshake(path: "/ws/events?token=\(token)")
            #expect(try unknown.json()["error"]?["code"]?.stringValue == "session_inactive")

            let created = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"s-1","userId":"alice","expiresAt":\#(Self.inAnHour)}"#
            )
            #expect(created.status == 201, "\(created.text)")
            #expect(try created.json()["mode"]?.stringValue == "registry")
            let event = try await admin.nextMessage(type: "event")
            #expect(event["payload"]?["type"]?.stringValue == "session.created")
            #expect(event["payload"]?["sessionId"]?.stringValue == "s-1")
            _ = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"s-2","userId":"alice","expiresAt":\#(Self.inAnHour - 60)}"#
            )
            #expect(try await admin.nextMessage(type: "event")["payload"]?["sessionId"]?.stringValue == "s-2")

            let alice = try await server.connect(token)
            let listed = try await server.api("GET", "/api/v1/users/alice/sessions")
            #expect(listed.status == 200, "\(listed.text)")
            let ids = try listed.json()["sessions"]?.arrayValue?.compactMap { $0["sessionId"]?.stringValue }
            #expect(ids == ["s-2", "s-1"])

            let ended = try await server.api("DELETE", "/api/v1/sessions/s-1")
            #expect(ended.status == 200, "\(ended.text)")
            #expect(try ended.json()["wasActive"]?.boolValue == true)
            #expect(try await alice.nextClose().code == 4009)
            let revokedEvent = try await admin.nextMessage(type: "event")
            #expect(revokedEvent["payload"]?["type"]?.stringValue == "session.revoked")
            #expect(revokedEvent["payload"]?["userId"]?.stringValue == "alice", "the registry knows the user")
            let again = try await server.api("DELETE", "/api/v1/sessions/s-1")
            #expect(try again.json()["wasActive"]?.boolValue == false)
            let after = try await server.api("GET", "/api/v1/users/alice/sessions")
            #expect(try after.json()["sessions"]?.arrayValue?.count == 1)
            for socket in [admin, alice] { await socket.close() }
        }
    }

    @Test("a session is its user's: another user's token naming it is refused, and it is never handed over")
    func sessionsBelongToTheirUser() async throws {
        try await TestServer.with(backends: try await Self.registry()) { server in
            let created = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"alice-laptop","userId":"alice","expiresAt":\#(Self.inAnHour)}"#
            )
            #expect(created.status == 201, "\(created.text)")
            // Bob's genuine token naming Alice's session, and a service's: refused on the upgrade and the API (one
            // admission path for every way a token enters; both were admitted before).
            let bobOnAlices = TestKeys.token("bob", session: "alice-laptop")
            let upgrade = try await server.handshake(path: "/ws/events?token=\(bobOnAlices)")
            #expect(upgrade.status == 401)
            #expect(try upgrade.json()["error"]?["code"]?.stringValue == "session_inactive")
            let serviceOnAlices = TestKeys.token("svc", session: "alice-laptop", roles: ["service"])
            let api = try await server.api(
                "POST",
                "/api/v1/events",
                token: serviceOnAlices,
                json: #"{"type":"security.high_risk.detected","userId":"alice","data":{}}"#
            )
            #expect(api.status == 401, "\(api.text)")
            // Alice's own token still connects.
            let alice = try await server.connect(TestKeys.token("alice", session: "alice-laptop"))
            // Creating the id for another user is refused and moves nothing; for its own user it extends it.
            let moved = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"alice-laptop","userId":"bob","expiresAt":\#(Self.inAnHour)}"#
            )
            #expect(moved.status == 409, "\(moved.text)")
            #expect(try moved.json()["error"]?["code"]?.stringValue == "conflict")
            let listed = try await server.api("GET", "/api/v1/users/alice/sessions")
            #expect(try listed.json()["sessions"]?.arrayValue?.count == 1)
            let bobs = try await server.api("GET", "/api/v1/users/bob/sessions")
            #expect(try bobs.json()["sessions"]?.arrayValue?.count == 0)
            let extended = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"alice-laptop","userId":"alice","expiresAt":\#(Self.inAnHour + 60)}"#
            )
            #expect(extended.status == 201, "\(extended.text)")
            try await alice.sendText(#"{"type":"ping","id":"still"}"#)
            #expect(try await alice.nextMessage(type: "pong")["id"]?.stringValue == "still")
            await alice.close()
        }
    }

    @Test("bad input gets a clear error and changes nothing")
    func badInput() async throws {
        try await TestServer.with(backends: try await Self.registry()) { server in
            let cases: [(String, String)] = [
                (#"{"userId":"alice","expiresAt":\#(Self.inAnHour)}"#, "missing_field"),
                (#"{"sessionId":"","userId":"alice","expiresAt":\#(Self.inAnHour)}"#, "invalid_field"),
                (#"{"sessionId":"s","userId":"alice","expiresAt":"tomorrow"}"#, "invalid_field"),
                (#"{"sessionId":"s","userId":"alice","expiresAt":1}"#, "invalid_field"),
                (#"{"sessionId":"s","userId":"alice","expiresAt":9223372036854775807}"#, "invalid_field"),
                (
                    #"{"sessionId":"\#(String(repeating: "x", count: 257))","userId":"a","expiresAt":\#(Self.inAnHour)}"#,
                    "invalid_field"
                ),
            ]
            for (body, code) in cases {
                let reply = try await server.api("POST", "/api/v1/sessions", json: body)
                #expect(reply.status == 400, "\(body): \(reply.text)")
                #expect(try reply.json()["error"]?["code"]?.stringValue == code, "\(body): \(reply.text)")
            }
            let listed = try await server.api("GET", "/api/v1/users/alice/sessions?limit=0")
            #expect(listed.status == 400)
            #expect(
                try await server.api("GET", "/api/v1/users/alice/sessions").json()["sessions"]?.arrayValue?.isEmpty
                    == true
            )
            // A user token (of a registered session) may not manage sessions.
            let registered = try await server.api(
                "POST",
                "/api/v1/sessions",
                json: #"{"sessionId":"s-alice","userId":"alice","expiresAt":\#(Self.inAnHour)}"#
            )
            #expect(registered.status == 201)
            let user = try await server.api(
                "POST",
                "/api/v1/sessions",
                token: TestKeys.token("alice"),
                json: #"{"sessionId":"s","userId":"alice","expiresAt":\#(Self.inAnHour)}"#
            )
            #expect(user.status == 403)
        }
    }

    @Test(
        "a revoked session id cannot be created again over the API (409) in either mode, so its tokens stay refused",
        arguments: [true, false]
    )
    func aRevokedSessionStaysRevoked(registry: Bool) async throws {
        let backends = registry ? try await Self.registry() : .inMemory(tokenVerifier: TestKeys.verifier())
        try await TestServer.with(backends: backends) { server in
            let create = #"{"sessionId":"s-1","userId":"alice","expiresAt":\#(Self.inAnHour)}"#
            let created = try await server.api("POST", "/api/v1/sessions", json: create)
            #expect(created.status == 201, "\(created.text)")
            let token = TestKeys.token("alice", session: "s-1")
            let alice = try await server.connect(token)
            let revoked = try await server.api(
                "POST",
                "/api/v1/sessions/s-1/revoke",
                json: #"{"userId":"alice","reason":"stolen laptop"}"#
            )
            #expect(revoked.status == 200, "\(revoked.text)")
            #expect(try await alice.nextClose().code == 4009)
            // The fifth probe: a service allowed to create sessions undid the revocation this way.
            for body in [create, #"{"sessionId":"s-1","userId":"mallory","expiresAt":\#(Self.inAnHour)}"#] {
                let again = try await server.api("POST", "/api/v1/sessions", json: body)
                #expect(again.status == 409, "\(again.text)")
                #expect(try again.json()["error"]?["code"]?.stringValue == "conflict")
                #expect(try again.json()["error"]?["message"]?.stringValue?.contains("new session id") == true)
            }
            let upgrade = try await server.handshake(path: "/ws/events?token=\(token)")
            #expect(upgrade.status == 401, "the revoked session's token is still refused")
        }
    }

    @Test("listing sessions in revocation-list mode is a clear 409")
    func revocationListMode() async throws {
        try await TestServer.with { server in
            let reply = try await server.api("GET", "/api/v1/users/alice/sessions")
            #expect(reply.status == 409, "\(reply.text)")
            #expect(try reply.json()["error"]?["code"]?.stringValue == "registry_mode_required")
        }
    }

    @Test("the hub emits authentication.token.refresh on a refresh and session.expired when a token runs out")
    func refreshAndExpiry() async throws {
        try await TestServer.with { server in
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            try await admin.sendText(#"{"type":"subscribe","payload":{"eventTypes":["session.*","authentication.*"]}}"#)
            _ = try await admin.nextMessage(type: "subscribed")
            let alice = try await server.connect(TestKeys.token("alice", lifetime: .seconds(120)))
            try await alice.sendText(#"{"type":"subscribe","payload":{"eventTypes":["authentication.*"]}}"#)
            _ = try await alice.nextMessage(type: "subscribed")
            let fresh = TestKeys.token("alice", lifetime: .seconds(3600))
            try await alice.sendText(#"{"type":"refresh_token","id":"r1","payload":{"token":"\#(fresh)"}}"#)
            _ = try await alice.nextMessage(type: "token_refreshed")
            for socket in [alice, admin] {
                let event = try await socket.nextMessage(type: "event")
                #expect(event["payload"]?["type"]?.stringValue == "authentication.token.refresh")
                #expect(event["payload"]?["userId"]?.stringValue == "alice")
            }

            // A token about to expire: the hub closes the socket with 4002 and tells administrators.
            let bob = try await server.connect(TestKeys.token("bob", lifetime: .seconds(2)))
            #expect(try await bob.nextClose(timeout: .seconds(10)).code == 4002)
            let expired = try await admin.nextMessage(type: "event", timeout: .seconds(10))
            #expect(expired["payload"]?["type"]?.stringValue == "session.expired")
            #expect(expired["payload"]?["userId"]?.stringValue == "bob")
            #expect(expired["payload"]?["data"]?["reason"]?.stringValue == "token_expired")
            for socket in [admin, alice, bob] { await socket.close() }
        }
    }
}
