import DequeModule
import Logging
import Metrics
import NIOCore
public import RealtimeCore
import Synchronization

/// An `EventBus` on Redis pub/sub, routed by scope.
///
/// Each route has its own channel: `<prefix>bus:user:<id>`, `<prefix>bus:admins`, `<prefix>bus:everyone`,
/// `<prefix>bus:control` and `<prefix>bus:server:<id>`. A subscription always hears everyone's, the control and
/// its own server's channel, and a user's or the admins' channel only while it has interest, so a server's Redis
/// traffic follows its own connections, not the cluster's event rate.
///
/// On a Redis Cluster with ``RedisConfiguration/clusterShardedPubSub`` the bus uses sharded pub/sub instead
/// (`SPUBLISH`/`SSUBSCRIBE`, Redis 7): each channel carries the hash tag of its history stream
/// (`<prefix>bus:{u:<id>}`, `<prefix>bus:{admins}`, `<prefix>bus:{everyone}`, `<prefix>bus:{control}`,
/// `<prefix>bus:{server:<id>}`), so it lives on one shard and is published by the script that appends to the
/// stream; a subscription keeps one connection per shard it needs (``RedisShardedSubscriber``). Sharded pub/sub has
/// no patterns, so there a user-scoped event is one `SPUBLISH` per route and administrators' servers subscribe to
/// the admins channel.
///
/// Otherwise (one node, or a cluster with classic pub/sub), a user-scoped event is one `PUBLISH` on its user's channel, not one per route: the hub hands both routes to
/// ``publish(_:)-([BusMessage])``, the message is marked as standing for the admins route too, and a subscription
/// with interest in `BusRoute.admins` hears every user channel through a pattern subscription
/// (`PSUBSCRIBE <prefix>bus:user:*`, confirmed before `EventBusSubscription.addInterest(_:)` returns, like its
/// `SUBSCRIBE`), delivering such messages as `BusRoute.admins` messages. A message published for the user's
/// route only is not delivered to administrators, so the effect is exactly one publish per route.
///
/// Trust: every payload carries an HMAC-SHA256 under the cluster secret over the channel, a freshness stamp (the
/// sending bus's random id, its sequence number and the send time) and the body (see `BusSigner`); a message that
/// fails it is refused and counted (`refusedMessages`), so whoever can write to Redis cannot forge events to users
/// without the secret. A genuine message replayed on its own channel, or older than
/// ``Options/freshnessWindow``, is refused too (`BusReplayGuard`).
///
/// Delivery: ``subscribe(server:handler:)`` (what a hub uses) hands each message to the handler on the
/// subscription's event loop right after verifying and decoding it; ``subscribe(server:)`` buffers up to
/// ``Options/deliveryBufferSize`` deliveries for a consumer task instead. The wire format is `RedisBusCodec`'s.
///
/// Failure: publishes that cannot reach Redis go to a bounded queue flushed (in order) when a connection
/// returns; what overflows is dropped and counted. A subscription whose connection drops reconnects,
/// re-subscribes and yields `BusDelivery.gap(from:to:)` for the outage. Each subscription probes its own path
/// with a canary published to its server channel; a canary that does not come back turns health unhealthy and
/// forces a re-subscribe.
public final class RedisEventBus: EventBus, Sendable {
    /// Tuning of the bus.
    public struct Options: Sendable, Hashable {
        /// Deliveries buffered per subscription before the oldest undelivered ones are kept and newer dropped
        /// (the subscriber then gets a gap).
        public var deliveryBufferSize: Int
        /// Publishes kept while Redis is unreachable; older ones are dropped beyond it.
        public var publishQueueLimit: Int
        /// How often each subscription publishes a canary to itself.
        public var canaryInterval: Duration
        /// How long a canary may take to come back before the subscription counts as stalled.
        public var canaryTimeout: Duration
        /// The largest bus message accepted from Redis.
        public var maximumMessageBytes: Int
        /// How far a message's send time may be from the receiver's clock, either way, before it is refused as
        /// stale. It must exceed the clock skew between servers plus the bus latency (a publish queued during a
        /// Redis outage is stamped when it is finally sent). Default 30 s.
        public var freshnessWindow: Duration
        /// How many sequence numbers below the highest one heard from a sender are still accepted once (the
        /// reordering that one sender's pool of Redis connections can cause); older ones are refused as replays.
        /// Memory: one bit each per active sender. Default 65,536.
        public var replayReorderWindow: Int
        /// Senders (server instances) remembered per subscription for replay detection; the least recently heard
        /// is forgotten beyond it. Default 256.
        public var maximumTrackedSenders: Int

