/// Carries events, notifications and control commands between the servers of a cluster.
///
/// A hub publishes each message once per route (a user-scoped event goes to ``BusRoute/user(_:)`` and to
/// ``BusRoute/admins``, in one ``publish(_:)-([BusMessage])`` call) and delivers it to its own connections
/// directly, so its local clients are served even while the bus is down. Each hub opens one
/// ``EventBusSubscription`` and ignores messages it published itself.
///
/// Messages from one publisher on one route must arrive in the order they were published.
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

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension EventBus {
    public func healthCheck() async -> ComponentHealth { .healthy }

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

/// An ``EventBus`` whose subscriptions can hand each delivery to a synchronous handler on their read path instead
/// of queueing it for ``EventBusSubscription/deliveries``, which saves a thread hop per message. The hub uses it
/// when the bus offers it (the Redis bus does); its handler only takes locks and never waits.
package protocol DirectDeliveryEventBus: EventBus {
    /// Opens the subscription of one server as ``EventBus/subscribe(server:)`` does, but calls `handler` for every
    /// delivery, in order and never concurrently, on the subscription's read path. The subscription's
    /// ``EventBusSubscription/deliveries`` then yields nothing and finishes when the subscription is closed;
    /// nothing read after ``EventBusSubscription/close()`` is handed to `handler`. `handler` must not block.
    func subscribe(
        server: ServerID,
        handler: @escaping @Sendable (BusDelivery) -> Void
    ) async throws(RealtimeError) -> any EventBusSubscription
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
