import Logging
import Metrics
import NIOCore
import RealtimeCore
import Synchronization

/// Sharded pub/sub on a Redis Cluster: one subscriber connection per node that owns a wanted channel's slot,
/// `SSUBSCRIBE`/`SUNSUBSCRIBE` as interest in a channel goes from 0 to 1 and back, and subscriptions that follow
/// slot migrations and failovers.
///
/// The decisions are ``ShardedSubscriptions``'s (a value with its own tests); this class applies its actions:
/// connections, commands, retries with backoff, slot-map refreshes (it hears every refresh of the client's router,
/// the periodic one included) and the gap report. A `sunsubscribe` push that is not the reply to our own
/// `SUNSUBSCRIBE`, a `MOVED` reply to `SSUBSCRIBE`, or a lost connection makes it read the slot map again and
/// subscribe on the new owner; the window in which messages may have been lost goes to `onResubscribed(from:to:)`
/// once every wanted channel is subscribed again.
final class RedisShardedSubscriber: Sendable {
    typealias Node = RedisNodeAddress

    private struct State: ~Copyable {
        var machine = ShardedSubscriptions()
        var connections: [Node: (generation: Int, connection: RedisConnection)] = [:]
        /// Consecutive failed attempts per node, for the backoff.
        var attempts: [Node: Int] = [:]
        /// `addInterest` callers waiting until their channel is settled.
        var waiters: [String: [EventLoopPromise<Void>]] = [:]
    }

    private let router: RedisClusterRouter
    let eventLoop: any EventLoop
    private let logger: Logger
    private let metrics: RedisMetrics
    private let onMessage: RedisSubscriber.MessageHandler
    private let onResubscribed: RedisSubscriber.GapHandler
    private let state = Mutex<State>(State())
    private let listener = Mutex<Int?>(nil)

    init(
        router: RedisClusterRouter,
        eventLoop: any EventLoop,
        logger: Logger,
        metrics: RedisMetrics,
        onMessage: @escaping RedisSubscriber.MessageHandler,
        onResubscribed: @escaping RedisSubscriber.GapHandler
    ) {
        self.router = router
        self.eventLoop = eventLoop
        self.logger = logger
        self.metrics = metrics
        self.onMessage = onMessage
        self.onResubscribed = onResubscribed
    }

    /// Follows the router's slot map and subscribes `channels`; returns once each is settled (see
    /// ``subscribe(_:)``).
    func start(channels: [String]) async {
        let id = router.addTopologyListener { [weak self] in self?.topologyChanged() }
        listener.withLock { $0 = id }
        await subscribe(channels)
    }

    /// Whether every wanted channel is subscribed on its slot's owner (no loss window open).
    var isConnected: Bool { state.withLock { $0.machine.isComplete && !$0.machine.closed } }

    /// Subscriber connections up, and nodes that have wanted channels.
    var nodeCounts: (connected: Int, total: Int) {
        state.withLock { state in
            let phases = state.machine.nodes.values
            return (phases.count { if case .connected = $0 { true } else { false } }, phases.count)
        }
    }

    var resubscribeCount: Int { state.withLock { $0.machine.recoveries } }

    /// Adds one interest in each channel; returns once each is subscribed (or its node is down for now, which the
    /// gap covers), at most the connect plus the command timeout later.
    func subscribe(_ channels: [String]) async {
        let topology = router.topology
        let waits: [EventLoopFuture<Void>] = apply { state in
            var actions: [ShardedSubscriptions.Action] = []
            for channel in channels {
                let owner = topology?.owner(of: RedisHashSlot.slot(of: channel))
                actions += state.machine.addInterest(channel, owner: owner)
            }
            return actions
        } waiting: { state in
            channels.filter { !state.machine.isSettled($0) }.map { channel in
                let promise = eventLoop.makePromise(of: Void.self)
                state.waiters[channel, default: []].append(promise)
                return promise.futureResult
            }
        }
        guard !waits.isEmpty else { return }
        let limit = router.configuration.connectTimeout + router.configuration.commandTimeout
        let timeout = eventLoop.scheduleTask(in: .milliseconds(max(1, limit.milliseconds))) {
            self.settleWaiters(all: true)
        }
        for wait in waits { try? await wait.get() }
        timeout.cancel()
    }

    /// Removes one interest in each channel; the last one sends `SUNSUBSCRIBE`. Returns once each is confirmed (as
    /// ``RedisSubscriber/unsubscribe(_:)`` does), so nothing published afterwards on the channel is heard.
    func unsubscribe(_ channels: [String]) async {
        let actions = state.withLock { state in channels.flatMap { state.machine.removeInterest($0) } }
        let confirmations = perform(actions)
        settleWaiters(all: false)
        for confirmation in confirmations { _ = try? await confirmation.get() }
    }

    /// Drops every connection so that each reconnects and re-subscribes (a canary stopped coming back).
    func forceResubscribe() {
        let _: [EventLoopFuture<Void>] = apply { $0.machine.resubscribeAll(now: .now()) }
    }

    func close() async {
        if let id = listener.withLock({ $0 }) { router.removeTopologyListener(id) }
        let connections: [RedisConnection] = state.withLock { state in
            _ = state.machine.close()
            defer { state.connections = [:] }
            return state.connections.values.map(\.connection)
        }
        settleWaiters(all: true)
        for connection in connections { try? await connection.close().get() }
    }

    // MARK: Applying the machine's actions

    /// Runs `event` on the machine under the lock (and `waiting` after it), then applies the actions outside it.
    private func apply<Wait>(
        _ event: (inout State) -> [ShardedSubscriptions.Action],
        waiting: (inout State) -> [Wait] = { _ in [] }
    ) -> [Wait] {
        let (actions, waits) = state.withLock { state in
            let actions = event(&state)
            return (actions, waiting(&state))
        }
        perform(actions)
        settleWaiters(all: false)
        return waits
    }

