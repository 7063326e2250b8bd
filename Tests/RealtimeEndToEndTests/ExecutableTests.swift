// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A child process of the test: output to a temporary file, exit awaited with a bound, killed by PID when left
/// running.
final class Child: Sendable {
    let process: Process
    let outputFile: URL
    private let exit = ByteInbox()

    init(_ executable: URL, _ arguments: [String], environment: [String: String] = [:]) throws {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var inherited = ProcessInfo.processInfo.environment.filter {
            !$0.key.hasPrefix("JWT_") && !$0.key.hasPrefix("WEBSOCKET_") && $0.key != "REDIS_URL"
        }
        inherited.merge(environment) { $1 }
        process.environment = inherited
        outputFile = FileManager.default.temporaryDirectory.appendingPathComponent("rt-child-\(RandomID.hex(bytes: 6))")
        FileManager.default.createFile(atPath: outputFile.path, contents: nil)
        let handle = try FileHandle(forWritingTo: outputFile)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        let exit = self.exit
        process.terminationHandler = { _ in exit.close() }
        self.process = process
        try process.run()
    }

    deinit { try? FileManager.default.removeItem(at: outputFile) }

    var output: String { (try? String(contentsOf: outputFile, encoding: .utf8)) ?? "" }

    /// Waits for the exit; returns the status and the whole output.
    func finish(timeout: Duration = .seconds(30)) async throws -> (status: Int32, output: String) {
        _ = try await exit.take(timeout: timeout, "the process to exit") { _, closed in closed ? true : nil }
        return (process.terminationStatus, output)
    }

    /// Waits (bounded polling of the output file: a file offers no event) for a line containing `marker`.
    func line(containing marker: String, timeout: Duration = .seconds(60)) async throws -> String {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let line = output.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestTimeout(description: "no '\(marker)' in the output: \(output.suffix(300))")
    }

    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

@Suite("The realtime-server and realtime-example executables")
struct ExecutableTests {
    /// Built next to the test bundle by `swift test` / `swift build --build-tests`.
    static func executable(_ name: String) throws -> URL {
        let url = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: url.path) else {
            throw TestTimeout(description: "\(url.path) is missing: run swift build first")
        }
        return url
    }

    @Test("serve in development mode: banner with tokens, the example publishes, SIGTERM drains with 1001 and exits 0")
    func serveAndShutdown() async throws {
        let development = try await DevelopmentServer.start()
        let (server, port, userToken, adminToken) = (
            development.child, development.port, development.userToken, development.adminToken
        )
        defer { server.stop() }

        let socket = try await TestSocket.connect(port: port)
        #expect(try await socket.handshake(path: "/ws/events?token=\(userToken)").status == 101)
        _ = try await socket.nextMessage(type: "connected")
        try await socket.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
        _ = try await socket.nextMessage(type: "subscribed")

        let example = try Child(
            try Self.executable("realtime-example"),
            ["--port", String(port), "--token", adminToken, "--user", "dev-user"]
        )
        let run = try await example.finish()
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("POST /api/v1/events -> 202"))
        #expect(run.output.contains("GET /api/v1/stats -> 200"))
        let event = try await socket.nextMessage(type: "event")
        #expect(event["payload"]?["type"]?.stringValue == "security.suspicious.activity")

        let metrics = try await TestSocket.request(port: port, "GET", "/metrics")
        #expect(metrics.status == 200)
        #expect(metrics.text.contains("realtime_"))
        // Another method on the hub's route outside its prefixes: JSON 405 with Allow (was an empty 404).
        let postMetrics = try await TestSocket.request(port: port, "POST", "/metrics")
        #expect(postMetrics.status == 405)
        #expect(postMetrics.header("Allow") == "GET, HEAD")
        #expect(try postMetrics.json()["error"]?["code"]?.stringValue == "method_not_allowed")
        // A path outside every prefix of the hub: the same JSON 404 (was an empty body).
        let unknown = try await TestSocket.request(port: port, "GET", "/nothing/here")
        #expect(unknown.status == 404)
        #expect(unknown.header("Content-Type")?.hasPrefix("application/json") == true)
        #expect(try unknown.json()["error"]?["code"]?.stringValue == "not_found")
        // HEAD on a GET route (fourth fuzz: 405): the GET's status and headers, no body.
        let head = try await TestSocket.request(port: port, "HEAD", "/ws/health")
        #expect(head.status == 200)
        #expect(head.header("Content-Type")?.hasPrefix("application/json") == true)
        #expect(head.body.isEmpty)

