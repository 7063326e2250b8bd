public import RealtimeCore

/// The cluster-wide `ConnectionStore` on Redis.
///
/// Keys (all under `<prefix>cs:`):
/// - `conn:<id>`: a hash with the record's fields;
/// - `user:<userID>`, `session:<sessionID>`, `server:<serverID>:conns`: sets of connection ids (the indexes;
///   a server's set is also what ``connections(ofServer:after:limit:)`` scans);
/// - `servers`: a sorted set of server ids scored by their heartbeat expiry (ms since the epoch);
/// - `server:<serverID>`: a hash with the server's start, last heartbeat, expiry and connection count.
///
/// Every multi-key change is one Lua script, so it is atomic across servers: the per-user limit is checked and
/// claimed in one step (two servers can never both admit a connection over it), and a dead server is purged by
/// exactly one caller. Records and indexes carry a TTL (`recordTTL`) that each heartbeat of their server
/// refreshes, so a cluster that disappears entirely leaves nothing behind for long.
///
/// The scripts address keys they compute, so the store needs a single Redis (or a primary with replicas), not
/// Redis Cluster.
public final class RedisConnectionStore: ConnectionStore, Sendable {
    private let client: RedisClient
    private let prefix: String
    private let recordTTL: Duration

    /// - Parameters:
    ///   - client: the Redis client the store's commands and scripts go through.
    ///   - prefix: the prefix of every key (`<prefix>cs:…`).
    ///   - recordTTL: how long records and indexes live without a heartbeat of their server. Must be much longer
    ///     than the heartbeat expiry, so that survivors purge a dead server (and learn which users went offline)
    ///     before its records expire.
    public init(client: RedisClient, prefix: String = "rthub:", recordTTL: Duration = .seconds(3600)) {
        self.client = client
        self.prefix = prefix + "cs:"
        self.recordTTL = recordTTL
    }

    private static let toMap = """
        local function tomap(flat)
          local map = {}
          for i = 1, #flat, 2 do map[flat[i]] = flat[i + 1] end
          return map
        end

        """

    /// Checks the user's limit and claims a slot in one step. ARGV: prefix, id, server, user, `=session` or
    /// empty, admin flag, address, `=origin` or empty, connectedAt, limit or empty, ttl (ms).
    static let registerScript = RedisScript(
        """
        local p, id = ARGV[1], ARGV[2]
        local ck = p .. 'conn:' .. id
        local uk = p .. 'user:' .. ARGV[4]
        local n = redis.call('SCARD', uk)
        if redis.call('EXISTS', ck) == 1 then return {1, n} end
        if ARGV[10] ~= '' and n >= tonumber(ARGV[10]) then return {0, n} end
        local ttl = ARGV[11]
        redis.call('HSET', ck, 'id', id, 'server', ARGV[3], 'user', ARGV[4], 'admin', ARGV[6], 'addr', ARGV[7],
          'at', ARGV[9])
        if ARGV[5] ~= '' then
          local session = string.sub(ARGV[5], 2)
          redis.call('HSET', ck, 'session', session)
          redis.call('SADD', p .. 'session:' .. session, id)
          redis.call('PEXPIRE', p .. 'session:' .. session, ttl)
        end
        if ARGV[8] ~= '' then redis.call('HSET', ck, 'origin', string.sub(ARGV[8], 2)) end
        redis.call('PEXPIRE', ck, ttl)
        redis.call('SADD', uk, id)
        redis.call('PEXPIRE', uk, ttl)
        local sk = p .. 'server:' .. ARGV[3] .. ':conns'
        redis.call('SADD', sk, id)
        redis.call('PEXPIRE', sk, ttl)
        return {1, n + 1}
        """
    )

    /// ARGV: prefix, id. Returns nil or {record, remaining user connections}.
    static let unregisterScript = RedisScript(
        toMap + """
            local p, id = ARGV[1], ARGV[2]
            local ck = p .. 'conn:' .. id
            local flat = redis.call('HGETALL', ck)
            if #flat == 0 then return false end
            local h = tomap(flat)
            redis.call('DEL', ck)
            redis.call('SREM', p .. 'user:' .. h.user, id)
            if h.session then redis.call('SREM', p .. 'session:' .. h.session, id) end
            redis.call('SREM', p .. 'server:' .. h.server .. ':conns', id)
            return {flat, redis.call('SCARD', p .. 'user:' .. h.user)}
            """
    )

