import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

/// Direct delivery (`EventBus.subscribe(server:handler:)`): the hub subscribes through it for every bus, a bus's own
/// implementation is used without any cast, and the default implementation delivers from the iterating task.
@Suite(.timeLimit(.minutes(1))) struct EventBusHandlerTests {
    @Test func theHubUsesABusOwnHandlerSubscription() async throws {
        let fixture = HubFixture()
        let bus = CountingBus(fixture.bus)
        let hubA = try fixture.hub(eventBus: bus)
        let hubB = try fixture.hub(eventBus: bus)
        try await hubA.running {
            try await hubB.running {
                let aliceOnB = try await hubB.connectClient(token: "alice-token")
                try await aliceOnB.subscribe(["auth.*"])
                _ = try await hubA.publish(RealtimeEvent(type: "auth.login", userID: "alice", data: ["n": 1]))
                let event = try await aliceOnB.next(type: "event")
                #expect(event["payload"]?["data"]?["n"] == 1)
            }
        }
        #expect(bus.plainSubscriptions == 0)
        #expect(bus.handlerSubscriptions == 2)
        #expect(bus.handledDeliveries >= 1)
    }

    @Test func theDefaultHandlerSubscriptionDeliversInOrderWhileIterated() async throws {
        let bus = InMemoryEventBus()
        let received = Mutex<[String]>([])
        let subscription = try await bus.subscribe(server: "srv_b") { delivery in
            guard case .message(let message) = delivery, case .control(.disconnectUser(_, let reason)) = message.payload
            else { return }
            received.withLock { $0.append(reason) }
        }
        let labels = (0..<20).map { "m\($0)" }
        for label in labels {
            try await bus.publish(
                BusMessage(
                    origin: "srv_a",
                    route: .everyone,
                    payload: .control(.disconnectUser(userID: "u", reason: label))
                )
            )
        }
        // Nothing is handed over before `deliveries` is iterated: the default implementation has no task of its own.
        #expect(received.withLock { $0 }.isEmpty)
        async let yielded = Self.count(subscription.deliveries)
        #expect(try await eventually { received.withLock { $0 } == labels })
        await subscription.close()
        #expect(await yielded == 0)
    }

    static func count(_ deliveries: AsyncStream<BusDelivery>) async -> Int {
        var yielded = 0
        for await _ in deliveries { yielded += 1 }
        return yielded
    }

    @Test func theDefaultHandlerSubscriptionEndsWhenItsTaskIsCancelled() async throws {
        let bus = InMemoryEventBus()
        let subscription = try await bus.subscribe(server: "srv_b") { _ in }
        let iterating = Task {
            for await _ in subscription.deliveries {}
        }
        iterating.cancel()
        await iterating.value
        await subscription.close()
        #expect(bus.subscriptionCount == 0)
    }
}

/// A third-party bus (over an in-memory one) that implements the handler subscription itself and counts which
/// way the hub subscribed and how many deliveries went through its own handler path.
private final class CountingBus: EventBus {
    let base: InMemoryEventBus
    private let counts = Mutex<(plain: Int, withHandler: Int, handled: Int)>((0, 0, 0))

    init(_ base: InMemoryEventBus) { self.base = base }

    var plainSubscriptions: Int { counts.withLock { $0.plain } }
    var handlerSubscriptions: Int { counts.withLock { $0.withHandler } }
    var handledDeliveries: Int { counts.withLock { $0.handled } }

    func publish(_ message: BusMessage) async throws(RealtimeError) { try await base.publish(message) }

    func publish(_ messages: [BusMessage]) async throws(RealtimeError) { try await base.publish(messages) }

    func subscribe(server: ServerID) async throws(RealtimeError) -> any EventBusSubscription {
        counts.withLock { $0.plain += 1 }
        return try await base.subscribe(server: server)
    }

    func subscribe(
        server: ServerID,
        handler: @escaping @Sendable (BusDelivery) -> Void
    ) async throws(RealtimeError) -> any EventBusSubscription {
        counts.withLock { $0.withHandler += 1 }
        return try await base.subscribe(server: server) { delivery in
            self.counts.withLock { $0.handled += 1 }
            handler(delivery)
        }
    }
}
