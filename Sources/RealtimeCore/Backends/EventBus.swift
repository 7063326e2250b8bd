/// Carries events, notifications and control commands between the servers of a cluster.
///
/// A hub publishes each message once per route (a user-scoped event goes to ``BusRoute/user(_:)`` and to
/// ``BusRoute/admins``, in one ``publish(_:)-([BusMessage])`` call) and delivers it to its own connections
/// directly, so its local clients are served even while the bus is down. Each hub opens one
/// ``EventBusSubscription`` and ignores messages it published itself.
///
/// Messages from one publisher on one route must arrive in the order they were published.
///
/// ## Direct delivery
///
/// The hub opens its subscription with ``subscribe(server:handler:)``: every delivery goes to a synchronous
/// handler that only takes locks and never waits. A bus with a read path of its own (a socket read on an event
/// loop, as `RedisEventBus` has) implements it by calling the handler right there, which saves the thread hop
/// of queueing each delivery for the hub's task. A bus that does not implement it gets the default, which hands
/// the deliveries of ``subscribe(server:)`` to the handler from the task that iterates the subscription's
/// ``EventBusSubscription/deliveries``. `EventBusConformance` (RealtimeTesting) checks both ways for every bus.
public protocol EventBus: Sendable {
    /// Publishes a message to every subscription interested in its route.
    func publish(_ message: BusMessage) async throws(RealtimeError)

    /// Publishes messages in order, with the same effect as one ``publish(_:)-(BusMessage)`` per message: every
    /// message is attempted, and the first error is thrown after the others were tried.
    ///
    /// The hub publishes a user-scoped event's two routes (``BusRoute/user(_:)`` then ``BusRoute/admins``) with one
    /// call, so a backend may carry them together: `RedisEventBus` sends that pair as one Redis `PUBLISH` on the
    /// user's channel, which its admin subscriptions also hear. The default implementation publishes one message
    /// after the other.
    func publish(_ messages: [BusMessage]) async throws(RealtimeError)

    /// Opens the subscription of one server. It hears ``BusRoute/everyone``, ``BusRoute/control`` and
    /// ``BusRoute/server(_:)`` for `server` from the start; other routes are added with
    /// ``EventBusSubscription/addInterest(_:)``.
    func subscribe(server: ServerID) async throws(RealtimeError) -> any EventBusSubscription

    /// Opens the subscription of one server as ``subscribe(server:)`` does, with every delivery handed to
    /// `handler` instead of yielded by ``EventBusSubscription/deliveries``.
    ///
    /// `handler` is called for every delivery, in order and never concurrently. It must not block: the hub's
    /// handler only takes locks. The subscription's ``EventBusSubscription/deliveries`` yields nothing and
    /// finishes when the subscription ends; its consumer iterates it until then, and `handler` is not called
    /// after it finished. Nothing the bus receives after ``EventBusSubscription/close()`` is handed over.
    ///
    /// The default implementation calls `handler` from that iteration, for each delivery of
    /// ``subscribe(server:)``: a consumer that does not iterate ``EventBusSubscription/deliveries`` gets
    /// nothing. Implement it when the bus can call `handler` where it reads messages (see "Direct delivery"
    /// above).
    func subscribe(
        server: ServerID,
        handler: @escaping @Sendable (BusDelivery) -> Void
    ) async throws(RealtimeError) -> any EventBusSubscription

    /// The backend's health.
    func healthCheck() async -> ComponentHealth

    /// Whether one publisher's messages reach a subscription in publish order across routes (`true`), or only
    /// within each route (`false`: sharded pub/sub on a Redis Cluster, where routes live on different shards read
    /// independently). Every bus keeps one publisher's order within a route. The hub needs no more than that:
    /// each history stream is one route, and a revocation's close carries its own `session.revoked` event
    /// (``RevocationNotice``). `EventBusConformance.keepsPublishOrderPerPublisher` checks the order a bus claims.
    /// Default: `true`.
    var ordersAcrossRoutes: Bool { get }
}

extension EventBus {
    public func healthCheck() async -> ComponentHealth { .healthy }

    public var ordersAcrossRoutes: Bool { true }

    /// Opens ``subscribe(server:)`` and hands its deliveries to `handler` while the returned subscription's
    /// ``EventBusSubscription/deliveries`` is iterated (see ``subscribe(server:handler:)``).
    public func subscribe(
        server: ServerID,
        handler: @escaping @Sendable (BusDelivery) -> Void
    ) async throws(RealtimeError) -> any EventBusSubscription {
        HandlerSubscription(try await subscribe(server: server), handler: handler)
    }

    public func publish(_ messages: [BusMessage]) async throws(RealtimeError) {
        try await publishEach(messages)
    }

    /// One ``publish(_:)-(BusMessage)`` per message, in order; every message is attempted and the first error is
    /// thrown at the end. What ``publish(_:)-([BusMessage])`` does by default, for backends that override it to
    /// batch some lists and fall back to this for the others.
    package func publishEach(_ messages: [BusMessage]) async throws(RealtimeError) {
        var firstError: RealtimeError?
        for message in messages {
            do {
                try await publish(message)
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
    }
}

/// One server's subscription to the bus.
public protocol EventBusSubscription: Sendable {
    /// What the bus delivers. Finishes when the subscription is closed.
    var deliveries: AsyncStream<BusDelivery> { get }

    /// Starts hearing a route (``BusRoute/user(_:)`` or ``BusRoute/admins``). Interest is counted: two
    /// `addInterest(.user("u1"))` need two `removeInterest(.user("u1"))`.
    ///
    /// When it returns, the interest is in effect: a message published on the route afterwards (by any server)
    /// is delivered. The hub relies on this to make `connect` return only once a user's events are heard.
    func addInterest(_ route: BusRoute) async throws(RealtimeError)

    /// Stops hearing a route once every ``addInterest(_:)`` for it has been matched by a removal.
    func removeInterest(_ route: BusRoute) async throws(RealtimeError)

    /// Closes the subscription and finishes ``deliveries``.
    func close() async
}

/// What the default ``EventBus/subscribe(server:handler:)`` returns: the bus's own subscription, whose deliveries
/// go to the handler from the task that iterates ``deliveries``. That iteration yields nothing and ends when the
/// bus's ``EventBusSubscription/deliveries`` ends (closed, or the iterating task cancelled).
struct HandlerSubscription: EventBusSubscription {
    let base: any EventBusSubscription
    let deliveries: AsyncStream<BusDelivery>

    init(_ base: any EventBusSubscription, handler: @escaping @Sendable (BusDelivery) -> Void) {
        self.base = base
        let source = base.deliveries
        // The first `next()` runs the whole pump, then reports the end; an unfolding stream asks no more after it.
        deliveries = AsyncStream(unfolding: {
            for await delivery in source { handler(delivery) }
            return nil
        })
    }

    func addInterest(_ route: BusRoute) async throws(RealtimeError) { try await base.addInterest(route) }

    func removeInterest(_ route: BusRoute) async throws(RealtimeError) { try await base.removeInterest(route) }

    func close() async { await base.close() }
}