    /// ARGV: prefix, index key suffix. Returns the records of every id in the index set.
    static let recordsScript = RedisScript(
        """
        local p = ARGV[1]
        local ids = redis.call('SMEMBERS', p .. ARGV[2])
        local out = {}
        for _, id in ipairs(ids) do
          local flat = redis.call('HGETALL', p .. 'conn:' .. id)
          if #flat > 0 then out[#out + 1] = flat end
        end
        return out
        """
    )

    /// ARGV: prefix, server id, `SSCAN` cursor, count. One `SSCAN` step over the server's connection set:
    /// returns {next cursor, records}. An id whose record is gone (expired) is dropped from the set, so it stops
    /// counting in the totals.
    static let serverConnectionsScript = RedisScript(
        """
        local p = ARGV[1]
        local sk = p .. 'server:' .. ARGV[2] .. ':conns'
        local step = redis.call('SSCAN', sk, ARGV[3], 'COUNT', ARGV[4])
        local out = {}
        for _, id in ipairs(step[2]) do
          local flat = redis.call('HGETALL', p .. 'conn:' .. id)
          if #flat > 0 then out[#out + 1] = flat else redis.call('SREM', sk, id) end
        end
        return {step[1], out}
        """
    )

    /// ARGV: prefix, id, started, heartbeat, expires, count, ttl (ms), events delivered and dropped (empty: not
    /// reported, the fields are removed).
    static let heartbeatScript = RedisScript(
        """
        local p, id, ttl = ARGV[1], ARGV[2], ARGV[7]
        local sh = p .. 'server:' .. id
        redis.call('ZADD', p .. 'servers', ARGV[5], id)
        redis.call('HSET', sh, 'started', ARGV[3], 'heartbeat', ARGV[4], 'expires', ARGV[5], 'count', ARGV[6])
        for i, field in ipairs({'delivered', 'dropped'}) do
          if ARGV[7 + i] ~= '' then redis.call('HSET', sh, field, ARGV[7 + i]) else redis.call('HDEL', sh, field) end
        end
        redis.call('PEXPIRE', sh, ttl)
        local sk = p .. 'server:' .. id .. ':conns'
        local ids = redis.call('SMEMBERS', sk)
        if #ids > 0 then redis.call('PEXPIRE', sk, ttl) end
        for _, cid in ipairs(ids) do
          local ck = p .. 'conn:' .. cid
          local f = redis.call('HMGET', ck, 'user', 'session')
          redis.call('PEXPIRE', ck, ttl)
          if f[1] then redis.call('PEXPIRE', p .. 'user:' .. f[1], ttl) end
          if f[2] then redis.call('PEXPIRE', p .. 'session:' .. f[2], ttl) end
        end
        return #ids
        """
    )

    /// ARGV: prefix, now (ms). The live servers with their hashes.
    static let serversScript = RedisScript(
        """
        local p = ARGV[1]
        local ids = redis.call('ZRANGEBYSCORE', p .. 'servers', '(' .. ARGV[2], '+inf')
        local out = {}
        for _, id in ipairs(ids) do
          local f = redis.call('HMGET', p .. 'server:' .. id, 'started', 'heartbeat', 'expires', 'count', 'delivered',
            'dropped')
          if f[3] then out[#out + 1] = {id, f[1], f[2], f[3], f[4], f[5], f[6]} end
        end
        return out
        """
    )

    /// ARGV: prefix. The total over every registered server's connection set.
    static let totalScript = RedisScript(
        """
        local p = ARGV[1]
        local total = 0
        for _, id in ipairs(redis.call('ZRANGE', p .. 'servers', 0, -1)) do
          total = total + redis.call('SCARD', p .. 'server:' .. id .. ':conns')
        end
        return total
        """
    )

