/// A live WebSocket connection as the cluster-wide registry knows it.
public struct ConnectionRecord: Sendable, Hashable {
    public var id: ConnectionID
    /// The server that holds the socket.
    public var serverID: ServerID
    public var userID: String
    public var sessionID: String?
    /// Whether this is an administrator connection (`/ws/admin`).
    public var isAdmin: Bool
    /// The client address as the hub sees it (after trusted-proxy resolution).
    public var remoteAddress: String
    /// The `Origin` header of the upgrade request, if any.
    public var origin: String?
    public var connectedAt: Timestamp

    public init(
        id: ConnectionID,
        serverID: ServerID,
        userID: String,
        sessionID: String?,
        isAdmin: Bool,
        remoteAddress: String,
        origin: String?,
        connectedAt: Timestamp
    ) {
        self.id = id
        self.serverID = serverID
        self.userID = userID
        self.sessionID = sessionID
        self.isAdmin = isAdmin
        self.remoteAddress = remoteAddress
        self.origin = origin
        self.connectedAt = connectedAt
    }
}

/// The outcome of ``ConnectionStore/register(_:maxConnectionsPerUser:)``.
public enum ConnectionRegistration: Sendable, Hashable {
    /// Registered; the user now has `userConnections` live connections in the cluster (1 means they just came
    /// online).
    case registered(userConnections: Int)
    /// Not registered: the user already has `userConnections` connections, at or over the limit.
    case userLimitReached(userConnections: Int)
}

/// The outcome of ``ConnectionStore/unregister(_:)``.
public struct ConnectionRemoval: Sendable, Hashable {
    /// The record that was removed.
    public var record: ConnectionRecord
    /// The user's live connections in the cluster after the removal (0 means they just went offline).
    public var remainingUserConnections: Int

    public init(record: ConnectionRecord, remainingUserConnections: Int) {
        self.record = record
        self.remainingUserConnections = remainingUserConnections
    }
}

/// A server in the cluster registry.
public struct ServerRecord: Sendable, Hashable {
    public var id: ServerID
    public var startedAt: Timestamp
    /// When the server last reported (its heartbeat). Global statistics show the age of this report.
    public var lastHeartbeat: Timestamp
    /// When the server counts as dead unless it heartbeats again.
    public var expiresAt: Timestamp
    /// The server's own count of its connections at its last heartbeat.
    public var connectionCount: Int
    /// The events the server had delivered to its connections since it started, at its last heartbeat; `nil`
    /// when the server did not report it (a server of an older version). With ``lastHeartbeat`` it gives the
    /// server's delivery rate between two reports.
    public var eventsDelivered: Int?
    /// The events the server had dropped (a connection's queue overflowed) since it started, at its last
    /// heartbeat; `nil` when not reported.
    public var eventsDropped: Int?

    public init(
        id: ServerID,
        startedAt: Timestamp,
        lastHeartbeat: Timestamp,
        expiresAt: Timestamp,
        connectionCount: Int,
        eventsDelivered: Int? = nil,
        eventsDropped: Int? = nil
    ) {
        self.id = id
        self.startedAt = startedAt
        self.lastHeartbeat = lastHeartbeat
        self.expiresAt = expiresAt
        self.connectionCount = connectionCount
        self.eventsDelivered = eventsDelivered
        self.eventsDropped = eventsDropped
    }
}

/// A server removed from the registry, with the connections that were removed with it.
public struct PurgedServer: Sendable, Hashable {
    public var serverID: ServerID
    public var connections: [ConnectionRecord]
    /// Users whose last connection in the cluster was among `connections`: they are now offline.
    public var usersGoneOffline: [String]

    public init(serverID: ServerID, connections: [ConnectionRecord], usersGoneOffline: [String]) {
        self.serverID = serverID
        self.connections = connections
        self.usersGoneOffline = usersGoneOffline
    }
}

/// One page of a server's connections, from ``ConnectionStore/connections(ofServer:after:limit:)``.
public struct ConnectionPage: Sendable, Hashable {
    /// Records of the page, in no particular order.
    public var records: [ConnectionRecord]
    /// Where the next page starts (pass it as `after`); `nil` once the listing is complete. Opaque.
    public var nextCursor: String?

    public init(records: [ConnectionRecord], nextCursor: String?) {
        self.records = records
        self.nextCursor = nextCursor
    }
}

/// What ``ConnectionStore/count(_:)`` counts.
public enum ConnectionCountScope: Sendable, Hashable {
    case user(String)
    case session(String)
    case server(ServerID)
    case total
}

/// The cluster-wide registry of live connections and servers.
///
/// Every server registers its connections here, so per-user limits hold across the cluster and a server can
/// find which server holds a connection. Servers heartbeat; a server whose heartbeat expired is purged by the
/// survivors (``purgeExpiredServers()``) and its connections stop counting.
///
/// Conformance: the `RealtimeTesting` product's `ConnectionStoreConformance` checks every rule below.
public protocol ConnectionStore: Sendable {
    /// Registers a connection, atomically checking the user's limit: two servers can never both admit a
    /// connection over `maxConnectionsPerUser`. `nil` means no limit.
    func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?
    ) async throws(RealtimeError) -> ConnectionRegistration

    /// Removes a connection. Returns `nil` if it was not registered (already removed, or purged).
    func unregister(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRemoval?

    /// The record of one connection.
    func connection(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRecord?

    /// The live connections of a user, on any server.
    func connections(ofUser userID: String) async throws(RealtimeError) -> [ConnectionRecord]

    /// The live connections of a session, on any server.
    func connections(ofSession sessionID: String) async throws(RealtimeError) -> [ConnectionRecord]

    /// Lists the connections registered for one server, a page at a time: call it with `after: nil`, then with
    /// each page's ``ConnectionPage/nextCursor`` until that is `nil`. Every record registered for the server from
    /// the first call to the last is listed at least once (a record may appear twice, as with Redis `SCAN`);
    /// records added or removed meanwhile may or may not be. Each call does bounded work: `limit` is the page
    /// size the backend aims at (a backend may return somewhat more, e.g. a small Redis set at once).
    /// A cursor this method did not return is refused with ``RealtimeError/Code/invalidArgument`` when the
    /// backend cannot use it (the cursor may come from outside, through ``RealtimeHub/connections(after:limit:)``);
    /// it never makes the backend fail otherwise.
    ///
    /// A hub reconciles its own records with the connections it holds with this (see
    /// `Documentation/Architecture.md`, "Registration lifecycle").
    func connections(
        ofServer serverID: ServerID,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage

    /// Counts live connections.
    func count(_ scope: ConnectionCountScope) async throws(RealtimeError) -> Int

    /// Records that `server` is alive until `server.expiresAt` and refreshes the liveness of its connections.
    /// ``servers()`` returns the record as given, counters included.
    func heartbeat(_ server: ServerRecord) async throws(RealtimeError)

    /// The servers whose heartbeat has not expired.
    func servers() async throws(RealtimeError) -> [ServerRecord]

    /// Removes a server and all its connections (graceful shutdown). Returns what was removed.
    func removeServer(_ id: ServerID) async throws(RealtimeError) -> PurgedServer

    /// Removes every server whose heartbeat expired, with its connections. Safe to call from every server at
    /// once: each dead server is reported by exactly one caller.
    func purgeExpiredServers() async throws(RealtimeError) -> [PurgedServer]

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension ConnectionStore {
    public func healthCheck() async -> ComponentHealth { .healthy }
}
