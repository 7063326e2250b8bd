// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWT
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Refresh tokens are refused with `wrong_token_type` at the upgrade, in `auth` and `refresh_token`, by the
/// HTTP API and by `realtime-server` (serve and verify-token), over real sockets.
@Suite("Refresh tokens are never access tokens")
struct RefreshTokenEndToEndTests {
    static let refreshSecret = "e2e-refresh-secret-0123456789abcdef0123456789"

    /// The test servers' verifier with the refresh secret as refresh key.
    static func verifier() throws -> JWTVerifier {
        let plain = TestKeys.verifier()
        return try JWTVerifier(
            keys: plain.keys,
            refreshKeys: JWTKeySet([try .hmac(secret: refreshSecret)]),
            configuration: plain.configuration
        )
    }

    /// A token with the test servers' claims for `user`, signed with `secret`, with `changes` to its claims.
    static func token(_ user: String, secret: String, admin: Bool = false, _ changes: JSONObject = [:]) throws -> String
    {
        let now = Timestamp.now()
        var claims: JSONObject = [
            "sub": .string(user), "sid": .string("s-\(user)"), "aud": .string(TestKeys.audience),
            "iat": .int(now.secondsSinceEpoch), "exp": .int(now.secondsSinceEpoch + 600),
        ]
        if admin { claims["roles"] = ["admin"] }
        claims.merge(changes) { $1 }
        return try JWTSigner(key: .hmac(secret: secret)).sign(claims)
    }

    /// Refresh tokens of both kinds: marked `typ: refresh` under the access secret, and untyped under the
    /// refresh secret.
    static func refreshTokens(_ user: String, admin: Bool = false) throws -> [String] {
        [
            try token(user, secret: TestKeys.secret, admin: admin, ["typ": "refresh"]),
            try token(user, secret: refreshSecret, admin: admin),
        ]
    }

    static func expectWrongTokenType(_ reply: HTTPReply) throws {
        #expect(reply.status == 401, "\(reply.text)")
        #expect(try reply.json()["error"]?["code"]?.stringValue == "wrong_token_type", "\(reply.text)")
    }

    @Test("an upgrade with a refresh token is refused with 401 wrong_token_type; other refusals say invalid_token")
    func upgrade() async throws {
        try await TestServer.with(verifier: try Self.verifier()) { server in
            for token in try Self.refreshTokens("alice") {
                try Self.expectWrongTokenType(try await server.handshake(path: "/ws/events?token=\(token)"))
                let bearer = try await server.handshake(
                    path: "/ws/events",
                    headers: [("Authorization", "Bearer \(token)")]
                )
                try Self.expectWrongTokenType(bearer)
            }
            // A forged token that says it is a refresh token learns nothing more than "invalid".
            let forged = try Self.token("alice", secret: "forged-secret-0123456789abcdef0123456789", ["typ": "refresh"])
            let refused = try await server.handshake(path: "/ws/events?token=\(forged)")
            #expect(refused.status == 401)
            #expect(try refused.json()["error"]?["code"]?.stringValue == "invalid_token")
            // The access token of the same user is admitted.
            let alice = try await server.connect(TestKeys.token("alice"))
            await alice.close()
        }
    }

