/// Everything a ``RealtimeHub`` can be tuned with. Defaults are safe for production; see
/// `Documentation/Configuration.md` for each value and its environment variable.
public struct HubConfiguration: Sendable {
    /// This server's identity in the cluster.
    public var serverID: ServerID = .random()
    /// Development mode: localhost origins are allowed. Never enable in production.
    public var developmentMode = false
    /// The path of user connections.
    public var eventsPath = "/ws/events"
    /// The path of administrator connections.
    public var adminPath = "/ws/admin"
    /// Connections this server accepts at once (`WEBSOCKET_MAX_CONNECTIONS`).
    public var maxConnections = 10_000
    /// Connections one user may hold across the cluster; `nil` for no limit.
    public var maxConnectionsPerUser: Int? = 10
    /// How often the hub pings each connection (`WEBSOCKET_HEARTBEAT_INTERVAL`).
    public var heartbeatInterval: Duration = .milliseconds(30_000)
    /// A connection that sent nothing (no message, no pong) for this long is closed as dead.
    public var idleTimeout: Duration = .milliseconds(75_000)
    /// How often stale state is cleaned up: dead servers, unused upgrade tickets, idle limiter entries
    /// (`WEBSOCKET_CLEANUP_INTERVAL`).
    public var cleanupInterval: Duration = .milliseconds(300_000)
    /// How often this server reports itself to the cluster registry.
    public var serverHeartbeatInterval: Duration = .seconds(10)
    /// How long the registry keeps a server that stopped reporting.
    public var serverTTL: Duration = .seconds(30)
    /// How old a record of this server in the registry must be before the server heartbeat's reconciliation
    /// removes it for belonging to no connection the server holds (a margin for clock steps and in-flight writes).
    public var registryGrace: Duration = .seconds(5)
    /// How often administrator connections receive a `stats` message; `nil` to disable.
    public var statsInterval: Duration? = .seconds(10)
    /// Which browser origins may connect.
    public var origin = OriginPolicy()
    /// Which peers may set the client address through forwarding headers.
    public var clientAddress = ClientAddressResolver()
    /// Accept a token in the `?token=` query parameter (it ends up in proxy logs; the seed's clients use it).
    public var allowQueryToken = true
    /// Accept connections without a token and expect an `auth` message within ``authenticationTimeout``.
    public var firstMessageAuthentication = false
    /// The deadline for the `auth` message in first-message authentication.
    public var authenticationTimeout: Duration = .seconds(5)
    /// Tell a connection this long before its token expires (a `token_expiring` message).
    public var tokenExpiryWarning: Duration = .seconds(60)
    /// The mode hosts build the ``SessionStore`` in (`realtime-server` does, from `WEBSOCKET_SESSION_MODE`), as
    /// ``history`` is what they build the history store with. The hub itself follows its store's own
    /// ``SessionStore/mode``.
    public var sessionMode: SessionStoreMode = .revocationList
    /// The longest lifetime of the tokens the hub accepts: how long a session revocation is remembered when the
    /// session's expiry is unknown, and how long a user-wide revocation (``RealtimeHub/revoke(userID:reason:)``) is.
    /// Admission enforces it: a token whose expiry is further away than this is refused
    /// (``TokenVerificationError/Reason/lifetimeTooLong``), since it would outlive a revocation.
    public var revocationRetention: Duration = .seconds(86_400)
    /// How long an accepted upgrade may wait for ``RealtimeHub/connect(_:)`` before its slot is released.
    public var upgradeTicketTimeout: Duration = .seconds(10)
    public var limits = Limits()
    public var rateLimits = RateLimits()
    public var shutdown = Shutdown()
    /// Bounds on the HTTP request head that the host enforces before parsing it (see ``HTTPLimits``).
    public var http = HTTPLimits()
    /// Who sees an event that names no user and no explicit scope (see ``EventScopePolicy``).
    public var scopePolicy = EventScopePolicy.standard
    /// The process's resident memory in bytes, for ``RealtimeHub/stats()`` (`server.memory.residentBytes`);
    /// supplied by the host, since reading it is platform I/O the core does not do (RealtimeNIO's
    /// `ProcessStatistics.residentMemoryBytes` reads `/proc/self/statm`). `nil` reports no figure.
    public var residentMemoryBytes: (@Sendable () -> Int?)?
    /// The history kept for reconnecting clients (``HistoryConfiguration``): what hosts build the
    /// ``HubBackends/historyStore`` with.
    public var history = HistoryConfiguration()
    /// What user notifications are kept while their user has no connection (``OfflineNotificationLimits``): what
    /// hosts build the ``HubBackends/offlineNotifications`` store with.
    public var offlineNotifications = OfflineNotificationLimits()