    private static let removeFunction =
        toMap + """
            local function remove(p, id)
              redis.call('ZREM', p .. 'servers', id)
              redis.call('DEL', p .. 'server:' .. id)
              local sk = p .. 'server:' .. id .. ':conns'
              local ids = redis.call('SMEMBERS', sk)
              redis.call('DEL', sk)
              local records, users, seen = {}, {}, {}
              for _, cid in ipairs(ids) do
                local ck = p .. 'conn:' .. cid
                local flat = redis.call('HGETALL', ck)
                if #flat > 0 then
                  local h = tomap(flat)
                  redis.call('DEL', ck)
                  redis.call('SREM', p .. 'user:' .. h.user, cid)
                  if h.session then redis.call('SREM', p .. 'session:' .. h.session, cid) end
                  records[#records + 1] = flat
                  if not seen[h.user] then
                    seen[h.user] = true
                    users[#users + 1] = h.user
                  end
                end
              end
              local offline = {}
              for _, user in ipairs(users) do
                if redis.call('SCARD', p .. 'user:' .. user) == 0 then offline[#offline + 1] = user end
              end
              return {id, records, offline}
            end

            """

    /// ARGV: prefix, id.
    static let removeServerScript = RedisScript(removeFunction + "return remove(ARGV[1], ARGV[2])")

    /// ARGV: prefix, now (ms). Removes every server whose expiry is at or before `now`; atomic, so concurrent
    /// purgers each report a dead server at most once.
    static let purgeScript = RedisScript(
        removeFunction + """
            local out = {}
            for _, id in ipairs(redis.call('ZRANGEBYSCORE', ARGV[1] .. 'servers', '-inf', ARGV[2])) do
              out[#out + 1] = remove(ARGV[1], id)
            end
            return out
            """
    )

    private var ttlArgument: String { String(max(1, recordTTL.milliseconds)) }

