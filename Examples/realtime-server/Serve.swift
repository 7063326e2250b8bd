// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import RealtimeCore
import RealtimeHummingbird
import RealtimeJWKS
import RealtimeJWT
import RealtimeNIO
import RealtimeRedis
import ServiceLifecycle
import UnixSignals

/// `realtime-server serve`: runs the hub behind Hummingbird until SIGINT or SIGTERM.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the server (the default command).",
        discussion: """
            Configuration comes from the environment and the flags below (flags win). With nothing configured it \
            runs in development mode on 127.0.0.1:3000 with in-memory backends and a generated secret, and prints \
            ready-to-use tokens. WEBSOCKET_* variables tune the hub (see `Documentation/Configuration.md`).
            """
    )

    @Option(help: "Address to listen on (env HOST; default 127.0.0.1).")
    var host: String?

    @Option(help: "Port to listen on (env PORT; default 3000).")
    var port: Int?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical (env LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(help: "Comma-separated allowed origins (env WEBSOCKET_ALLOWED_ORIGINS).")
    var allowedOrigins: String?

    @Option(help: "Redis URL for the cluster backends (env REDIS_URL).")
    var redisURL: String?

    @Flag(help: "Development mode: localhost origins, a generated secret when none is configured.")
    var development = false

    @Flag(help: "Production mode: refuse to start without a strong secret or public key.")
    var production = false

    @Flag(
        inversion: .prefixedNo,
        help: "Serve the admin console at /admin (env WEBSOCKET_ADMIN_CONSOLE; default: on in development mode only)."
    )
    var adminConsole: Bool?
    @Option(
        help: """
            How often the key files are checked for changes, in milliseconds; 0 reloads them on SIGHUP only \
            (env JWT_KEY_RELOAD_INTERVAL; default 5000).
            """
    )
    var keyReloadInterval: Int?

    @OptionGroup var keys: KeyOptions

    func run() async throws {
        var environment = ProcessInfo.processInfo.environment
        if let allowedOrigins { environment["WEBSOCKET_ALLOWED_ORIGINS"] = allowedOrigins }
        let keyConfigured = keys.isConfigured(environment)
        let developmentMode: Bool
        if development && production { throw ValidationError("--development and --production exclude each other") }
        if development {
            developmentMode = true
        } else if production {
            developmentMode = false
        } else if let explicit = environment["WEBSOCKET_DEVELOPMENT_MODE"] {
            developmentMode = ["1", "true", "yes"].contains(explicit.lowercased())
        } else {
            developmentMode = !keyConfigured
        }
        environment["WEBSOCKET_DEVELOPMENT_MODE"] = developmentMode ? "true" : "false"
        // A setting of this server, not of the hub (which refuses WEBSOCKET_* variables it does not know).
        let consoleSetting = try Self.flag(environment.removeValue(forKey: "WEBSOCKET_ADMIN_CONSOLE"))
        let consoleEnabled = adminConsole ?? consoleSetting ?? developmentMode
        let serviceActions = try Self.serviceActions(environment.removeValue(forKey: "WEBSOCKET_API_SERVICE_ACTIONS"))

        let level = try Self.logLevel(logLevel ?? environment["LOG_LEVEL"] ?? "info")
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        var logger = Logger(label: "realtime-server")
        logger.logLevel = level

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

        var hubConfiguration: HubConfiguration
        do {
            hubConfiguration = try HubConfiguration(environment: environment)
            hubConfiguration.residentMemoryBytes = ProcessStatistics.residentMemoryBytes
        } catch {
            throw ConfigurationError("configuration: \(error.message)")
        }

        // The verifier: the configured keys (files, or a JWK Set URL), or a generated development secret.
        var developmentSigner: JWTSigner?
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        try keys.checkSecretStrength(environment, developmentMode: developmentMode, logger: logger)
        let keyStore: JWTKeyStore
        var jwksProvider: JWKSKeyProvider?
        if let remote = try keys.remoteKeySet(environment) {
            keyStore = try keys.keyStore(keys: .empty, environment)
            do {
                jwksProvider = try JWKSKeyProvider(configuration: remote, keyStore: keyStore, logger: logger)
            } catch {
                throw ConfigurationError("JWT_JWKS_URL/JWT_OIDC_ISSUER: \(error.message)")
            }
        } else if keyConfigured {
            keyStore = try keys.keyStore(keys: try keys.keySet(environment), environment)
        } else {
            guard developmentMode else {
                throw ConfigurationError(
                    "no JWT key configured: set JWT_SECRET (at least 32 random bytes), JWT_SECRET_FILE, "
                        + "JWT_PUBLIC_KEY_FILE with JWT_ALGORITHM, JWT_JWKS_FILE or JWT_JWKS_URL; or run with "
                        + "--development"
                )
            }
            let secret = RandomID.hex(bytes: 32)
            let key = try JWTKey.hmac(secret: secret)
            developmentSigner = try JWTSigner(key: key)
            keyStore = try keys.keyStore(keys: JWTKeySet([key]), environment)
        }
        let verifier = JWTVerifier(
            keys: keyStore,
            configuration: keys.verifierConfiguration(environment),
            unknownKeyHandler: jwksProvider
        )
        // Listed before the hub, so they stop after it.
        if let jwksProvider { services.append(.init(service: jwksProvider)) }
        if let reloader = try keyReloader(keyStore, environment, developmentMode: developmentMode, logger: logger) {
            services.append(.init(service: reloader))
        }

        let backends: HubBackends
        let redisURLValue = redisURL ?? environment["REDIS_URL"]
        let clusterEnabled = try Self.clusterEnabled(environment)
        if clusterEnabled || !(redisURLValue ?? "").isEmpty {
            let redis = try Self.redisBackends(
                url: redisURLValue ?? "",
                environment: environment,
                developmentMode: developmentMode,
                verifier: verifier,
                history: hubConfiguration.history,
                offlineNotifications: hubConfiguration.offlineNotifications,
                sessionMode: hubConfiguration.sessionMode,
                logger: logger
            )
            backends = redis.backends
            if redis.client.isCluster {
                // A clear error at start for an unreachable cluster or one with uncovered slots.
                do {
                    try await redis.client.checkReady()
                } catch {
                    await redis.client.shutdown()
                    throw ConfigurationError("REDIS_CLUSTER_NODES: \(error.message)")
                }
            }
            // Listed first, so it stops last: the hub unregisters from Redis while draining.
            services.append(.init(service: redis.client))
        } else {
            backends = HubBackends.inMemory(
                tokenVerifier: verifier,
                sessionStore: InMemorySessionStore(mode: hubConfiguration.sessionMode),
                historyStore: hubConfiguration.history.enabled
                    ? try InMemoryHistoryStore(configuration: hubConfiguration.history) : nil,
                // One process: the in-memory queue is cluster-wide.
                offlineNotifications: hubConfiguration.offlineNotifications.enabled
                    ? try InMemoryOfflineNotificationStore(limits: hubConfiguration.offlineNotifications) : nil
            )
        }
        let hub = try RealtimeHub(configuration: hubConfiguration, backends: backends, logger: logger)

        // HEAD on every GET route (RFC 9110 §9.1: general-purpose servers support GET and HEAD; load balancers
        // probe health routes with it).
        let router = Router(context: RealtimeRequestContext.self, options: .autoGenerateHeadEndpoints)
        // The router serves the hub and its console alone: an unknown path anywhere is a JSON 404 like the API's.
        var routeOptions = RealtimeRouteOptions(
            apiTokenVerifier: verifier,
            metrics: registry,
            jsonErrorsOnEveryPath: true
        )
        if let serviceActions {
            routeOptions.authorize = { identity, action in
                identity.isAdmin || (identity.roles.contains("service") && serviceActions.contains(action))
            }
            logger.info(
                "API actions of service tokens restricted (WEBSOCKET_API_SERVICE_ACTIONS)",
                metadata: ["realtime.actions": "\(serviceActions.map(\.rawValue).sorted())"]
            )
        }
        router.addRealtimeHub(hub, options: routeOptions)
        AdminConsole.addRoutes(to: router, hub: hub, apiPrefix: routeOptions.apiPrefix, enabled: consoleEnabled)

        let host = host ?? environment["HOST"] ?? "127.0.0.1"
        let port = port ?? environment["PORT"].map { Int($0) ?? -1 } ?? 3000
        guard (0...65535).contains(port) else {
            throw ConfigurationError("PORT must be a number from 0 to 65535")
        }
        let banner = Banner(
            developmentSigner: developmentSigner,
            hubConfiguration: hubConfiguration,
            adminConsole: consoleEnabled,
            issuer: keys.issuer ?? environment["JWT_ISSUER"],
            audience: keys.audiences(environment).first
        )
        let app = Application(
            router: router,
            server: .realtimeHub(hub),
            configuration: .init(address: .hostname(host, port: port), serverName: "realtime-server"),
            onServerRunning: { channel in banner.print(address: channel.localAddress) },
            logger: logger
        )
        // Graceful shutdown runs in reverse order: the hub drains first (1001 to every client), then the
        // HTTP server stops.
        let group = ServiceGroup(
            configuration: .init(
                services: services + [
                    .init(service: app),
                    .init(service: hub, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        try await group.run()
    }

    /// The reloader of the key files, when keys come from files (secrets given in the environment cannot change).
    func keyReloader(
        _ store: JWTKeyStore,
        _ environment: [String: String],
        developmentMode: Bool,
        logger: Logger
    ) throws -> KeyReloader? {
        let files = keys.keyFiles(environment)
        guard !files.isEmpty else { return nil }
        let milliseconds =
            try keyReloadInterval ?? environment["JWT_KEY_RELOAD_INTERVAL"].map {
                guard let value = Int($0) else { throw ConfigurationError("JWT_KEY_RELOAD_INTERVAL must be a number") }
                return value
            } ?? 5000
        guard milliseconds >= 0 else { throw ConfigurationError("JWT_KEY_RELOAD_INTERVAL must not be negative") }
        let keys = self.keys
        let remote = try keys.remoteKeySet(environment) != nil
        return KeyReloader(
            files: files,
            interval: milliseconds == 0 ? nil : .milliseconds(milliseconds),
            store: store,
            logger: logger
        ) {
            // The same checks as at start.
            try keys.checkSecretStrength(environment, developmentMode: developmentMode, logger: logger)
            return (remote ? nil : try keys.keySet(environment), try keys.refreshKeySet(environment))
        }
    }

    /// The Redis backends: `REDIS_URL`, and `REALTIME_CLUSTER_SECRET` (shared by every server of the cluster)
    /// to seal bus messages and history entries; a history store unless `history` is disabled.
    static func redisBackends(
        url: String,
        environment: [String: String],
        developmentMode: Bool,
        verifier: any TokenVerifier,
        history: HistoryConfiguration,
        offlineNotifications: OfflineNotificationLimits,
        sessionMode: SessionStoreMode,
        logger: Logger
    ) throws -> (client: RedisClient, backends: HubBackends) {
        var configuration: RedisConfiguration
        do {
            configuration = url.isEmpty ? RedisConfiguration() : try RedisConfiguration(url: url)
        } catch {
            throw ConfigurationError("REDIS_URL: \(error.message)")
        }
        configuration.tls = try redisTLS(environment, base: configuration.tls)
        if try clusterEnabled(environment) {
            guard let nodes = environment["REDIS_CLUSTER_NODES"], !nodes.isEmpty else {
                throw ConfigurationError(
                    "REDIS_CLUSTER_ENABLED is true but REDIS_CLUSTER_NODES (host:port,…) is not set"
                )
            }
            do {
                configuration = try RedisConfiguration.cluster(nodes: nodes, base: configuration)
            } catch {
                throw ConfigurationError("REDIS_CLUSTER_NODES: \(error.message)")
            }
            configuration.clusterShardedPubSub = try flag("REDIS_CLUSTER_SHARDED_PUBSUB", environment, default: true)
        }
        guard let secret = environment["REALTIME_CLUSTER_SECRET"], !secret.isEmpty else {
            throw ConfigurationError(
                "Redis is configured but REALTIME_CLUSTER_SECRET is not: every server of the cluster needs the same "
                    + "secret (at least 32 random bytes, e.g. `openssl rand -hex 32`) to seal bus messages"
            )
        }
        guard secret.utf8.count >= 32 || (developmentMode && secret.utf8.count >= 16) else {
            throw ConfigurationError(
                "REALTIME_CLUSTER_SECRET is \(secret.utf8.count) bytes; it needs at least 32 "
                    + "(16 in development mode)"
            )
        }
        let client = RedisClient(configuration: configuration, logger: logger)
        let backends = HubBackends(
            tokenVerifier: verifier,
            connectionStore: RedisConnectionStore(client: client),
            eventBus: try RedisEventBus(client: client, clusterSecret: Array(secret.utf8)),
            rateLimiter: RedisRateLimiter(client: client, fallback: InMemoryRateLimiter()),
            sessionStore: RedisSessionStore(client: client, mode: sessionMode),
            historyStore: history.enabled
                ? try RedisHistoryStore(client: client, clusterSecret: Array(secret.utf8), configuration: history)
                : nil,
            offlineNotifications: offlineNotifications.enabled
                ? try RedisOfflineNotificationStore(
                    client: client,
                    clusterSecret: Array(secret.utf8),
                    limits: offlineNotifications
                ) : nil
        )
        return (client, backends)
    }

    /// `REDIS_CLUSTER_ENABLED` (false when unset).
    static func clusterEnabled(_ environment: [String: String]) throws -> Bool {
        try flag("REDIS_CLUSTER_ENABLED", environment)
    }

    /// A boolean variable: `true`/`1`/`yes` or `false`/`0`/`no`, false when unset or empty.
    static func flag(_ name: String, _ environment: [String: String], default: Bool = false) throws -> Bool {
        guard let value = environment[name], !value.isEmpty else { return `default` }
        switch value.lowercased() {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw ConfigurationError("\(name) must be true or false, not '\(value.prefix(32))'")
        }
    }

    /// TLS to Redis: `rediss://` in `REDIS_URL` or `REDIS_CLUSTER_NODES`, or any of `REDIS_TLS_CA_FILE`,
    /// `REDIS_TLS_CERT_FILE` + `REDIS_TLS_KEY_FILE`, `REDIS_TLS_SERVER_NAME`. Verification is always on.
    static func redisTLS(_ environment: [String: String], base: RedisTLSOptions?) throws -> RedisTLSOptions? {
        func value(_ name: String) -> String? { environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        let (ca, certificate, key, name) = (
            value("REDIS_TLS_CA_FILE"), value("REDIS_TLS_CERT_FILE"), value("REDIS_TLS_KEY_FILE"),
            value("REDIS_TLS_SERVER_NAME")
        )
        guard base != nil || ca != nil || certificate != nil || key != nil || name != nil else { return nil }
        let options = RedisTLSOptions(caFile: ca, certificateFile: certificate, keyFile: key, serverName: name)
        do {
            try options.validate()
        } catch {
            throw ConfigurationError(error.message)
        }
        return options
    }

    /// A true/false environment value (`1`/`0`, `yes`/`no` too); `nil` when unset.
    static func flag(_ value: String?) throws -> Bool? {
        guard let value else { return nil }
        switch value.lowercased() {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw ConfigurationError("WEBSOCKET_ADMIN_CONSOLE must be true or false, not '\(value.prefix(32))'")
        }
    }

    /// `WEBSOCKET_API_SERVICE_ACTIONS`: the API actions a token with the role `service` may take, comma-separated
    /// (`nil` when unset: ``RealtimeRouteOptions/defaultAuthorization``, every action but the listings). An empty
    /// value allows none.
    static func serviceActions(_ value: String?) throws -> Set<RealtimeAPIAction>? {
        guard let value else { return nil }
        var actions: Set<RealtimeAPIAction> = []
        for name in value.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
            guard let action = RealtimeAPIAction(named: name) else {
                throw ConfigurationError(
                    "WEBSOCKET_API_SERVICE_ACTIONS: unknown action '\(name.prefix(40))'; known: "
                        + RealtimeAPIAction.all.map(\.rawValue).joined(separator: ", ")
                )
            }
            actions.insert(action)
        }
        return actions
    }

    static func logLevel(_ name: String) throws -> Logger.Level {
        guard let level = Logger.Level(rawValue: name.lowercased()) else {
            throw ConfigurationError(
                "LOG_LEVEL '\(name)' is not one of trace, debug, info, notice, warning, error, critical"
            )
        }
        return level
    }
}

/// What a newcomer needs once the server listens: URLs and how to get a token.
struct Banner: Sendable {
    let developmentSigner: JWTSigner?
    let hubConfiguration: HubConfiguration
    let adminConsole: Bool
    let issuer: String?
    let audience: String?

    func print(address: SocketAddress?) {
        let port = address?.port ?? 0
        let host = address?.ipAddress ?? "127.0.0.1"
        let base = "\(host.contains(":") ? "[\(host)]" : host):\(port)"
        var lines = [
            "realtime-server listening on http://\(base)",
            "  WebSocket:  ws://\(base)\(hubConfiguration.eventsPath)?token=TOKEN",
            "  Admin:      ws://\(base)\(hubConfiguration.adminPath)?token=ADMIN_TOKEN",
            "  Health:     http://\(base)/ws/health  /health/live  /health/ready",
            "  Metrics:    http://\(base)/metrics",
            "  HTTP API:   http://\(base)/api/v1/ (Authorization: Bearer ADMIN_TOKEN)",
            "  Client:     http://\(base)/client/realtime-client.js (browser ES module)",
        ]
        if adminConsole { lines.append("  Console:    http://\(base)/admin/ (paste the admin token)") }
        if let signer = developmentSigner {
            let lifetime = Duration.seconds(24 * 3600)
            let user = try? mintToken(
                signer: signer,
                userID: "dev-user",
                sessionID: "dev-session",
                admin: false,
                lifetime: lifetime,
                issuer: issuer,
                audience: audience
            )
            let admin = try? mintToken(
                signer: signer,
                userID: "dev-admin",
                sessionID: "dev-admin-session",
                admin: true,
                lifetime: lifetime,
                issuer: issuer,
                audience: audience
            )
            lines += [
                "Development mode: in-memory backends and a secret generated for this run (tokens below expire in "
                    + "24 h and die with the process). Set JWT_SECRET to keep tokens across restarts and mint more "
                    + "with `JWT_SECRET=… realtime-server token --user alice`.",
                "  user token (dev-user):   \(user ?? "unavailable")",
                "  admin token (dev-admin): \(admin ?? "unavailable")",
            ]
        } else {
            lines.append("Get a token: realtime-server token --user USER [--admin] (with the same JWT_* settings)")
        }
        // Unbuffered: the banner must show even when stdout is a pipe or a file.
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
    }
}
