/// The Lua scripts of ``RedisConnectionStore``: each runs on one slot (one hash tag), which is what Redis Cluster
/// requires of a script and what makes each step atomic.
extension RedisConnectionStore {
    /// Checks the user's limit and claims a slot in one step. KEYS: the user's hash. ARGV: id, record, limit or
    /// empty, ttl (ms). Returns {admitted, user connections}.
    static let registerScript = RedisScript(
        """
        local n = redis.call('HLEN', KEYS[1])
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {1, n} end
        if ARGV[3] ~= '' and n >= tonumber(ARGV[3]) then return {0, n} end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return {1, n + 1}
        """
    )

    /// Removes records from a user's hash. KEYS: the user's hash. ARGV: ids. Returns {records removed, user
    /// connections left}.
    static let removeScript = RedisScript(
        """
        local out = {}
        for _, id in ipairs(ARGV) do
          local record = redis.call('HGET', KEYS[1], id)
          if record then
            redis.call('HDEL', KEYS[1], id)
            out[#out + 1] = record
          end
        end
        return {out, redis.call('HLEN', KEYS[1])}
        """
    )

    /// Hands a server's connection set to one caller. KEYS: the server's set. Returns its members.
    static let takeScript = RedisScript(
        """
        local members = redis.call('SMEMBERS', KEYS[1])
        redis.call('DEL', KEYS[1])
        return members
        """
    )

    /// KEYS: `{servers}`, the server's hash. ARGV: id, started, heartbeat, expires, count, ttl (ms), events
    /// delivered and dropped (empty: not reported, the fields are removed).
    static let heartbeatScript = RedisScript(
        """
        redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
        redis.call('HSET', KEYS[2], 'started', ARGV[2], 'heartbeat', ARGV[3], 'expires', ARGV[4], 'count', ARGV[5])
        for i, field in ipairs({'delivered', 'dropped'}) do
          if ARGV[6 + i] ~= '' then redis.call('HSET', KEYS[2], field, ARGV[6 + i]) else redis.call('HDEL', KEYS[2], field) end
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[6])
        return 1
        """
    )

    /// KEYS: `{servers}`. ARGV: now (ms). The live servers with their hashes (`{servers}:<id>`, same slot).
    static let serversScript = RedisScript(
        """
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')
        local out = {}
        for _, id in ipairs(ids) do
          local f = redis.call('HMGET', KEYS[1] .. ':' .. id, 'started', 'heartbeat', 'expires', 'count', 'delivered',
            'dropped')
          if f[3] then out[#out + 1] = {id, f[1], f[2], f[3], f[4], f[5], f[6]} end
        end
        return out
        """
    )

    /// Claims a server for removal. KEYS: `{servers}`. ARGV: id. Returns 1 for the one caller that removed it
    /// from the sorted set.
    static let claimScript = RedisScript(
        """
        local removed = redis.call('ZREM', KEYS[1], ARGV[1])
        redis.call('DEL', KEYS[1] .. ':' .. ARGV[1])
        return removed
        """
    )
}