    public func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?
    ) async throws(RealtimeError) -> ConnectionRegistration {
        let reply = try await Self.registerScript.run(
            on: client,
            keys: [],
            arguments: [
                prefix, record.id.rawValue, record.serverID.rawValue, record.userID,
                record.sessionID.map { "=" + $0 } ?? "", record.isAdmin ? "1" : "0", record.remoteAddress,
                record.origin.map { "=" + $0 } ?? "", String(record.connectedAt.millisecondsSinceEpoch),
                maxConnectionsPerUser.map { String($0) } ?? "", ttlArgument,
            ]
        )
        guard let fields = reply.array, fields.count == 2, let admitted = fields[0].int, let count = fields[1].int
        else {
            throw RealtimeError(.protocolViolation, "the register script returned \(reply)")
        }
        return admitted == 1 ? .registered(userConnections: Int(count)) : .userLimitReached(userConnections: Int(count))
    }

    public func unregister(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRemoval? {
        let reply = try await Self.unregisterScript.run(on: client, keys: [], arguments: [prefix, id.rawValue])
        if reply.isNull { return nil }
        guard let fields = reply.array, fields.count == 2, let remaining = fields[1].int else {
            throw RealtimeError(.protocolViolation, "the unregister script returned \(reply)")
        }
        return ConnectionRemoval(record: try Self.record(fields[0]), remainingUserConnections: Int(remaining))
    }

    public func connection(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRecord? {
        let reply = try await client.send(RedisCommand("HGETALL", prefix + "conn:" + id.rawValue))
        if reply.array?.isEmpty == true { return nil }
        return try Self.record(reply)
    }

    public func connections(ofUser userID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        try await records(index: "user:" + userID)
    }

    public func connections(ofSession sessionID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        try await records(index: "session:" + sessionID)
    }

    private func records(index: String) async throws(RealtimeError) -> [ConnectionRecord] {
        let reply = try await Self.recordsScript.run(on: client, keys: [], arguments: [prefix, index])
        guard let elements = reply.array else {
            throw RealtimeError(.protocolViolation, "the records script returned \(reply)")
        }
        var records: [ConnectionRecord] = []
        for element in elements { records.append(try Self.record(element)) }
        return records
    }

    /// Pages with `SSCAN` over `server:<id>:conns` (the cursor is `SSCAN`'s, a decimal number: anything else is
    /// refused with `invalidArgument` before Redis sees it; `limit` is its `COUNT` hint).
    public func connections(
        ofServer serverID: ServerID,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage {
        if let cursor, UInt64(cursor) == nil || cursor.hasPrefix("+") {
            throw RealtimeError(.invalidArgument, "the cursor is not one this listing returned")
        }
        let reply = try await Self.serverConnectionsScript.run(
            on: client,
            keys: [],
            arguments: [prefix, serverID.rawValue, cursor ?? "0", String(max(1, limit))]
        )
        guard let fields = reply.array, fields.count == 2, let next = fields[0].string, let rows = fields[1].array
        else { throw RealtimeError(.protocolViolation, "the server connections script returned \(reply)") }
        var records: [ConnectionRecord] = []
        for row in rows { records.append(try Self.record(row)) }
        return ConnectionPage(records: records, nextCursor: next == "0" ? nil : next)
    }

    public func count(_ scope: ConnectionCountScope) async throws(RealtimeError) -> Int {
        let reply: RESPValue
        switch scope {
        case .user(let id): reply = try await client.send(RedisCommand("SCARD", prefix + "user:" + id))
        case .session(let id): reply = try await client.send(RedisCommand("SCARD", prefix + "session:" + id))
        case .server(let id):
            reply = try await client.send(RedisCommand("SCARD", prefix + "server:" + id.rawValue + ":conns"))
        case .total: reply = try await Self.totalScript.run(on: client, keys: [], arguments: [prefix])
        }
        guard let count = reply.int else { throw RealtimeError(.protocolViolation, "a count returned \(reply)") }
        return Int(count)
    }

    public func heartbeat(_ server: ServerRecord) async throws(RealtimeError) {
        _ = try await Self.heartbeatScript.run(
            on: client,
            keys: [],
            arguments: [
                prefix, server.id.rawValue, String(server.startedAt.millisecondsSinceEpoch),
                String(server.lastHeartbeat.millisecondsSinceEpoch), String(server.expiresAt.millisecondsSinceEpoch),
                String(server.connectionCount), ttlArgument, server.eventsDelivered.map { String($0) } ?? "",
                server.eventsDropped.map { String($0) } ?? "",
            ]
        )
    }

    /// The servers whose heartbeat has not expired, each with the time of its last report (so global statistics
    /// can say how fresh they are).
    public func servers() async throws(RealtimeError) -> [ServerRecord] {
        let reply = try await Self.serversScript.run(
            on: client,
            keys: [],
            arguments: [prefix, String(Timestamp.now().millisecondsSinceEpoch)]
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
        let reply = try await Self.removeServerScript.run(on: client, keys: [], arguments: [prefix, id.rawValue])
        return try Self.purged(reply)
    }

    public func purgeExpiredServers() async throws(RealtimeError) -> [PurgedServer] {
        let reply = try await Self.purgeScript.run(
            on: client,
            keys: [],
            arguments: [prefix, String(Timestamp.now().millisecondsSinceEpoch)]
        )
        guard let entries = reply.array else { throw RealtimeError(.protocolViolation, "purge returned \(reply)") }
        var purged: [PurgedServer] = []
        for entry in entries { purged.append(try Self.purged(entry)) }
        return purged
    }

    public func healthCheck() async -> ComponentHealth {
        await client.healthCheck()
    }

    private static func purged(_ reply: RESPValue) throws(RealtimeError) -> PurgedServer {
        guard let fields = reply.array, fields.count == 3, let id = fields[0].string, let records = fields[1].array,
            let offline = fields[2].array
        else { throw RealtimeError(.protocolViolation, "a purged server entry is malformed: \(reply)") }
        var connections: [ConnectionRecord] = []
        for record in records { connections.append(try Self.record(record)) }
        return PurgedServer(
            serverID: ServerID(id),
            connections: connections,
            usersGoneOffline: offline.compactMap(\.string)
        )
    }

    private static func record(_ reply: RESPValue) throws(RealtimeError) -> ConnectionRecord {
        guard let flat = reply.array, flat.count.isMultiple(of: 2) else {
            throw RealtimeError(.protocolViolation, "a connection record is malformed: \(reply)")
        }
        var fields: [String: String] = [:]
        for index in stride(from: 0, to: flat.count, by: 2) {
            if let key = flat[index].string, let value = flat[index + 1].string { fields[key] = value }
        }
        guard let id = fields["id"], let server = fields["server"], let user = fields["user"],
            let address = fields["addr"], let at = fields["at"].flatMap({ Int64($0) })
        else { throw RealtimeError(.protocolViolation, "a connection record lacks fields") }
        return ConnectionRecord(
            id: ConnectionID(id),
            serverID: ServerID(server),
            userID: user,
            sessionID: fields["session"],
            isAdmin: fields["admin"] == "1",
            remoteAddress: address,
            origin: fields["origin"],
            connectedAt: Timestamp(millisecondsSinceEpoch: at)
        )
    }
}
