public import RealtimeCore

/// How to reach Redis and how the client behaves.
///
/// ```swift
/// let configuration = try RedisConfiguration(url: "redis://:secret@127.0.0.1:6379/2")
/// ```
public struct RedisConfiguration: Sendable, Hashable {
    public var host: String
    public var port: Int
    /// The ACL user (Redis 6+), sent with `AUTH user password`.
    public var username: String?
    /// The password, sent with `AUTH` after connecting. Never logged.
    public var password: String?
    /// The database, selected with `SELECT` after connecting when not 0.
    public var database: Int
    /// How many pipelined command connections the client keeps (the pub/sub connections come on top).
    public var poolSize: Int
    /// How long a TCP connect plus `AUTH`/`SELECT` may take.
    public var connectTimeout: Duration
    /// How long a command may wait for its reply before it fails with `RealtimeError.Code.timeout`.
    public var commandTimeout: Duration
    /// The first reconnect delay; each failed attempt doubles it, up to ``maximumReconnectDelay``. Every delay is
    /// jittered (a random 50–100 % of it) so servers don't reconnect in lockstep.
    public var initialReconnectDelay: Duration
    public var maximumReconnectDelay: Duration
    /// The seed nodes of a Redis Cluster (`REDIS_CLUSTER_NODES`). Empty (the default): a single node at
    /// ``host``:``port``. Not empty: the client reads the slot map from these nodes, keeps a pool of ``poolSize``
    /// connections to each primary and routes every command by its key's slot; ``database`` must be 0.
    public var clusterNodes: [RedisNodeAddress]
    /// How often a cluster client re-reads the slot map besides on redirects and lost connections.
    public var clusterRefreshInterval: Duration
    /// TLS to every node (`rediss://`, `REDIS_TLS_*`); plain TCP when nil.
    public var tls: RedisTLSOptions?
    /// On a cluster, whether the event bus (and the history store, which publishes for it) uses sharded pub/sub
    /// (`SPUBLISH`/`SSUBSCRIBE` on hash-tagged channels, one subscriber connection per shard;
    /// `REDIS_CLUSTER_SHARDED_PUBSUB`) instead of classic `PUBLISH`, which every node forwards to every other.
    /// On by default (needs Redis 7; ``RedisClient/checkReady()`` says so on an older cluster): it spreads the
    /// pub/sub traffic over the shards. It keeps one publisher's messages in order per route, not across routes
    /// (``RedisEventBus/ordersAcrossRoutes``; see Architecture.md, "Sharded pub/sub on a cluster"). Every server of
    /// a cluster must use the same setting (the channel names differ). Ignored on a single node.
    public var clusterShardedPubSub = true

    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        poolSize: Int = 4,
        connectTimeout: Duration = .seconds(2),
        commandTimeout: Duration = .seconds(2),
        initialReconnectDelay: Duration = .milliseconds(50),
        maximumReconnectDelay: Duration = .seconds(5),
        clusterNodes: [RedisNodeAddress] = [],
        clusterRefreshInterval: Duration = .seconds(5),
        tls: RedisTLSOptions? = nil
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.poolSize = max(1, poolSize)
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.initialReconnectDelay = initialReconnectDelay
        self.maximumReconnectDelay = maximumReconnectDelay
        self.clusterNodes = clusterNodes
        self.clusterRefreshInterval = clusterRefreshInterval
        self.tls = tls
    }

    /// A cluster configuration: the seeds of `nodes` (`REDIS_CLUSTER_NODES`, `host:port,host:port`), with the
    /// credentials, timeouts, pool size and TLS options of `base`. TLS applies to every node, the seeds and those
    /// the cluster names (redirects, the slot map): `rediss://` entries turn it on (with `base`'s
    /// ``RedisTLSOptions`` if it has some, else verification against the system's roots), and so do TLS options
    /// in `base` for bare `host:port` entries.
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` for an empty or malformed list, a list that mixes
    ///   `redis://` and `rediss://`, `redis://` entries while `base` has TLS options, or a database other than 0 in
    ///   `base` (Redis Cluster has only database 0).
    public static func cluster(nodes: String, base: RedisConfiguration = RedisConfiguration()) throws(RealtimeError)
        -> RedisConfiguration
    {
        let (seeds, tls) = try RedisNodeAddress.seeds(parsing: nodes)
        if tls == false, base.tls != nil {
            throw RealtimeError(
                .invalidConfiguration,
                "the Redis cluster node list says redis:// (plain TCP) but TLS is configured (rediss:// or TLS "
                    + "options): use rediss:// or bare host:port entries"
            )
        }
        guard base.database == 0 else {
            throw RealtimeError(
                .invalidConfiguration,
                "Redis Cluster has only database 0 (the URL selects \(base.database))"
            )
        }
        var configuration = base
        if tls == true, configuration.tls == nil { configuration.tls = RedisTLSOptions() }
        configuration.clusterNodes = seeds
        configuration.host = seeds[0].host
        configuration.port = seeds[0].port
        return configuration
    }

    /// Reads `redis://[user:password@]host[:port][/db]` (percent-escapes in user and password are decoded);
    /// `rediss://` is the same over TLS (``tls`` set, certificates verified against the system's roots until
    /// ``RedisTLSOptions/caFile`` says otherwise).
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` if the URL does not have that form.
    public init(url: String) throws(RealtimeError) {
        self.init()
        let prefix: String
        if url.hasPrefix("rediss://") {
            prefix = "rediss://"
            tls = RedisTLSOptions()
        } else if url.hasPrefix("redis://") {
            prefix = "redis://"
        } else {
            throw RealtimeError(.invalidConfiguration, "a Redis URL must start with redis:// or rediss://")
        }
        var rest = Substring(url.dropFirst(prefix.count))
        if let slash = rest.firstIndex(of: "/") {
            let path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
            if !path.isEmpty {
                guard let database = Int(path), database >= 0 else {
                    throw RealtimeError(.invalidConfiguration, "the Redis URL's database must be a number")
                }
                self.database = database
            }
        }
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                let user = try Self.percentDecoded(userInfo[..<colon])
                username = user.isEmpty ? nil : user
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...])
            } else {
                // `redis://password@host` is how some tools spell a password without a user.
                password = try Self.percentDecoded(userInfo)
            }
        }
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else {
                throw RealtimeError(.invalidConfiguration, "the Redis URL has an unterminated IPv6 address")
            }
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let port = Int(rest.dropFirst()), (1...65535).contains(port) else {
                    throw RealtimeError(.invalidConfiguration, "the Redis URL's port is invalid")
                }
                self.port = port
            }
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            guard let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else {
                throw RealtimeError(.invalidConfiguration, "the Redis URL's port is invalid")
            }
            self.port = port
        } else {
            host = String(rest)
        }
        guard !host.isEmpty else { throw RealtimeError(.invalidConfiguration, "the Redis URL has no host") }
    }

    private static func percentDecoded(_ text: Substring) throws(RealtimeError) -> String {
        var bytes = [UInt8]()
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                    throw RealtimeError(.invalidConfiguration, "the Redis URL has an invalid percent-escape")
                }
                bytes.append(high << 4 | low)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// The reconnect delay before attempt `attempt` (0-based), with jitter.
    package func reconnectDelay(attempt: Int) -> Duration {
        let initial = max(1, initialReconnectDelay.milliseconds)
        let cap = max(initial, maximumReconnectDelay.milliseconds)
        let exponent = min(attempt, 30)
        let base = min(cap, initial << Int64(exponent))
        let jittered = base / 2 + Int64.random(in: 0...max(0, base / 2))
        return .milliseconds(jittered)
    }
}
