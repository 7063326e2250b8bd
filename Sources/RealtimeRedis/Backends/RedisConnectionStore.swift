public import RealtimeCore

/// The cluster-wide `ConnectionStore` on Redis, on one node or on Redis Cluster with the same keys.
///
/// Keys (all under `<prefix>cs:`, each with a hash tag so every script touches one Redis Cluster slot):
/// - `{u:<userID>}`: a hash from connection id to the connection's record (``RedisFieldList``); the per-user
///   limit is checked and claimed on it in one script, so two servers can never both admit a connection over it;
/// - `{c:<connectionID>}`: the connection's user id, so a record is found by id alone;
/// - `{s:<sessionID>}` and `{srv:<serverID>}`: sets of (connection id, user id, session id) members, the indexes
///   by session and by server (a server's set is also what ``connections(ofServer:after:limit:)`` scans);
/// - `{servers}`: a sorted set of server ids scored by their heartbeat expiry (ms since the epoch), with
///   `{servers}:<serverID>` hashes (start, last heartbeat, expiry, connection count, counters) in the same slot.
///
/// What must be atomic is one script on one slot: the user-limit claim and a record's removal (on the user's
/// hash), a server's claim by one purger (`ZREM` on `{servers}`) and the hand-over of its connection set (on
/// `{srv:<serverID>}`). The indexes of other slots follow in the next commands of the same call; a call cut short
/// between them (the process dies) leaves an index member whose record is gone, which readers drop, or a record
/// that its server's purge or its TTL removes. Records and indexes carry a TTL (`recordTTL`) that each heartbeat of
/// their server refreshes, so a cluster that disappears entirely leaves nothing behind for long. Totals are
/// aggregated by the client over each server's set (one `SCARD` per server, pipelined per node).
public final class RedisConnectionStore: ConnectionStore, Sendable {
    private let client: RedisClient
    private let prefix: String
    private let recordTTL: Duration
    /// How old a record must be before ``removeOrphans(ofUser:)`` may take it for an orphan.
    let orphanGrace: Duration

    /// - Parameters:
    ///   - client: the Redis client the store's commands and scripts go through (one node or a cluster).
    ///   - prefix: the prefix of every key (`<prefix>cs:…`). It must not contain `{`, or every key would share
    ///     the prefix's hash tag (correct, but all on one cluster slot).
    ///   - recordTTL: how long records and indexes live without a heartbeat of their server. Must be much longer
    ///     than the heartbeat expiry, so that survivors purge a dead server (and learn which users went offline)
    ///     before its records expire.
    public convenience init(client: RedisClient, prefix: String = "rthub:", recordTTL: Duration = .seconds(3600)) {
        self.init(client: client, prefix: prefix, recordTTL: recordTTL, orphanGrace: .seconds(30))
    }

    /// With the grace before a record missing from its server's set counts as an orphan (tests shorten it).
    package init(client: RedisClient, prefix: String, recordTTL: Duration, orphanGrace: Duration) {
        self.client = client
        self.prefix = prefix + "cs:"
        self.recordTTL = recordTTL
        self.orphanGrace = orphanGrace
    }

    func userKey(_ user: String) -> String { "\(prefix){u:\(user)}" }
    func connectionKey(_ id: ConnectionID) -> String { "\(prefix){c:\(id.rawValue)}" }
    func sessionKey(_ session: String) -> String { "\(prefix){s:\(session)}" }
    func serverKey(_ server: ServerID) -> String { "\(prefix){srv:\(server.rawValue)}" }
    var serversKey: String { "\(prefix){servers}" }
    func serverInfoKey(_ server: ServerID) -> String { "\(prefix){servers}:\(server.rawValue)" }

    private var ttlArgument: String { String(max(1, recordTTL.milliseconds)) }

    /// A member of a server or session set: which connection, and which user's hash holds its record.
    struct Member: Hashable {
        var id: String
        var user: String
        var session: String?

        init(_ record: ConnectionRecord) {
            id = record.id.rawValue
            user = record.userID
            session = record.sessionID
        }

        init?(_ encoded: String) {
            guard let fields = RedisFieldList.decode(encoded), fields.count == 3, let id = fields[0],
                let user = fields[1]
            else { return nil }
            self.id = id
            self.user = user
            self.session = fields[2]
        }