        public init(
            deliveryBufferSize: Int = 10_000,
            publishQueueLimit: Int = 10_000,
            canaryInterval: Duration = .seconds(1),
            canaryTimeout: Duration = .seconds(3),
            maximumMessageBytes: Int = 1 << 20,
            freshnessWindow: Duration = .seconds(30),
            replayReorderWindow: Int = 65_536,
            maximumTrackedSenders: Int = 256
        ) {
            self.deliveryBufferSize = max(1, deliveryBufferSize)
            self.publishQueueLimit = max(0, publishQueueLimit)
            self.canaryInterval = canaryInterval
            self.canaryTimeout = canaryTimeout
            self.maximumMessageBytes = maximumMessageBytes
            self.freshnessWindow = max(.seconds(1), freshnessWindow)
            self.replayReorderWindow = max(64, replayReorderWindow)
            self.maximumTrackedSenders = max(1, maximumTrackedSenders)
        }

        /// The replay guard's limits.
        var replayLimits: BusReplayGuard.Limits {
            .init(window: freshnessWindow, reorderWindow: replayReorderWindow, maximumSenders: maximumTrackedSenders)
        }
    }

    let client: RedisClient
    let prefix: String
    let options: Options
    let signer: BusSigner
    private let counters = Mutex<Counters>(Counters())
    private let queue = Mutex<PublishQueue>(PublishQueue())
    private let subscriptions = Mutex<[ObjectIdentifier: RedisBusSubscription]>([:])
    private let listener = Mutex<Int?>(nil)

    struct Counters {
        /// Every refused message, whatever the reason.
        var refusedMessages = 0
        var staleMessages = 0
        var replayedMessages = 0
        var droppedPublishes = 0
        var droppedDeliveries = 0
        /// When a refusal was last logged (refusals are logged at most once per 10 s).
        var lastRefusalLog: Timestamp?
        var refusalsSinceLog = 0
    }

    /// Why a message from Redis was refused (the `reason` of `realtime_redis_bus_refused_messages_total`).
    enum Refusal: String {
        /// A bad or missing MAC, no stamp, a malformed body, or a body sealed for another channel.
        case invalid
        /// Sent more than ``Options/freshnessWindow`` away from now.
        case stale
        /// A sequence number this subscription already heard from its sender (or too far behind).
        case replayed
    }

    /// Publishes waiting for Redis, unsealed: they are stamped when sent, so an outage does not make them stale.
    private struct PublishQueue {
        /// Each publish waiting: its channel, its positions prefix (``RecordedPayload/prefix(_:)``, empty for
        /// none) and its unsealed body (sealed when sent, so its send time is fresh).
        var items = Deque<(channel: String, positions: [UInt8], body: [UInt8])>()
        var flushing = false
    }

    /// - Parameters:
    ///   - client: the Redis client for publishing; subscriptions open their own pub/sub connection with its
    ///     configuration.
    ///   - clusterSecret: the HMAC key shared by every server of the cluster (at least 16 bytes).
    ///   - prefix: the prefix of every channel.
    ///   - options: the bus's buffers, canary timing and message size limit.
    /// - Throws: `RealtimeError.Code.invalidConfiguration` if the secret is shorter than 16 bytes.
    public init(
        client: RedisClient,
        clusterSecret: some Collection<UInt8>,
        prefix: String = "rthub:",
        options: Options = Options()
    ) throws(RealtimeError) {
        guard clusterSecret.count >= 16 else {
            throw RealtimeError(.invalidConfiguration, "the cluster secret must have at least 16 bytes")
        }
        self.client = client
        self.prefix = prefix
        self.options = options
        self.signer = BusSigner(secret: Array(clusterSecret))
        let id = client.addConnectListener { [weak self] in self?.flush() }
        listener.withLock { $0 = id }
    }

