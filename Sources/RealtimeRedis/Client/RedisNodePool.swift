import Logging
import NIOCore
import RealtimeCore
import Synchronization

/// A small pool of pipelined connections to one Redis node, used round-robin (or by affinity): the whole client on
/// a single node, one per primary on a cluster.
final class RedisNodePool: Sendable {
    let configuration: RedisConfiguration
    private let connections: [PooledConnection]
    private let next = Atomic<Int>(0)

    /// Creates the pool; ``start(onConnect:onChange:)`` connects it.
    init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        var connections: [PooledConnection] = []
        for index in 0..<configuration.poolSize {
            connections.append(
                PooledConnection(
                    index: index,
                    configuration: configuration,
                    eventLoop: eventLoopGroup.next(),
                    logger: logger
                )
            )
        }
        self.connections = connections
    }

    /// Starts connecting every pooled connection.
    ///
    /// - Parameters:
    ///   - onConnect: called (on an event loop) whenever a connection is established or re-established.
    ///   - onChange: called when a connection comes up (`true` if it had been up before) or goes down (`false`).
    func start(onConnect: @escaping @Sendable () -> Void, onChange: @escaping @Sendable (_ reconnected: Bool) -> Void) {
        for connection in connections {
            connection.onConnect = onConnect
            connection.onChange = onChange
            connection.start()
        }
    }

    var address: RedisNodeAddress { RedisNodeAddress(host: configuration.host, port: configuration.port) }

    /// Runs `body` with a connection: a connected one if any, else (during the very first connect only) the one
    /// being connected.
    func withConnection<Result>(
        affinity: Int?,
        _ body: (RedisConnection) async throws -> Result
    ) async throws(RealtimeError) -> Result {
        let pooled = choose(affinity: affinity)
        do {
            if let connection = pooled.activeConnection { return try await body(connection) }
            return try await body(try await pooled.connection().get())
        } catch {
            throw RedisClient.mapped(error)
        }
    }

    /// Sends a command and returns the future of its raw reply (an error reply is a value, not a failure).
    func sendFuture(_ command: RedisCommand, affinity: Int? = nil) -> EventLoopFuture<RESPValue> {
        let pooled = choose(affinity: affinity)
        if let connection = pooled.activeConnection { return connection.send(command) }
        return pooled.connection().flatMap { $0.send(command) }
    }

    private func choose(affinity: Int?) -> PooledConnection {
        let count = connections.count
        let start: Int
        if let affinity {
            start = Int(UInt(bitPattern: affinity) % UInt(count))
        } else {
            start = Int(UInt(bitPattern: next.wrappingAdd(1, ordering: .relaxed).oldValue) % UInt(count))
        }
        for offset in 0..<count {
            let pooled = connections[(start + offset) % count]
            if pooled.activeConnection != nil { return pooled }
        }
        return connections[start]
    }

    var size: Int { connections.count }
    var connectedCount: Int { connections.count { $0.activeConnection != nil } }
    var lastError: String? { connections.lazy.compactMap(\.lastError).first }

    /// Closes every connection and stops reconnecting.
    func shutdown(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        EventLoopFuture.andAllComplete(connections.map { $0.shutdown() }, on: eventLoop)
    }
}

/// One pooled connection and its reconnect state machine. All transitions happen under `state`'s lock; the NIO
/// callbacks that drive it run on `eventLoop`.
private final class PooledConnection: Sendable {
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
