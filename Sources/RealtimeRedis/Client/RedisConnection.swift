import NIOCore
import NIOPosix
import RealtimeCore
import Synchronization

/// One TCP connection to Redis on a NIO channel, with pipelining: any number of commands may be in flight, and
/// their replies are matched in FIFO order by ``RESPChannelHandler``.
///
/// Commands sent from other threads are coalesced: they queue under a lock and one event-loop task writes the
/// whole batch and flushes once, so N concurrent callers cost one `write(2)`, not N.
final class RedisConnection: Sendable {
    let channel: any Channel
    private let outbox = Mutex<Outbox>(Outbox())

    /// Commands encoded back to back and, in the same order, who waits for their replies, until the next flush.
    private struct Outbox: ~Copyable {
        var bytes: ByteBuffer?
        var waiters: [ReplyWaiter] = []
        var flushScheduled = false
    }

    private init(channel: any Channel) {
        self.channel = channel
    }

    var eventLoop: any EventLoop { channel.eventLoop }
    var isActive: Bool { channel.isActive }
    var closeFuture: EventLoopFuture<Void> { channel.closeFuture }

    /// Connects, then authenticates and selects the database as `configuration` says.
    ///
    /// - Parameter onPush: for a pub/sub connection, receives `message` pushes on the event loop.
    static func connect(
        configuration: RedisConfiguration,
        on eventLoop: any EventLoop,
        onPush: (@Sendable (RESPValue) -> Void)? = nil
    ) -> EventLoopFuture<RedisConnection> {
        let timeout = configuration.commandTimeout
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(.milliseconds(max(1, configuration.connectTimeout.milliseconds)))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try RedisTLS.addHandler(to: channel, configuration: configuration)
                    try channel.pipeline.syncOperations.addHandler(
                        RESPChannelHandler(commandTimeout: timeout, onPush: onPush)
                    )
                }
            }
        return bootstrap.connect(host: configuration.host, port: configuration.port)
            .flatMapErrorThrowing { error in
                throw RealtimeError(
                    .backendUnavailable,
                    "cannot connect to Redis at \(configuration.host):\(configuration.port)",
                    underlying: error
                )
            }
            .flatMap { channel in
                let connection = RedisConnection(channel: channel)
                return connection.handshake(configuration).map { connection }.flatMapError { error in
                    channel.close(promise: nil)
                    // A TLS error, or the server closing the connection during setup (how a server that requires a
                    // client certificate may refuse one that has none: its alert can come after the close).
                    if let options = configuration.tls, let failure = error as? RealtimeError,
                        failure.underlying != nil || failure.message.hasPrefix("Redis connection")
                    {
                        return channel.eventLoop.makeFailedFuture(
                            RedisTLS.setupFailure(
                                host: configuration.host,
                                port: configuration.port,
                                options: options,
                                underlying: failure.underlying
                            )
                        )
                    }
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
    }

    private func handshake(_ configuration: RedisConfiguration) -> EventLoopFuture<Void> {
        var steps: [EventLoopFuture<RESPValue>] = []
        if let password = configuration.password {
            var auth = RedisCommand("AUTH")
            if let username = configuration.username { auth.append(username) }
            auth.append(password)
            steps.append(send(auth))
        }
        if configuration.database != 0 {
            steps.append(send(RedisCommand("SELECT", String(configuration.database))))
        }
        if configuration.tls != nil, steps.isEmpty {
            // A round trip through TLS: a connection counts as up only once the handshake succeeded, so a refused
            // certificate is a connect error, not a failure of the first command.
            steps.append(send(RedisCommand("PING")))
        }
        guard !steps.isEmpty else { return eventLoop.makeSucceededVoidFuture() }
        return EventLoopFuture.whenAllSucceed(steps, on: eventLoop).flatMapThrowing { replies in
            for reply in replies {
                if case .error(let message) = reply {
                    // The message is Redis's (e.g. WRONGPASS); it never contains the password.
                    throw RealtimeError(.backendUnavailable, "Redis refused the connection setup: \(message)")
                }
            }
        }
    }

    /// Sends a command and returns the future of its reply. The reply may be an `.error`; a lost connection or a
    /// timeout fails the future with a ``RealtimeError``.
    func send(_ command: RedisCommand) -> EventLoopFuture<RESPValue> {
        let promise = eventLoop.makePromise(of: RESPValue.self)
        enqueue([command], .promise(promise))
        return promise.futureResult
    }

    /// Sends `SUNSUBSCRIBE channel` on a pub/sub connection: its reply is told apart from Redis's unasked
    /// `sunsubscribe` push by the channel (see ``RESPChannelHandler``).
    func sendShardUnsubscribe(_ channel: String) -> EventLoopFuture<RESPValue> {
        let promise = eventLoop.makePromise(of: RESPValue.self)
        enqueue([RedisCommand("SUNSUBSCRIBE", channel)], .unsubscribe(channel: Array(channel.utf8), promise))
        return promise.futureResult
    }

    /// Sends a command and waits for its reply (which may be an `.error`).
    func execute(_ command: RedisCommand) async throws -> RESPValue {
        try await withUnsafeThrowingContinuation { continuation in
            enqueue([command], .continuation(continuation))
        }
    }

    /// Sends commands back to back and waits once for all their replies, in order.
    func execute(_ commands: [RedisCommand]) async throws -> [RESPValue] {
        guard !commands.isEmpty else { return [] }
        return try await withUnsafeThrowingContinuation { continuation in
            enqueue(commands, .batch(count: commands.count, continuation))
        }
    }

    private func enqueue(_ commands: [RedisCommand], _ waiter: ReplyWaiter) {
        // Encoded outside the lock (a caller preempted while holding it would stall the others), then added to the
        // batch of the next flush: the first caller's buffer becomes the batch's, later ones are appended to it, so
        // there is no waiter array per call and nothing to merge on the event loop. An estimate in O(1) per command
        // (the exact size takes a pass over its lengths); the buffer grows if short.
        var encoded = channel.allocator.buffer(capacity: commands.reduce(0) { $0 + $1.storage.count + 16 * $1.count })
        for command in commands { RESPEncoder.encode(command, into: &encoded) }
        let schedule = outbox.withLock { box in
            if box.bytes == nil {
                // Moved, not shared: the batch's buffer must stay unique for the next append not to copy it.
                box.bytes = encoded
                encoded = ByteBuffer()
                // Room for a few callers' waiters at once, rather than growing the array one by one.
                box.waiters.reserveCapacity(8)
            } else {
                box.bytes!.writeBuffer(&encoded)
            }
            box.waiters.append(waiter)
            if box.flushScheduled { return false }
            box.flushScheduled = true
            return true
        }
        guard schedule else { return }
        eventLoop.execute { [self] in
            let (bytes, waiters) = outbox.withLock { box in
                box.flushScheduled = false
                defer {
                    box.bytes = nil
                    box.waiters = []
                }
                return (box.bytes, box.waiters)
            }
            guard let bytes, !waiters.isEmpty else { return }
            // Closing happens on this event loop, so a channel active here still has its handler, which fails
            // every pending waiter when it goes away: no waiter can be left hanging.
            guard channel.isActive else {
                let error = RealtimeError(.backendUnavailable, "Redis connection lost")
                for waiter in waiters { waiter.fail(error) }
                return
            }
            // One write for the whole batch: its bytes back to back and its waiters in the same order.
            channel.writeAndFlush(RedisOutbound(bytes: bytes, waiters: waiters), promise: nil)
        }
    }

    /// Closes the connection; commands in flight fail with ``RealtimeError/Code/backendUnavailable``.
    func close() -> EventLoopFuture<Void> {
        channel.close().recover { _ in }
    }
}
