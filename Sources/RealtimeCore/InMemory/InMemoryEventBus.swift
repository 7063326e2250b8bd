import DequeModule
import Synchronization

/// An ``EventBus`` inside one process: several hubs sharing one instance behave like a cluster.
///
/// ``publish(_:)`` hands the message, under one lock, to every open subscription that hears its route, the
/// publisher's own subscription included (the hub ignores its own messages by ``BusMessage/origin``). Every
/// subscription therefore sees all messages in one global order, which implies the per-publisher order the
/// protocol requires.
///
/// Each subscription buffers at most `bufferCapacity` deliveries for its consumer. A message that does not
/// fit is dropped and counted; once the consumer has taken what was buffered, it receives one
/// ``BusDelivery/gap(from:to:)`` covering the dropped messages, so memory stays bounded however slow the
/// consumer is.
///
/// ```swift
/// let bus = InMemoryEventBus()
/// let subscription = try await bus.subscribe(server: "srv_a")
/// try await subscription.addInterest(.user("u1"))
/// for await delivery in subscription.deliveries { … }
/// ```
public final class InMemoryEventBus: EventBus {
    private let state = Mutex(BusState())
    private let now: @Sendable () -> Timestamp
    /// The most deliveries a subscription buffers before it drops messages.
    public let bufferCapacity: Int

    /// Creates a bus.
    /// - Parameters:
    ///   - bufferCapacity: The most deliveries each subscription buffers for a slow consumer (at least 2:
    ///     room for a gap marker and a message).
    ///   - now: The wall clock stamping ``BusDelivery/gap(from:to:)`` deliveries.
    public init(bufferCapacity: Int = 10_000, now: @escaping @Sendable () -> Timestamp = Timestamp.now) {
        precondition(bufferCapacity >= 2, "a bus subscription must buffer at least two deliveries")
        self.bufferCapacity = bufferCapacity
        self.now = now
    }

    public func publish(_ message: BusMessage) async throws(RealtimeError) {
        let now = self.now()
        let handoffs = state.withLock { state in
            var handoffs: [Handoff] = []
            state.deliver(message, at: now, handingOff: &handoffs)
            return handoffs
        }
        Self.resume(handoffs)
    }

    /// Publishes `messages` in order under one acquisition of the bus's lock (a user-scoped event's two routes are
    /// one call): every subscription hears them in this order, with no other publish between them.
    public func publish(_ messages: [BusMessage]) async throws(RealtimeError) {
        let now = self.now()
        let handoffs = state.withLock { state in
            var handoffs: [Handoff] = []
            for index in messages.indices { state.deliver(messages[index], at: now, handingOff: &handoffs) }
            return handoffs
        }
        Self.resume(handoffs)
    }

    /// Wakes the consumers that were waiting for the deliveries handed to them, after the bus's lock is released
    /// (resuming a task schedules it, which the lock need not cover). Each consumer's deliveries stay in order:
    /// the one handed off was taken from its buffer first, and the consumer takes the rest after it.
    private static func resume(_ handoffs: [Handoff]) {
        for (waiter, delivery) in handoffs { waiter.resume(returning: delivery) }
    }

    /// Publishes `messages` after `record` gave them their positions, all under the bus's lock, so every
    /// subscription hears a stream's messages in the order of their offsets. Nothing is published if `record`
    /// throws.
    func publish(
        _ messages: [BusMessage],
        recordingWith record: (inout [BusMessage]) throws(RealtimeError) -> Void
    ) throws(RealtimeError) -> [BusMessage] {
        let now = self.now()
        let (recorded, handoffs) = try state.withLock { state throws(RealtimeError) in
            var recorded = messages
            try record(&recorded)
            var handoffs: [Handoff] = []
            for index in recorded.indices { state.deliver(recorded[index], at: now, handingOff: &handoffs) }
            return (recorded, handoffs)
        }
        Self.resume(handoffs)
        return recorded
    }

    public func subscribe(server: ServerID) async throws(RealtimeError) -> any EventBusSubscription {
        try open(server: server)
    }

    /// Opens a subscription, returning the concrete type (its ``InMemoryEventBusSubscription/close()`` and
    /// counters are then available without a cast).
    public func open(server: ServerID) throws(RealtimeError) -> InMemoryEventBusSubscription {
        state.withLock { state in
            state.nextID += 1
            let subscription = InMemoryEventBusSubscription(
                id: state.nextID,
                server: server,
                bus: self,
                capacity: bufferCapacity
            )
            state.subscriptions[subscription.id] = subscription
            state.byServer[server, default: []].insert(subscription.id)
            return subscription
        }
    }

    /// The number of open subscriptions.
    package var subscriptionCount: Int { state.withLock { $0.subscriptions.count } }