        kill(server.process.processIdentifier, SIGTERM)
        let close = try await socket.nextClose(timeout: .seconds(10))
        #expect(close.code == 1001)
        await socket.close()
        let exit = try await server.finish()
        #expect(exit.status == 0, "\(exit.output.suffix(400))")
    }

    @Test("production mode refuses a missing or weak secret with a clear message")
    func productionSecrets() async throws {
        let binary = try Self.executable("realtime-server")
        let missing = try await Child(binary, ["serve", "--production", "--port", "0"]).finish()
        #expect(missing.status != 0)
        #expect(missing.output.contains("no JWT key configured"))
        let weak = try await Child(binary, ["serve", "--port", "0"], environment: ["JWT_SECRET": "short"]).finish()
        #expect(weak.status != 0)
        #expect(weak.output.contains("at least 32"))
    }

    @Test("WEBSOCKET_API_SERVICE_ACTIONS narrows what service tokens may do; an unknown action stops the server")
    func serviceActions() async throws {
        let binary = try Self.executable("realtime-server")
        let environment = [
            "JWT_SECRET": TestKeys.secret, "JWT_AUDIENCE": TestKeys.audience,
            "WEBSOCKET_API_SERVICE_ACTIONS": "publish_event, notify_user",
        ]
        let server = try Child(binary, ["serve", "--port", "0", "--log-level", "info"], environment: environment)
        defer { server.stop() }
        let listening = try await server.line(containing: "listening on http://")
        let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
        func call(_ method: String, _ path: String, _ token: String, _ json: String = "") async throws -> HTTPReply {
            try await TestSocket.request(
                port: port,
                method,
                path,
                headers: [("Authorization", "Bearer \(token)"), ("Content-Type", "application/json")],
                body: Array(json.utf8)
            )
        }
        let service = TestKeys.token("risk-engine", roles: ["service"])
        let event = #"{"type":"security.high_risk.detected","userId":"alice"}"#
        #expect(try await call("POST", "/api/v1/events", service, event).status == 202)
        let revoke = try await call("POST", "/api/v1/users/alice/revoke", service)
        #expect(revoke.status == 403, "\(revoke.text)")
        #expect(try revoke.json()["error"]?["message"]?.stringValue?.contains("'revoke_user'") == true)
        let admin = TestKeys.token("ops", admin: true)
        #expect(try await call("POST", "/api/v1/users/alice/revoke", admin).status == 200)
        server.stop()

        var unknown = environment
        unknown["WEBSOCKET_API_SERVICE_ACTIONS"] = "publish_event,revoke_everyone"
        let refused = try await Child(binary, ["serve", "--port", "0"], environment: unknown).finish()
        #expect(refused.status != 0)
        #expect(refused.output.contains("unknown action 'revoke_everyone'"), "\(refused.output.suffix(400))")
        #expect(refused.output.contains("publish_events"), "the known actions are listed")
    }

    @Test("token mints with the configured key; verify-token prints claims or reason: <code>")
    func tokenAndVerifyToken() async throws {
        let binary = try Self.executable("realtime-server")
        let secret = "verify-token-test-secret-0123456789abcdef"
        let secretFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            "rt-secret-\(RandomID.hex(bytes: 4))"
        )
        try Data(secret.utf8).write(to: secretFile)
        defer { try? FileManager.default.removeItem(at: secretFile) }

        let minted = try await Child(
            binary,
            ["token", "--user", "alice", "--admin", "--session", "s-1", "--ttl", "600"],
            environment: ["JWT_SECRET": secret]
        ).finish()
        #expect(minted.status == 0, "\(minted.output)")
        let token = minted.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.split(separator: ".").count == 3)
        // A token the server would refuse as outliving a revocation (`lifetime_too_long`) is not minted.
        let tooLong = try await Child(
            binary,
            ["token", "--user", "alice", "--ttl", "7200"],
            environment: ["JWT_SECRET": secret, "WEBSOCKET_REVOCATION_RETENTION": "3600000"]
        ).finish()
        #expect(tooLong.status != 0)
        #expect(tooLong.output.contains("revocation retention (3600 s)"), "\(tooLong.output)")

        let accepted = try await Child(binary, ["verify-token", token, "--secret-file", secretFile.path]).finish()
        #expect(accepted.status == 0, "\(accepted.output)")
        let claims = try JSONParser().parse(accepted.output.trimmingCharacters(in: .whitespacesAndNewlines))
        #expect(claims["sub"]?.stringValue == "alice")
        #expect(claims["sid"]?.stringValue == "s-1")

        let now = Int(Timestamp.now().secondsSinceEpoch)
        let cases: [([String], String)] = [
            (["--at", String(now + 7200)], "reason: expired"),
            (["--at", String(now - 7200)], "reason: issued_in_future"),
            (["--audience", "billing"], "reason: missing_claim"),
            (["--require-claim", "tenant"], "reason: missing_claim"),
            (["--token-type-claim", "token_use", "--token-type", "access"], "reason: "),
            (["--max-token-bytes", "20"], "reason: too_large"),
        ]
        for (extra, expected) in cases {
            let refused = try await Child(binary, ["verify-token", token, "--secret-file", secretFile.path] + extra)
                .finish()
            #expect(refused.status == 1, "\(extra) \(refused.output)")
            #expect(refused.output.contains(expected), "\(extra) \(refused.output)")
        }
        let wrongKey = try await Child(
            binary,
            ["verify-token", token],
            environment: ["JWT_SECRET": "another-secret-another-secret-another-secret"]
        ).finish()
        #expect(wrongKey.status == 1)
        #expect(wrongKey.output.contains("reason: bad_signature"))
        #expect(!wrongKey.output.contains(token))
    }
}
