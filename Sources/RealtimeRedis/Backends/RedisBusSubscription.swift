import Logging
import Metrics
import NIOCore
import RealtimeCore
import Synchronization

/// One server's subscription to a ``RedisEventBus``: a dedicated pub/sub connection, a bounded delivery buffer (or
/// a handler called on the read path), and a canary that probes the pub/sub path end to end.
final class RedisBusSubscription: EventBusSubscription, Sendable {
    let deliveries: AsyncStream<BusDelivery>
    private let continuation: AsyncStream<BusDelivery>.Continuation
    private let bus: RedisEventBus
    private let server: ServerID
    private let serverChannel: String
    private let serverChannelBytes: [UInt8]
    private let subscriber: Subscriber
    private let delivery = Mutex<DeliveryState>(DeliveryState())
    private let canary: Mutex<CanaryState>
    /// Refuses stale and replayed messages (the read path runs on one event loop; the lock is uncontended).
    private let replayGuard: Mutex<BusReplayGuard>
    /// When set, deliveries go to it on the subscriber's event loop instead of the buffer.
    private let handler: (@Sendable (BusDelivery) -> Void)?

    private struct DeliveryState {
        /// Set when the buffer was full: the next delivery is preceded by a gap from this time.
        var overflowSince: Timestamp?
        var closed = false
    }

    private struct CanaryState {
        var task: RepeatedTask?
        var machine: BusCanary
    }

    private static let canaryPrefix = Array("canary:".utf8)

    init(bus: RedisEventBus, server: ServerID, handler: (@Sendable (BusDelivery) -> Void)? = nil) {
        self.bus = bus
        self.server = server
        self.handler = handler
        replayGuard = Mutex(BusReplayGuard(limits: bus.options.replayLimits))
        // A publish's receiver count covers our subscriber on one node and with sharded pub/sub, not with classic
        // pub/sub on a cluster (see `BusCanary`).
        let client = bus.client
        canary = Mutex(
            CanaryState(
                machine: BusCanary(
                    timeout: .milliseconds(max(1, bus.options.canaryTimeout.milliseconds)),
                    repliesCountEveryListener: client.cluster == nil || client.usesShardedPubSub,
                    now: .now()
                )
            )
        )
        serverChannel = bus.channel(for: .server(server))
        serverChannelBytes = Array(serverChannel.utf8)
        (deliveries, continuation) = AsyncStream.makeStream(
            of: BusDelivery.self,
            bufferingPolicy: .bufferingOldest(bus.options.deliveryBufferSize)
        )
        // The handlers are set after `self` exists; they capture it weakly (the subscriber is owned by `self`).
        let box = WeakBox()
        let onMessage: RedisSubscriber.MessageHandler = { channel, payload, viaPattern in
            box.value?.received(channel: channel, payload: payload, viaPattern: viaPattern)
        }
        let onResubscribed: RedisSubscriber.GapHandler = { from, to in box.value?.yield(.gap(from: from, to: to)) }
        if let router = client.cluster, client.usesShardedPubSub {
            subscriber = .sharded(
                RedisShardedSubscriber(
                    router: router,
                    eventLoop: client.eventLoopGroup.next(),
                    logger: client.logger,
                    metrics: client.metrics,
                    onMessage: onMessage,
                    onResubscribed: onResubscribed
                )
            )
        } else {
            subscriber = .classic(
                RedisSubscriber(
                    configuration: client.configuration,
                    node: { attempt in client.subscriberConfiguration(attempt: attempt) },
                    eventLoop: client.eventLoopGroup.next(),
                    logger: client.logger,
                    metrics: client.metrics,
                    onMessage: onMessage,
                    onResubscribed: onResubscribed
                )
            )
        }
        box.value = self
    }

    /// Holds the subscription for the subscriber's callbacks without a reference cycle.
    private final class WeakBox: Sendable {
        private let reference = Mutex<WeakReference>(WeakReference())
        private struct WeakReference { weak var value: RedisBusSubscription? }
        var value: RedisBusSubscription? {
            get { reference.withLock { $0.value } }
            set { reference.withLock { $0.value = newValue } }
        }
    }

