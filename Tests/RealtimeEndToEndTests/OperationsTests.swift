// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import ServiceLifecycle
import Testing

@Suite("Operations over the HTTP API and graceful shutdown")
struct OperationsTests {
    @Test("revoking a session closes exactly its sockets with 4009 and refuses its tokens")
    func revocation() async throws {
        try await TestServer.with { server in
            let laptop1 = try await server.connect(TestKeys.token("alice", session: "s-laptop"))
            let laptop2 = try await server.connect(TestKeys.token("alice", session: "s-laptop"))
            let phone = try await server.connect(TestKeys.token("alice", session: "s-phone"))
            let bob = try await server.connect(TestKeys.token("bob"))
            try await phone.sendText(#"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
            _ = try await phone.nextMessage(type: "subscribed")

            let reply = try await server.api(
                "POST",
                "/api/v1/sessions/s-laptop/revoke",
                json: #"{"userId":"alice","reason":"stolen laptop"}"#
            )
            #expect(reply.status == 200, "\(reply.text)")
            #expect(try reply.json()["revoked"]?.stringValue == "s-laptop")

            for socket in [laptop1, laptop2] {
                let close = try await socket.nextClose()
                #expect(close.code == 4009)
                #expect(close.reason == "stolen laptop")
            }
            // The user's other session hears about it and stays open.
            let revoked = try await phone.nextMessage(type: "event")
            #expect(revoked["payload"]?["type"]?.stringValue == "session.revoked")
            #expect(revoked["payload"]?["sessionId"]?.stringValue == "s-laptop")
            _ = try await phone.drainUntilPong()
            _ = try await bob.drainUntilPong()

            // The revoked session's tokens no longer connect; others do.
            let refused = try await server.handshake(
                path: "/ws/events?token=\(TestKeys.token("alice", session: "s-laptop"))"
            )
            #expect(refused.status == 401)
            #expect(try refused.json()["error"]?["code"]?.stringValue == "session_revoked")
            let again = try await server.connect(TestKeys.token("alice", session: "s-phone"))
            for socket in [laptop1, laptop2, phone, bob, again] { await socket.close() }
        }
    }

    @Test("disconnecting a user closes their sockets with 4011")
    func disconnectUser() async throws {
        try await TestServer.with { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            let bob = try await server.connect(TestKeys.token("bob"))
            let reply = try await server.api("POST", "/api/v1/users/alice/disconnect")
            #expect(reply.status == 200, "\(reply.text)")
            #expect(try await alice.nextClose().code == 4011)
            _ = try await bob.drainUntilPong()
            await alice.close()
            await bob.close()
        }
    }

    @Test("the API wants an admin or service token; stats report the connections")
    func apiAuthenticationAndStats() async throws {
        try await TestServer.with { server in
            let alice = try await server.connect(TestKeys.token("alice"))

            let anonymous = try await server.api("GET", "/api/v1/stats", token: nil)
            #expect(anonymous.status == 401)
            #expect(anonymous.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
            #expect(try anonymous.json()["error"]?["code"]?.stringValue == "missing_token")

            let forged = try await server.api("GET", "/api/v1/stats", token: "abc.def.ghi")
            #expect(forged.status == 401)
            #expect(try forged.json()["error"]?["code"]?.stringValue == "invalid_token")

            let user = try await server.api("GET", "/api/v1/stats", token: TestKeys.token("alice"))
            #expect(user.status == 403)
            #expect(try user.json()["error"]?["code"]?.stringValue == "forbidden")

            let service = try await server.api(
                "GET",
                "/api/v1/stats",
                token: TestKeys.token("auth-svc", roles: ["service"])
            )
            #expect(service.status == 200)

            let stats = try await server.api("GET", "/api/v1/stats")
            #expect(stats.status == 200)
            let body = try stats.json()
            #expect(body["server"]?["connections"]?.intValue == 1)
            #expect(body["server"]?["serverId"]?.stringValue == server.hub.serverID.rawValue)
            await alice.close()
        }
    }

    @Test("graceful shutdown: clients are told to reconnect, then closed with 1001")
    func gracefulShutdown() async throws {
        try await TestServer.with({
            $0.shutdown.reconnectJitter = .milliseconds(10)
            $0.shutdown.batchInterval = .milliseconds(10)
        }) { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            await server.serviceGroup.triggerGracefulShutdown()
            for socket in [alice, admin] {
                let reconnect = try await socket.nextMessage(type: "reconnect")
                #expect(reconnect["payload"]?["reason"]?.stringValue == "server_shutdown")
                #expect((reconnect["payload"]?["retryAfterMs"]?.intValue ?? -1) >= 1000)
                let close = try await socket.nextClose()
                #expect(close.code == 1001)
                await socket.close()
            }
        }
    }
}
