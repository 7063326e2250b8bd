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

/// A Redis client: a small pool of pipelined connections on SwiftNIO, used round-robin.
///
/// Every connection carries many commands in flight at once (replies are matched in order), so a handful of
/// connections serve thousands of concurrent callers. No call ever blocks a thread: the socket I/O is NIO's and
/// hiredis is used only to format commands and parse replies.
///
/// A connection that drops fails its commands in flight with `RealtimeError.Code.backendUnavailable` and
/// reconnects with exponential backoff and jitter; while none is connected, commands fail at once instead of
/// waiting (only the very first connect is waited for, up to the connect timeout).
///
/// The client connects when created. Run it as a ServiceLifecycle `Service` (its ``run()`` closes it on graceful
/// shutdown) or call ``shutdown()``.
public final class RedisClient: Sendable {
    public let configuration: RedisConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    let metrics = RedisMetrics()
    private let slots: [Slot]
    private let nextSlot = Atomic<Int>(0)
    private let listeners = Mutex<Listeners>(Listeners())

    private struct Listeners: ~Copyable {
        var nextID = 0
        var callbacks: [Int: @Sendable () -> Void] = [:]
    }

    /// Creates the client and starts connecting its ``RedisConfiguration/poolSize`` connections.
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
        var slots: [Slot] = []
        for index in 0..<configuration.poolSize {
            slots.append(
                Slot(index: index, configuration: configuration, eventLoop: eventLoopGroup.next(), logger: logger)
            )
        }
        self.slots = slots
        for slot in slots {
            slot.onConnect = { [weak self] in self?.notifyConnected() }
            slot.onChange = { [weak self] reconnected in self?.connectionsChanged(reconnected: reconnected) }
            slot.start()
        }
    }

    /// Sends one command and returns its reply.
    ///
    /// - Throws: `RealtimeError.Code.backendUnavailable` if Redis cannot be reached, the connection dropped
    ///   while the command was in flight, or Redis answered with an error (then `RealtimeError.underlying` is
    ///   a ``RedisServerError``); `RealtimeError.Code.timeout` if no reply came within the command timeout.
    public func send(_ command: RedisCommand) async throws(RealtimeError) -> RESPValue {
        try Self.checked(try await connection(affinity: nil) { connection in try await connection.execute(command) })
    }

    /// Sends one command on the connection chosen by `affinity`, so commands with the same affinity are written
    /// to Redis in the order they were sent (unless that connection is down).
    public func send(_ command: RedisCommand, affinity: Int) async throws(RealtimeError) -> RESPValue {
        try Self.checked(
            try await connection(affinity: affinity) { connection in try await connection.execute(command) }
        )
    }

    /// Sends commands back to back on one connection and returns their replies in order. Error replies are
    /// returned as ``RESPValue/error(_:)``, not thrown.
    public func pipeline(_ commands: [RedisCommand]) async throws(RealtimeError) -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        return try await connection(affinity: nil) { connection in try await connection.execute(commands) }
    }

    /// Runs `body` with a connection: a connected one if any, else (during the very first connect only) the one
    /// being connected.
    private func connection<Result>(
        affinity: Int?,
        _ body: (RedisConnection) async throws -> Result
    ) async throws(RealtimeError) -> Result {
        let slot = chooseSlot(affinity: affinity)
        do {
            if let connection = slot.activeConnection { return try await body(connection) }
            return try await body(try await slot.connection().get())
        } catch {
            throw Self.mapped(error)
        }
    }

    private static func checked(_ value: RESPValue) throws(RealtimeError) -> RESPValue {
        if case .error(let message) = value {
            throw RealtimeError(
                .backendUnavailable,
                "Redis answered with an error",
                underlying: RedisServerError(message)
            )
        }
        return value
    }

    /// Sends a command and returns the future of its raw reply (an error reply is a value, not a failure).
    func sendFuture(_ command: RedisCommand, affinity: Int? = nil) -> EventLoopFuture<RESPValue> {
        let slot = chooseSlot(affinity: affinity)
        if let connection = slot.activeConnection { return connection.send(command) }
        return slot.connection().flatMap { $0.send(command) }
    }

    private func chooseSlot(affinity: Int?) -> Slot {
        let count = slots.count
        let start: Int
        if let affinity {
            start = Int(UInt(bitPattern: affinity) % UInt(count))
        } else {
            start = Int(UInt(bitPattern: nextSlot.wrappingAdd(1, ordering: .relaxed).oldValue) % UInt(count))
        }
        for offset in 0..<count {
            let slot = slots[(start + offset) % count]
            if slot.activeConnection != nil { return slot }
        }
        return slots[start]
    }

    static func mapped(_ error: any Error) -> RealtimeError {
        if let error = error as? RealtimeError { return error }
        return RealtimeError(.backendUnavailable, "Redis command failed", underlying: error)
    }

    /// Whether at least one pooled connection is up.
    public var isConnected: Bool { slots.contains { $0.activeConnection != nil } }

    /// The connection pool's state: healthy with every connection up, degraded with some, unhealthy with none.
    public func healthCheck() async -> ComponentHealth {
        let connected = slots.count { $0.activeConnection != nil }
        var details: JSONObject = [
            "redisConnected": .bool(connected > 0),
            "connections": .int(Int64(connected)),
            "poolSize": .int(Int64(slots.count)),
        ]
        if let error = slots.lazy.compactMap(\.lastError).first { details["lastError"] = .string(error) }
        let status: ComponentHealth.Status =
            connected == slots.count ? .healthy : connected > 0 ? .degraded : .unhealthy
        return ComponentHealth(status: status, details: details)
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
        metrics.connections.record(slots.count { $0.activeConnection != nil })
    }

    private func notifyConnected() {
        let callbacks = listeners.withLock { Array($0.callbacks.values) }
        for callback in callbacks { callback() }
    }

    /// Closes every connection and stops reconnecting. Commands in flight fail; later commands fail with
    /// `RealtimeError.Code.shutDown`.
    public func shutdown() async {
        let closes = slots.map { $0.shutdown() }
        for close in closes { try? await close.get() }
    }
}