    /// Applies `actions`; returns the replies to the `SUNSUBSCRIBE`s it sent.
    @discardableResult
    private func perform(_ actions: [ShardedSubscriptions.Action]) -> [EventLoopFuture<RESPValue>] {
        var confirmations: [EventLoopFuture<RESPValue>] = []
        for action in actions {
            switch action {
            case .connect(let node): connect(node)
            case .subscribe(let node, let generation, let channels):
                guard let connection = connection(node, generation) else { continue }
                for channel in channels { subscribe(channel, on: node, generation, connection) }
            case .unsubscribe(let node, let generation, let channels):
                guard let connection = connection(node, generation) else { continue }
                for channel in channels { confirmations.append(connection.sendShardUnsubscribe(channel)) }
            case .close(let node, let generation):
                let connection: RedisConnection? = state.withLock { state in
                    guard let current = state.connections[node], current.generation == generation else { return nil }
                    state.connections[node] = nil
                    return current.connection
                }
                _ = connection?.close()
            case .scheduleRetry(let node):
                let attempt = state.withLock { state in
                    defer { state.attempts[node, default: 0] += 1 }
                    return state.attempts[node, default: 0]
                }
                let delay = router.configuration.reconnectDelay(attempt: attempt)
                eventLoop.scheduleTask(in: .milliseconds(max(1, delay.milliseconds))) {
                    let _: [EventLoopFuture<Void>] = self.apply { $0.machine.retry(node) }
                }
            case .refreshTopology:
                router.refresh()
            case .gap(let from, let to):
                metrics.pubsubReconnects.increment()
                logger.info("Redis sharded pub/sub re-subscribed", metadata: ["realtime.redis.gap.from": "\(from)"])
                onResubscribed(from, to)
            }
        }
        return confirmations
    }

    private func connection(_ node: Node, _ generation: Int) -> RedisConnection? {
        state.withLock { state in
            guard let current = state.connections[node], current.generation == generation else { return nil }
            return current.connection
        }
    }

    private func connect(_ node: Node) {
        let generation = GenerationBox()
        let onMessage = self.onMessage
        let push: @Sendable (RESPValue) -> Void = { [weak self] value in
            guard case .array(let parts) = value, parts.count == 3, let kind = parts[0].buffer?.readableBytesView,
                let channel = parts[1].bytes
            else { return }
            if kind.elementsEqual("smessage".utf8), let payload = parts[2].bytes {
                onMessage(channel, payload, false)
            } else if kind.elementsEqual("sunsubscribe".utf8), let self {
                let name = String(decoding: channel, as: UTF8.self)
                let current = generation.value
                let _: [EventLoopFuture<Void>] = self.apply {
                    $0.machine.unsubscribedByServer(name, current, on: node, now: .now())
                }
            }
        }
        RedisConnection.connect(configuration: router.configuration(of: node), on: eventLoop, onPush: push)
            .whenComplete { result in
                switch result {
                case .success(let connection):
                    let _: [EventLoopFuture<Void>] = self.apply { state in
                        let (assigned, actions) = state.machine.connected(node)
                        generation.value = assigned
                        state.attempts[node] = nil
                        state.connections[node] = (assigned, connection)
                        return actions
                    }
                    let assigned = generation.value
                    connection.closeFuture.whenComplete { _ in
                        let _: [EventLoopFuture<Void>] = self.apply { state in
                            if state.connections[node]?.generation == assigned { state.connections[node] = nil }
                            return state.machine.lost(node, generation: assigned, now: .now())
                        }
                    }
                case .failure(let error):
                    let first = self.state.withLock { $0.attempts[node, default: 0] == 0 }
                    if first {
                        self.logger.warning(
                            "Redis sharded pub/sub connection failed",
                            metadata: ["realtime.redis.node": "\(node)", "realtime.redis.error": "\(error)"]
                        )
                    }
                    let _: [EventLoopFuture<Void>] = self.apply { $0.machine.connectFailed(node, now: .now()) }
                }
            }
    }

    private func subscribe(_ channel: String, on node: Node, _ generation: Int, _ connection: RedisConnection) {
        connection.send(RedisCommand("SSUBSCRIBE", channel)).whenComplete { result in
            let confirmed: Bool
            if case .success(.array) = result { confirmed = true } else { confirmed = false }
            let _: [EventLoopFuture<Void>] = self.apply { state in
                confirmed
                    ? state.machine.confirmed(channel, generation, on: node, now: .now())
                    : state.machine.refused(channel, generation, on: node, now: .now())
            }
        }
    }

    private func topologyChanged() {
        guard let topology = router.topology else { return }
        let _: [EventLoopFuture<Void>] = apply { state in
            state.machine.topologyChanged(owner: { topology.owner(of: RedisHashSlot.slot(of: $0)) }, now: .now())
        }
    }

    /// Completes the waiters of settled channels (of every channel with `all`).
    private func settleWaiters(all: Bool) {
        let ready: [EventLoopPromise<Void>] = state.withLock { state in
            var ready: [EventLoopPromise<Void>] = []
            for (channel, promises) in state.waiters where all || state.machine.isSettled(channel) {
                ready += promises
                state.waiters[channel] = nil
            }
            return ready
        }
        for promise in ready { promise.succeed() }
    }

    /// The generation a connection got once up, read by its push handler.
    private final class GenerationBox: Sendable {
        private let stored = Mutex(0)
        var value: Int {
            get { stored.withLock { $0 } }
            set { stored.withLock { $0 = newValue } }
        }
    }
}
