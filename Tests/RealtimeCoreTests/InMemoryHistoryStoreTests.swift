import Logging
import RealtimeCore
import RealtimeTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct InMemoryHistoryStoreTests {
    static let backend = HistoryStoreConformance.Backend(
        makeStore: { configuration, now in try InMemoryHistoryStore(configuration: configuration, now: now) },
        makePeer: { store, _ in store },
        loseHistory: { store in
            // A restarted process: a new store, with nothing of the old one.
            try InMemoryHistoryStore(configuration: try #require(store as? InMemoryHistoryStore).configuration)
        },
        time: .manual(ManualClock())
    )

    @Test func conformsToTheHistoryStoreContract() async throws {
        try await HistoryStoreConformance.run(Self.backend)
    }

    @Test(.timeLimit(.minutes(1))) func anOversizedEntryFailsTheWholePublish() async throws {
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 1024
        let bus = InMemoryEventBus()
        try await HistoryStoreConformance.anOversizedEntryFailsTheWholePublish(
            bus: bus,
            store: try InMemoryHistoryStore(configuration: configuration),
            subscriber: bus
        )
    }

    @Test func publishingWithTheInMemoryBusKeepsOffsetOrder() async throws {
        let bus = InMemoryEventBus()
        let store = try InMemoryHistoryStore()
        try await HistoryStoreConformance.publishingKeepsOffsetOrder(
            servers: [(bus, store), (bus, store)],
            subscriber: bus
        )
    }

    /// An event that carries its frame (as every event a hub publishes does) is kept as that frame, counted once
    /// against the memory bound instead of twice, and read back as the same message with the same bytes.
    @Test func eventsAreKeptAsTheirFramesAndDecodedOnRead() async throws {
        let store = try InMemoryHistoryStore()
        let framed = HistoryStoreConformance.event("u1", 1, bytes: 300).encodingEventFrame()
        let frame = try #require(framed.eventFrame)
        let position = try await store.append(framed)
        let oneStream = store.statistics.bytes
        // The same event without its frame, in a stream with an id of the same length: kept decoded.
        _ = try await store.append(HistoryStoreConformance.event("u2", 1, bytes: 300))
        let kept = store.statistics.bytes - oneStream
        // Counted about once instead of twice: at least half a frame less (the rest is the estimate's overheads).
        #expect(kept - oneStream >= frame.utf8.count / 2, "framed: \(oneStream) bytes, decoded: \(kept) bytes")

        let read = try await store.read(
            .user("u1"),
            after: StreamPosition(epoch: position.epoch, offset: 0),
            limit: .init()
        )
        guard case .page(let page) = read else { throw RealtimeError(.internalError, "not read: \(read)") }
        #expect(page.entries.map(\.message) == [framed])
        #expect(page.entries.first?.message.eventFrame == frame)
        #expect(page.entries.first?.message.position == position)
    }

    /// A stored frame nested deeper than the store decodes reads as unreadable (a recovery answers `false`), never
    /// as a page with a gap.
    @Test func aFrameTooDeepToDecodeAgainReadsAsUnreadable() async throws {
        var data = JSONValue.string("leaf")
        for _ in 0..<130 { data = .object(["d": data]) }
        let event = RealtimeEvent(type: "history.test", userID: "u1", data: ["d": data], scope: .user("u1"))
        let message = BusMessage(origin: "srv-a", route: .user("u1"), payload: .event(event)).encodingEventFrame()
        let store = try InMemoryHistoryStore()
        let position = try await store.append(message)
        let read = try await store.read(
            .user("u1"),
            after: StreamPosition(epoch: position.epoch, offset: 0),
            limit: .init()
        )
        guard case .unavailable(.unreadable, let current) = read else {
            throw RealtimeError(.internalError, "expected unreadable, got \(read)")
        }
        #expect(current == position)
    }

    @Test func theMemoryBoundEvictsTheLeastRecentlyUsedStreamsFirst() async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 4096
        configuration.memoryLimitBytes = 64 * 1024
        let store = try InMemoryHistoryStore(configuration: configuration, now: clock.timestampSource)
        var first: [String: StreamPosition] = [:]
        for user in 0..<40 {
            for number in 1...5 {
                let position = try await store.append(HistoryStoreConformance.event("u\(user)", number, bytes: 300))
                if number == 1 { first["u\(user)"] = position }
            }
            clock.advance(by: .milliseconds(1))
            #expect(store.statistics.bytes <= configuration.memoryLimitBytes)
        }
        let stats = store.statistics
        #expect(stats.evictedEntries > 0 && stats.forgottenStreams > 0, "\(stats)")
        #expect(stats.bytes <= configuration.memoryLimitBytes)
        // The newest streams are whole; the oldest lost their entries, then were forgotten.
        let newest = try #require(first["u39"])
        let page = try await store.read(
            .user("u39"),
            after: StreamPosition(epoch: newest.epoch, offset: 0),
            limit: .init()
        )
        guard case .page(let entries) = page else { throw RealtimeError(.internalError, "u39 lost entries: \(page)") }
        #expect(entries.entries.count == 5)
        let oldest = try #require(first["u0"])
        let gone = try await store.read(
            .user("u0"),
            after: StreamPosition(epoch: oldest.epoch, offset: 0),
            limit: .init()
        )
        guard case .unavailable(let reason, _) = gone else { throw RealtimeError(.internalError, "u0 kept \(gone)") }
        #expect(reason == .epochChanged || reason == .trimmed)
    }

    @Test func theStreamInUseKeepsItsNewestEntryUnderTheBound() async throws {
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 4096
        configuration.memoryLimitBytes = 4 * 4096
        configuration.userStreams.maxEntries = 1000
        let store = try InMemoryHistoryStore(configuration: configuration)
        var last = StreamPosition(epoch: "", offset: 0)
        for number in 1...100 {
            last = try await store.append(HistoryStoreConformance.event("u", number, bytes: 3000))
            #expect(store.statistics.bytes <= configuration.memoryLimitBytes)
        }
        let read = try await store.read(
            .user("u"),
            after: StreamPosition(epoch: last.epoch, offset: last.offset - 1),
            limit: .init()
        )
        guard case .page(let page) = read else { throw RealtimeError(.internalError, "newest entry gone: \(read)") }
        #expect(page.entries.map(\.position) == [last])
        #expect(store.statistics.entries >= 1 && store.statistics.entries < 10)
    }

    @Test func unusedStreamsAreSweptAndEntriesPastTheirAgeRemoved() async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.retention = .seconds(3600)
        let store = try InMemoryHistoryStore(configuration: configuration, now: clock.timestampSource)
        for user in 0..<1000 { _ = try await store.append(HistoryStoreConformance.event("u\(user)", 1)) }
        #expect(store.statistics.streams == 1000)
        clock.advance(by: .seconds(3599))
        _ = try await store.position(of: .user("u7"))
        clock.advance(by: .seconds(1))
        store.sweep()
        #expect(store.statistics.streams == 1, "only the stream read since is kept")
        #expect(store.statistics.entries == 1)
        // The kept stream's entry passed the user streams' hour: its next use removes it.
        let position = try await store.position(of: .user("u7"))
        #expect(position.offset == 1)
        #expect(store.statistics.entries == 0)
    }

    /// A stream the hub resets (a message went out without a position) is counted as reset, not as forgotten: the
    /// health's `forgottenStreams` tells an operator what the memory bound and the idle sweep dropped.
    @Test func resetStreamsAreCountedApartFromForgottenOnes() async throws {
        let store = try InMemoryHistoryStore()
        for user in ["u1", "u2"] { _ = try await store.append(HistoryStoreConformance.event(user, 1)) }
        try await store.reset(.user("u1"))
        try await store.reset(.user("u3"))  // unknown: nothing to end
        let stats = store.statistics
        #expect(stats.streams == 1 && stats.resetStreams == 1 && stats.forgottenStreams == 0, "\(stats)")
        let details = await store.healthCheck().details
        #expect(details["resetStreams"]?.intValue == 1 && details["forgottenStreams"]?.intValue == 0)
    }

    @Test func refusesAnInvalidConfiguration() throws {
        var configuration = HistoryConfiguration()
        configuration.retention = .seconds(60)
        #expect(throws: RealtimeError.self) { try InMemoryHistoryStore(configuration: configuration) }
        configuration = HistoryConfiguration()
        configuration.userStreams.maxEntries = 0
        #expect(throws: RealtimeError.self) { try InMemoryHistoryStore(configuration: configuration) }
        configuration = HistoryConfiguration()
        configuration.memoryLimitBytes = configuration.maxEntryBytes
        #expect(throws: RealtimeError.self) { try InMemoryHistoryStore(configuration: configuration) }
    }
}