    deinit {
        if let id = listener.withLock({ $0 }) { client.removeConnectListener(id) }
    }

    /// The Redis channel of a route (hash-tagged on a cluster, see the type's documentation).
    public func channel(for route: BusRoute) -> String {
        Self.channel(for: route, prefix: prefix, sharded: client.usesShardedPubSub)
    }

    /// `SPUBLISH` on a cluster (sharded pub/sub), `PUBLISH` on one node.
    var publishCommandName: String { client.usesShardedPubSub ? "SPUBLISH" : "PUBLISH" }

    /// `false` with sharded pub/sub (each route's channel lives on its own shard, read independently): one
    /// publisher's messages stay in order within a route only. `true` on one node and with classic pub/sub.
    public var ordersAcrossRoutes: Bool { !client.usesShardedPubSub }

    /// The glob pattern (`PSUBSCRIBE`) of every user's channel, with the prefix's glob characters escaped.
    var userChannelPattern: String {
        var pattern = ""
        for character in "\(prefix)bus:user:" {
            if "*?[]\\".contains(character) { pattern.append("\\") }
            pattern.append(character)
        }
        return pattern + "*"
    }

    /// The sealed Redis payload of `message` for `channel` (by default its route's channel); for tests that play
    /// an attacker replaying genuine payloads.
    /// `sentAt` dates it (default now), for tests of stale messages.
    package func sealedPayload(
        _ message: BusMessage,
        channel: String? = nil,
        alsoAdmins: Bool = false,
        sentAt: Timestamp? = nil
    ) -> [UInt8] {
        signer.seal(
            channel: channel ?? self.channel(for: message.route),
            body: RedisBusCodec.encode(message, alsoAdmins: alsoAdmins),
            sentAt: sentAt
        )
    }

    static func affinity(_ channel: String) -> Int {
        // A stable hash (not `hashValue`, which is seeded per process) so one channel always uses one connection.
        var hash: UInt64 = 14_695_981_039_346_656_037
        for byte in channel.utf8 { hash = (hash ^ UInt64(byte)) &* 1_099_511_628_211 }
        return Int(truncatingIfNeeded: hash)
    }

    public func publish(_ message: BusMessage) async throws(RealtimeError) {
        try await publish(message, alsoAdmins: false)
    }

    /// Publishes `messages` in order. On one node, a user-scoped event's pair of routes (`BusRoute.user(_:)` then
    /// `BusRoute.admins`, same origin and event) becomes one `PUBLISH` on the user's channel marked as standing
    /// for the admins route too, which subscriptions with interest in the admins route hear through their pattern
    /// subscription; with sharded pub/sub each route is its own `SPUBLISH`.
    public func publish(_ messages: [BusMessage]) async throws(RealtimeError) {
        if !client.usesShardedPubSub, Self.isUserEventPair(messages[...]) {
            try await publish(messages[0], alsoAdmins: true, adminsPosition: messages[1].position)
            return
        }
        try await publishEach(messages)
    }

