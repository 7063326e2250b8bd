public import RealtimeCore
import Synchronization
import Testing

/// Checks that an `EventBus` keeps every rule of the protocol's contract.
///
/// `makeCluster(n)` returns `n` buses that form one cluster: a message published on one reaches the
/// subscriptions of all (for `InMemoryEventBus`, the same instance `n` times; for a Redis bus, `n`
/// connections to one server and namespace).
///
/// The suite assumes that `EventBusSubscription.addInterest(_:)` and `EventBus.subscribe(server:)` are
/// effective when they return, and checks that a route is *not* heard by publishing a sentinel on the
/// subscription's own `BusRoute.server(_:)` route afterwards from the same publisher: the next message must
/// be the sentinel. `BusDelivery.gap(from:to:)` deliveries are skipped. Waiting for a delivery has no
/// timeout of its own: give the calling `@Test` a `.timeLimit`.
///
/// Each check runs in either ``SubscriptionMode``: with the subscription's own
/// `EventBusSubscription.deliveries`, or with a handler (`EventBus.subscribe(server:handler:)`, the way a hub
/// subscribes), so a bus that implements direct delivery is held to the same contract as the default
/// implementation.
public enum EventBusConformance: Sendable {
    /// A factory of one cluster of `count` buses.
    public typealias MakeCluster = @Sendable (_ count: Int) async throws -> [any EventBus]

    /// How a check opens its subscriptions.
    public enum SubscriptionMode: Sendable, Hashable, CaseIterable {
        /// `EventBus.subscribe(server:)`; the check reads `EventBusSubscription.deliveries`.
        case deliveries
        /// `EventBus.subscribe(server:handler:)`; the check reads what the handler was given, while a task
        /// iterates `EventBusSubscription.deliveries`. The suite records an issue when that stream yields
        /// anything, when the handler is called while another call is running, or after the stream finished.
        case handler
    }

    /// Runs every check in both ``SubscriptionMode``s, each on a new cluster.
    public static func run(makeCluster: MakeCluster) async throws {
        for mode in SubscriptionMode.allCases {
            try await alwaysHearsEveryoneControlAndOwnServer(makeCluster: makeCluster, mode: mode)
            try await routesUserAndAdminsByCountedInterest(makeCluster: makeCluster, mode: mode)
            try await keepsPublishOrderPerPublisher(makeCluster: makeCluster, mode: mode)
            try await publishesABatchAsOneMessagePerRoute(makeCluster: makeCluster, mode: mode)
            try await closeFinishesDeliveries(makeCluster: makeCluster, mode: mode)
        }
    }

    /// A subscription a check opened, and what it delivers in either mode.
    struct Subscribed: Sendable {
        let subscription: any EventBusSubscription
        /// What the bus delivered, in order: the subscription's own stream, or what the handler was given (finished
        /// once the subscription's stream finished).
        let deliveries: AsyncStream<BusDelivery>
        /// In handler mode, the task iterating the subscription's stream (which drives the default implementation).
        let driver: Task<Void, Never>?

        static func open(_ bus: any EventBus, server: ServerID, mode: SubscriptionMode) async throws -> Subscribed {
            switch mode {
            case .deliveries:
                let subscription = try await bus.subscribe(server: server)
                return Subscribed(subscription: subscription, deliveries: subscription.deliveries, driver: nil)
            case .handler:
                let (stream, continuation) = AsyncStream.makeStream(of: BusDelivery.self)
                let calls = Mutex<(running: Bool, streamFinished: Bool)>((false, false))
                let subscription = try await bus.subscribe(server: server) { delivery in
                    let misuse = calls.withLock { calls -> String? in
                        if calls.streamFinished { return "after the subscription's deliveries finished" }
                        if calls.running { return "while another call was running" }
                        calls.running = true
                        return nil
                    }
                    if let misuse { Issue.record("the bus called the delivery handler \(misuse)") }
                    continuation.yield(delivery)
                    calls.withLock { $0.running = false }
                }
                let driver = Task {
                    for await delivery in subscription.deliveries {
                        Issue.record("deliveries yielded \(delivery) although a handler takes them")
                    }
                    calls.withLock { $0.streamFinished = true }
                    continuation.finish()
                }
                return Subscribed(subscription: subscription, deliveries: stream, driver: driver)
            }
        }

        func addInterest(_ route: BusRoute) async throws { try await subscription.addInterest(route) }