@Suite(.timeLimit(.minutes(1))) struct HistoryPublishingTests {
    @Test func theDefaultAppendsThenPublishesWithPositions() async throws {
        let bus = InMemoryEventBus()
        let store = ForwardingHistoryStore(inner: try InMemoryHistoryStore())
        let subscription = try await bus.subscribe(server: "srv-sub")
        try await subscription.addInterest(.user("u1"))
        try await subscription.addInterest(.admins)
        var published: [BusMessage] = []
        for number in 1...3 {
            let message = HistoryStoreConformance.event("u1", number)
            var forAdmins = message
            forAdmins.route = .admins
            published += try await bus.publish([message, forAdmins], recordingIn: store)
        }
        let control = BusMessage(
            origin: "srv-a",
            route: .control,
            payload: .control(.disconnectUser(userID: "u1", reason: "r"))
        )
        let unrecorded = try await bus.publish([control], recordingIn: store)
        #expect(unrecorded.map(\.position) == [nil], "routes without history are published as they are")
        #expect(published.filter { $0.route == .user("u1") }.map { $0.position?.offset } == [1, 2, 3])
        #expect(published.filter { $0.route == .admins }.map { $0.position?.offset } == [1, 2, 3])
        var heard: [BusMessage] = []
        var iterator = subscription.deliveries.makeAsyncIterator()
        while heard.count < 6, let delivery = await iterator.next() {
            if case .message(let message) = delivery { heard.append(message) }
        }
        #expect(heard.map(\.position) == published.map(\.position), "each message carries its position")
        await subscription.close()
    }

    @Test func nothingIsPublishedWhenRecordingFails() async throws {
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 1024
        let inner = try InMemoryHistoryStore(configuration: configuration)
        for store in [inner, ForwardingHistoryStore(inner: inner)] as [any HistoryStore] {
            let bus = InMemoryEventBus()
            let subscription = try await bus.subscribe(server: "srv-sub")
            try await subscription.addInterest(.user("u1"))
            let error = await #expect(throws: RealtimeError.self) {
                _ = try await bus.publish([HistoryStoreConformance.event("u1", 1, bytes: 2000)], recordingIn: store)
            }
            #expect(error?.code == .limitExceeded)
            #expect(bus.publishedCount == 0)
            await subscription.close()
        }
    }

    @Test func theHubReportsItsHistoryStoreInHealth() async throws {
        let fixture = HubFixture()
        let store = try InMemoryHistoryStore()
        var logger = Logger(label: "realtime-hub-test")
        logger.logLevel = .error
        let hub = try RealtimeHub(
            configuration: HubFixture.configuration(),
            backends: .inMemory(tokenVerifier: fixture.tokens, eventBus: fixture.bus, historyStore: store),
            logger: logger
        )
        let health = await hub.healthCheck()
        let component = try #require(health.components["historyStore"])
        #expect(component.status == .healthy)
        #expect(component.details["memoryLimitBytes"] == .int(Int64(HistoryConfiguration().memoryLimitBytes)))
        let without = try fixture.hub()
        #expect(await without.healthCheck().components["historyStore"] == nil)
    }
}