    @Test("refresh_token with a refresh token is refused with wrong_token_type and the connection stays open")
    func inBandRefresh() async throws {
        try await TestServer.with(verifier: try Self.verifier()) { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            for (index, token) in try Self.refreshTokens("alice").enumerated() {
                try await alice.sendText(#"{"type":"refresh_token","id":\#(index),"payload":{"token":"\#(token)"}}"#)
                let error = try await alice.nextMessage(type: "error")
                #expect(error["id"]?.intValue == Int64(index))
                #expect(error["payload"]?["code"]?.stringValue == "wrong_token_type")
            }
            try await alice.sendText(
                #"{"type":"refresh_token","id":"ok","payload":{"token":"\#(TestKeys.token("alice"))"}}"#
            )
            #expect(try await alice.nextMessage(type: "token_refreshed")["id"]?.stringValue == "ok")
            await alice.close()
        }
    }

    @Test("first-message auth with a refresh token: error wrong_token_type, then close 4001")
    func firstMessageAuth() async throws {
        try await TestServer.with({ $0.firstMessageAuthentication = true }, verifier: try Self.verifier()) { server in
            for token in try Self.refreshTokens("alice") {
                let socket = try await TestSocket.connect(port: server.port)
                #expect(try await socket.handshake(path: "/ws/events").status == 101)
                try await socket.sendText(#"{"type":"auth","id":"a1","payload":{"token":"\#(token)"}}"#)
                let error = try await socket.nextMessage(type: "error")
                #expect(error["id"]?.stringValue == "a1")
                #expect(error["payload"]?["code"]?.stringValue == "wrong_token_type")
                #expect(try await socket.nextClose().code == 4001)
                await socket.close()
            }
        }
    }

    // The HTTP API admits through the hub's one admission path, which tells a refresh token from a bad one.
    @Test("POST /api/v1/events with an administrator's refresh token is refused with 401 wrong_token_type")
    func publishingAPI() async throws {
        try await TestServer.with(verifier: try Self.verifier()) { server in
            let event = #"{"type":"security.high_risk.detected","userId":"alice","data":{"score":97}}"#
            for token in try Self.refreshTokens("ops", admin: true) {
                try Self.expectWrongTokenType(try await server.api("POST", "/api/v1/events", token: token, json: event))
            }
            let accepted = try await server.api("POST", "/api/v1/events", json: event)
            #expect(accepted.status == 202, "\(accepted.text)")
        }
    }

    // MARK: realtime-server

    /// A file holding `text`, removed by the caller.
    static func file(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rt-refresh-\(RandomID.hex(bytes: 4))")
        try Data(text.utf8).write(to: url)
        return url
    }

    @Test("realtime-server refuses to start with equal secrets or a weak refresh secret")
    func serveRefusesBadRefreshSecrets() async throws {
        let binary = try ExecutableTests.executable("realtime-server")
        let secret = TestKeys.secret
        let equal = try await Child(
            binary,
            ["serve", "--port", "0"],
            environment: ["JWT_SECRET": secret, "JWT_REFRESH_SECRET": secret]
        ).finish()
        #expect(equal.status != 0)
        #expect(equal.output.contains("JWT_REFRESH_SECRET must differ from JWT_SECRET"), "\(equal.output)")
        #expect(!equal.output.contains(secret))

        let secretFile = try Self.file(secret)
        defer { try? FileManager.default.removeItem(at: secretFile) }
        let equalFiles = try await Child(
            binary,
            ["serve", "--port", "0", "--refresh-secret-file", secretFile.path],
            environment: ["JWT_SECRET_FILE": secretFile.path]
        ).finish()
        #expect(equalFiles.status != 0)
        #expect(equalFiles.output.contains("must differ"), "\(equalFiles.output)")

        let weak = try await Child(
            binary,
            ["serve", "--port", "0"],
            environment: ["JWT_SECRET": secret, "JWT_REFRESH_SECRET": "short-refresh"]
        ).finish()
        #expect(weak.status != 0)
        #expect(weak.output.contains("refresh secret is 13 bytes"), "\(weak.output)")
        #expect(weak.output.contains("at least 32"))
        let weakFile = try Self.file("short-refresh")
        defer { try? FileManager.default.removeItem(at: weakFile) }
        let weakFromFile = try await Child(
            binary,
            ["serve", "--port", "0", "--production"],
            environment: ["JWT_SECRET": secret, "JWT_REFRESH_SECRET_FILE": weakFile.path]
        ).finish()
        #expect(weakFromFile.status != 0)
        #expect(weakFromFile.output.contains("refresh secret is 13 bytes"), "\(weakFromFile.output)")
    }

    @Test(
        "realtime-server: token --refresh mints what serve refuses (upgrade and refresh_token) and verify-token explains"
    )
    func serveAndVerifyToken() async throws {
        let binary = try ExecutableTests.executable("realtime-server")
        let environment = ["JWT_SECRET": TestKeys.secret, "JWT_REFRESH_SECRET": Self.refreshSecret]
        func mint(_ extra: [String]) async throws -> String {
            let run = try await Child(
                binary,
                ["token", "--user", "alice", "--session", "s-1"] + extra,
                environment: environment
            )
            .finish()
            #expect(run.status == 0, "\(run.output)")
            return run.output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let access = try await mint([])
        let refresh = try await mint(["--refresh"])
        let refreshClaims = try #require(Base64URL.decode(String(refresh.split(separator: ".")[1])))
        #expect(try JSONParser().parse(refreshClaims)["typ"]?.stringValue == "refresh")
        let untypedRefresh = try Self.token("alice", secret: Self.refreshSecret, ["aud": nil])

        let server = try Child(binary, ["serve", "--port", "0", "--log-level", "warning"], environment: environment)
        defer { server.stop() }
        let listening = try await server.line(containing: "listening on http://")
        let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
        for token in [refresh, untypedRefresh] {
            let socket = try await TestSocket.connect(port: port)
            try Self.expectWrongTokenType(try await socket.handshake(path: "/ws/events?token=\(token)"))
            await socket.close()
        }
        let socket = try await TestSocket.connect(port: port)
        #expect(try await socket.handshake(path: "/ws/events?token=\(access)").status == 101)
        _ = try await socket.nextMessage(type: "connected")
        try await socket.sendText(#"{"type":"refresh_token","id":"r","payload":{"token":"\#(refresh)"}}"#)
        #expect(try await socket.nextMessage(type: "error")["payload"]?["code"]?.stringValue == "wrong_token_type")
        await socket.close()
        kill(server.process.processIdentifier, SIGTERM)
        #expect(try await server.finish().status == 0)

        // verify-token: by the marker with the access secret alone, by the refresh key when it is given.
        let secretFile = try Self.file(TestKeys.secret)
        let refreshFile = try Self.file(Self.refreshSecret)
        defer {
            try? FileManager.default.removeItem(at: secretFile)
            try? FileManager.default.removeItem(at: refreshFile)
        }
        let marked = try Self.token("alice", secret: TestKeys.secret, ["typ": "refresh", "aud": nil])
        let cases: [([String], String, String)] = [
            ([marked, "--secret-file", secretFile.path], "reason: wrong_token_type", "typ refresh"),
            ([refresh, "--secret-file", secretFile.path], "reason: bad_signature", "no refresh key"),
            (
                [untypedRefresh, "--secret-file", secretFile.path, "--refresh-secret-file", refreshFile.path],
                "reason: wrong_token_type", "refresh key"
            ),
        ]
        for (arguments, expected, label) in cases {
            let run = try await Child(binary, ["verify-token"] + arguments).finish()
            #expect(run.status == 1, "\(label): \(run.output)")
            #expect(run.output.contains(expected), "\(label): \(run.output)")
        }
        for token in [refresh, untypedRefresh] {
            let viaEnvironment = try await Child(binary, ["verify-token", token], environment: environment).finish()
            #expect(viaEnvironment.status == 1)
            #expect(viaEnvironment.output.contains("reason: wrong_token_type"), "\(viaEnvironment.output)")
        }
        let accepted = try await Child(binary, ["verify-token", access], environment: environment).finish()
        #expect(accepted.status == 0, "\(accepted.output)")
    }
}