extension RedisClient: Service {
    /// Waits for graceful shutdown (or cancellation), then closes the client. Returns instead of throwing.
    public func run() async {
        try? await gracefulShutdown()
        await shutdown()
    }
}

/// One pooled connection and its reconnect state machine. All transitions happen under `state`'s lock; the NIO
/// callbacks that drive it run on `eventLoop`.
private final class Slot: Sendable {
    private enum State {
        /// Connecting; `waiters` are commands that arrived during the first attempt.
        case connecting(waiters: [EventLoopPromise<RedisConnection>], first: Bool)
        case connected(RedisConnection)
        /// Waiting to reconnect (commands fail fast meanwhile).
        case backingOff
        case shutDown
    }

    let index: Int
    let configuration: RedisConfiguration
    let eventLoop: any EventLoop
    let logger: Logger
    private let state = Mutex<State>(.connecting(waiters: [], first: true))
    private let error = Mutex<String?>(nil)
    private let connectHook = Mutex<(@Sendable () -> Void)?>(nil)
    private let changeHook = Mutex<(@Sendable (_ reconnected: Bool) -> Void)?>(nil)
    private let hasConnected = Mutex<Bool>(false)

    /// Called when the connection comes up (`true` if it had been up before) or goes down (`false`).
    var onChange: (@Sendable (_ reconnected: Bool) -> Void)? {
        get { changeHook.withLock { $0 } }
        set { changeHook.withLock { $0 = newValue } }
    }

    init(index: Int, configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger) {
        self.index = index
        self.configuration = configuration
        self.eventLoop = eventLoop
        self.logger = logger
    }

    var onConnect: (@Sendable () -> Void)? {
        get { connectHook.withLock { $0 } }
        set { connectHook.withLock { $0 = newValue } }
    }

    var lastError: String? { error.withLock { $0 } }

    var activeConnection: RedisConnection? {
        state.withLock { state in
            if case .connected(let connection) = state, connection.isActive { return connection }
            return nil
        }
    }

    func start() { attempt(0) }