/// ``InMemoryHistoryStore/record(_:)-([BusMessage])``, the bus's single step: several messages under one lock.
@Suite(.timeLimit(.minutes(1))) struct InMemoryHistoryBatchTests {
    static func admins(_ message: BusMessage) -> BusMessage {
        var forAdmins = message
        forAdmins.route = .admins
        return forAdmins
    }

    @Test func recordsEveryMessageWithAStreamAndPositionsThem() async throws {
        let store = try InMemoryHistoryStore()
        let event = HistoryStoreConformance.event("u1", 1)
        var control = BusMessage(
            origin: "srv-a",
            route: .control,
            payload: .control(.disconnectUser(userID: "u1", reason: "r"))
        )
        control.position = StreamPosition(epoch: "forged", offset: 7)
        var batch = [event, Self.admins(event), control, HistoryStoreConformance.event("u2", 1)]
        try store.record(&batch)
        #expect(batch.map { $0.position?.offset } == [1, 1, nil, 1], "a route without history gets no position")
        var again = [HistoryStoreConformance.event("u1", 2), Self.admins(HistoryStoreConformance.event("u1", 2))]
        try store.record(&again)
        #expect(again.map { $0.position?.offset } == [2, 2])
        #expect(again[0].position?.epoch == batch[0].position?.epoch)
        #expect(store.statistics.entries == 5)
        // The administrators' stream holds both administrators' copies, at the positions they were given.
        let read = try await store.read(
            .admins,
            after: StreamPosition(epoch: try #require(batch[1].position?.epoch), offset: 0),
            limit: .init()
        )
        guard case .page(let page) = read else { throw RealtimeError(.internalError, "no page: \(read)") }
        #expect(page.entries.map(\.position) == [batch[1].position, again[1].position].compactMap { $0 })
    }

    /// Every message is checked before the first append (seventh probe: the one before an oversized entry stayed
    /// recorded, so the hub's fallback delivered it without a position and recovery replayed it once more).
    @Test func recordsNothingWhenOneMessageCannotBeRecorded() async throws {
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 1024
        let store = try InMemoryHistoryStore(configuration: configuration)
        var batch = [
            HistoryStoreConformance.event("u1", 1), HistoryStoreConformance.event("u1", 2, bytes: 2000),
            HistoryStoreConformance.event("u2", 1),
        ]
        let error = #expect(throws: RealtimeError.self) { try store.record(&batch) }
        #expect(error?.code == .limitExceeded)
        #expect(batch.map { $0.position?.offset } == [nil, nil, nil])
        #expect(try await store.position(of: .user("u1")).offset == 0, "not the message before it")
        #expect(try await store.position(of: .user("u2")).offset == 0, "nor the one after it")
        let controlOnAUserRoute = BusMessage(
            origin: "srv-a",
            route: .user("u3"),
            payload: .control(.disconnectUser(userID: "u3", reason: "r"))
        )
        var refused = [controlOnAUserRoute]
        #expect(throws: RealtimeError.self) { try store.record(&refused) }
        #expect(try await store.position(of: .user("u3")).offset == 0)
    }
}
