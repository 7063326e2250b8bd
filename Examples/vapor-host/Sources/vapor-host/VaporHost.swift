// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging
import NIOCore
import RealtimeCore
import RealtimeJWT
import RealtimeNIO
import ServiceLifecycle
import UnixSignals
import Vapor

/// `vapor-host`: RealtimeHub served by Vapor 4, with in-memory backends.
///
/// Environment: `HOST` (default 127.0.0.1), `PORT` (default 8080; 0 picks a free port), `LOG_LEVEL` (default
/// info), `JWT_SECRET` (HS256 tokens; without it, two random tokens are printed at start), and the hub's
/// `WEBSOCKET_*` settings. Routes: the hub's WebSocket paths (`/ws/events`, `/ws/admin`), `GET /health`, and
/// `POST /api/v1/events` for admins and `service` tokens. Stops gracefully on SIGINT or SIGTERM: clients get a
/// `reconnect` message and close code 1001, then the HTTP server stops.
@main
enum VaporHost {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "vapor-host")
        logger.logLevel = Logger.Level(rawValue: environment["LOG_LEVEL"] ?? "info") ?? .info
        guard let port = Int(environment["PORT"] ?? "8080"), (0...65535).contains(port) else {
            throw ConfigurationError("PORT must be a number from 0 to 65535")
        }
        let host = environment["HOST"] ?? "127.0.0.1"

        let tokens = try Tokens(environment)
        var configuration = try HubConfiguration(environment: environment)
        configuration.residentMemoryBytes = ProcessStatistics.residentMemoryBytes
        let hub = try RealtimeHub(
            configuration: configuration,
            backends: .inMemory(tokenVerifier: tokens.verifier),
            logger: logger
        )

        // Vapor's own command line is not used: its environment comes from here, not from the arguments.
        let app = try await Application.make(Environment(name: "production", arguments: ["vapor-host"]), logger: logger)
        // Vapor keeps a connection open for ever by default (no idle timeout): a few hundred idle or half-sent
        // requests from one address then held the server's file descriptors (seventh probe). Its one bound is an
        // idle timeout on the whole connection, WebSockets included after the upgrade, so it is at least the hub's
        // WebSocket idle timeout (heartbeats keep a live WebSocket busy well within it).
        let idleTimeout = max(configuration.http.idleTimeout, configuration.idleTimeout)
        app.http.server.configuration.idleTimeout = TimeAmount(idleTimeout)
        app.addRealtimeHub(hub)
        app.addPublishRoute(hub)

        let server = VaporServer(app: app, address: .hostname(host, port: port)) { address in
            tokens.printBanner(address: address)
        }
        // Graceful shutdown runs in reverse order: the hub drains first (1001 to every client), then the server.
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: server),
                    .init(service: hub, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch {
            try? await app.asyncShutdown()
            throw error
        }
        try await app.asyncShutdown()
    }
}

/// Vapor's HTTP server as a service: started with the group, stopped on its graceful shutdown.
struct VaporServer: Service {
    let app: Application
    let address: BindAddress
    let onStarted: @Sendable (SocketAddress?) -> Void

    func run() async throws {
        try await app.asyncBoot()
        try await app.server.start(address: address)
        onStarted(app.http.server.shared.localAddress)
        try? await gracefulShutdown()
        await app.server.shutdown()
    }
}

/// The token verifier: HS256 JWTs with `JWT_SECRET`, otherwise a user token and an admin token generated for
/// this run.
struct Tokens: Sendable {
    let verifier: any TokenVerifier
    /// The generated tokens (user, admin), printed at start; `nil` with `JWT_SECRET`.
    let generated: (user: String, admin: String)?

    init(_ environment: [String: String]) throws {
        if let secret = environment["JWT_SECRET"], !secret.isEmpty {
            guard secret.utf8.count >= 32 else { throw ConfigurationError("JWT_SECRET needs at least 32 bytes") }
            // Administrators as realtime-server reads them (`roles` holds `admin`), so one token works on both
            // hosts; refresh tokens are refused as access tokens.
            var verification = JWTVerifier.Configuration()
            verification.claims.admin = .arrayContains("roles", "admin")
            verification.refreshTokenMarkers = .standard
            verifier = JWTVerifier(
                keys: JWTKeySet([try JWTKey.hmac(secret: secret)]),
                configuration: verification
            )
            generated = nil
        } else {
            let (user, admin) = (RandomID.hex(bytes: 24), RandomID.hex(bytes: 24))
            verifier = StaticTokenVerifier([
                user: VerifiedIdentity(userID: "dev-user", sessionID: "dev-session"),
                admin: VerifiedIdentity(userID: "dev-admin", isAdmin: true, roles: ["admin"]),
            ])
            generated = (user, admin)
        }
    }

    func printBanner(address: SocketAddress?) {
        let base = "\(address?.ipAddress ?? "?"):\(address?.port ?? 0)"
        var lines = [
            "vapor-host listening on http://\(base)",
            "  WebSocket:  ws://\(base)/ws/events (Authorization: Bearer TOKEN)",
            "  Admin:      ws://\(base)/ws/admin",
            "  Health:     http://\(base)/health",
            "  Publish:    POST http://\(base)/api/v1/events (Authorization: Bearer ADMIN_TOKEN)",
        ]
        if let generated {
            lines += ["  user token (dev-user):   \(generated.user)", "  admin token (dev-admin): \(generated.admin)"]
        }
        // Unbuffered: the banner must show even when stdout is a pipe or a file.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}

struct ConfigurationError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