    /// Size and count bounds.
    public struct Limits: Sendable, Hashable {
        /// The largest inbound text message the hub parses, in bytes; larger ones get a `message_too_big` error.
        public var maxMessageBytes = 16 * 1024
        /// The largest frame a host should accept from a client before closing with 1009.
        public var maxFrameBytes = 64 * 1024
        /// The largest token accepted, in bytes.
        public var maxTokenBytes = 8 * 1024
        /// Patterns one connection may hold.
        public var maxSubscriptionsPerConnection = 100
        /// Patterns one subscribe or unsubscribe message may carry.
        public var maxPatternsPerMessage = 50
        /// Frames waiting for one slow client before it is closed as a slow consumer.
        public var outboundQueueFrames = 1024
        /// Bytes waiting for one slow client before it is closed as a slow consumer.
        public var outboundQueueBytes = 4 * 1024 * 1024
        /// Invalid messages a connection may send per minute before it is closed with 1008.
        public var maxProtocolErrorsPerMinute = 30
        /// The longest client-chosen message `id` echoed back, in bytes.
        public var maxMessageIDBytes = 128
        public init() {}
    }

    /// Rate limits.
    public struct RateLimits: Sendable, Hashable {
        /// Upgrade attempts per client address (IPv6: per /64), through the hub's ``RateLimiter``.
        public var connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 60, period: .seconds(60), burst: 30)
        /// Upgrade attempts per user, through the hub's ``RateLimiter``.
        public var connectionsPerUser = RateLimitPolicy(name: "conn-user", limit: 30, period: .seconds(60), burst: 20)
        /// HTTP API requests per client address, through the hub's ``RateLimiter`` (generous: services publish
        /// from few addresses; it bounds floods, and failed authentications also count toward
        /// ``authFailuresBeforeAlert``).
        public var apiRequestsPerIP = RateLimitPolicy(name: "api-ip", limit: 1000, period: .seconds(1), burst: 2000)
        /// Inbound messages per connection (kept locally, not in the shared limiter).
        public var messagesPerConnection = RateLimitPolicy(name: "msg", limit: 20, period: .seconds(1), burst: 40)
        /// Rate-limit violations of one connection within ``abuseWindow`` that close it (4008) and block its
        /// address for ``blockDuration``; also the HTTP violations of one address (an oversized or too slowly
        /// sent request head) within ``abuseWindow`` that block it.
        public var violationsBeforeBlock = 10
        public var abuseWindow: Duration = .seconds(60)
        public var blockDuration: Duration = .seconds(300)
        /// Authentication failures from one address within ``abuseWindow`` that publish
        /// `security.suspicious.activity`.
        public var authFailuresBeforeAlert = 10
        /// Addresses tracked for abuse at once (oldest forgotten first).
        public var maxTrackedAddresses = 100_000
        public init() {}
    }

    /// Bounds on an HTTP request head (request line and header block), enforced by the host on the raw bytes
    /// before any parsing, token extraction or upgrade: past a bound the client gets `414 URI Too Long` or
    /// `431 Request Header Fields Too Large` with a JSON error body and the socket is closed, and nothing
    /// beyond the bound is buffered. A head that does not arrive within ``headerReadTimeout`` gets
    /// `408 Request Timeout` and counts as a violation of its address (see ``RateLimits/violationsBeforeBlock``).
    public struct HTTPLimits: Sendable, Hashable {
        /// The longest request line (`GET /ws/events?token=… HTTP/1.1`), in bytes, without its line ending
        /// (`WEBSOCKET_MAX_REQUEST_LINE_BYTES`).
        public var maxRequestLineBytes = 8 * 1024
        /// The largest header block (every header line with its line ending, without the request line)
        /// (`WEBSOCKET_MAX_HEADER_BYTES`).
        public var maxHeaderBytes = 16 * 1024
        /// The longest single header line (`name: value`), in bytes (`WEBSOCKET_MAX_HEADER_FIELD_BYTES`).
        public var maxHeaderFieldBytes = 8 * 1024
        /// How long a client may take to send a complete request head, from its first byte (or from the
        /// connection's start for its first request) (`WEBSOCKET_HEADER_READ_TIMEOUT`).
        public var headerReadTimeout: Duration = .seconds(10)
        /// How long a client may take to send a request's body, from the end of its head
        /// (`WEBSOCKET_BODY_READ_TIMEOUT`); past it `408 Request Timeout`, a violation of its address.
        public var bodyReadTimeout: Duration = .seconds(30)
        /// How long a keep-alive connection may stay open between requests with no byte read or written
        /// (`WEBSOCKET_HTTP_IDLE_TIMEOUT`); then it is closed quietly, as its client may reuse it no longer.
        /// WebSocket connections are not affected (their heartbeat is ``HubConfiguration/idleTimeout``).
        public var idleTimeout: Duration = .seconds(60)
        /// Plain HTTP connections (not, or not yet, WebSockets) one address may hold open at once
        /// (`WEBSOCKET_MAX_HTTP_CONNECTIONS_PER_ADDRESS`; an IPv6 address counts by its /64, as for rate limits);
        /// past it a new one gets `429 too_many_connections` and is closed. Trusted proxies are exempt.
        public var maxConnectionsPerAddress = 256
        /// At graceful shutdown, how long a keep-alive connection with no request under way (or one that has sent
        /// nothing yet) stays open for a request the client may already have sent: one that arrives in time is
        /// answered with `Connection: close`, after which the connection closes. Closing at once would reset a
        /// request in flight, and its client could not tell whether it was carried out. Zero closes at once.
        public var shutdownGrace: Duration = .milliseconds(250)
        public init() {}
    }

    /// Graceful shutdown: connections are closed in paced batches with a jittered reconnect hint, so a
    /// restarting server does not cause a reconnect storm.
    public struct Shutdown: Sendable, Hashable {
        public var batchSize = 500
        public var batchInterval: Duration = .milliseconds(100)
        /// The smallest reconnect delay suggested to clients.
        public var reconnectDelay: Duration = .seconds(1)
        /// A random extra delay of up to this much is added per client.
        public var reconnectJitter: Duration = .seconds(10)
        /// After the last batch, how long the drain waits for the host to report every drained connection closed
        /// (``HubConnection/closed(code:)``), so a server that stops after the hub does not cut close handshakes
        /// short. Zero does not wait.
        public var closeWait: Duration = .seconds(10)
        public init() {}
    }

    public init() {}

    /// A development configuration: localhost origins allowed.
    public static func development() -> HubConfiguration {
        var configuration = HubConfiguration()
        configuration.developmentMode = true
        configuration.origin.allowLocalhost = true
        return configuration
    }
}