    /// The connection, waiting for it only during the very first connect.
    func connection() -> EventLoopFuture<RedisConnection> {
        let promise = eventLoop.makePromise(of: RedisConnection.self)
        let outcome: Result<RedisConnection, RealtimeError>? = state.withLock { state in
            switch state {
            case .connected(let connection):
                return .success(connection)
            case .connecting(var waiters, first: true):
                waiters.append(promise)
                state = .connecting(waiters: waiters, first: true)
                return nil
            case .connecting(_, first: false), .backingOff:
                return .failure(
                    RealtimeError(
                        .backendUnavailable,
                        "Redis is unreachable (reconnecting): \(lastError ?? "no reply")"
                    )
                )
            case .shutDown:
                return .failure(RealtimeError(.shutDown, "the Redis client was shut down"))
            }
        }
        if let outcome { promise.completeWith(outcome.mapError { $0 as any Error }) }
        return promise.futureResult
    }

    private func attempt(_ attempt: Int) {
        RedisConnection.connect(configuration: configuration, on: eventLoop).whenComplete { result in
            switch result {
            case .success(let connection):
                self.connected(connection)
            case .failure(let failure):
                self.failed(failure, attempt: attempt)
            }
        }
    }

    private func connected(_ connection: RedisConnection) {
        let waiters: [EventLoopPromise<RedisConnection>]? = state.withLock { state in
            guard case .connecting(let waiters, _) = state else { return nil }
            state = .connected(connection)
            return waiters
        }
        guard let waiters else {
            _ = connection.close()
            return
        }
        error.withLock { $0 = nil }
        let reconnected = hasConnected.withLock { connectedBefore in
            defer { connectedBefore = true }
            return connectedBefore
        }
        onChange?(reconnected)
        for waiter in waiters { waiter.succeed(connection) }
        connection.closeFuture.whenComplete { _ in self.lost(connection) }
        onConnect?()
    }

    private func failed(_ failure: any Error, attempt: Int) {
        let message = (failure as? RealtimeError)?.description ?? "\(failure)"
        error.withLock { $0 = message }
        let waiters: [EventLoopPromise<RedisConnection>]? = state.withLock { state in
            guard case .connecting(let waiters, _) = state else { return nil }
            state = .backingOff
            return waiters
        }
        guard let waiters else { return }
        for waiter in waiters { waiter.fail(RedisClient.mapped(failure)) }
        if attempt == 0 {
            logger.warning("Redis connection failed", metadata: ["realtime.redis.error": "\(message)"])
        }
        scheduleReconnect(attempt: attempt + 1)
    }

    private func lost(_ connection: RedisConnection) {
        let wasCurrent = state.withLock { state in
            guard case .connected(let current) = state, current === connection else { return false }
            state = .backingOff
            return true
        }
        guard wasCurrent else { return }
        error.withLock { $0 = "connection lost" }
        onChange?(false)
        logger.warning("Redis connection lost; reconnecting", metadata: ["realtime.redis.slot": "\(index)"])
        scheduleReconnect(attempt: 0)
    }

    private func scheduleReconnect(attempt: Int) {
        let delay = configuration.reconnectDelay(attempt: attempt)
        eventLoop.scheduleTask(in: .milliseconds(delay.milliseconds)) {
            let proceed = self.state.withLock { state in
                guard case .backingOff = state else { return false }
                state = .connecting(waiters: [], first: false)
                return true
            }
            if proceed { self.attempt(attempt) }
        }
    }

    func shutdown() -> EventLoopFuture<Void> {
        let (connection, waiters): (RedisConnection?, [EventLoopPromise<RedisConnection>]) = state.withLock { state in
            defer { state = .shutDown }
            switch state {
            case .connected(let connection): return (connection, [])
            case .connecting(let waiters, _): return (nil, waiters)
            case .backingOff, .shutDown: return (nil, [])
            }
        }
        for waiter in waiters { waiter.fail(RealtimeError(.shutDown, "the Redis client was shut down")) }
        return connection?.close() ?? eventLoop.makeSucceededVoidFuture()
    }
}