    /// Publishes one message (with `alsoAdmins`, standing for the admins route too). A message that carries its
    /// history position (recorded by a store outside the append script, e.g. while publishes queue) is published
    /// with it, in the append script's form (``RecordedPayload``), so other servers' clients get it as well;
    /// `adminsPosition` is the admins route's position of a pair.
    private func publish(
        _ message: BusMessage,
        alsoAdmins: Bool,
        adminsPosition: StreamPosition? = nil
    ) async throws(RealtimeError) {
        let channel = channel(for: message.route)
        let body = RedisBusCodec.encode(message, alsoAdmins: alsoAdmins)
        let positions = RecordedPayload.prefix(
            message.position.map { [$0] + (alsoAdmins ? adminsPosition.map { [$0] } ?? [] : []) } ?? []
        )
        let queued = queue.withLock { queue in
            // While older publishes wait, newer ones queue behind them to keep the order.
            guard !queue.items.isEmpty || queue.flushing else { return false }
            enqueue(&queue, channel: channel, positions: positions, body: body)
            return true
        }
        if queued {
            if client.isConnected { flush() }
            return
        }
        do {
            _ = try await client.send(
                publishCommand(channel: channel, positions: positions, body: body),
                affinity: Self.affinity(channel)
            )
        } catch {
            guard error.code == .backendUnavailable || error.code == .timeout,
                !(error.underlying is RedisServerError)
            else { throw error }
            queue.withLock { enqueue(&$0, channel: channel, positions: positions, body: body) }
            if client.isConnected { flush() }
        }
    }

    /// `PUBLISH` (or `SPUBLISH`) of `body`, sealed now, after its positions prefix.
    private func publishCommand(channel: String, positions: [UInt8], body: [UInt8]) -> RedisCommand {
        var command = RedisCommand(publishCommandName, channel)
        let sealed = signer.seal(channel: channel, body: body)
        command.append(bytes: positions.isEmpty ? sealed : positions + sealed)
        return command
    }

    private func enqueue(_ queue: inout PublishQueue, channel: String, positions: [UInt8], body: [UInt8]) {
        queue.items.append((channel, positions, body))
        while queue.items.count > options.publishQueueLimit {
            queue.items.removeFirst()
            counters.withLock { $0.droppedPublishes += 1 }
            client.metrics.droppedPublishes.increment()
        }
    }

    /// Sends the queued publishes in order; what fails again goes back to the front of the queue.
    private func flush() {
        let batch: [(channel: String, positions: [UInt8], body: [UInt8])]? = queue.withLock { queue in
            guard !queue.flushing, !queue.items.isEmpty else { return nil }
            queue.flushing = true
            let items = Array(queue.items)
            queue.items.removeAll()
            return items
        }
        guard let batch else { return }
        let futures = batch.map { item in
            client.sendFuture(
                publishCommand(channel: item.channel, positions: item.positions, body: item.body),
                affinity: Self.affinity(item.channel)
            )
        }
        let loop = client.eventLoopGroup.any()
        EventLoopFuture.whenAllComplete(futures, on: loop).whenComplete { results in
            let outcomes = (try? results.get()) ?? []
            var failed: [(channel: String, positions: [UInt8], body: [UInt8])] = []
            for (item, outcome) in zip(batch, outcomes) {
                if case .failure = outcome { failed.append(item) }
            }
            let again = self.queue.withLock { queue in
                queue.flushing = false
                for item in failed.reversed() { queue.items.prepend(item) }
                while queue.items.count > self.options.publishQueueLimit {
                    queue.items.removeFirst()
                    self.counters.withLock { $0.droppedPublishes += 1 }
                    self.client.metrics.droppedPublishes.increment()
                }
                return failed.isEmpty && !queue.items.isEmpty
            }
            if again { self.flush() }
        }
    }

    public func subscribe(server: ServerID) async throws(RealtimeError) -> any EventBusSubscription {
        await subscribe(server: server, handler: nil)
    }

    /// A subscription that hands every delivery to `handler` on its pub/sub connection's event loop, right after
    /// verifying and decoding it, instead of buffering it for `EventBusSubscription.deliveries` (which yields
    /// nothing and finishes on `EventBusSubscription.close()`): one thread hop less per message than a consumer
    /// task. `handler` runs on the event loop and must not block.
    public func subscribe(
        server: ServerID,
        handler: @escaping @Sendable (BusDelivery) -> Void
    ) async throws(RealtimeError) -> any EventBusSubscription {
        await subscribe(server: server, handler: Optional(handler))
    }

