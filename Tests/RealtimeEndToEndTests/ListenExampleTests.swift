// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A `realtime-server serve` child in development mode on a free port, with the tokens its banner prints.
struct DevelopmentServer {
    let child: Child
    let port: Int
    let userToken: String
    let adminToken: String

    static func start(environment: [String: String] = [:]) async throws -> DevelopmentServer {
        let child = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--port", "0", "--log-level", "warning"],
            environment: environment
        )
        func token(_ marker: String) async throws -> String {
            try #require(try await child.line(containing: marker).split(separator: " ").last.map(String.init))
        }
        do {
            let listening = try await child.line(containing: "listening on http://")
            return DevelopmentServer(
                child: child,
                port: try #require(listening.split(separator: ":").last.flatMap { Int($0) }),
                userToken: try await token("user token (dev-user):"),
                adminToken: try await token("admin token (dev-admin):")
            )
        } catch {
            child.stop()
            throw error
        }
    }

    /// One request to the HTTP API with the admin token.
    func api(_ method: String, _ path: String, json: String = "") async throws -> HTTPReply {
        try await TestSocket.request(
            port: port,
            method,
            path,
            headers: [("Authorization", "Bearer \(adminToken)"), ("Content-Type", "application/json")],
            body: Array(json.utf8)
        )
    }

    /// `realtime-example listen` against this server's events endpoint.
    func listen(_ arguments: [String], token: String? = nil) throws -> Child {
        try Child(
            try ExecutableTests.executable("realtime-example"),
            ["listen", "--url", "ws://127.0.0.1:\(port)/ws/events", "--token", token ?? userToken] + arguments
        )
    }
}

extension Child {
    /// Waits (bounded polling of the output file, as ``line(containing:timeout:)``) until `count` lines contain
    /// `marker`.
    func lines(containing marker: String, count: Int, timeout: Duration = .seconds(60)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if output.split(separator: "\n").filter({ $0.contains(marker) }).count >= count { return }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestTimeout(description: "fewer than \(count) '\(marker)' lines: \(output.suffix(300))")
    }
}

@Suite("realtime-example listen: the client side of the example")
struct ListenExampleTests {
    @Test("prints the events its patterns match, answers pings past the idle timeout, stops after --count")
    func printsEventsAndStopsAfterCount() async throws {
        // Pings every 200 ms; a connection silent for 500 ms is closed. Only pongs keep the listener open.
        let server = try await DevelopmentServer.start(environment: [
            "WEBSOCKET_HEARTBEAT_INTERVAL": "200", "WEBSOCKET_IDLE_TIMEOUT": "500",
        ])
        defer { server.child.stop() }
        let listener = try server.listen(["--subscribe", "security.*", "--count", "2", "--show-pings"])
        defer { listener.stop() }
        #expect(try await listener.line(containing: "connected: user dev-user").contains("on events"))
        _ = try await listener.line(containing: "subscribed: security.*")
        // Four pings answered: more than the idle timeout has passed with the connection open.
        try await listener.lines(containing: "ping (answered)", count: 4)

        for (type, risk) in [("security.suspicious.activity", 1), ("authentication.login.success", 2)] {
            let reply = try await server.api(
                "POST",
                "/api/v1/events",
                json: #"{"type":"\#(type)","userId":"dev-user","data":{"risk":\#(risk)}}"#
            )
            #expect(reply.status == 202, "\(reply.body)")
        }
        _ = try await listener.line(containing: "event security.suspicious.activity user=dev-user")
        #expect(
            try await server.api(
                "POST",
                "/api/v1/events",
                json: #"{"type":"security.high_risk.detected","userId":"dev-user"}"#
            ).status == 202
        )

        let run = try await listener.finish()
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains(#"event security.suspicious.activity user=dev-user id=evt_"#))
        #expect(run.output.contains(#"data={"risk":1}"#))
        #expect(run.output.contains("event security.high_risk.detected user=dev-user"))
        #expect(!run.output.contains("authentication.login.success"), "a type outside the patterns: \(run.output)")
        #expect(run.output.contains("closed: 2 events received; the server answered 1000 (normal)"))
        #expect(!run.output.contains(server.userToken), "the token must not be printed")
    }

    @Test("a refused upgrade, a refused subscription and a close by the server end with exit 1 and the reason")
    func reportsRefusals() async throws {
        let server = try await DevelopmentServer.start()
        defer { server.child.stop() }

        let badToken = try await server.listen([], token: "not-a-token").finish()
        #expect(badToken.status == 1)
        #expect(badToken.output.contains("refused: HTTP 401 invalid_token:"), "\(badToken.output)")

        let forbidden = try await server.listen(["--subscribe", "admin.*"]).finish()
        #expect(forbidden.status == 1)
        #expect(forbidden.output.contains("subscription refused: forbidden_pattern:"), "\(forbidden.output)")

        let listener = try server.listen([])
        defer { listener.stop() }
        _ = try await listener.line(containing: "subscribed: *")
        #expect(try await server.api("POST", "/api/v1/users/dev-user/disconnect").status == 200)
        let disconnected = try await listener.finish()
        #expect(disconnected.status == 1)
        #expect(
            disconnected.output.contains(#"closed by the server: 4011 (disconnected by an operator)"#),
            "\(disconnected.output)"
        )
    }

    @Test("SIGTERM closes with a close frame, waits for the server's, and exits 0")
    func stopsOnSignal() async throws {
        let server = try await DevelopmentServer.start()
        defer { server.child.stop() }
        let listener = try server.listen(["--subscribe", "security.*"])
        defer { listener.stop() }
        _ = try await listener.line(containing: "subscribed: security.*")
        kill(listener.process.processIdentifier, SIGTERM)
        let run = try await listener.finish()
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("closed: SIGTERM received; the server answered 1000 (normal)"), "\(run.output)")
    }
}