extension HubConfiguration {
    /// The environment variables ``init(environment:)`` reads, with what each sets (and
    /// ``HistoryConfiguration/environmentVariables`` for ``history``, ``OfflineNotificationLimits/environmentVariables``
    /// for ``offlineNotifications``).
    public static let environmentVariables: [(name: String, meaning: String)] = [
        ("WEBSOCKET_SERVER_ID", "this server's id (default: random srv_…)"),
        ("WEBSOCKET_DEVELOPMENT_MODE", "true/false: allow localhost origins"),
        ("WEBSOCKET_MAX_CONNECTIONS", "connections this server accepts (default 10000)"),
        ("WEBSOCKET_MAX_CONNECTIONS_PER_USER", "connections per user across the cluster, 0 = unlimited (default 10)"),
        ("WEBSOCKET_HEARTBEAT_INTERVAL", "ms between pings (default 30000)"),
        ("WEBSOCKET_IDLE_TIMEOUT", "ms without traffic before a connection is closed (default 75000)"),
        ("WEBSOCKET_CLEANUP_INTERVAL", "ms between cleanups (default 300000)"),
        ("WEBSOCKET_ALLOWED_ORIGINS", "comma-separated origins, wildcard subdomains allowed"),
        ("WEBSOCKET_ALLOW_MISSING_ORIGIN", "true/false (default true)"),
        ("WEBSOCKET_TRUSTED_PROXIES", "comma-separated CIDRs whose forwarding headers are trusted"),
        ("WEBSOCKET_ALLOW_QUERY_TOKEN", "true/false: accept ?token= (default true)"),
        ("WEBSOCKET_FIRST_MESSAGE_AUTH", "true/false: accept an auth message after connect (default false)"),
        ("WEBSOCKET_AUTH_TIMEOUT", "ms to wait for the auth message (default 5000)"),
        ("WEBSOCKET_MAX_MESSAGE_BYTES", "largest inbound message (default 16384)"),
        ("WEBSOCKET_MAX_FRAME_BYTES", "largest inbound frame before the host closes with 1009 (default 65536)"),
        ("WEBSOCKET_MAX_TOKEN_BYTES", "largest token (default 8192)"),
        ("WEBSOCKET_MAX_SUBSCRIPTIONS", "patterns per connection (default 100)"),
        ("WEBSOCKET_OUTBOUND_QUEUE_LIMIT", "queued frames per connection (default 1024)"),
        ("WEBSOCKET_OUTBOUND_QUEUE_BYTES", "queued bytes per connection (default 4194304)"),
        ("WEBSOCKET_MESSAGE_RATE_LIMIT", "inbound messages per second per connection (default 20)"),
        ("WEBSOCKET_CONNECTION_RATE_LIMIT_PER_IP", "upgrade attempts per minute per address (default 60)"),
        ("WEBSOCKET_CONNECTION_RATE_LIMIT_PER_USER", "upgrade attempts per minute per user (default 30)"),
        ("WEBSOCKET_STATS_INTERVAL", "ms between stats messages to admins, 0 = off (default 10000)"),
        ("WEBSOCKET_SHUTDOWN_BATCH_SIZE", "connections closed per batch on shutdown (default 500)"),
        ("WEBSOCKET_SHUTDOWN_BATCH_INTERVAL", "ms between shutdown batches (default 100)"),
        (
            "WEBSOCKET_SHUTDOWN_CLOSE_WAIT",
            "ms the drain waits for drained sockets to close, 0 = no wait (default 10000)"
        ),
        ("WEBSOCKET_RECONNECT_JITTER", "ms of random reconnect delay suggested on shutdown (default 10000)"),
        ("WEBSOCKET_MAX_REQUEST_LINE_BYTES", "longest HTTP request line, else 414 (default 8192)"),
        ("WEBSOCKET_MAX_HEADER_BYTES", "largest HTTP header block, else 431 (default 16384)"),
        ("WEBSOCKET_MAX_HEADER_FIELD_BYTES", "longest single HTTP header line, else 431 (default 8192)"),
        ("WEBSOCKET_HEADER_READ_TIMEOUT", "ms a client may take to send a request head, else 408 (default 10000)"),
        (
            "WEBSOCKET_BODY_READ_TIMEOUT",
            "ms a client may take to send a request body after its head, else 408 (default 30000)"
        ),
        (
            "WEBSOCKET_HTTP_IDLE_TIMEOUT",
            "ms a keep-alive HTTP connection may stay quiet between requests (default 60000)"
        ),
        (
            "WEBSOCKET_MAX_HTTP_CONNECTIONS_PER_ADDRESS",
            "open plain HTTP connections per client address, else 429 (default 256)"
        ),
        (
            "WEBSOCKET_API_RATE_LIMIT_PER_IP",
            "HTTP API requests per second per address (default 1000, burst twice that)"
        ),
        (
            "WEBSOCKET_SESSION_MODE",
            "revocation-list (every session is active unless revoked; default) or registry (only sessions created "
                + "through the API or the auth service)"
        ),
        (
            "WEBSOCKET_REVOCATION_RETENTION",
            "ms a revocation is kept: the longest token lifetime (default 86400000)"
        ),
    ]