    private func subscribe(
        server: ServerID,
        handler: (@Sendable (BusDelivery) -> Void)?
    ) async -> any EventBusSubscription {
        let subscription = RedisBusSubscription(bus: self, server: server, handler: handler)
        subscriptions.withLock { $0[ObjectIdentifier(subscription)] = subscription }
        await subscription.start()
        return subscription
    }

    func closed(_ subscription: RedisBusSubscription) {
        _ = subscriptions.withLock { $0.removeValue(forKey: ObjectIdentifier(subscription)) }
    }

    /// Counts a delivery dropped because the subscription's buffer was full.
    func countDroppedDelivery() {
        counters.withLock { $0.droppedDeliveries += 1 }
        client.metrics.droppedDeliveries.increment()
    }

    /// Counts a message refused on `channel` and logs it, at most once per 10 s (with the number refused since the
    /// last line), so a flood of replays cannot flood the log.
    func refuse(_ reason: Refusal, channel: [UInt8]) {
        let now = Timestamp.now()
        let report: (Counters, Int)? = counters.withLock { counters in
            counters.refusedMessages += 1
            if reason == .stale { counters.staleMessages += 1 }
            if reason == .replayed { counters.replayedMessages += 1 }
            counters.refusalsSinceLog += 1
            if let last = counters.lastRefusalLog, now - last < .seconds(10) { return nil }
            defer {
                counters.lastRefusalLog = now
                counters.refusalsSinceLog = 0
            }
            return (counters, counters.refusalsSinceLog)
        }
        client.metrics.refused(reason).increment()
        guard let (totals, sinceLog) = report else { return }
        client.logger.warning(
            "refused a Redis bus message",
            metadata: [
                "reason": "\(reason.rawValue)",
                "channel": "\(String(decoding: channel, as: UTF8.self))",
                "refusedSinceLastReport": "\(sinceLog)",
                "refusedTotal": "\(totals.refusedMessages)",
                "staleTotal": "\(totals.staleMessages)",
                "replayedTotal": "\(totals.replayedMessages)",
            ]
        )
    }

    /// Whether publishes wait for Redis to come back (``statistics``' `queuedPublishes` is not zero), under one lock.
    var hasQueuedPublishes: Bool { queue.withLock { !$0.items.isEmpty } }

    /// Counters since the bus was created.
    package var statistics:
        (
            refusedMessages: Int, staleMessages: Int, replayedMessages: Int, droppedPublishes: Int,
            queuedPublishes: Int, droppedDeliveries: Int
        )
    {
        let counters = counters.withLock { $0 }
        let queued = queue.withLock { $0.items.count }
        return (
            counters.refusedMessages, counters.staleMessages, counters.replayedMessages, counters.droppedPublishes,
            queued, counters.droppedDeliveries
        )
    }

    /// Unhealthy when a subscription is disconnected or its canary stopped coming back; degraded when publishes
    /// wait in the queue or the publishing pool is partly down.
    public func healthCheck() async -> ComponentHealth {
        let pool = await client.healthCheck()
        let stats = statistics
        var status = pool.status
        var details: JSONObject = [
            "redisConnected": .bool(client.isConnected),
            "queuedPublishes": .int(Int64(stats.queuedPublishes)),
            "droppedPublishes": .int(Int64(stats.droppedPublishes)),
            "refusedMessages": .int(Int64(stats.refusedMessages)),
            "staleMessages": .int(Int64(stats.staleMessages)),
            "replayedMessages": .int(Int64(stats.replayedMessages)),
            "droppedDeliveries": .int(Int64(stats.droppedDeliveries)),
        ]
        if stats.queuedPublishes > 0 { status = max(status, .degraded) }
        var reports: [JSONValue] = []
        for subscription in subscriptions.withLock({ Array($0.values) }) {
            let health = subscription.health()
            status = max(status, health.status)
            reports.append(.object(health.details))
        }
        details["subscriptions"] = .array(reports)
        return ComponentHealth(status: status, details: details)
    }
}
