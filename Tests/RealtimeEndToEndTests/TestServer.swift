// SPDX-License-Identifier: Apache-2.0

import Hummingbird
import Logging
import NIOCore
import RealtimeCore
import RealtimeHummingbird
import RealtimeJWT
import RealtimeTesting
import ServiceLifecycle

/// Keys and tokens of the test servers: HS256 with an audience, admins by `roles: ["admin"]`.
enum TestKeys {
    static let secret = "e2e-test-secret-0123456789abcdef0123456789abcdef"
    static let audience = "realtime-e2e"

    static let signer: JWTSigner = {
        do { return try JWTSigner(key: .hmac(secret: secret)) } catch { fatalError("HMAC key: \(error)") }
    }()

    static func verifier() -> JWTVerifier {
        var configuration = JWTVerifier.Configuration(audiences: [audience])
        configuration.claims.admin = .arrayContains("roles", "admin")
        do {
            return JWTVerifier(keys: JWTKeySet([try .hmac(secret: secret)]), configuration: configuration)
        } catch {
            fatalError("HMAC key: \(error)")
        }
    }

    static func token(
        _ user: String,
        session: String? = nil,
        admin: Bool = false,
        roles: [String] = [],
        lifetime: Duration = .seconds(600),
        audience: String = audience,
        issuedAt: Timestamp = .now()
    ) -> String {
        var claims: JSONObject = [
            "sub": .string(user),
            "aud": .string(audience),
            "iat": .int(issuedAt.secondsSinceEpoch),
            "exp": .int((issuedAt + lifetime).secondsSinceEpoch),
        ]
        claims["sid"] = .string(session ?? "s-\(user)")
        let allRoles = roles + (admin ? ["admin"] : [])
        if !allRoles.isEmpty { claims["roles"] = .array(allRoles.map(JSONValue.string)) }
        do { return try signer.sign(claims) } catch { fatalError("signing: \(error)") }
    }
}

/// A hub behind Hummingbird on a free loopback port, run by a ServiceGroup in the test's task.
struct TestServer: Sendable {
    let hub: RealtimeHub
    let port: Int
    let serviceGroup: ServiceGroup

    /// A hub configuration for tests: no periodic stats, generous connection rate limits.
    static func configuration(_ adjust: (inout HubConfiguration) -> Void = { _ in }) -> HubConfiguration {
        HubConfiguration.testing(adjust)
    }

    /// Starts a server, runs `body`, then shuts the server down gracefully and waits for it.
    static func with(
        _ adjust: (inout HubConfiguration) -> Void = { _ in },
        verifier: any TokenVerifier = TestKeys.verifier(),
        backends: HubBackends? = nil,
        services: [any Service] = [],
        writeTimeout: Duration = .seconds(30),
        closeTimeout: Duration = .seconds(2),
        routeOptions: (inout RealtimeRouteOptions) -> Void = { _ in },
        routes: (Router<RealtimeRequestContext>, RealtimeHub) -> Void = { _, _ in },
        _ body: (TestServer) async throws -> Void
    ) async throws {
        var logger = Logger(label: "e2e")
        logger.logLevel = .warning
        let hub = try RealtimeHub(
            configuration: configuration(adjust),
            backends: backends ?? .inMemory(tokenVerifier: verifier),
            logger: logger
        )
        // Without `.autoGenerateHeadEndpoints`: the hub's routes answer `HEAD` themselves (HandshakeTests checks it).
        let router = Router(context: RealtimeRequestContext.self)
        var options = RealtimeRouteOptions(apiTokenVerifier: verifier, maxBodyBytes: 16 * 1024)
        routeOptions(&options)
        router.addRealtimeHub(hub, options: options)
        routes(router, hub)
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = Application(
            router: router,
            server: .realtimeHub(hub, configuration: .init(closeTimeout: closeTimeout, writeTimeout: writeTimeout)),
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                portContinuation.yield(channel.localAddress?.port ?? 0)
                portContinuation.finish()
            },
            logger: logger
        )
        let serviceGroup = ServiceGroup(
            configuration: .init(
                services: services.map { .init(service: $0) } + [.init(service: app), .init(service: hub)],
                logger: logger
            )
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await serviceGroup.run() }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else {
                throw TestTimeout(description: "the server did not start")
            }
            let server = TestServer(hub: hub, port: port, serviceGroup: serviceGroup)
            do {
                try await body(server)
            } catch {
                await serviceGroup.triggerGracefulShutdown()
                throw error
            }
            await serviceGroup.triggerGracefulShutdown()
            try await group.waitForAll()
        }
    }

    /// Waits (bounded, polling the hub's health) until the hub's bus subscription is up, so that events from
    /// other servers reach this one. The hub offers no event to await for this.
    func waitUntilSubscribed(timeout: Duration = .seconds(10)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let health = await hub.healthCheck()
            if health.components["hub"]?.details["subscribed"]?.boolValue == true { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestTimeout(description: "the hub did not subscribe to the bus within \(timeout)")
    }

    /// Opens a WebSocket with a token in the query; fails unless the handshake succeeds.
    func connect(_ token: String, path: String = "/ws/events") async throws -> TestSocket {
        let socket = try await TestSocket.connect(port: port)
        let reply = try await socket.handshake(path: "\(path)?token=\(token)")
        guard reply.status == 101 else {
            throw TestTimeout(description: "handshake answered \(reply.status): \(reply.text)")
        }
        // The hub greets every connection; read it so tests start from a clean slate.
        _ = try await socket.nextMessage(type: "connected")
        return socket
    }

    /// A handshake that is expected to be refused: returns the reply.
    func handshake(path: String, headers: [(String, String)] = []) async throws -> HTTPReply {
        let socket = try await TestSocket.connect(port: port)
        defer { Task { await socket.close() } }
        return try await socket.handshake(path: path, headers: headers)
    }

    /// An HTTP request with JSON; `token` goes into `Authorization: Bearer`.
    func api(
        _ method: String,
        _ path: String,
        token: String? = TestKeys.token("ops", admin: true),
        json: String? = nil,
        headers: [(String, String)] = []
    ) async throws -> HTTPReply {
        var allHeaders = headers
        if let token { allHeaders.append(("Authorization", "Bearer \(token)")) }
        if json != nil && !allHeaders.contains(where: { $0.0.lowercased() == "content-type" }) {
            allHeaders.append(("Content-Type", "application/json"))
        }
        return try await TestSocket.request(
            port: port,
            method,
            path,
            headers: allHeaders,
            body: Array((json ?? "").utf8)
        )
    }
}