    /// Reads the configuration from environment variables (see ``environmentVariables``), starting from the
    /// defaults. Throws ``RealtimeError/Code/invalidConfiguration`` naming the variable for an invalid value or an
    /// unknown `WEBSOCKET_*` variable (a typo would otherwise be silently ignored).
    public init(environment: [String: String]) throws(RealtimeError) {
        self.init()
        let known = Set(
            (Self.environmentVariables + HistoryConfiguration.environmentVariables
                + OfflineNotificationLimits.environmentVariables).map(\.name)
        )
        for name in environment.keys.sorted() where name.hasPrefix("WEBSOCKET_") && !known.contains(name) {
            throw RealtimeError(
                .invalidConfiguration,
                "unknown environment variable \(name); known: \(known.sorted().joined(separator: ", "))"
            )
        }
        let reader = EnvironmentReader(environment: environment)
        if let value = try reader.string("WEBSOCKET_SERVER_ID") { serverID = ServerID(value) }
        if let value = try reader.bool("WEBSOCKET_DEVELOPMENT_MODE") {
            developmentMode = value
            origin.allowLocalhost = value
        }
        if let value = try reader.int("WEBSOCKET_MAX_CONNECTIONS", min: 1) { maxConnections = value }
        if let value = try reader.int("WEBSOCKET_MAX_CONNECTIONS_PER_USER", min: 0) {
            maxConnectionsPerUser = value == 0 ? nil : value
        }
        if let value = try reader.milliseconds("WEBSOCKET_HEARTBEAT_INTERVAL") {
            heartbeatInterval = value
            idleTimeout = value * 2.5
        }
        if let value = try reader.milliseconds("WEBSOCKET_IDLE_TIMEOUT") { idleTimeout = value }
        if let value = try reader.milliseconds("WEBSOCKET_CLEANUP_INTERVAL") { cleanupInterval = value }
        if let value = try reader.list("WEBSOCKET_ALLOWED_ORIGINS") {
            for entry in value where entry != "*" && !OriginPolicy(allowedOrigins: [entry]).isValidEntry(entry) {
                throw RealtimeError(
                    .invalidConfiguration,
                    "WEBSOCKET_ALLOWED_ORIGINS: '\(entry)' is not an origin like https://app.example.com or https://*.example.com"
                )
            }
            origin.allowedOrigins = value
        }
        if let value = try reader.bool("WEBSOCKET_ALLOW_MISSING_ORIGIN") { origin.allowMissingOrigin = value }
        if let value = try reader.list("WEBSOCKET_TRUSTED_PROXIES") {
            var networks: [IPNetwork] = []
            for entry in value {
                guard let network = IPNetwork(entry) else {
                    throw RealtimeError(
                        .invalidConfiguration,
                        "WEBSOCKET_TRUSTED_PROXIES: '\(entry)' is not an address or CIDR network like 10.0.0.0/8"
                    )
                }
                networks.append(network)
            }
            clientAddress.trustedProxies = networks
        }
        if let value = try reader.bool("WEBSOCKET_ALLOW_QUERY_TOKEN") { allowQueryToken = value }
        if let value = try reader.bool("WEBSOCKET_FIRST_MESSAGE_AUTH") { firstMessageAuthentication = value }
        if let value = try reader.milliseconds("WEBSOCKET_AUTH_TIMEOUT") { authenticationTimeout = value }
        if let value = try reader.int("WEBSOCKET_MAX_MESSAGE_BYTES", min: 64) { limits.maxMessageBytes = value }
        if let value = try reader.int("WEBSOCKET_MAX_FRAME_BYTES", min: 64) { limits.maxFrameBytes = value }
        if let value = try reader.int("WEBSOCKET_MAX_TOKEN_BYTES", min: 64) { limits.maxTokenBytes = value }
        if let value = try reader.int("WEBSOCKET_MAX_SUBSCRIPTIONS", min: 1) {
            limits.maxSubscriptionsPerConnection = value
        }
        if let value = try reader.int("WEBSOCKET_OUTBOUND_QUEUE_LIMIT", min: 1) { limits.outboundQueueFrames = value }
        if let value = try reader.int("WEBSOCKET_OUTBOUND_QUEUE_BYTES", min: 1024) { limits.outboundQueueBytes = value }
        if let value = try reader.int("WEBSOCKET_MESSAGE_RATE_LIMIT", min: 1) {
            rateLimits.messagesPerConnection = RateLimitPolicy(
                name: "msg",
                limit: value,
                period: .seconds(1),
                burst: value * 2
            )
        }
        if let value = try reader.int("WEBSOCKET_CONNECTION_RATE_LIMIT_PER_IP", min: 1) {
            rateLimits.connectionsPerIP = RateLimitPolicy(
                name: "conn-ip",
                limit: value,
                period: .seconds(60),
                burst: max(1, value / 2)
            )
        }
        if let value = try reader.int("WEBSOCKET_CONNECTION_RATE_LIMIT_PER_USER", min: 1) {
            rateLimits.connectionsPerUser = RateLimitPolicy(
                name: "conn-user",
                limit: value,
                period: .seconds(60),
                burst: max(1, value * 2 / 3)
            )
        }
        if let value = try reader.int("WEBSOCKET_STATS_INTERVAL", min: 0) {
            statsInterval = value == 0 ? nil : .milliseconds(value)
        }
        if let value = try reader.int("WEBSOCKET_SHUTDOWN_BATCH_SIZE", min: 1) { shutdown.batchSize = value }
        if let value = try reader.milliseconds("WEBSOCKET_SHUTDOWN_BATCH_INTERVAL", allowZero: true) {
            shutdown.batchInterval = value
        }
        if let value = try reader.milliseconds("WEBSOCKET_RECONNECT_JITTER", allowZero: true) {
            shutdown.reconnectJitter = value
        }
        if let value = try reader.milliseconds("WEBSOCKET_SHUTDOWN_CLOSE_WAIT", allowZero: true) {
            shutdown.closeWait = value
        }
        if let value = try reader.int("WEBSOCKET_MAX_REQUEST_LINE_BYTES", min: 256) { http.maxRequestLineBytes = value }
        if let value = try reader.int("WEBSOCKET_MAX_HEADER_BYTES", min: 512) { http.maxHeaderBytes = value }
        if let value = try reader.int("WEBSOCKET_MAX_HEADER_FIELD_BYTES", min: 256) { http.maxHeaderFieldBytes = value }
        if let value = try reader.milliseconds("WEBSOCKET_HEADER_READ_TIMEOUT") { http.headerReadTimeout = value }
        if let value = try reader.milliseconds("WEBSOCKET_BODY_READ_TIMEOUT") { http.bodyReadTimeout = value }
        if let value = try reader.milliseconds("WEBSOCKET_HTTP_IDLE_TIMEOUT") { http.idleTimeout = value }
        if let value = try reader.int("WEBSOCKET_MAX_HTTP_CONNECTIONS_PER_ADDRESS", min: 1) {
            http.maxConnectionsPerAddress = value
        }
        if let value = try reader.int("WEBSOCKET_API_RATE_LIMIT_PER_IP", min: 1) {
            rateLimits.apiRequestsPerIP = RateLimitPolicy(
                name: "api-ip",
                limit: value,
                period: .seconds(1),
                burst: value * 2
            )
        }
        if let value = try reader.milliseconds("WEBSOCKET_REVOCATION_RETENTION") { revocationRetention = value }
        switch try reader.string("WEBSOCKET_SESSION_MODE")?.lowercased() {
        case nil: break
        case "registry": sessionMode = .registry
        case "revocation-list", "revocation_list": sessionMode = .revocationList
        case let other?:
            throw RealtimeError(
                .invalidConfiguration,
                "WEBSOCKET_SESSION_MODE must be registry or revocation-list, not '\(other.prefix(32))'"
            )
        }
        try history.apply(reader)
        try offlineNotifications.apply(reader)
    }

