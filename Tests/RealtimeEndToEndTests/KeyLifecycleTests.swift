// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWKSTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Keys that change while `realtime-server` runs: key files reloaded on SIGHUP or when they change, and a JWK Set
/// fetched over HTTPS; connections stay up throughout.
@Suite("realtime-server key rotation without restart")
struct KeyLifecycleTests {
    /// A running `realtime-server` (info logs, so its reload lines can be awaited) and its port.
    struct Server {
        let child: Child
        let port: Int

        static func start(_ environment: [String: String]) async throws -> Server {
            let child = try Child(
                try ExecutableTests.executable("realtime-server"),
                ["serve", "--port", "0", "--log-level", "info"],
                environment: environment
            )
            do {
                let listening = try await child.line(containing: "listening on http://")
                return Server(
                    child: child,
                    port: try #require(listening.split(separator: ":").last.flatMap { Int($0) })
                )
            } catch {
                child.stop()
                throw error
            }
        }

        /// The HTTP status of an upgrade with `token` (the socket is closed again).
        func upgradeStatus(_ token: String) async throws -> Int {
            let socket = try await TestSocket.connect(port: port)
            do {
                let status = try await socket.handshake(path: "/ws/events?token=\(token)").status
                await socket.close()
                return status
            } catch {
                await socket.close()
                throw error
            }
        }

        /// An open connection authenticated with `token`.
        func connect(_ token: String) async throws -> TestSocket {
            let socket = try await TestSocket.connect(port: port)
            #expect(try await socket.handshake(path: "/ws/events?token=\(token)").status == 101)
            _ = try await socket.nextMessage(type: "connected")
            return socket
        }

        func hangUp() { kill(child.process.processIdentifier, SIGHUP) }

        func stop() async throws {
            kill(child.process.processIdentifier, SIGTERM)
            #expect(try await child.finish().status == 0)
        }
    }

    /// Shows that `socket` is still served: a subscription is confirmed.
    static func stillServed(_ socket: TestSocket, _ id: String) async throws {
        try await socket.sendText(#"{"type":"subscribe","id":"\#(id)","payload":{"eventTypes":["auth.*"]}}"#)
        _ = try await socket.nextMessage(type: "subscribed")
    }

    static func temporaryFile(_ text: String) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("rt-jwks-\(RandomID.hex(bytes: 6))")
        try Data(text.utf8).write(to: url, options: .atomic)
        return url
    }

    @Test("SIGHUP re-reads the JWK Set file: both kids during the overlap, a bad file refused, the old kid removed")
    func sighupReloadsTheKeyFile() async throws {
        let file = try Self.temporaryFile(try TestJWKS.set(["k1"]))
        defer { try? FileManager.default.removeItem(at: file) }
        let server = try await Server.start(["JWT_JWKS_FILE": file.path, "JWT_KEY_RELOAD_INTERVAL": "0"])
        defer { server.child.stop() }
        let (k1, k2) = (try TestJWKS.token("k1"), try TestJWKS.token("k2"))
        let connection = try await server.connect(k1)
        #expect(try await server.upgradeStatus(k2) == 401)

        // Overlap: the set holds both kids; tokens of either work.
        try Data(try TestJWKS.set(["k1", "k2"]).utf8).write(to: file, options: .atomic)
        server.hangUp()
        _ = try await server.child.line(containing: "key reload 1: accepted")
        #expect(try await server.upgradeStatus(k2) == 101)
        #expect(try await server.upgradeStatus(k1) == 101)

        // A broken file is refused with a log line; the previous keys stay.
        try Data(#"{"keys": [ {"kty":"oct""#.utf8).write(to: file, options: .atomic)
        server.hangUp()
        _ = try await server.child.line(containing: "key reload 2: refused")
        #expect(try await server.upgradeStatus(k1) == 101)
        #expect(try await server.upgradeStatus(k2) == 101)

        // k1 retired: its tokens are refused from now on; the connection it opened stays up.
        try Data(try TestJWKS.set(["k2"]).utf8).write(to: file, options: .atomic)
        server.hangUp()
        _ = try await server.child.line(containing: "key reload 3: accepted")
        #expect(try await server.upgradeStatus(k1) == 401)
        #expect(try await server.upgradeStatus(k2) == 101)
        try await Self.stillServed(connection, "after-rotation")
        let metrics = try await TestSocket.request(port: server.port, "GET", "/metrics")
        #expect(metrics.text.contains(#"realtime_key_reloads_total{result="refused"} 1"#), "\(metrics.text)")
        #expect(metrics.text.contains(#"realtime_key_reloads_total{result="accepted"} 2"#))
        await connection.close()
        try await server.stop()
    }

    @Test("a changed secret file is picked up by the periodic check, without a signal")
    func changedSecretFileIsReloaded() async throws {
        let (old, new) = ("old-secret-0123456789abcdef0123456789abcdef", "new-secret-0123456789abcdef0123456789abcdef")
        let file = try Self.temporaryFile(old)
        defer { try? FileManager.default.removeItem(at: file) }
        let server = try await Server.start(["JWT_SECRET_FILE": file.path, "JWT_KEY_RELOAD_INTERVAL": "100"])
        defer { server.child.stop() }
        let oldToken = try RefreshTokenEndToEndTests.token("alice", secret: old, ["aud": nil])
        let newToken = try RefreshTokenEndToEndTests.token("alice", secret: new, ["aud": nil])
        let connection = try await server.connect(oldToken)
        // A weak secret is refused like at start.
        try Data("short".utf8).write(to: file, options: .atomic)
        _ = try await server.child.line(containing: "key reload 1: refused")
        #expect(try await server.upgradeStatus(oldToken) == 101)
        try Data(new.utf8).write(to: file, options: .atomic)
        _ = try await server.child.line(containing: "key reload 2: accepted")
        #expect(try await server.upgradeStatus(newToken) == 101)
        #expect(try await server.upgradeStatus(oldToken) == 401)
        try await Self.stillServed(connection, "after-new-secret")
        await connection.close()
        try await server.stop()
    }

    @Test("JWT_JWKS_URL: the set is fetched over HTTPS, a new kid is fetched on first use, health reports the source")
    func jwksURL() async throws {
        let certificates = try TestCertificates.shared.get()
        let idp = try await HTTPSTestServer.start(certificates: certificates)
        idp.answer("/jwks", with: .body(try TestJWKS.set(["k1"]), cacheControl: "max-age=3600"))
        let server = try await Server.start([
            "JWT_JWKS_URL": idp.url("/jwks"), "JWT_JWKS_CA_FILE": certificates.caFile,
        ])
        defer { server.child.stop() }
        #expect(try await server.upgradeStatus(try TestJWKS.token("k1")) == 101)
        idp.answer("/jwks", with: .body(try TestJWKS.set(["k1", "k2"]), cacheControl: "max-age=3600"))
        #expect(try await server.upgradeStatus(try TestJWKS.token("k2")) == 101)
        #expect(idp.requests("/jwks") == 2)
        // Forged kids right after: refused without another request (one refetch per minute at most).
        for index in 0..<20 { #expect(try await server.upgradeStatus(try TestJWKS.token("forged-\(index)")) == 401) }
        #expect(idp.requests("/jwks") == 2)
        let health = try await TestSocket.request(port: server.port, "GET", "/ws/health")
        let verifier = try health.json()["components"]?["tokenVerifier"]
        #expect(verifier?["status"]?.stringValue == "healthy", "\(health.text)")
        #expect(verifier?["details"]?["keys"] == .int(2), "\(health.text)")
        try await server.stop()
        await idp.stop()
    }
}