        func removeInterest(_ route: BusRoute) async throws { try await subscription.removeInterest(route) }

        /// Closes the subscription and, in handler mode, waits until its stream finished.
        func close() async {
            await subscription.close()
            await driver?.value
        }
    }

    static func message(_ origin: ServerID, _ route: BusRoute, _ label: String) -> BusMessage {
        BusMessage(
            origin: origin,
            route: route,
            payload: .control(.disconnectUser(userID: "conformance", reason: label))
        )
    }

    static func label(of message: BusMessage) -> String? {
        if case .control(.disconnectUser(_, let reason)) = message.payload { return reason }
        return nil
    }

    /// The next message, skipping gaps; `nil` when the stream finished.
    static func nextMessage(_ iterator: inout AsyncStream<BusDelivery>.Iterator) async -> BusMessage? {
        while let delivery = await iterator.next() {
            if case .message(let message) = delivery { return message }
        }
        return nil
    }

    /// Publishes a sentinel on the subscriber's own server route and expects it to be the next message, proving
    /// that nothing else was delivered before it.
    static func expectNothingBefore(
        sentinel publisher: any EventBus,
        from origin: ServerID,
        to server: ServerID,
        _ iterator: inout AsyncStream<BusDelivery>.Iterator,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let sentinel = uniqueName("sentinel")
        try await publisher.publish(message(origin, .server(server), sentinel))
        let next = await nextMessage(&iterator)
        #expect(next.flatMap(label(of:)) == sentinel, sourceLocation: sourceLocation)
    }

    /// Every subscription hears `BusRoute.everyone` and `BusRoute.control` (the publisher's own included),
    /// and `BusRoute.server(_:)` reaches only the named server.
    public static func alwaysHearsEveryoneControlAndOwnServer(
        makeCluster: MakeCluster,
        mode: SubscriptionMode = .deliveries
    ) async throws {
        let buses = try await makeCluster(2)
        let (serverA, serverB) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let subA = try await Subscribed.open(buses[0], server: serverA, mode: mode)
        let subB = try await Subscribed.open(buses[1], server: serverB, mode: mode)
        var itA = subA.deliveries.makeAsyncIterator()
        var itB = subB.deliveries.makeAsyncIterator()

        let broadcast = message(serverA, .everyone, uniqueName("everyone"))
        try await buses[0].publish(broadcast)
        #expect(await nextMessage(&itA) == broadcast)
        #expect(await nextMessage(&itB) == broadcast)

        let control = message(serverB, .control, uniqueName("control"))
        try await buses[1].publish(control)
        #expect(await nextMessage(&itA) == control)
        #expect(await nextMessage(&itB) == control)

        let direct = message(serverA, .server(serverB), uniqueName("direct"))
        try await buses[0].publish(direct)
        #expect(await nextMessage(&itB) == direct)
        try await expectNothingBefore(sentinel: buses[0], from: serverA, to: serverA, &itA)

        await subA.close()
        await subB.close()
    }

    /// `BusRoute.user(_:)` and `BusRoute.admins` are heard only while interest is held, and interest is
    /// counted.
    public static func routesUserAndAdminsByCountedInterest(
        makeCluster: MakeCluster,
        mode: SubscriptionMode = .deliveries
    ) async throws {
        let buses = try await makeCluster(2)
        let (serverA, serverB) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let user = uniqueName("user")
        let subA = try await Subscribed.open(buses[0], server: serverA, mode: mode)
        let subB = try await Subscribed.open(buses[1], server: serverB, mode: mode)
        var itA = subA.deliveries.makeAsyncIterator()
        var itB = subB.deliveries.makeAsyncIterator()

        // No interest yet: not heard.
        try await buses[0].publish(message(serverA, .user(user), "early"))
        try await buses[0].publish(message(serverA, .admins, "early-admins"))
        try await expectNothingBefore(sentinel: buses[0], from: serverA, to: serverB, &itB)

        try await subB.addInterest(.user(user))
        try await subB.addInterest(.user(user))
        try await subB.addInterest(.admins)
        let toUser = message(serverA, .user(user), uniqueName("user"))
        try await buses[0].publish(toUser)
        #expect(await nextMessage(&itB) == toUser)
        let toAdmins = message(serverA, .admins, uniqueName("admins"))
        try await buses[0].publish(toAdmins)
        #expect(await nextMessage(&itB) == toAdmins)
        // Another user's route is not heard; A (no interest) heard none of it.
        try await buses[0].publish(message(serverA, .user(uniqueName("other")), "other"))
        try await expectNothingBefore(sentinel: buses[0], from: serverA, to: serverB, &itB)
        try await expectNothingBefore(sentinel: buses[1], from: serverB, to: serverA, &itA)

        // One of two interests removed: still heard.
        try await subB.removeInterest(.user(user))
        try await subB.removeInterest(.admins)
        let stillHeard = message(serverA, .user(user), uniqueName("still"))
        try await buses[0].publish(stillHeard)
        #expect(await nextMessage(&itB) == stillHeard)
        try await buses[0].publish(message(serverA, .admins, "admins-after-removal"))
        try await expectNothingBefore(sentinel: buses[0], from: serverA, to: serverB, &itB)

        // Both removed: no longer heard.
        try await subB.removeInterest(.user(user))
        try await buses[0].publish(message(serverA, .user(user), "after-removal"))
        try await expectNothingBefore(sentinel: buses[0], from: serverA, to: serverB, &itB)

        // The publisher's own interest delivers to itself too.
        try await subA.addInterest(.user(user))
        let own = message(serverA, .user(user), uniqueName("own"))
        try await buses[0].publish(own)
        #expect(await nextMessage(&itA) == own)

        await subA.close()
        await subB.close()
    }