    /// Messages published on this bus.
    package var publishedCount: Int { state.withLock { $0.published } }

    /// Messages dropped by all open subscriptions because their buffers were full.
    package var droppedCount: Int {
        let subscriptions = state.withLock { Array($0.subscriptions.values) }
        return subscriptions.reduce(0) { $0 + $1.droppedCount }
    }

    /// Messages handed to the consumers of all open subscriptions.
    package var deliveredCount: Int {
        let subscriptions = state.withLock { Array($0.subscriptions.values) }
        return subscriptions.reduce(0) { $0 + $1.deliveredCount }
    }

    fileprivate func changeInterest(
        _ subscription: InMemoryEventBusSubscription,
        _ route: BusRoute,
        by delta: Int
    ) throws(RealtimeError) {
        try state.withLock { state throws(RealtimeError) in
            guard state.subscriptions[subscription.id] != nil else {
                if delta > 0 { throw RealtimeError(.shutDown, "the bus subscription is closed") }
                return
            }
            let key = RouteInterest(subscription: subscription.id, route: route)
            let count = max(0, (state.interestCounts[key] ?? 0) + delta)
            if count == 0 {
                state.interestCounts[key] = nil
                state.removeInterest(of: subscription.id, in: route)
            } else {
                state.interestCounts[key] = count
                state.addInterest(of: subscription, in: route)
            }
        }
    }

    fileprivate func remove(_ subscription: InMemoryEventBusSubscription) {
        state.withLock { state in
            guard state.subscriptions.removeValue(forKey: subscription.id) != nil else { return }
            state.byServer[subscription.server]?.remove(subscription.id)
            if state.byServer[subscription.server]?.isEmpty == true { state.byServer[subscription.server] = nil }
            let routes = state.interestCounts.keys.filter { $0.subscription == subscription.id }
            for key in routes {
                state.interestCounts[key] = nil
                state.removeInterest(of: subscription.id, in: key.route)
            }
        }
    }
}

/// A consumer that was waiting, with the delivery taken for it from its buffer: resumed once the bus's lock is
/// released.
private typealias Handoff = (waiter: CheckedContinuation<BusDelivery?, Never>, delivery: BusDelivery)

private struct RouteInterest: Hashable {
    var subscription: UInt64
    var route: BusRoute
}

private struct BusState {
    var nextID: UInt64 = 0
    var published = 0
    var subscriptions: [UInt64: InMemoryEventBusSubscription] = [:]
    var byServer: [ServerID: Set<UInt64>] = [:]
    /// Subscriptions with a counted interest in a route, in subscription order: kept sorted when interest changes
    /// (rare), so a publish (frequent) walks them without building a set or sorting.
    var interested: [BusRoute: [InMemoryEventBusSubscription]] = [:]
    var interestCounts: [RouteInterest: Int] = [:]

    /// Hands `message` to every subscription hearing its route; adds to `handoffs` the consumers to wake.
    mutating func deliver(_ message: BusMessage, at time: Timestamp, handingOff handoffs: inout [Handoff]) {
        published += 1
        for subscription in subscribers(of: message.route) {
            if let handoff = subscription.enqueue(message, at: time) { handoffs.append(handoff) }
        }
    }

    /// The subscriptions hearing `route`, in subscription order.
    func subscribers(of route: BusRoute) -> [InMemoryEventBusSubscription] {
        var ids: Set<UInt64>
        switch route {
        case .everyone, .control:
            ids = Set(subscriptions.keys)
        case .server(let server):
            ids = byServer[server] ?? []
            ids.formUnion((interested[route] ?? []).lazy.map(\.id))
        case .user, .admins:
            return interested[route] ?? []
        }
        return ids.sorted().compactMap { subscriptions[$0] }
    }

    /// Adds `subscription` to the route's listeners, keeping them in subscription order (nothing if present).
    mutating func addInterest(of subscription: InMemoryEventBusSubscription, in route: BusRoute) {
        var listeners = interested.removeValue(forKey: route) ?? []
        let index = listeners.firstIndex { $0.id >= subscription.id } ?? listeners.endIndex
        if index == listeners.endIndex || listeners[index].id != subscription.id {
            listeners.insert(subscription, at: index)
        }
        interested[route] = listeners
    }

    /// Removes the subscription `id` from the route's listeners, and the route once it has none.
    mutating func removeInterest(of id: UInt64, in route: BusRoute) {
        guard var listeners = interested.removeValue(forKey: route) else { return }
        listeners.removeAll { $0.id == id }
        if !listeners.isEmpty { interested[route] = listeners }
    }
}