    func start() async {
        await subscriber.start(channels: [
            bus.channel(for: .everyone), bus.channel(for: .control), serverChannel,
        ])
        let interval = TimeAmount.milliseconds(max(1, bus.options.canaryInterval.milliseconds))
        let task = subscriber.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) {
            [weak self] _ in self?.probe()
        }
        canary.withLock { $0.task = task }
    }

    func addInterest(_ route: BusRoute) async throws(RealtimeError) {
        try Self.checkInterest(route)
        switch subscriber {
        case .classic(let classic): await classic.subscribe(topics(for: route))
        case .sharded(let sharded): await sharded.subscribe([bus.channel(for: route)])
        }
    }

    func removeInterest(_ route: BusRoute) async throws(RealtimeError) {
        try Self.checkInterest(route)
        switch subscriber {
        case .classic(let classic): await classic.unsubscribe(topics(for: route))
        case .sharded(let sharded): await sharded.unsubscribe([bus.channel(for: route)])
        }
    }

    /// A user's channel; for the admins route, its channel and the pattern of every user's channel (user-scoped
    /// events reach administrators through their user's channel: see ``RedisEventBus/publish(_:)-([BusMessage])``).
    /// With sharded pub/sub (no patterns) every route is its one channel: user events are published on the admins
    /// channel too.
    private func topics(for route: BusRoute) -> [RedisSubscriber.Topic] {
        let channel = RedisSubscriber.Topic.channel(bus.channel(for: route))
        guard route == .admins else { return [channel] }
        return [channel, .pattern(bus.userChannelPattern)]
    }

    private static func checkInterest(_ route: BusRoute) throws(RealtimeError) {
        switch route {
        case .user, .admins: return
        case .everyone, .control, .server:
            throw RealtimeError(.invalidArgument, "interest is counted only for user and admins routes")
        }
    }

    func close() async {
        let task = canary.withLock { state in
            defer { state.task = nil }
            return state.task
        }
        task?.cancel()
        delivery.withLock { $0.closed = true }
        await subscriber.close()
        continuation.finish()
        bus.closed(self)
    }

    // MARK: Read path (on the subscriber's event loop): verify, decode, hand off.

    /// - Parameter viaPattern: heard through the pattern of user channels (as an administrators' server).
    private func received(channel: [UInt8], payload: [UInt8], viaPattern: Bool) {
        guard payload.count <= bus.options.maximumMessageBytes,
            let (positions, sealed) = RecordedPayload.split(payload),
            let opened = bus.signer.open(channel: channel, payload: sealed), let stamp = opened.stamp
        else {
            bus.refuse(.invalid, channel: channel)
            return
        }
        switch replayGuard.withLock({ $0.admit(stamp, viaPattern: viaPattern, now: .now()) }) {
        case .fresh: break
        case .stale: return bus.refuse(.stale, channel: channel)
        case .replayed: return bus.refuse(.replayed, channel: channel)
        }
        let body = opened.body
        if !viaPattern, channel == serverChannelBytes, body.starts(with: Self.canaryPrefix) {
            canaryReturned(body.dropFirst(Self.canaryPrefix.count))
            return
        }
        guard let decoded = try? RedisBusCodec.decode(body),
            bus.channel(for: decoded.message.route).utf8.elementsEqual(channel)
        else {
            // Authentic but malformed, or sealed for another route: refuse it too.
            bus.refuse(.invalid, channel: channel)
            return
        }
        guard viaPattern else {
            var message = decoded.message
            message.position = positions.first
            yield(.message(message))
            return
        }
        // A user's channel heard for the administrators: only what was published for the admins route too.
        guard decoded.alsoAdmins, case .user = decoded.message.route else { return }
        var forAdmins = decoded.message
        forAdmins.route = .admins
        forAdmins.position = positions.count > 1 ? positions[1] : nil
        yield(.message(forAdmins))
    }

    private func yield(_ delivery: BusDelivery) {
        let (closed, overflowSince) = self.delivery.withLock { ($0.closed, $0.overflowSince) }
        if closed { return }
        if let handler {
            // Called on the subscriber's event loop, one delivery after the other.
            handler(delivery)
            return
        }
        if let overflowSince {
            if case .dropped = continuation.yield(.gap(from: overflowSince, to: .now())) {
                bus.countDroppedDelivery()
                return
            }
            self.delivery.withLock { $0.overflowSince = nil }
        }
        if case .dropped = continuation.yield(delivery) {
            bus.countDroppedDelivery()
            self.delivery.withLock { state in
                if state.overflowSince == nil { state.overflowSince = .now() }
            }
        }
    }

    // MARK: Canary

    private func probe() {
        let subscriberConnected = subscriber.isConnected
        let actions = canary.withLock { state in
            state.machine.tick(
                now: .now(),
                subscriberConnected: subscriberConnected,
                publisherConnected: bus.client.isConnected
            )
        }
        if actions.resubscribe {
            bus.client.logger.warning("Redis pub/sub canary did not return; re-subscribing")
            subscriber.forceResubscribe()
        }
        guard let sequence = actions.send else { return }
        var command = RedisCommand(bus.publishCommandName, serverChannel)
        command.append(
            bytes: bus.signer.seal(channel: serverChannel, body: Self.canaryPrefix + Array(String(sequence).utf8))
        )
        bus.client.sendFuture(command).whenComplete { [weak self] result in
            guard let self else { return }
            let reply: BusCanary.PublishReply
            switch result {
            case .success(.integer(let count)): reply = .receivers(Int(count))
            case .success, .failure: reply = .failed
            }
            let connected = self.subscriber.isConnected
            let resubscribe = self.canary.withLock { state in
                state.machine.published(sequence, reply: reply, subscriberConnected: connected)
            }
            if resubscribe {
                self.bus.client.logger.warning("Redis says nobody listens on this server's bus channel; re-subscribing")
                self.subscriber.forceResubscribe()
            }
        }
    }

    private func canaryReturned(_ body: ArraySlice<UInt8>) {
        guard let sequence = UInt64(String(decoding: body, as: UTF8.self)) else { return }
        let roundTrip = canary.withLock { $0.machine.returned(sequence, now: .now()) }
        if let roundTrip { bus.client.metrics.canaryRoundTrip.recordNanoseconds(roundTrip.nanoseconds) }
    }

    /// This subscription's health: unhealthy while disconnected or stalled.
    func health() -> ComponentHealth {
        let now = NIODeadline.now()
        let machine = canary.withLock { $0.machine }
        let (roundTrip, lastReceived, stalled, stalls) = (
            machine.lastRoundTrip, machine.lastReceived, machine.stalled, machine.stalls
        )
        let connected = subscriber.isConnected
        var details: JSONObject = [
            "server": .string(server.rawValue),
            "subscriberConnected": .bool(connected),
            "resubscribes": .int(Int64(subscriber.resubscribeCount)),
            "canaryStalls": .int(Int64(stalls)),
        ]
        var partlyConnected = false
        if case .sharded(let sharded) = subscriber {
            let nodes = sharded.nodeCounts
            details["shardedPubSub"] = .bool(true)
            details["shardConnections"] = .int(Int64(nodes.connected))
            details["shards"] = .int(Int64(nodes.total))
            partlyConnected = nodes.connected > 0
        }
        if let roundTrip { details["canaryRoundTripMs"] = .double(Double(roundTrip.nanoseconds) / 1_000_000) }
        let age = now - (lastReceived ?? machine.startedAt)
        if lastReceived != nil { details["canaryAgeMs"] = .int(age.nanoseconds / 1_000_000) }
        let timeout = TimeAmount.milliseconds(bus.options.canaryTimeout.milliseconds)
        let intervalAndTimeout = timeout + .milliseconds(bus.options.canaryInterval.milliseconds)
        let status: ComponentHealth.Status
        if stalled || (!connected && !partlyConnected) {
            status = .unhealthy
        } else if !connected {
            // Sharded: some shard's channels are being subscribed again (a failover or a slot migration); the
            // other shards deliver, and the window ends with a gap notice.
            status = .degraded
        } else if age > intervalAndTimeout {
            status = .degraded
        } else {
            status = .healthy
        }
        return ComponentHealth(status: status, details: details)
    }
}

