import RealtimeTesting
import Synchronization
import Testing

@testable import RealtimeCore

/// What the hub publishes when history cannot record an event (seventh probe): an event too large for a history
/// entry is refused before anything is published, and a bus that failed part-way is not asked to publish again what
/// it already published.
@Suite(.timeLimit(.minutes(1))) struct HistoryPublishFailureTests {
    let fixture = HubFixture()

    /// The bus's next message about a history test event, its number.
    static func nextNumber(_ iterator: inout AsyncStream<BusDelivery>.Iterator) async -> (Int64?, BusMessage?) {
        while let delivery = await iterator.next() {
            guard case .message(let message) = delivery, case .event(let event) = message.payload,
                let number = event.data["n"]?.intValue
            else { continue }
            return (number, message)
        }
        return (nil, nil)
    }

    static func event(_ number: Int, padding: Int = 0) -> RealtimeEvent {
        var data: JSONObject = ["n": .int(Int64(number))]
        if padding > 0 { data["pad"] = .string(String(repeating: "x", count: padding)) }
        return RealtimeEvent(type: "security.test.history", userID: "alice", data: data)
    }

    @Test func anEventTooLargeForAHistoryEntryIsRefusedAndNothingIsPublished() async throws {
        var history = HistoryConfiguration()
        history.maxEntryBytes = 1024
        let store = try InMemoryHistoryStore(configuration: history)
        let hub = try fixture.hub(historyStore: store) { $0.history = history }
        let listener = try await fixture.bus.subscribe(server: "srv-listener")
        try await listener.addInterest(.user("alice"))
        let batch = await #expect(throws: RealtimeError.self) {
            try await hub.publish([Self.event(1), Self.event(2, padding: 2000)])
        }
        #expect(batch?.code == .invalidArgument)
        #expect(batch?.message.hasPrefix("events[1]: the event's frame of") == true, "\(batch?.message ?? "")")
        let single = await #expect(throws: RealtimeError.self) { try await hub.publish(Self.event(3, padding: 2000)) }
        #expect(single?.code == .invalidArgument)
        #expect(try await store.position(of: .user("alice")).offset == 0, "nothing recorded")
        try await hub.publish(Self.event(4))
        var iterator = listener.deliveries.makeAsyncIterator()
        let (number, message) = await Self.nextNumber(&iterator)
        #expect(number == 4, "the refused events reached no other server")
        #expect(message?.position?.offset == 1)
        await listener.close()
    }

    @Test func aBusThatFailedPartWayIsNotAskedToPublishItsMessagesAgain() async throws {
        let bus = FailingAfterFirstStepBus(inner: fixture.bus)
        let store = try InMemoryHistoryStore()
        let hub = try fixture.hub(eventBus: bus, historyStore: store)
        let listener = try await fixture.bus.subscribe(server: "srv-listener")
        try await listener.addInterest(.user("alice"))
        try await listener.addInterest(.admins)
        let receipts = try await hub.publish([Self.event(1), Self.event(2)])
        #expect(receipts.count == 2)
        // Each event has two routes (the user's and the administrators'): four messages, the first of which the
        // bus published (with its position) before failing; the other three are published without one.
        var heard: [String] = []
        var iterator = listener.deliveries.makeAsyncIterator()
        while heard.count < 4 {
            let (number, message) = await Self.nextNumber(&iterator)
            guard let number, let message else { break }
            heard.append("\(number) \(message.route) \(message.position == nil ? "-" : "p")")
        }
        #expect(heard == ["1 user:alice p", "1 admins -", "2 user:alice -", "2 admins -"])
        // Nothing more: a fifth message would be a duplicate. The next publish is the next thing heard.
        bus.failing = false
        try await hub.publish(Self.event(3))
        let (next, _) = await Self.nextNumber(&iterator)
        #expect(next == 3)
        await listener.close()
    }
}

/// An in-memory bus whose record-and-publish step fails after its first message, as a Redis bus does when Redis
/// fails between two scripts.
final class FailingAfterFirstStepBus: HistoryRecordingEventBus {
    let inner: InMemoryEventBus
    private let state = Mutex(true)
    var failing: Bool {
        get { state.withLock { $0 } }
        set { state.withLock { $0 = newValue } }
    }

    init(inner: InMemoryEventBus) { self.inner = inner }

    func recordAndPublish(_ messages: [BusMessage], in history: any HistoryStore) async throws(RealtimeError)
        -> [BusMessage]?
    {
        guard failing, messages.count > 1 else { return try await inner.recordAndPublish(messages, in: history) }
        let first = try await inner.recordAndPublish([messages[0]], in: history) ?? []
        throw RealtimeError(
            .backendUnavailable,
            "failed after one step",
            underlying: PartiallyPublished(published: first)
        )
    }

    func publish(_ message: BusMessage) async throws(RealtimeError) { try await inner.publish(message) }
    func publish(_ messages: [BusMessage]) async throws(RealtimeError) { try await inner.publish(messages) }
    func subscribe(server: ServerID) async throws(RealtimeError) -> any EventBusSubscription {
        try await inner.subscribe(server: server)
    }
}