    /// Messages of one publisher arrive in publish order, even when two publishers interleave: within each route
    /// always, and across routes (a user's route interleaved with everyone's) when the bus claims
    /// ``EventBus/ordersAcrossRoutes``. Nothing is lost or duplicated either way.
    public static func keepsPublishOrderPerPublisher(
        makeCluster: MakeCluster,
        mode: SubscriptionMode = .deliveries
    ) async throws {
        let buses = try await makeCluster(3)
        let (serverA, serverB, serverC) = (
            ServerID(uniqueName("srv")), ServerID(uniqueName("srv")), ServerID(uniqueName("srv"))
        )
        let user = uniqueName("user")
        let subC = try await Subscribed.open(buses[2], server: serverC, mode: mode)
        try await subC.addInterest(.user(user))
        var itC = subC.deliveries.makeAsyncIterator()
        let count = 200
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (bus, origin) in [(buses[0], serverA), (buses[1], serverB)] {
                group.addTask {
                    for index in 0..<count {
                        let route: BusRoute = index.isMultiple(of: 3) ? .everyone : .user(user)
                        try await bus.publish(message(origin, route, "\(index)"))
                    }
                }
            }
            try await group.waitForAll()
        }
        let acrossRoutes = buses[2].ordersAcrossRoutes
        var next: [ServerID: Int] = [serverA: 0, serverB: 0]
        // Per publisher and route: the last index received, and how many.
        var last: [String: Int] = [:]
        var received: [ServerID: Int] = [serverA: 0, serverB: 0]
        for _ in 0..<(2 * count) {
            let message = try #require(await nextMessage(&itC))
            let index = try #require(label(of: message).flatMap { Int($0) })
            let key = "\(message.origin) \(message.route)"
            #expect(index > last[key, default: -1], "out of order on \(message.route) from \(message.origin)")
            last[key] = index
            received[message.origin, default: 0] += 1
            if acrossRoutes {
                #expect(index == next[message.origin], "out of order across routes from \(message.origin)")
                next[message.origin] = index + 1
            }
        }
        // Every message once: per route in increasing order, and as many as were published.
        #expect(received == [serverA: count, serverB: count])
        if acrossRoutes { #expect(next == [serverA: count, serverB: count]) }
        await subC.close()
    }