    /// Checks values that cannot be expressed by types alone. The hub calls it in its initializer.
    public func validate() throws(RealtimeError) {
        func fail(_ message: String) -> RealtimeError { RealtimeError(.invalidConfiguration, message) }
        guard maxConnections > 0 else { throw fail("maxConnections must be positive") }
        if let perUser = maxConnectionsPerUser, perUser <= 0 { throw fail("maxConnectionsPerUser must be positive") }
        guard heartbeatInterval > .zero, cleanupInterval > .zero, idleTimeout > heartbeatInterval else {
            throw fail("heartbeatInterval and cleanupInterval must be positive and idleTimeout above heartbeatInterval")
        }
        guard serverTTL > serverHeartbeatInterval else { throw fail("serverTTL must exceed serverHeartbeatInterval") }
        guard registryGrace >= .zero else { throw fail("registryGrace must not be negative") }
        guard eventsPath != adminPath, eventsPath.hasPrefix("/"), adminPath.hasPrefix("/") else {
            throw fail("eventsPath and adminPath must be distinct absolute paths")
        }
        guard limits.maxMessageBytes > 0, limits.maxTokenBytes > 0, limits.maxSubscriptionsPerConnection > 0,
            limits.maxPatternsPerMessage > 0, limits.outboundQueueFrames > 0, limits.outboundQueueBytes > 0
        else { throw fail("limits must be positive") }
        guard shutdown.batchSize > 0 else { throw fail("shutdown.batchSize must be positive") }
        guard http.maxRequestLineBytes > 0, http.maxHeaderBytes > 0, http.maxHeaderFieldBytes > 0,
            http.headerReadTimeout > .zero, http.bodyReadTimeout > .zero, http.idleTimeout > .zero,
            http.maxConnectionsPerAddress > 0
        else { throw fail("http limits must be positive") }
        guard http.shutdownGrace >= .zero else { throw fail("http.shutdownGrace must not be negative") }
        if history.enabled { try history.validate() }
        if offlineNotifications.enabled { try offlineNotifications.validate() }
    }
}

