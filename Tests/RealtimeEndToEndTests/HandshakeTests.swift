// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

@Suite("Handshake over a real socket")
struct HandshakeTests {
    @Test("a token in the query or in Authorization: Bearer opens a connection")
    func tokenInQueryAndHeader() async throws {
        try await TestServer.with { server in
            let viaQuery = try await TestSocket.connect(port: server.port)
            let queryReply = try await viaQuery.handshake(path: "/ws/events?token=\(TestKeys.token("alice"))")
            #expect(queryReply.status == 101)
            let connected = try await viaQuery.nextMessage(type: "connected")
            #expect(connected["payload"]?["userId"]?.stringValue == "alice")
            #expect(connected["payload"]?["endpoint"]?.stringValue == "events")

            let viaHeader = try await TestSocket.connect(port: server.port)
            let headerReply = try await viaHeader.handshake(
                path: "/ws/events",
                headers: [("Authorization", "Bearer \(TestKeys.token("bob"))")]
            )
            #expect(headerReply.status == 101)
            #expect(headerReply.header("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            let bob = try await viaHeader.nextMessage(type: "connected")
            #expect(bob["payload"]?["userId"]?.stringValue == "bob")

            let admin = try await TestSocket.connect(port: server.port)
            let adminReply = try await admin.handshake(path: "/ws/admin?token=\(TestKeys.token("root", admin: true))")
            #expect(adminReply.status == 101)
            let adminConnected = try await admin.nextMessage(type: "connected")
            #expect(adminConnected["payload"]?["endpoint"]?.stringValue == "admin")
            await viaQuery.close()
            await viaHeader.close()
            await admin.close()
        }
    }

    @Test("refused upgrades get the hub's status and JSON body, never a WebSocket")
    func rejections() async throws {
        try await TestServer.with({ $0.origin.allowedOrigins = ["https://app.example.com"] }) { server in
            func expectRefused(
                _ path: String,
                headers: [(String, String)] = [],
                status: Int,
                code: String,
                sourceLocation: SourceLocation = #_sourceLocation
            ) async throws {
                let reply = try await server.handshake(path: path, headers: headers)
                #expect(reply.status == status, "\(path)", sourceLocation: sourceLocation)
                #expect(reply.header("Upgrade") == nil, sourceLocation: sourceLocation)
                #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true)
                let body = try reply.json()
                #expect(body["error"]?["code"]?.stringValue == code, "\(reply.text)", sourceLocation: sourceLocation)
            }
            try await expectRefused("/ws/events", status: 401, code: "missing_token")
            try await expectRefused("/ws/events?token=not.a.jwt", status: 401, code: "invalid_token")
            let forged = TestKeys.token("alice").dropLast(4) + "AAAA"
            try await expectRefused("/ws/events?token=\(forged)", status: 401, code: "invalid_token")
            let expired = TestKeys.token("alice", lifetime: .seconds(60), issuedAt: .now() - .seconds(3600))
            try await expectRefused("/ws/events?token=\(expired)", status: 401, code: "invalid_token")
            // Expired 10 s ago: within the JWT verifier's 30 s leeway, but the hub would close the connection at
            // its next heartbeat (fuzz: admitted, then closed with 4002), so admission refuses it.
            let justExpired = TestKeys.token("alice", lifetime: .seconds(60), issuedAt: .now() - .seconds(70))
            #expect(throws: Never.self) { try TestKeys.verifier().verify(justExpired, at: .now()) }
            try await expectRefused("/ws/events?token=\(justExpired)", status: 401, code: "invalid_token")
            #expect(await server.hub.stats().server.authFailuresByReason["expired", default: 0] == 2)
            // Expiring later than a revocation is remembered (24 h by default): refused, or it would outlive one.
            let outliving = TestKeys.token("alice", lifetime: .seconds(86_400 + 600))
            try await expectRefused("/ws/events?token=\(outliving)", status: 401, code: "invalid_token")
            #expect(await server.hub.stats().server.authFailuresByReason["lifetime_too_long", default: 0] == 1)
            let otherAudience = TestKeys.token("alice", audience: "another-service")
            try await expectRefused("/ws/events?token=\(otherAudience)", status: 401, code: "invalid_token")
            try await expectRefused(
                "/ws/events",
                headers: [("Authorization", "Basic YWxpY2U6c2VjcmV0")],
                status: 401,
                code: "invalid_authorization"
            )
            try await expectRefused(
                "/ws/events?token=\(TestKeys.token("alice"))",
                headers: [("Origin", "https://evil.example.net")],
                status: 403,
                code: "origin_not_allowed"
            )
            try await expectRefused("/ws/admin?token=\(TestKeys.token("alice"))", status: 403, code: "admin_required")
            try await expectRefused("/ws/elsewhere?token=\(TestKeys.token("alice"))", status: 404, code: "not_found")

            // An allowed origin passes.
            let socket = try await TestSocket.connect(port: server.port)
            let reply = try await socket.handshake(
                path: "/ws/events?token=\(TestKeys.token("alice"))",
                headers: [("Origin", "https://app.example.com")]
            )
            #expect(reply.status == 101)
            await socket.close()

            // Every refusal was counted by reason.
            let stats = await server.hub.stats()
            #expect(stats.server.rejectionsByReason["invalid_token", default: 0] >= 4)
            #expect(stats.server.rejectionsByReason["admin_required"] == 1)
        }
    }

    @Test("a refused upgrade over the rate limit carries Retry-After")
    func retryAfter() async throws {
        try await TestServer.with({
            $0.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 2, period: .seconds(60))
        }) { server in
            var statuses: [Int] = []
            var retryAfter: String?
            for _ in 0..<4 {
                let reply = try await server.handshake(path: "/ws/events?token=\(TestKeys.token("alice"))")
                statuses.append(reply.status)
                if reply.status == 429 { retryAfter = reply.header("Retry-After") }
            }
            #expect(statuses.prefix(2).allSatisfy { $0 == 101 })
            #expect(statuses.last == 429)
            let seconds = try #require(retryAfter.flatMap(Int.init))
            #expect(seconds >= 1 && seconds <= 60)
        }
    }

    @Test("a plain GET on a WebSocket path answers 426; health routes answer JSON")
    func plainHTTP() async throws {
        try await TestServer.with { server in
            let plain = try await TestSocket.request(port: server.port, "GET", "/ws/events")
            #expect(plain.status == 426)
            #expect(try plain.json()["error"]?["code"]?.stringValue == "upgrade_required")

            let health = try await TestSocket.request(port: server.port, "GET", "/ws/health")
            #expect(health.status == 200)
            let body = try health.json()
            #expect(body["healthy"]?.boolValue == true)
            #expect(body["serverId"]?.stringValue == server.hub.serverID.rawValue)
            #expect(body["components"]?["eventBus"]?["status"]?.stringValue == "healthy")

            let live = try await TestSocket.request(port: server.port, "GET", "/health/live")
            #expect(live.status == 200)
            let ready = try await TestSocket.request(port: server.port, "GET", "/health/ready")
            #expect(ready.status == 200)
            #expect(try ready.json()["ready"]?.boolValue == true)
            let head = try await TestSocket.request(port: server.port, "HEAD", "/health/ready")
            #expect(head.status == 200)
            #expect(head.body.isEmpty)
        }
    }
}
