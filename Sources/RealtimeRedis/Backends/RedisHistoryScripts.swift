/// The Lua scripts of ``RedisHistoryStore``. Each touches only the two keys of each stream it is given (the
/// entries, a Redis stream, and the meta hash: `e` the epoch, `o` the last offset, `r` the node's replication
/// history when the epoch began), which share one hash tag, so a script given one stream runs on one Redis Cluster
/// slot.
///
/// `r` is the first 16 hex digits of the node's `master_replid` (`INFO replication`). Redis gives a node a new one
/// when a replica is promoted (a failover) and when it restarts, even from its RDB or AOF files: the events after
/// which the node may hold an older copy of the stream than what it acknowledged (replication is asynchronous; an
/// RDB snapshot lags), so that the meta's offset goes back and later appends reuse offsets a client already holds.
/// It also changes when nothing was lost: a primary frees its backlog after `repl-backlog-ttl` (default an hour)
/// without replicas, and a slot moved to another primary brings its metas there; those epochs end too (clients
/// resynchronise once). A read that finds `r` different from the node's ends the epoch, so such a client is told
/// `unavailable`, never replayed a stream that silently lacks the events at the reused offsets. Appends record `r`
/// only when they begin an epoch (the check costs an `INFO` call, kept off the publish path); a node whose ACL
/// refuses `INFO` to scripts keeps no `r`, and the check is off.
enum RedisHistoryScripts {
    /// Lua: the node's replication history id (16 hex digits), or `nil` when `INFO` is refused.
    private static let replicationIDFunction = """
        local function replicationID()
          local info = redis.pcall('INFO', 'replication')
          if type(info) ~= 'string' then return nil end
          local id = string.match(info, 'master_replid:(%x+)')
          return id and string.sub(id, 1, 16)
        end
        """

    /// Appends one payload to every stream given and, when a channel is given, publishes it once, prefixed with
    /// the positions it got, so the position and the delivery order agree across servers.
    ///
    /// KEYS: per stream, its entries then its meta. ARGV: [1] the sealed payload, [2] the channel (empty: no
    /// publish), [3] the time in ms, then per stream: [+1] the entries kept (`MAXLEN ~`), [+2] the entries key's
    /// TTL in ms (the maximum age), [+3] the meta's TTL in ms (the retention), [+4] a fresh epoch in case the
    /// stream has none. Returns `{epoch, offset, ...}` per stream.
    ///
    /// A meta that is missing while entries exist (the meta was evicted) makes those entries unusable: they are
    /// deleted and the stream starts a new epoch at offset 1. The published message is
    /// `@<epoch>:<offset>[,<epoch>:<offset>]\n<payload>`.
    static let append = RedisScript(appendSource(publishing: "PUBLISH"))

    /// ``append`` publishing with `SPUBLISH` (sharded pub/sub, on a Redis Cluster): the channel must carry the
    /// stream's hash tag, so it is on the script's slot (Redis refuses a script whose channel is elsewhere).
    static let appendSharded = RedisScript(appendSource(publishing: "SPUBLISH"))

    private static func appendSource(publishing command: String) -> String {
        """
        \(replicationIDFunction)
        local positions = {}
        local prefix = {}
        for i = 1, #KEYS / 2 do
          local entries, meta = KEYS[2 * i - 1], KEYS[2 * i]
          local base = 3 + 4 * (i - 1)
          local epoch = redis.call('HGET', meta, 'e')
          if not epoch then
            epoch = ARGV[base + 4]
            redis.call('DEL', entries)
            redis.call('HSET', meta, 'e', epoch, 'o', 0)
            local node = replicationID()
            if node then redis.call('HSET', meta, 'r', node) end
          end
          local offset = redis.call('HINCRBY', meta, 'o', 1)
          if offset > 9007199254740991 then
            return redis.error_reply('ERR history offsets exhausted for ' .. meta)
          end
          local id = string.format('%d', offset)
          redis.call('XADD', entries, 'MAXLEN', '~', ARGV[base + 1], id, 'd', ARGV[1], 't', ARGV[3])
          redis.call('PEXPIRE', entries, ARGV[base + 2])
          redis.call('PEXPIRE', meta, ARGV[base + 3])
          positions[#positions + 1] = epoch
          positions[#positions + 1] = offset
          prefix[#prefix + 1] = epoch .. ':' .. id
        end
        if ARGV[2] ~= '' then
          redis.call('\(command)', ARGV[2], '@' .. table.concat(prefix, ',') .. '\\n' .. ARGV[1])
        end
        return positions
        """
    }

    /// Reads a stream's epoch and last offset (creating the epoch of a new stream, or a new epoch when the node's
    /// replication history changed since the epoch began) and, when the epoch is the expected one, its entries from
    /// an offset on.
    ///
    /// KEYS: [1] entries, [2] meta. ARGV: [1] a fresh epoch for a stream that has none, [2] the meta's TTL in ms
    /// (a read counts as use), [3] the expected epoch, [4] the first offset, [5] the most entries (0: none).
    /// Returns `{epoch, lastOffset, {{id, {field, value, ...}}, ...}}`.
    static let read = RedisScript(
        """
        \(replicationIDFunction)
        local meta = redis.call('HMGET', KEYS[2], 'e', 'o', 'r')
        local epoch, last, began = meta[1], meta[2], meta[3]
        local node = replicationID()
        if epoch and began and node and began ~= node then epoch = false end
        if not epoch then
          epoch = ARGV[1]
          last = '0'
          redis.call('DEL', KEYS[1])
          redis.call('HSET', KEYS[2], 'e', epoch, 'o', 0)
          if node then redis.call('HSET', KEYS[2], 'r', node) else redis.call('HDEL', KEYS[2], 'r') end
        elseif node and not began then
          redis.call('HSET', KEYS[2], 'r', node)
        end
        redis.call('PEXPIRE', KEYS[2], ARGV[2])
        local entries = {}
        if epoch == ARGV[3] and tonumber(ARGV[5]) > 0 and tonumber(ARGV[4]) <= tonumber(last) then
          entries = redis.call('XRANGE', KEYS[1], ARGV[4], '+', 'COUNT', ARGV[5])
        end
        return {epoch, last, entries}
        """
    )

    /// Removes entries: all but the newest ARGV[1] (when not empty), and those whose time is at or before ARGV[2]
    /// ms (when not empty). KEYS: [1] entries. Returns the entries left.
    static let trim = RedisScript(
        """
        if ARGV[1] ~= '' then redis.call('XTRIM', KEYS[1], 'MAXLEN', ARGV[1]) end
        if ARGV[2] ~= '' then
          local cutoff = tonumber(ARGV[2])
          while true do
            local batch = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 100)
            if #batch == 0 then break end
            local keep = nil
            for _, entry in ipairs(batch) do
              local fields, time = entry[2], nil
              for i = 1, #fields, 2 do
                if fields[i] == 't' then time = tonumber(fields[i + 1]) end
              end
              if time == nil or time > cutoff then
                keep = entry[1]
                break
              end
            end
            if keep then
              redis.call('XTRIM', KEYS[1], 'MINID', keep)
              break
            end
            local last = tonumber(string.match(batch[#batch][1], '^(%d+)'))
            redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d', last + 1))
          end
        end
        return redis.call('XLEN', KEYS[1])
        """
    )
}