    /// `EventBus.publish(_:)-([BusMessage])` has the effect of one publish per message: a user-scoped event
    /// published on its user's route and the admins route reaches a subscription once per route it is interested
    /// in, an event published on one of the two routes only reaches that route's subscriptions, and one
    /// publisher's events stay in order on the admins route.
    public static func publishesABatchAsOneMessagePerRoute(
        makeCluster: MakeCluster,
        mode: SubscriptionMode = .deliveries
    ) async throws {
        let buses = try await makeCluster(4)
        let servers = (0..<4).map { _ in ServerID(uniqueName("srv")) }
        let user = uniqueName("user")
        let publisher = servers[0]
        // 1: the user's server, 2: an administrators' server, 3: both.
        let subscriptions = [
            try await Subscribed.open(buses[1], server: servers[1], mode: mode),
            try await Subscribed.open(buses[2], server: servers[2], mode: mode),
            try await Subscribed.open(buses[3], server: servers[3], mode: mode),
        ]
        try await subscriptions[0].addInterest(.user(user))
        try await subscriptions[1].addInterest(.admins)
        try await subscriptions[2].addInterest(.user(user))
        try await subscriptions[2].addInterest(.admins)
        var iterators = subscriptions.map { $0.deliveries.makeAsyncIterator() }

        func event(_ label: String) -> BusPayload {
            .event(RealtimeEvent(type: "conformance.batch", userID: user, data: ["label": .string(label)]))
        }
        func pair(_ payload: BusPayload) -> [BusMessage] {
            [
                BusMessage(origin: publisher, route: .user(user), payload: payload),
                BusMessage(origin: publisher, route: .admins, payload: payload),
            ]
        }

        let both = event(uniqueName("both"))
        try await buses[0].publish(pair(both))
        #expect(await nextMessage(&iterators[0]) == pair(both)[0])
        #expect(await nextMessage(&iterators[1]) == pair(both)[1])
        var heardByBoth = [await nextMessage(&iterators[2]), await nextMessage(&iterators[2])].compactMap { $0?.route }
        heardByBoth.sort { $0.description < $1.description }
        #expect(heardByBoth == [.admins, .user(user)])

        // One route only: the other route's subscriptions hear nothing.
        let userOnly = event(uniqueName("user-only"))
        try await buses[0].publish([BusMessage(origin: publisher, route: .user(user), payload: userOnly)])
        #expect(await nextMessage(&iterators[0])?.payload == userOnly)
        #expect(await nextMessage(&iterators[2])?.route == .user(user))
        try await expectNothingBefore(sentinel: buses[0], from: publisher, to: servers[2], &iterators[1])
        let adminsOnly = event(uniqueName("admins-only"))
        try await buses[0].publish([BusMessage(origin: publisher, route: .admins, payload: adminsOnly)])
        #expect(await nextMessage(&iterators[1])?.payload == adminsOnly)
        #expect(await nextMessage(&iterators[2])?.route == .admins)
        try await expectNothingBefore(sentinel: buses[0], from: publisher, to: servers[1], &iterators[0])
        try await expectNothingBefore(sentinel: buses[0], from: publisher, to: servers[3], &iterators[2])

        // Order on the admins route, user-scoped pairs interleaved with admin-scoped events.
        let count = 60
        for index in 0..<count {
            let payload = event("\(index)")
            if index.isMultiple(of: 3) {
                try await buses[0].publish([BusMessage(origin: publisher, route: .admins, payload: payload)])
            } else {
                try await buses[0].publish(pair(payload))
            }
        }
        for index in 0..<count {
            let received = await nextMessage(&iterators[1])
            guard case .event(let event) = received?.payload else {
                Issue.record("expected event \(index) on the admins route")
                break
            }
            #expect(event.data["label"] == .string("\(index)"))
            #expect(received?.route == .admins)
        }
        for subscription in subscriptions { await subscription.close() }
    }

    /// `EventBusSubscription.close()` finishes `EventBusSubscription.deliveries`, and publishing
    /// afterwards still works for the others.
    public static func closeFinishesDeliveries(
        makeCluster: MakeCluster,
        mode: SubscriptionMode = .deliveries
    ) async throws {
        let buses = try await makeCluster(2)
        let (serverA, serverB) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let subA = try await Subscribed.open(buses[0], server: serverA, mode: mode)
        let subB = try await Subscribed.open(buses[1], server: serverB, mode: mode)
        var itA = subA.deliveries.makeAsyncIterator()
        var itB = subB.deliveries.makeAsyncIterator()
        try await buses[0].publish(message(serverA, .everyone, "before-close"))
        await subB.close()
        // Whatever was buffered may still be delivered, then the stream ends.
        var drained = 0
        while await itB.next() != nil { drained += 1 }
        #expect(drained <= 1)
        #expect(await itB.next() == nil)

        try await buses[0].publish(message(serverA, .everyone, "after-close"))
        #expect(await nextMessage(&itA).flatMap(label(of:)) == "before-close")
        #expect(await nextMessage(&itA).flatMap(label(of:)) == "after-close")
        await subB.close()
        await subA.close()
        #expect(await itA.next() == nil)
    }
}