/// The pub/sub connection(s) of a subscription: classic pub/sub on one node, sharded pub/sub on a cluster.
private enum Subscriber: Sendable {
    case classic(RedisSubscriber)
    case sharded(RedisShardedSubscriber)

    var eventLoop: any EventLoop {
        switch self {
        case .classic(let subscriber): return subscriber.eventLoop
        case .sharded(let subscriber): return subscriber.eventLoop
        }
    }

    /// Every channel subscribed (on a cluster: on its shard's owner).
    var isConnected: Bool {
        switch self {
        case .classic(let subscriber): return subscriber.isConnected
        case .sharded(let subscriber): return subscriber.isConnected
        }
    }

    var resubscribeCount: Int {
        switch self {
        case .classic(let subscriber): return subscriber.resubscribeCount
        case .sharded(let subscriber): return subscriber.resubscribeCount
        }
    }

    func start(channels: [String]) async {
        switch self {
        case .classic(let subscriber): await subscriber.start(channels: channels)
        case .sharded(let subscriber): await subscriber.start(channels: channels)
        }
    }

    func forceResubscribe() {
        switch self {
        case .classic(let subscriber): subscriber.forceResubscribe()
        case .sharded(let subscriber): subscriber.forceResubscribe()
        }
    }

    func close() async {
        switch self {
        case .classic(let subscriber): await subscriber.close()
        case .sharded(let subscriber): await subscriber.close()
        }
    }
}