extension OriginPolicy {
    /// Whether `entry` parses as an allowed-origin entry.
    func isValidEntry(_ entry: String) -> Bool {
        // An entry is valid if it allows itself (with a concrete label in place of a wildcard).
        let probe = entry.replacingFirst("*.", with: "probe.")
        return OriginPolicy(allowedOrigins: [entry], allowMissingOrigin: false).allows(probe)
    }
}

extension String {
    func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}

struct EnvironmentReader {
    let environment: [String: String]

    func string(_ name: String) throws(RealtimeError) -> String? {
        guard let value = environment[name]?.trimmingSpaces() else { return nil }
        guard !value.isEmpty else { throw RealtimeError(.invalidConfiguration, "\(name) is set but empty") }
        return value
    }

    func int(_ name: String, min: Int) throws(RealtimeError) -> Int? {
        guard let text = try string(name) else { return nil }
        guard let value = Int(text), value >= min else {
            throw RealtimeError(.invalidConfiguration, "\(name) must be an integer of at least \(min), got '\(text)'")
        }
        return value
    }

    func milliseconds(_ name: String, allowZero: Bool = false) throws(RealtimeError) -> Duration? {
        guard let text = try string(name) else { return nil }
        guard let value = Int64(text), value > 0 || (allowZero && value == 0), value <= 86_400_000 * 365 else {
            throw RealtimeError(
                .invalidConfiguration,
                "\(name) must be a whole number of milliseconds\(allowZero ? "" : " above 0"), got '\(text)'"
            )
        }
        return .milliseconds(value)
    }

    func bool(_ name: String) throws(RealtimeError) -> Bool? {
        guard let text = try string(name) else { return nil }
        switch text.lowercased() {
        case "1", "true", "yes", "on": return true
        case "0", "false", "no", "off": return false
        default: throw RealtimeError(.invalidConfiguration, "\(name) must be true or false, got '\(text)'")
        }
    }

    func list(_ name: String) throws(RealtimeError) -> [String]? {
        guard let text = environment[name] else { return nil }
        return text.split(separator: ",").map { $0.trimmingSpaces() }.filter { !$0.isEmpty }
    }
}