/// One server's subscription to an ``InMemoryEventBus``.
///
/// ``deliveries`` is meant for one consumer. If the consuming task is cancelled while it waits, the stream
/// finishes.
public final class InMemoryEventBusSubscription: EventBusSubscription {
    let id: UInt64
    /// The server the subscription belongs to.
    public let server: ServerID
    private let bus: InMemoryEventBus
    private let queue: DeliveryQueue
    public let deliveries: AsyncStream<BusDelivery>

    fileprivate init(
        id: UInt64,
        server: ServerID,
        bus: InMemoryEventBus,
        capacity: Int
    ) {
        self.id = id
        self.server = server
        self.bus = bus
        let queue = DeliveryQueue(capacity: capacity)
        self.queue = queue
        self.deliveries = AsyncStream(unfolding: { await queue.next() })
    }

    public func addInterest(_ route: BusRoute) async throws(RealtimeError) {
        try bus.changeInterest(self, route, by: 1)
    }

    public func removeInterest(_ route: BusRoute) async throws(RealtimeError) {
        try bus.changeInterest(self, route, by: -1)
    }

    /// Removes the subscription from the bus and finishes ``deliveries`` once the consumer has taken what was
    /// already buffered. Closing twice does nothing.
    public func close() async {
        bus.remove(self)
        let waiter = queue.buffer.withLock { buffer in
            buffer.closed = true
            return buffer.takeWaiter()
        }
        waiter?.resume(returning: nil)
    }

    /// Messages dropped because the buffer was full.
    package var droppedCount: Int { queue.buffer.withLock { $0.dropped } }
    /// Deliveries handed to the consumer (messages and gaps).
    package var deliveredCount: Int { queue.buffer.withLock { $0.delivered } }
    /// Deliveries waiting in the buffer.
    package var bufferedCount: Int { queue.buffer.withLock { $0.queue.count } }

    /// Buffers `message`; returns the waiting consumer and the delivery taken for it, for the caller to resume.
    fileprivate func enqueue(_ message: BusMessage, at time: Timestamp) -> Handoff? {
        queue.buffer.withLock { $0.enqueue(message, at: time) }
    }
}

/// The consumer side of a subscription, referenced by its ``AsyncStream``.
private final class DeliveryQueue: Sendable {
    let buffer: Mutex<DeliveryBuffer>

    init(capacity: Int) { buffer = Mutex(DeliveryBuffer(capacity: capacity)) }

    /// The next delivery, waiting for one; `nil` once closed and drained, or when the waiting task is cancelled.
    func next() async -> BusDelivery? {
        let token = UInt64.random(in: 0...UInt64.max)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<BusDelivery?, Never>) in
                let ready: BusDelivery?? = buffer.withLock { buffer in
                    if let delivery = buffer.dequeue() { return .some(delivery) }
                    if buffer.closed || Task.isCancelled { return .some(nil) }
                    buffer.waiter = (token, continuation)
                    return .none
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            let waiter = buffer.withLock { buffer -> CheckedContinuation<BusDelivery?, Never>? in
                guard buffer.waiter?.token == token else { return nil }
                buffer.closed = true
                return buffer.takeWaiter()
            }
            waiter?.resume(returning: nil)
        }
    }
}

/// The bounded queue between the bus and one consumer.
private struct DeliveryBuffer {
    let capacity: Int
    var queue = Deque<BusDelivery>()
    /// The window of dropped messages not yet reported to the consumer.
    var pendingGap: (from: Timestamp, to: Timestamp)?
    var waiter: (token: UInt64, continuation: CheckedContinuation<BusDelivery?, Never>)?
    var closed = false
    var dropped = 0
    var delivered = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func takeWaiter() -> CheckedContinuation<BusDelivery?, Never>? {
        defer { waiter = nil }
        return waiter?.continuation
    }

    /// Buffers a message, or hands it straight to a waiting consumer (returned, to be resumed outside the lock).
    mutating func enqueue(
        _ message: BusMessage,
        at time: Timestamp
    ) -> Handoff? {
        guard !closed else { return nil }
        if var gap = pendingGap {
            // A gap marker must precede the next message: both need room.
            guard queue.count + 2 <= capacity else {
                gap.to = time
                pendingGap = gap
                dropped += 1
                return nil
            }
            queue.append(.gap(from: gap.from, to: gap.to))
            pendingGap = nil
        }
        guard queue.count < capacity else {
            pendingGap = (time, time)
            dropped += 1
            return nil
        }
        queue.append(.message(message))
        if waiter != nil, let delivery = dequeue() {
            return takeWaiter().map { ($0, delivery) }
        }
        return nil
    }

    mutating func dequeue() -> BusDelivery? {
        if let delivery = queue.popFirst() {
            delivered += 1
            return delivery
        }
        if let gap = pendingGap {
            pendingGap = nil
            delivered += 1
            return .gap(from: gap.from, to: gap.to)
        }
        return nil
    }
}
