import RealtimeCore
import RealtimeTesting
import Testing

/// `RealtimeHub.publish(_:)` with a batch: all or nothing, in order, one shared frame per event, and the bus gets
/// every message.
@Suite struct BatchPublishingTests {
    let fixture = HubFixture()

    @Test(.timeLimit(.minutes(1))) func aBatchIsDeliveredInOrderWithOneReceiptPerEvent() async throws {
        let hub = try fixture.hub()
        let alice = try await hub.connectClient(token: "alice-token")
        let bob = try await hub.connectClient(token: "bob-token")
        try await alice.subscribe(["security.*"])
        try await bob.subscribe(["security.*"])
        let subscription = try await fixture.bus.subscribe(server: "srv_observer")
        let events = (0..<5).map { index in
            RealtimeEvent(type: "security.batch.item", data: ["n": .int(Int64(index))], scope: .everyone)
        }
        let receipts = try await hub.publish(events + [RealtimeEvent(type: "security.batch.alice", userID: "alice")])
        #expect(receipts.map(\.id) == events.map(\.id) + [receipts[5].id])
        #expect(receipts.map(\.localDeliveries) == [2, 2, 2, 2, 2, 1])
        #expect(receipts.allSatisfy { $0.publishedToCluster })

        let aliceEvents = try await alice.drainUntilPong().filter { $0["type"]?.stringValue == "event" }
        let bobEvents = try await bob.drainUntilPong().filter { $0["type"]?.stringValue == "event" }
        #expect(aliceEvents.compactMap { $0["payload"]?["data"]?["n"]?.intValue } == [0, 1, 2, 3, 4])
        #expect(aliceEvents.last?["payload"]?["type"]?.stringValue == "security.batch.alice")
        #expect(bobEvents.compactMap { $0["payload"]?["id"]?.stringValue } == events.map(\.id))

        // The other servers get every event, in order (everyone-scoped ones on the everyone route).
        var onBus: [String] = []
        for await delivery in subscription.deliveries {
            if case .message(let message) = delivery, case .event(let event) = message.payload {
                onBus.append(event.id)
            }
            if onBus.count == 5 { break }
        }
        #expect(onBus == events.map(\.id))
        await subscription.close()
    }

    @Test func aRefusedEventRefusesTheWholeBatchAndNamesItsIndex() async throws {
        let hub = try fixture.hub()
        let alice = try await hub.connectClient(token: "alice-token")
        try await alice.subscribe(["*"])
        func good() -> RealtimeEvent { RealtimeEvent(type: "security.batch.item", scope: .everyone) }
        // `authentication.*` without a user is refused by the scope policy.
        let bad = RealtimeEvent(type: "authentication.login.success")
        let error = await #expect(throws: RealtimeError.self) { try await hub.publish([good(), good(), bad]) }
        #expect(error?.code == .userRequired)
        #expect(error?.message.hasPrefix("events[2]: ") == true)
        // Two events with one id: clients would take them for one event delivered twice.
        let once = good()
        let repeated = await #expect(throws: RealtimeError.self) { try await hub.publish([once, good(), once]) }
        #expect(repeated?.code == .invalidArgument)
        #expect(repeated?.message == "events[2]: its id '\(once.id)' is also the id of events[0]")
        #expect(try await alice.drainUntilPong().filter { $0["type"]?.stringValue == "event" }.isEmpty)
    }

    @Test func aBatchAboveTheBoundIsRefused() async throws {
        let hub = try fixture.hub()
        let events = Array(
            repeating: RealtimeEvent(type: "security.batch.item", scope: .everyone),
            count: RealtimeHub.maxEventsPerBatch + 1
        )
        let error = await #expect(throws: RealtimeError.self) { try await hub.publish(events) }
        #expect(error?.code == .invalidArgument)
        #expect(try await hub.publish([]).isEmpty)
    }
}
