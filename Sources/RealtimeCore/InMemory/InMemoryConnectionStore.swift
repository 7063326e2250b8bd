import Synchronization

/// A ``ConnectionStore`` that keeps the cluster registry in process memory.
///
/// Several hubs in one process can share one store to behave like a cluster (tests, single-node deployments).
/// Every operation runs under one lock on a value-type state, so ``register(_:maxConnectionsPerUser:)`` checks
/// the per-user limit atomically and ``purgeExpiredServers()`` reports each dead server to exactly one caller.
///
/// Connections live as long as their server: a server whose heartbeat expired is removed with its
/// connections by the next ``purgeExpiredServers()``. The store holds at most `maxRecords` connection records
/// and refuses more with ``RealtimeError/Code/limitExceeded``.
///
/// ```swift
/// let store = InMemoryConnectionStore()
/// let outcome = try await store.register(record, maxConnectionsPerUser: 5)
/// ```
public final class InMemoryConnectionStore: ConnectionStore {
    private let state: Mutex<State>
    private let now: @Sendable () -> Timestamp
    /// The most connection records the store holds.
    public let maxRecords: Int

    /// Creates an empty store.
    /// - Parameters:
    ///   - maxRecords: The most connection records held at once; more registrations are refused with
    ///     ``RealtimeError/Code/limitExceeded``.
    ///   - now: The wall clock used to decide which servers expired (tests pass a manual clock).
    public init(maxRecords: Int = 1_000_000, now: @escaping @Sendable () -> Timestamp = Timestamp.now) {
        precondition(maxRecords > 0, "maxRecords must be positive")
        self.maxRecords = maxRecords
        self.now = now
        self.state = Mutex(State())
    }

    public func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?
    ) async throws(RealtimeError) -> ConnectionRegistration {
        let maxRecords = self.maxRecords
        return try state.withLock { state throws(RealtimeError) in
            // Registering an id again replaces its record (it does not count twice).
            let existing = state.records[record.id]
            let userCount = state.byUser[record.userID]?.count ?? 0
            let countWithoutSelf = existing?.userID == record.userID ? userCount - 1 : userCount
            if let limit = maxConnectionsPerUser, countWithoutSelf >= limit {
                return .userLimitReached(userConnections: countWithoutSelf)
            }
            if existing == nil, state.records.count >= maxRecords {
                throw RealtimeError(.limitExceeded, "the connection store holds its maximum of \(maxRecords) records")
            }
            if existing != nil { state.remove(record.id) }
            state.insert(record)
            return .registered(userConnections: state.byUser[record.userID]?.count ?? 0)
        }
    }

    public func unregister(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRemoval? {
        state.withLock { state in
            guard let record = state.remove(id) else { return nil }
            return ConnectionRemoval(
                record: record,
                remainingUserConnections: state.byUser[record.userID]?.count ?? 0
            )
        }
    }

    public func connection(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRecord? {
        state.withLock { $0.records[id] }
    }

    public func connections(ofUser userID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        state.withLock { state in state.byUser[userID].map { state.lookup($0) } ?? [] }
    }

    public func connections(ofSession sessionID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        state.withLock { state in state.bySession[sessionID].map { state.lookup($0) } ?? [] }
    }

    /// Pages in connection-id order; the cursor is the last id of the previous page.
    public func connections(
        ofServer serverID: ServerID,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage {
        let limit = max(1, limit)
        return state.withLock { state in
            let ids = (state.byServer[serverID] ?? []).filter { id in cursor.map { id.rawValue > $0 } ?? true }
            let page = ids.sorted { $0.rawValue < $1.rawValue }.prefix(limit)
            let records = page.compactMap { state.records[$0] }
            return ConnectionPage(
                records: records,
                nextCursor: ids.count > limit ? page.last?.rawValue : nil
            )
        }
    }

    public func count(_ scope: ConnectionCountScope) async throws(RealtimeError) -> Int {
        state.withLock { state in
            switch scope {
            case .user(let id): return state.byUser[id]?.count ?? 0
            case .session(let id): return state.bySession[id]?.count ?? 0
            case .server(let id): return state.byServer[id]?.count ?? 0
            case .total: return state.records.count
            }
        }
    }

    public func heartbeat(_ server: ServerRecord) async throws(RealtimeError) {
        state.withLock { $0.servers[server.id] = server }
    }

    public func servers() async throws(RealtimeError) -> [ServerRecord] {
        let now = self.now()
        return state.withLock { state in
            state.servers.values.filter { $0.expiresAt > now }.sorted { $0.id.rawValue < $1.id.rawValue }
        }
    }

    public func removeServer(_ id: ServerID) async throws(RealtimeError) -> PurgedServer {
        state.withLock { $0.purge(id) }
    }

    public func purgeExpiredServers() async throws(RealtimeError) -> [PurgedServer] {
        let now = self.now()
        return state.withLock { state in
            let dead = state.servers.values.filter { $0.expiresAt <= now }.map(\.id)
            return dead.sorted { $0.rawValue < $1.rawValue }.map { state.purge($0) }
        }
    }

    /// The number of servers in the registry, expired or not (for tests).
    package var serverRegistrySize: Int { state.withLock { $0.servers.count } }
}

extension InMemoryConnectionStore {
    private struct State {
        var records: [ConnectionID: ConnectionRecord] = [:]
        var byUser: [String: Set<ConnectionID>] = [:]
        var bySession: [String: Set<ConnectionID>] = [:]
        var byServer: [ServerID: Set<ConnectionID>] = [:]
        var servers: [ServerID: ServerRecord] = [:]

        func lookup(_ ids: Set<ConnectionID>) -> [ConnectionRecord] {
            ids.compactMap { records[$0] }.sorted { $0.id.rawValue < $1.id.rawValue }
        }

        mutating func insert(_ record: ConnectionRecord) {
            records[record.id] = record
            byUser[record.userID, default: []].insert(record.id)
            if let session = record.sessionID { bySession[session, default: []].insert(record.id) }
            byServer[record.serverID, default: []].insert(record.id)
        }

        @discardableResult
        mutating func remove(_ id: ConnectionID) -> ConnectionRecord? {
            guard let record = records.removeValue(forKey: id) else { return nil }
            Self.removeIndex(&byUser, record.userID, id)
            if let session = record.sessionID { Self.removeIndex(&bySession, session, id) }
            Self.removeIndex(&byServer, record.serverID, id)
            return record
        }

        private static func removeIndex<K: Hashable>(
            _ index: inout [K: Set<ConnectionID>],
            _ key: K,
            _ id: ConnectionID
        ) {
            guard var ids = index[key] else { return }
            ids.remove(id)
            index[key] = ids.isEmpty ? nil : ids
        }

        /// Removes a server and its connections; a user is offline when none of their connections remain
        /// anywhere after the removal.
        mutating func purge(_ id: ServerID) -> PurgedServer {
            servers[id] = nil
            let ids = byServer[id] ?? []
            var removed: [ConnectionRecord] = []
            removed.reserveCapacity(ids.count)
            for connection in ids {
                if let record = remove(connection) { removed.append(record) }
            }
            removed.sort { $0.id.rawValue < $1.id.rawValue }
            var offline = Set<String>()
            for record in removed where byUser[record.userID] == nil {
                offline.insert(record.userID)
            }
            return PurgedServer(serverID: id, connections: removed, usersGoneOffline: offline.sorted())
        }
    }
}
