import Logging
import Metrics
import NIOCore
import RealtimeCore
import Synchronization

/// A dedicated pub/sub connection whose channel and pattern set follows counted interest.
///
/// `SUBSCRIBE`/`UNSUBSCRIBE` (`PSUBSCRIBE`/`PUNSUBSCRIBE` for a pattern) are sent (and confirmed) as interest in a
/// topic goes from 0 to 1 and back. Messages go to `onMessage` on the event loop, which must only hand them off
/// (Redis disconnects a subscriber whose output buffer passes its limit, so the read path must never wait). Any
/// disconnect — `CLIENT KILL`, a Redis restart, an output-buffer-limit kill — is handled alike: reconnect with
/// backoff and jitter, re-subscribe every topic, then report the outage window through `onResubscribed(from:to:)`.
final class RedisSubscriber: Sendable {
    /// `viaPattern` is true for a message heard through a pattern subscription (`pmessage`).
    typealias MessageHandler = @Sendable (_ channel: [UInt8], _ payload: [UInt8], _ viaPattern: Bool) -> Void

    /// A channel, or a glob-style pattern of channels.
    enum Topic: Hashable, Sendable {
        case channel(String)
        case pattern(String)

        var subscribe: RedisCommand {
            switch self {
            case .channel(let name): return RedisCommand("SUBSCRIBE", name)
            case .pattern(let pattern): return RedisCommand("PSUBSCRIBE", pattern)
            }
        }

        var unsubscribe: RedisCommand {
            switch self {
            case .channel(let name): return RedisCommand("UNSUBSCRIBE", name)
            case .pattern(let pattern): return RedisCommand("PUNSUBSCRIBE", pattern)
            }
        }
    }
    typealias GapHandler = @Sendable (_ from: Timestamp, _ to: Timestamp) -> Void

    private enum Phase {
        case idle
        case connecting
        case connected(RedisConnection)
        case backingOff
        case closed
    }

    private struct State {
        var phase = Phase.idle
        var interest: [Topic: Int] = [:]
        /// When delivery stopped (connection lost or first connect failed); cleared once re-subscribed.
        var lostSince: Timestamp?
        var resubscribes = 0
        var firstAttempt: EventLoopPromise<Void>?
    }

    private let configuration: RedisConfiguration
    /// The node each connect attempt goes to (on a cluster, a primary from the current slot map).
    private let node: @Sendable (_ attempt: Int) -> RedisConfiguration
    let eventLoop: any EventLoop
    private let logger: Logger
    private let state = Mutex<State>(State())
    private let onMessage: MessageHandler
    private let onResubscribed: GapHandler
    private let metrics: RedisMetrics

    init(
        configuration: RedisConfiguration,
        node: (@Sendable (_ attempt: Int) -> RedisConfiguration)? = nil,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: RedisMetrics,
        onMessage: @escaping MessageHandler,
        onResubscribed: @escaping GapHandler
    ) {
        self.configuration = configuration
        self.node = node ?? { _ in configuration }
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = metrics
        self.onMessage = onMessage
        self.onResubscribed = onResubscribed
    }

    /// Subscribes `channels` (counted once each) and connects; returns when the first attempt has finished,
    /// connected and confirmed or failed (then it keeps retrying in the background on the event loop).
    func start(channels: [String]) async {
        let promise = eventLoop.makePromise(of: Void.self)
        let start = state.withLock { state in
            guard case .idle = state.phase else { return false }
            for channel in channels { state.interest[.channel(channel), default: 0] += 1 }
            state.phase = .connecting
            state.firstAttempt = promise
            return true
        }
        guard start else {
            promise.succeed()
            return
        }
        attempt(0)
        try? await promise.futureResult.get()
    }

    var isConnected: Bool {
        state.withLock { state in
            if case .connected(let connection) = state.phase { return connection.isActive }
            return false
        }
    }

    var resubscribeCount: Int { state.withLock { $0.resubscribes } }

    /// Adds one interest in each topic; the first one subscribes and waits for Redis's confirmation (when
    /// connected; otherwise the topic is subscribed on reconnect).
    func subscribe(_ topics: [Topic]) async {
        let confirmations: [EventLoopFuture<RESPValue>] = state.withLock { state in
            var confirmations: [EventLoopFuture<RESPValue>] = []
            for topic in topics {
                state.interest[topic, default: 0] += 1
                guard state.interest[topic] == 1, case .connected(let connection) = state.phase else { continue }
                // Sent under the lock, so SUBSCRIBE/UNSUBSCRIBE of one topic reach Redis in interest order.
                confirmations.append(connection.send(topic.subscribe))
            }
            return confirmations
        }
        for confirmation in confirmations { _ = try? await confirmation.get() }
    }

