// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWT
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `realtime-server` in the session mode `WEBSOCKET_SESSION_MODE` names, with the registry API and the audit log.
@Suite("realtime-server's WEBSOCKET_SESSION_MODE")
struct SessionModeExecutableTests {
    /// A `service` token that names no session, as an auth service holds.
    static func serviceToken() throws -> String {
        let now = Timestamp.now()
        return try TestKeys.signer.sign([
            "sub": "auth-svc", "aud": .string(TestKeys.audience), "roles": ["service"],
            "iat": .int(now.secondsSinceEpoch), "exp": .int(now.secondsSinceEpoch + 600),
        ])
    }

    @Test("registry: only sessions created through the API connect; the service's actions are in the log")
    func registry() async throws {
        let server = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--port", "0", "--log-level", "notice"],
            environment: [
                "JWT_SECRET": TestKeys.secret, "JWT_AUDIENCE": TestKeys.audience,
                "WEBSOCKET_SESSION_MODE": "registry",
            ]
        )
        defer { server.stop() }
        let listening = try await server.line(containing: "listening on http://")
        let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
        let service = try Self.serviceToken()
        let token = TestKeys.token("alice", session: "s-1")
        let before = try await TestSocket.connect(port: port)
        #expect(try await before.handshake(path: "/ws/events?token=\(token)").status == 401)

        let expiresAt = (Timestamp.now() + .seconds(3600)).secondsSinceEpoch
        let created = try await TestSocket.request(
            port: port,
            "POST",
            "/api/v1/sessions",
            headers: [("Authorization", "Bearer \(service)"), ("Content-Type", "application/json")],
            body: Array(#"{"sessionId":"s-1","userId":"alice","expiresAt":\#(expiresAt)}"#.utf8)
        )
        #expect(created.status == 201, "\(created.text)")
        #expect(try created.json()["mode"]?.stringValue == "registry")

        let socket = try await TestSocket.connect(port: port)
        #expect(try await socket.handshake(path: "/ws/events?token=\(token)").status == 101)
        let other = try await TestSocket.connect(port: port)
        let refused = try await other.handshake(path: "/ws/events?token=\(TestKeys.token("alice", session: "s-2"))")
        #expect(try refused.json()["error"]?["code"]?.stringValue == "session_inactive")

        // The audit line names the actor, never its token.
        let line = try await server.line(containing: "admin action")
        #expect(line.contains("auth-svc"))
        #expect(line.contains("create_session"))
        #expect(!server.output.contains(service))
        for client in [before, socket, other] { await client.close() }
        kill(server.process.processIdentifier, SIGTERM)
        _ = try await server.finish()
    }

    @Test("an unknown session mode stops the server with the variable named")
    func invalidMode() async throws {
        let refused = try await Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--development", "--port", "0"],
            environment: ["WEBSOCKET_SESSION_MODE": "sessions"]
        ).finish()
        #expect(refused.status != 0)
        #expect(refused.output.contains("WEBSOCKET_SESSION_MODE"))
    }
}
