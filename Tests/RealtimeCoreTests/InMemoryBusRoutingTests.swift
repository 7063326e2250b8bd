import RealtimeCore
import RealtimeTesting
import Testing

/// The in-memory bus's listeners per route (kept in subscription order as interest changes) and its publish of
/// several messages in one step.
@Suite(.timeLimit(.minutes(1))) struct InMemoryBusRoutingTests {
    func message(_ label: String, route: BusRoute) -> BusMessage {
        BusMessage(origin: "srv_test", route: route, payload: .control(.disconnectUser(userID: "u", reason: label)))
    }

    /// The labels of the messages `subscription` buffered, taking them.
    func heard(_ subscription: InMemoryEventBusSubscription) async -> [String] {
        var labels: [String] = []
        var iterator = subscription.deliveries.makeAsyncIterator()
        for _ in 0..<subscription.bufferedCount {
            guard case .message(let message) = await iterator.next(),
                case .control(.disconnectUser(_, let reason)) = message.payload
            else { continue }
            labels.append(reason)
        }
        return labels
    }

    @Test func interestIsCountedPerRouteAndSubscription() async throws {
        let bus = InMemoryEventBus()
        let first = try bus.open(server: "srv_a")
        let second = try bus.open(server: "srv_b")
        // Interest added in the other order than the subscriptions were opened, twice by one of them.
        try await second.addInterest(.user("u1"))
        try await first.addInterest(.user("u1"))
        try await first.addInterest(.user("u1"))
        try await first.addInterest(.admins)
        try await bus.publish(message("1", route: .user("u1")))
        try await first.removeInterest(.user("u1"))
        try await bus.publish(message("2", route: .user("u1")))
        try await first.removeInterest(.user("u1"))
        try await bus.publish(message("3", route: .user("u1")))
        try await second.removeInterest(.user("u1"))
        try await bus.publish(message("4", route: .user("u1")))
        try await bus.publish(message("5", route: .admins))
        #expect(await heard(first) == ["1", "2", "5"])
        #expect(await heard(second) == ["1", "2", "3"])
        await first.close()
        try await second.addInterest(.admins)
        try await bus.publish(message("6", route: .admins))
        #expect(await heard(second) == ["6"], "the closed subscription left the listeners, the other joined them")
        #expect(first.bufferedCount == 0)
        #expect(bus.publishedCount == 6)
        await second.close()
    }

    @Test func aServerHearsItsChannelThroughItsServerAndThroughInterest() async throws {
        let bus = InMemoryEventBus()
        let own = try bus.open(server: "srv_a")
        let other = try bus.open(server: "srv_b")
        try await other.addInterest(.server("srv_a"))
        try await bus.publish(message("to a", route: .server("srv_a")))
        try await bus.publish(message("to b", route: .server("srv_b")))
        #expect(await heard(own) == ["to a"])
        #expect(await heard(other) == ["to a", "to b"])
        await own.close()
        await other.close()
    }

    @Test func severalMessagesArePublishedInOrderInOneStep() async throws {
        let bus = InMemoryEventBus()
        let subscription = try bus.open(server: "srv_a")
        try await subscription.addInterest(.user("u1"))
        try await subscription.addInterest(.admins)
        try await bus.publish([
            message("user", route: .user("u1")), message("admins", route: .admins),
            message("nobody", route: .user("u2")), message("all", route: .everyone),
        ])
        #expect(bus.publishedCount == 4)
        #expect(await heard(subscription) == ["user", "admins", "all"])
        await subscription.close()
    }
}