    /// Removes one interest in each topic; the last one unsubscribes and waits for the confirmation.
    func unsubscribe(_ topics: [Topic]) async {
        let confirmations: [EventLoopFuture<RESPValue>] = state.withLock { state in
            var confirmations: [EventLoopFuture<RESPValue>] = []
            for topic in topics {
                guard let count = state.interest[topic] else { continue }
                if count > 1 {
                    state.interest[topic] = count - 1
                    continue
                }
                state.interest[topic] = nil
                guard case .connected(let connection) = state.phase else { continue }
                confirmations.append(connection.send(topic.unsubscribe))
            }
            return confirmations
        }
        for confirmation in confirmations { _ = try? await confirmation.get() }
    }

    /// Drops the connection so that it reconnects and re-subscribes (a subscription that stopped delivering).
    func forceResubscribe() {
        let connection: RedisConnection? = state.withLock { state in
            if case .connected(let connection) = state.phase { return connection }
            return nil
        }
        _ = connection?.close()
    }

    func close() async {
        let connection: RedisConnection? = state.withLock { state in
            defer { state.phase = .closed }
            if case .connected(let connection) = state.phase { return connection }
            return nil
        }
        try? await connection?.close().get()
    }

    private func attempt(_ attempt: Int) {
        let onMessage = self.onMessage
        let push: @Sendable (RESPValue) -> Void = { value in
            // `message channel payload`, or `pmessage pattern channel payload`.
            guard case .array(let parts) = value, parts.count == 3 || parts.count == 4,
                let channel = parts[parts.count - 2].bytes, let payload = parts[parts.count - 1].bytes
            else { return }
            onMessage(channel, payload, parts.count == 4)
        }
        RedisConnection.connect(configuration: node(attempt), on: eventLoop, onPush: push).whenComplete { result in
            switch result {
            case .success(let connection): self.connected(connection)
            case .failure(let error): self.failed(error, attempt: attempt)
            }
        }
    }

    private func connected(_ connection: RedisConnection) {
        let confirmations: [EventLoopFuture<RESPValue>]? = state.withLock { state in
            guard case .connecting = state.phase else { return nil }
            state.phase = .connected(connection)
            return state.interest.keys.map { connection.send($0.subscribe) }
        }
        guard let confirmations else {
            _ = connection.close()
            return
        }
        connection.closeFuture.whenComplete { _ in self.lost(connection) }
        EventLoopFuture.whenAllComplete(confirmations, on: eventLoop).whenComplete { results in
            let allConfirmed = (try? results.get())?.allSatisfy { (try? $0.get())?.array != nil } ?? false
            let (gapStart, first): (Timestamp?, EventLoopPromise<Void>?) = self.state.withLock { state in
                let first = state.firstAttempt
                state.firstAttempt = nil
                guard allConfirmed, case .connected(let current) = state.phase, current === connection else {
                    return (nil, first)
                }
                let since = state.lostSince
                state.lostSince = nil
                if since != nil { state.resubscribes += 1 }
                return (since, first)
            }
            if let gapStart {
                self.metrics.pubsubReconnects.increment()
                self.logger.info("Redis pub/sub re-subscribed", metadata: ["realtime.redis.gap.from": "\(gapStart)"])
                self.onResubscribed(gapStart, .now())
            }
            first?.succeed()
        }
    }

    private func failed(_ error: any Error, attempt: Int) {
        let (proceed, first): (Bool, EventLoopPromise<Void>?) = state.withLock { state in
            let first = state.firstAttempt
            state.firstAttempt = nil
            guard case .connecting = state.phase else { return (false, first) }
            state.phase = .backingOff
            if state.lostSince == nil { state.lostSince = .now() }
            return (true, first)
        }
        first?.succeed()
        guard proceed else { return }
        if attempt == 0 {
            logger.warning("Redis pub/sub connection failed", metadata: ["realtime.redis.error": "\(error)"])
        }
        scheduleReconnect(attempt: attempt + 1)
    }

    private func lost(_ connection: RedisConnection) {
        let proceed = state.withLock { state in
            guard case .connected(let current) = state.phase, current === connection else { return false }
            state.phase = .backingOff
            if state.lostSince == nil { state.lostSince = .now() }
            return true
        }
        guard proceed else { return }
        logger.warning("Redis pub/sub connection lost; reconnecting")
        scheduleReconnect(attempt: 0)
    }

    private func scheduleReconnect(attempt: Int) {
        let delay = configuration.reconnectDelay(attempt: attempt)
        eventLoop.scheduleTask(in: .milliseconds(delay.milliseconds)) {
            let proceed = self.state.withLock { state in
                guard case .backingOff = state.phase else { return false }
                state.phase = .connecting
                return true
            }
            if proceed { self.attempt(attempt) }
        }
    }
}