        var encoded: String { RedisFieldList.encode([id, user, session]) }
    }

    public func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?
    ) async throws(RealtimeError) -> ConnectionRegistration {
        try await register(record, maxConnectionsPerUser: maxConnectionsPerUser, repairing: false)
    }

    private func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?,
        repairing: Bool
    ) async throws(RealtimeError) -> ConnectionRegistration {
        let reply = try await Self.registerScript.run(
            on: client,
            keys: [userKey(record.userID)],
            arguments: [
                record.id.rawValue, Self.encode(record), maxConnectionsPerUser.map { String($0) } ?? "", ttlArgument,
            ]
        )
        guard let fields = reply.array, fields.count == 2, let admitted = fields[0].int, let count = fields[1].int
        else {
            throw RealtimeError(.protocolViolation, "the register script returned \(reply)")
        }
        guard admitted == 1 else {
            // At the limit: records a failover left behind may fill it. Once they are gone, claim again (once).
            guard !repairing, await removeOrphansIfAny(ofUser: record.userID) > 0 else {
                return .userLimitReached(userConnections: Int(count))
            }
            return try await register(record, maxConnectionsPerUser: maxConnectionsPerUser, repairing: true)
        }
        let member = Member(record).encoded
        var commands = [
            RedisCommand("SET", connectionKey(record.id), record.userID, "PX", ttlArgument),
            RedisCommand("SADD", serverKey(record.serverID), member),
            RedisCommand("PEXPIRE", serverKey(record.serverID), ttlArgument),
        ]
        if let session = record.sessionID {
            commands.append(RedisCommand("SADD", sessionKey(session), member))
            commands.append(RedisCommand("PEXPIRE", sessionKey(session), ttlArgument))
        }
        try Self.checkAll(try await client.pipeline(commands))
        return .registered(userConnections: Int(count))
    }

    /// Removes the records of `user`'s hash that their server's set no longer lists, once they are older than
    /// ``orphanGrace``; returns how many. Every other write of a record's life keeps the two together (the set is
    /// written right after the hash, and a removal takes the record out of the hash first), so such a record is what
    /// a failover leaves when it loses writes on the user's slot only: an unregistration whose removal from the
    /// server's set, on another slot, survived (ninth probe, H2: the closed connections kept counting against the
    /// user's limit, and refused the user, until the hash expired). The grace keeps a registration whose set is
    /// being written. Run when a claim is refused at the limit, the one moment such records do harm.
    func removeOrphans(ofUser user: String) async throws(RealtimeError) -> Int {
        let cutoff = Timestamp.now() - orphanGrace
        let candidates = try await connections(ofUser: user).filter { $0.connectedAt < cutoff }
        guard !candidates.isEmpty else { return 0 }
        let listed = try await client.pipeline(
            candidates.map { RedisCommand("SISMEMBER", serverKey($0.serverID), Member($0).encoded) }
        )
        try Self.checkAll(listed)
        let orphans = zip(candidates, listed).filter { $0.1.int == 0 }.map(\.0)
        guard !orphans.isEmpty else { return 0 }
        let (removed, _) = try await remove(orphans.map(\.id.rawValue), ofUser: user)
        try await dropIndexes(of: removed, serverSets: false)
        return removed.count
    }

    /// ``removeOrphans(ofUser:)`` as a best effort: a failure (Redis failing over meanwhile, a record that does not
    /// decode) leaves the refusal as it was, a `429` rather than an error.
    private func removeOrphansIfAny(ofUser user: String) async -> Int {
        (try? await removeOrphans(ofUser: user)) ?? 0
    }

    public func unregister(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRemoval? {
        guard let user = try await client.send(RedisCommand("GET", connectionKey(id))).string else { return nil }
        let (records, remaining) = try await remove([id.rawValue], ofUser: user)
        guard let record = records.first else {
            // A pointer left by an interrupted call: its record is gone.
            _ = try await client.send(RedisCommand("DEL", connectionKey(id)))
            return nil
        }
        try await dropIndexes(of: [record], serverSets: true)
        return ConnectionRemoval(record: record, remainingUserConnections: remaining)
    }

    /// Removes `ids` from `user`'s hash in one script; returns the records removed and the connections left.
    private func remove(
        _ ids: [String],
        ofUser user: String
    ) async throws(RealtimeError) -> (records: [ConnectionRecord], remaining: Int) {
        let reply = try await Self.removeScript.run(on: client, keys: [userKey(user)], arguments: ids)
        guard let fields = reply.array, fields.count == 2, let removed = fields[0].array, let left = fields[1].int
        else { throw RealtimeError(.protocolViolation, "the remove script returned \(reply)") }
        var records: [ConnectionRecord] = []
        for value in removed { records.append(try Self.record(value)) }
        return (records, Int(left))
    }

    /// Deletes the id pointers and the session (and, unless the server set was taken whole, server) members of
    /// removed records.
    private func dropIndexes(of records: [ConnectionRecord], serverSets: Bool) async throws(RealtimeError) {
        var commands: [RedisCommand] = []
        for record in records {
            let member = Member(record).encoded
            commands.append(RedisCommand("DEL", connectionKey(record.id)))
            if serverSets { commands.append(RedisCommand("SREM", serverKey(record.serverID), member)) }
            if let session = record.sessionID { commands.append(RedisCommand("SREM", sessionKey(session), member)) }
        }
        for chunk in Self.chunks(commands) { try Self.checkAll(try await client.pipeline(Array(chunk))) }
    }

    public func connection(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRecord? {
        guard let user = try await client.send(RedisCommand("GET", connectionKey(id))).string else { return nil }
        let reply = try await client.send(RedisCommand("HGET", userKey(user), id.rawValue))
        if reply.isNull { return nil }
        return try Self.record(reply)
    }

    public func connections(ofUser userID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        let reply = try await client.send(RedisCommand("HVALS", userKey(userID)))
        guard let values = reply.array else { throw RealtimeError(.protocolViolation, "HVALS returned \(reply)") }
        var records: [ConnectionRecord] = []
        for value in values { records.append(try Self.record(value)) }
        return records
    }

    public func connections(ofSession sessionID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        let key = sessionKey(sessionID)
        let reply = try await client.send(RedisCommand("SMEMBERS", key))
        guard let members = reply.array else { throw RealtimeError(.protocolViolation, "SMEMBERS returned \(reply)") }
        return try await records(of: members, index: key)
    }

    /// The records of set members (grouped by user, one `HMGET` each, pipelined); members whose record is gone are
    /// removed from `index`.
    private func records(of members: [RESPValue], index: String) async throws(RealtimeError) -> [ConnectionRecord] {
        var byUser: [String: [(member: String, id: String)]] = [:]
        var users: [String] = []
        for value in members {
            guard let text = value.string, let member = Member(text) else { continue }
            if byUser[member.user] == nil { users.append(member.user) }
            byUser[member.user, default: []].append((text, member.id))
        }
        guard !users.isEmpty else { return [] }
        let commands = users.map { user in RedisCommand(["HMGET", userKey(user)] + byUser[user]!.map(\.id)) }
        let replies = try await client.pipeline(commands)
        var records: [ConnectionRecord] = []
        var stale: [String] = []
        for (user, reply) in zip(users, replies) {
            guard let values = reply.array else { throw RealtimeError(.protocolViolation, "HMGET returned \(reply)") }
            for (entry, value) in zip(byUser[user]!, values) {
                if value.isNull { stale.append(entry.member) } else { records.append(try Self.record(value)) }
            }
        }
        if !stale.isEmpty { _ = try await client.send(RedisCommand(["SREM", index] + stale)) }
        return records
    }

    /// Pages with `SSCAN` over the server's set (the cursor is `SSCAN`'s, a decimal number: anything else is
    /// refused with `invalidArgument` before Redis sees it; `limit` is its `COUNT` hint).
    public func connections(
        ofServer serverID: ServerID,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage {
        if let cursor, UInt64(cursor) == nil || cursor.hasPrefix("+") {
            throw RealtimeError(.invalidArgument, "the cursor is not one this listing returned")
        }
        let key = serverKey(serverID)
        let reply = try await client.send(
            RedisCommand("SSCAN", key, cursor ?? "0", "COUNT", String(max(1, limit)))
        )
        guard let fields = reply.array, fields.count == 2, let next = fields[0].string, let members = fields[1].array
        else { throw RealtimeError(.protocolViolation, "SSCAN returned \(reply)") }
        let records = try await records(of: members, index: key)
        return ConnectionPage(records: records, nextCursor: next == "0" ? nil : next)
    }

    public func count(_ scope: ConnectionCountScope) async throws(RealtimeError) -> Int {
        let reply: RESPValue
        switch scope {
        case .user(let id): reply = try await client.send(RedisCommand("HLEN", userKey(id)))
        case .session(let id): reply = try await client.send(RedisCommand("SCARD", sessionKey(id)))
        case .server(let id): reply = try await client.send(RedisCommand("SCARD", serverKey(id)))
        case .total:
            let ids = try await client.send(RedisCommand("ZRANGE", serversKey, "0", "-1"))
            guard let ids = ids.array else { throw RealtimeError(.protocolViolation, "ZRANGE returned \(ids)") }
            let counts = try await client.pipeline(
                ids.compactMap(\.string).map { RedisCommand("SCARD", serverKey(ServerID($0))) }
            )
            var total: Int64 = 0
            for count in counts {
                guard let count = count.int else { throw RealtimeError(.protocolViolation, "SCARD returned \(count)") }
                total += count
            }
            return Int(total)
        }
        guard let count = reply.int else { throw RealtimeError(.protocolViolation, "a count returned \(reply)") }
        return Int(count)
    }

    /// Updates the server's entry, then refreshes the TTL of its set and of its connections' records and indexes
    /// (pipelined, grouped by node on a cluster).
    public func heartbeat(_ server: ServerRecord) async throws(RealtimeError) {
        _ = try await Self.heartbeatScript.run(
            on: client,
            keys: [serversKey, serverInfoKey(server.id)],
            arguments: [
                server.id.rawValue, String(server.startedAt.millisecondsSinceEpoch),
                String(server.lastHeartbeat.millisecondsSinceEpoch), String(server.expiresAt.millisecondsSinceEpoch),
                String(server.connectionCount), ttlArgument, server.eventsDelivered.map { String($0) } ?? "",
                server.eventsDropped.map { String($0) } ?? "",
            ]
        )
        let key = serverKey(server.id)
        let reply = try await client.send(RedisCommand("SMEMBERS", key))
        guard let members = reply.array else { throw RealtimeError(.protocolViolation, "SMEMBERS returned \(reply)") }
        guard !members.isEmpty else { return }
        var keys: [String] = [key]
        var seen: Set<String> = []
        for value in members {
            guard let text = value.string, let member = Member(text) else { continue }
            keys.append(connectionKey(ConnectionID(member.id)))
            let user = userKey(member.user)
            if seen.insert(user).inserted { keys.append(user) }
            if let session = member.session.map(sessionKey), seen.insert(session).inserted { keys.append(session) }
        }
        let commands = keys.map { RedisCommand("PEXPIRE", $0, ttlArgument) }
        for chunk in Self.chunks(commands) { try Self.checkAll(try await client.pipeline(Array(chunk))) }
    }

    /// The servers whose heartbeat has not expired, each with the time of its last report (so global statistics
    /// can say how fresh they are).
    public func servers() async throws(RealtimeError) -> [ServerRecord] {
        let reply = try await Self.serversScript.run(
            on: client,
            keys: [serversKey],
            arguments: [String(Timestamp.now().millisecondsSinceEpoch)]
        )
        guard let rows = reply.array else { throw RealtimeError(.protocolViolation, "servers returned \(reply)") }
        var servers: [ServerRecord] = []
        for row in rows {
            guard let fields = row.array, fields.count == 7, let id = fields[0].string, let started = fields[1].int,
                let heartbeat = fields[2].int, let expires = fields[3].int, let count = fields[4].int
            else { throw RealtimeError(.protocolViolation, "a server entry is malformed: \(row)") }
            servers.append(
                ServerRecord(
                    id: ServerID(id),
                    startedAt: Timestamp(millisecondsSinceEpoch: started),
                    lastHeartbeat: Timestamp(millisecondsSinceEpoch: heartbeat),
                    expiresAt: Timestamp(millisecondsSinceEpoch: expires),
                    connectionCount: Int(count),
                    eventsDelivered: fields[5].int.map { Int($0) },
                    eventsDropped: fields[6].int.map { Int($0) }
                )
            )
        }
        return servers
    }

    public func removeServer(_ id: ServerID) async throws(RealtimeError) -> PurgedServer {
        _ = try await Self.claimScript.run(on: client, keys: [serversKey], arguments: [id.rawValue])
        return try await purgeConnections(of: id)
    }

    /// Claims each server whose expiry is at or before now (`ZREM`: one caller wins each) and purges the ones it
    /// won, so concurrent purgers report a dead server at most once.
    public func purgeExpiredServers() async throws(RealtimeError) -> [PurgedServer] {
        let now = String(Timestamp.now().millisecondsSinceEpoch)
        let reply = try await client.send(RedisCommand("ZRANGEBYSCORE", serversKey, "-inf", now))
        guard let ids = reply.array else { throw RealtimeError(.protocolViolation, "ZRANGEBYSCORE returned \(reply)") }
        var purged: [PurgedServer] = []
        for id in ids.compactMap(\.string) {
            let claimed = try await Self.claimScript.run(on: client, keys: [serversKey], arguments: [id])
            guard claimed.int == 1 else { continue }
            purged.append(try await purgeConnections(of: ServerID(id)))
        }
        return purged
    }

    /// Takes the server's connection set (one caller gets it) and removes every record in it, user by user.
    private func purgeConnections(of server: ServerID) async throws(RealtimeError) -> PurgedServer {
        let reply = try await Self.takeScript.run(on: client, keys: [serverKey(server)], arguments: [])
        guard let values = reply.array else { throw RealtimeError(.protocolViolation, "take returned \(reply)") }
        var byUser: [String: [String]] = [:]
        var users: [String] = []
        for value in values {
            guard let text = value.string, let member = Member(text) else { continue }
            if byUser[member.user] == nil { users.append(member.user) }
            byUser[member.user, default: []].append(member.id)
        }
        var connections: [ConnectionRecord] = []
        var offline: [String] = []
        for user in users {
            let (records, remaining) = try await remove(byUser[user]!, ofUser: user)
            connections += records
            if remaining == 0, !records.isEmpty { offline.append(user) }
        }
        try await dropIndexes(of: connections, serverSets: false)
        return PurgedServer(serverID: server, connections: connections, usersGoneOffline: offline)
    }

    public func healthCheck() async -> ComponentHealth {
        await client.healthCheck()
    }

    /// Pipelines of at most 512 commands, so one heartbeat of a busy server does not hold a connection for long.
    private static func chunks(_ commands: [RedisCommand]) -> [ArraySlice<RedisCommand>] {
        stride(from: 0, to: commands.count, by: 512).map { commands[$0..<min(commands.count, $0 + 512)] }
    }

    private static func checkAll(_ replies: [RESPValue]) throws(RealtimeError) {
        for reply in replies {
            if case .error(let message) = reply {
                throw RealtimeError(
                    .backendUnavailable,
                    "Redis answered with an error",
                    underlying: RedisServerError(message)
                )
            }
        }
    }

    static func encode(_ record: ConnectionRecord) -> String {
        RedisFieldList.encode([
            record.id.rawValue, record.serverID.rawValue, record.userID, record.sessionID, record.isAdmin ? "1" : "0",
            record.remoteAddress, record.origin, String(record.connectedAt.millisecondsSinceEpoch),
        ])
    }

    private static func record(_ reply: RESPValue) throws(RealtimeError) -> ConnectionRecord {
        guard let text = reply.string, let fields = RedisFieldList.decode(text), fields.count == 8,
            let id = fields[0], let server = fields[1], let user = fields[2], let admin = fields[4],
            let address = fields[5], let at = fields[7].flatMap({ Int64($0) })
        else { throw RealtimeError(.protocolViolation, "a connection record is malformed: \(reply)") }
        return ConnectionRecord(
            id: ConnectionID(id),
            serverID: ServerID(server),
            userID: user,
            sessionID: fields[3],
            isAdmin: admin == "1",
            remoteAddress: address,
            origin: fields[6],
            connectedAt: Timestamp(millisecondsSinceEpoch: at)
        )
    }
}
