public import Logging
import Metrics
public import NIOCore
import NIOPosix
public import RealtimeCore
public import ServiceLifecycle
import Synchronization

/// An error reply from Redis (`-ERR …`, `-NOSCRIPT …`, `-WRONGTYPE …`), kept as the `RealtimeError.underlying`
/// error of the `RealtimeError` a command throws.
public struct RedisServerError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The full error message, e.g. `NOSCRIPT No matching script. Please use EVAL.`
    public var message: String

    public init(_ message: String) { self.message = message }

    /// The error's code: the message's first word (`ERR`, `NOSCRIPT`, `WRONGTYPE`, …).
    public var code: Substring { message.prefix { $0 != " " } }

    public var description: String { message }
}

/// A Redis client: a small pool of pipelined connections on SwiftNIO, used round-robin; on Redis Cluster, one such
/// pool per primary, with commands routed by their key's slot.
///
/// Every connection carries many commands in flight at once (replies are matched in order), so a handful of
/// connections serve thousands of concurrent callers. No call ever blocks a thread: the socket I/O is NIO's and
/// hiredis is used only to format commands and parse replies.
///
/// A connection that drops fails its commands in flight with `RealtimeError.Code.backendUnavailable` and
/// reconnects with exponential backoff and jitter; while none is connected, commands fail at once instead of
/// waiting (only the very first connect is waited for, up to the connect timeout).
///
/// Cluster mode (``RedisConfiguration/clusterNodes`` not empty): the slot map is read with `CLUSTER SLOTS` from
/// the seeds, then again on every `MOVED`, `TRYAGAIN`/`CLUSTERDOWN`, lost connection, and every
/// ``RedisConfiguration/clusterRefreshInterval``. A command goes to the primary of its routing key's slot (hash
/// tags honoured, see `RedisCommand.routingKey`); `MOVED` patches the map and retries there, `ASK` retries once on
/// the importing node after `ASKING`. A pipeline is split by node and each part stays one pipeline.
///
/// The client connects when created. Run it as a ServiceLifecycle `Service` (its ``run()`` closes it on graceful
/// shutdown) or call ``shutdown()``.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    let metrics = RedisMetrics()
    /// The pool of a single-node client.
    private let single: RedisNodePool?
    /// The router of a cluster client.
    let cluster: RedisClusterRouter?
    private let listeners = Mutex<Listeners>(Listeners())

    private struct Listeners: ~Copyable {
        var nextID = 0
        var callbacks: [Int: @Sendable () -> Void] = [:]
    }

    /// Creates the client and starts connecting: ``RedisConfiguration/poolSize`` connections to the node, or to
    /// each primary of a cluster once the slot map is read from ``RedisConfiguration/clusterNodes``.
    ///
    /// - Parameters:
    ///   - configuration: where Redis is, how to authenticate, the pool size, timeouts and reconnect delays.
    ///   - eventLoopGroup: where the connections live; NIO's shared `MultiThreadedEventLoopGroup.singleton` when nil.
    ///   - logger: for reconnects; label `realtime-redis` when nil.
    public init(
        configuration: RedisConfiguration,
        eventLoopGroup: (any EventLoopGroup)? = nil,
        logger: Logger? = nil
    ) {
        let eventLoopGroup = eventLoopGroup ?? MultiThreadedEventLoopGroup.singleton
        let logger = logger ?? Logger(label: "realtime-redis")
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        if configuration.clusterNodes.isEmpty {
            single = RedisNodePool(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
            cluster = nil
        } else {
            single = nil
            cluster = RedisClusterRouter(configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger)
        }
        let onConnect: @Sendable () -> Void = { [weak self] in self?.notifyConnected() }
        let onChange: @Sendable (Bool) -> Void = { [weak self] reconnected in
            self?.connectionsChanged(reconnected: reconnected)
        }
        single?.start(onConnect: onConnect, onChange: onChange)
        cluster?.start(onConnect: onConnect, onChange: onChange)
    }

    /// Whether this client talks to a Redis Cluster.
    public var isCluster: Bool { cluster != nil }

    /// Whether the bus and the history store use sharded pub/sub (``RedisConfiguration/clusterShardedPubSub`` on a
    /// cluster).
    var usesShardedPubSub: Bool { cluster != nil && configuration.clusterShardedPubSub }

    /// Sends one command and returns its reply.
    ///
    /// - Throws: `RealtimeError.Code.backendUnavailable` if Redis cannot be reached, the connection dropped
    ///   while the command was in flight, or Redis answered with an error (then `RealtimeError.underlying` is
    ///   a ``RedisServerError``); `RealtimeError.Code.timeout` if no reply came within the command timeout.
    public func send(_ command: RedisCommand) async throws(RealtimeError) -> RESPValue {
        try Self.checked(try await execute(command, affinity: nil))
    }

    /// Sends one command on the connection chosen by `affinity`, so commands with the same affinity are written
    /// to Redis in the order they were sent (unless that connection is down).
    public func send(_ command: RedisCommand, affinity: Int) async throws(RealtimeError) -> RESPValue {
        try Self.checked(try await execute(command, affinity: affinity))
    }

    /// Sends `command` to the node that serves `routingKey` (on a cluster; anywhere on one node), e.g. a
    /// `SCRIPT LOAD` for the node a script's keys live on.
    func send(_ command: RedisCommand, routedBy routingKey: ArraySlice<UInt8>?) async throws(RealtimeError) -> RESPValue
    {
        if let cluster {
            return try Self.checked(try await cluster.execute(command, routingKey: routingKey, affinity: nil))
        }
        return try Self.checked(try await execute(command, affinity: nil))
    }

    /// Sends commands back to back and returns their replies in order (on a cluster, one pipeline per node).
    /// Error replies are returned as ``RESPValue/error(_:)``, not thrown.
    public func pipeline(_ commands: [RedisCommand]) async throws(RealtimeError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        if let cluster { return try await cluster.pipeline(commands) }
        return try await single!.withConnection(affinity: nil) { connection in try await connection.execute(commands) }
    }

    /// The raw reply of `command` (an error reply is a value, not a failure).
    private func execute(_ command: RedisCommand, affinity: Int?) async throws(RealtimeError) -> RESPValue {
        if let cluster { return try await cluster.execute(command, routingKey: command.routingKey, affinity: affinity) }
        return try await single!.withConnection(affinity: affinity) { connection in
            try await connection.execute(command)
        }
    }

    static func checked(_ value: RESPValue) throws(RealtimeError) -> RESPValue {
        if case .error(let message) = value {
            throw RealtimeError(
                .backendUnavailable,
                "Redis answered with an error",
                underlying: RedisServerError(message)
            )
        }
        return value
    }

    /// Sends a command and returns the future of its raw reply (an error reply is a value, not a failure; on a
    /// cluster, redirects are not followed: the caller's retry, e.g. the bus's publish queue, handles them).
    func sendFuture(_ command: RedisCommand, affinity: Int? = nil) -> EventLoopFuture<RESPValue> {
        if let cluster { return cluster.sendFuture(command, affinity: affinity) }
        return single!.sendFuture(command, affinity: affinity)
    }

    static func mapped(_ error: any Error) -> RealtimeError {
        if let error = error as? RealtimeError { return error }
        return RealtimeError(.backendUnavailable, "Redis command failed", underlying: error)
    }

    /// Whether at least one pooled connection is up (on a cluster: to at least one primary).
    public var isConnected: Bool {
        if let cluster { return cluster.connectedPools > 0 }
        return single!.connectedCount > 0
    }

    /// The client's state: healthy with every connection up (on a cluster: to every primary, with every slot
    /// served), degraded with some, unhealthy with none.
    public func healthCheck() async -> ComponentHealth {
        if let cluster { return cluster.health() }
        let pool = single!
        let connected = pool.connectedCount
        var details: JSONObject = [
            "redisConnected": .bool(connected > 0),
            "connections": .int(Int64(connected)),
            "poolSize": .int(Int64(pool.size)),
        ]
        if let error = pool.lastError { details["lastError"] = .string(error) }
        let status: ComponentHealth.Status =
            connected == pool.size ? .healthy : connected > 0 ? .degraded : .unhealthy
        return ComponentHealth(status: status, details: details)
    }

    /// Waits until the client can serve commands, or says clearly why not: on a cluster, the slot map read from
    /// the seeds, with every slot served; on one node, a connection.
    ///
    /// - Throws: `RealtimeError.Code.backendUnavailable` (unreachable, uncovered slots) within the connect
    ///   timeout.
    public func checkReady() async throws(RealtimeError) {
        if let cluster {
            try await cluster.checkReady()
            if usesShardedPubSub { try await checkShardedPubSub() }
            return
        }
        _ = try await send(RedisCommand("PING"))
    }

    /// Sharded pub/sub needs Redis 7: an `SPUBLISH` to a channel nobody hears tells, before a bus depends on it, rather
    /// than a subscription that keeps being refused.
    private func checkShardedPubSub() async throws(RealtimeError) {
        do throws(RealtimeError) {
            _ = try await send(RedisCommand("SPUBLISH", "{realtimehub}:probe", ""))
        } catch  where error.underlying is RedisServerError {
            throw RealtimeError(
                .backendUnavailable,
                "the cluster refused SPUBLISH: sharded pub/sub (REDIS_CLUSTER_SHARDED_PUBSUB, on by default on a "
                    + "cluster) needs Redis 7 or later and an ACL that allows SPUBLISH and SSUBSCRIBE; set it to false "
                    + "for classic pub/sub",
                underlying: error
            )
        }
    }

    /// The configuration of a pub/sub connection: the node itself, or on a cluster a primary from the current
    /// slot map (the seeds before it is known), so a subscriber that reconnects after a failover finds a live node.
    func subscriberConfiguration(attempt: Int) -> RedisConfiguration {
        cluster?.subscriberConfiguration(attempt: attempt) ?? configuration
    }

    /// Calls `callback` (on an event loop) whenever a pooled connection is established or re-established.
    func addConnectListener(_ callback: @escaping @Sendable () -> Void) -> Int {
        listeners.withLock { listeners in
            let id = listeners.nextID
            listeners.nextID += 1
            listeners.callbacks[id] = callback
            return id
        }
    }

    func removeConnectListener(_ id: Int) {
        _ = listeners.withLock { $0.callbacks.removeValue(forKey: id) }
    }

    private func connectionsChanged(reconnected: Bool) {
        if reconnected { metrics.poolReconnects.increment() }
        metrics.connections.record(cluster?.connectedConnections ?? single!.connectedCount)
    }

    private func notifyConnected() {
        let callbacks = listeners.withLock { Array($0.callbacks.values) }
        for callback in callbacks { callback() }
    }

    /// Closes every connection and stops reconnecting. Commands in flight fail; later commands fail with
    /// `RealtimeError.Code.shutDown`.
    public func shutdown() async {
        let loop = eventLoopGroup.any()
        if let cluster { try? await cluster.shutdown(on: loop).get() }
        if let single { try? await single.shutdown(on: loop).get() }
    }
}

extension RedisClient: Service {
    /// Waits for graceful shutdown (or cancellation), then closes the client. Returns instead of throwing.
    public func run() async {
        try? await gracefulShutdown()
        await shutdown()
    }
}
