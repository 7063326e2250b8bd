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

    /// A client subscribed to everything, its position after event 1 of alice's stream, and the client closed.
    static func positionAfterFirstEvent(_ hub: RealtimeHub) async throws -> String {
        let alice = try await hub.connectClient(token: "alice-token")
        try await alice.subscribe(["*"])
        try await hub.publish(event(1))
        let first = try await alice.next(type: "event")
        let position = try #require(first["payload"]?["position"])
        await alice.close()
        return JSONWriter.string(position)
    }

    /// What a client recovering alice's stream from `position` is told, and the numbers it is replayed.
    static func recover(_ hub: RealtimeHub, from position: String) async throws -> (recovered: JSONValue?, [Int64]) {
        let alice = try await hub.connectClient(token: "alice-token")
        await alice.send(
            #"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":{"user:alice":\#(position)}}}"#
        )
        var numbers: [Int64] = []
        while true {
            let message = try await alice.next()
            if message["type"] == "event", let number = message["payload"]?["data"]?["n"]?.intValue {
                numbers.append(number)
            }
            if message["type"] == "recovered" {
                await alice.close()
                return (message["payload"]?["recovered"], numbers)
            }
        }
    }

    /// Eighth probe H3: an event the history store could not record goes out without a position; a client that
    /// was away then is not replayed the stream without it and told its replay is complete. The hub ends the
    /// stream's epoch (and the administrators', the event's other route) before publishing it.
    @Test func aRecoveryAcrossAnEventPublishedWithoutAPositionIsToldItCannotRecover() async throws {
        let store = ForwardingHistoryStore(inner: try InMemoryHistoryStore())
        let hub = try fixture.hub(historyStore: store)
        let position = try await Self.positionAfterFirstEvent(hub)
        let admins = try await store.position(of: .admins)
        store.failing = [.append]
        let listener = try await fixture.bus.subscribe(server: "srv-listener")
        try await listener.addInterest(.user("alice"))
        try await hub.publish(Self.event(2))
        var iterator = listener.deliveries.makeAsyncIterator()
        let (number, message) = await Self.nextNumber(&iterator)
        #expect(number == 2 && message?.position == nil, "delivered, without a position")
        await listener.close()
        store.failing = []
        try await hub.publish(Self.event(3))
        let (recovered, replayed) = try await Self.recover(hub, from: position)
        #expect(recovered == false, "replayed \(replayed) and told it was complete")
        #expect(try await store.position(of: .admins).epoch != admins.epoch)
        // Both streams (alice's and the administrators'), before the publish and after it.
        #expect(await hub.stats().server.history.resets == 4)
    }

    /// A reset that fails is owed: tried again until it succeeds, counted as pending meanwhile, and a recovery on
    /// this server is not told it is complete while it is owed.
    @Test func aResetThatFailedIsOwedUntilItSucceeds() async throws {
        let store = ForwardingHistoryStore(inner: try InMemoryHistoryStore())
        let hub = try fixture.hub(historyStore: store) { $0.serverHeartbeatInterval = .milliseconds(50) }
        try await hub.running {
            let position = try await Self.positionAfterFirstEvent(hub)
            store.failing = [.append, .reset]
            try await hub.publish(Self.event(2))
            // Retries fail as long as resets do: both streams stay pending.
            #expect(await hub.stats().server.history.resetsPending == 2)
            try await store.waitForResetAttempts(3)
            #expect(await hub.stats().server.history.resetsPending == 2)
            // The store still has the old epoch, without event 2: only the owed reset tells the truth.
            let (owed, _) = try await Self.recover(hub, from: position)
            #expect(owed == false, "recovered across an owed reset")
            store.failing = [.append]
            #expect(try await eventually { await hub.stats().server.history.resetsPending == 0 })
            store.failing = []
            #expect(await hub.stats().server.history.resets == 2)
            let (recovered, _) = try await Self.recover(hub, from: position)
            #expect(recovered == false)
        }
    }

    /// The same for a notification to everyone that could not be recorded (too large for an entry: `send` does not
    /// refuse it; the HTTP API does, with `checkHistoryEntry(of:)`).
    @Test func aNotificationSentWithoutAPositionEndsItsStreamsEpoch() async throws {
        var history = HistoryConfiguration()
        history.maxEntryBytes = 1024
        let store = try InMemoryHistoryStore(configuration: history)
        let hub = try fixture.hub(historyStore: store) { $0.history = history }
        await hub.send(RealtimeNotification(level: .info, title: "first", message: "small", target: .everyone))
        let before = try await store.position(of: .everyone)
        #expect(before.offset == 1)
        await hub.send(
            RealtimeNotification(
                level: .info,
                title: "large",
                message: String(repeating: "x", count: 2000),
                target: .everyone
            )
        )
        let after = try await store.position(of: .everyone)
        #expect(after.epoch != before.epoch && after.offset == 0)
        #expect(Self.reason(try await store.read(.everyone, after: before, limit: .init())) == .epochChanged)
    }

    static func reason(_ read: HistoryRead) -> HistoryUnavailableReason? {
        if case .unavailable(let reason, _) = read { return reason }
        return nil
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
