public import RealtimeCore
import Testing

extension HistoryStoreConformance {
    /// Bad input gets a clear answer, never a crash: negative or oversized offsets, long epochs and limits out of
    /// range are `invalidArgument`; an unknown or empty epoch, or another stream's position, reads as
    /// `epochChanged`; an offset beyond the stream's last as `ahead`; routes without history and control commands
    /// are refused; negative trims are refused.
    public static func answersMalformedInputClearly(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(HistoryConfiguration(), clock.timestampSource)
        let (user, other) = (uniqueName("u"), uniqueName("u"))
        let position = try await store.append(event(user, 1))
        _ = try await store.append(event(user, 2))
        let otherPosition = try await store.append(event(other, 1))
        func code(_ read: @Sendable () async throws -> HistoryRead) async -> RealtimeError.Code? {
            do {
                let answer = try await read()
                Issue.record("expected an error, got \(answer)")
                return nil
            } catch let error as RealtimeError {
                return error.code
            } catch {
                Issue.record("unexpected error \(error)")
                return nil
            }
        }
        let epoch = position.epoch
        for bad in [
            StreamPosition(epoch: epoch, offset: -1), StreamPosition(epoch: epoch, offset: .min),
            StreamPosition(epoch: epoch, offset: StreamPosition.maxOffset + 1),
            StreamPosition(epoch: epoch, offset: .max),
            StreamPosition(epoch: String(repeating: "e", count: StreamPosition.maxEpochBytes + 1), offset: 0),
        ] {
            #expect(await code { try await store.read(.user(user), after: bad, limit: .init()) } == .invalidArgument)
        }
        for limit in [
            HistoryReadLimit(maxEntries: 0), HistoryReadLimit(maxEntries: -5),
            HistoryReadLimit(maxEntries: HistoryReadLimit.maximumEntries + 1), HistoryReadLimit(maxBytes: 0),
        ] {
            #expect(await code { try await store.read(.user(user), after: position, limit: limit) } == .invalidArgument)
        }
        func read(_ position: StreamPosition) async throws -> HistoryUnavailableReason? {
            reason(try await store.read(.user(user), after: position, limit: .init()))
        }
        #expect(try await read(StreamPosition(epoch: epoch, offset: 3)) == .ahead)
        #expect(try await read(StreamPosition(epoch: epoch, offset: StreamPosition.maxOffset)) == .ahead)
        #expect(try await read(StreamPosition(epoch: "unknown", offset: 1)) == .epochChanged)
        #expect(try await read(StreamPosition(epoch: "", offset: 0)) == .epochChanged)
        #expect(try await read(otherPosition) == .epochChanged, "a position of another user's stream")
        #expect(try await read(StreamPosition(epoch: otherPosition.epoch, offset: 0)) == .epochChanged)
        if case .unavailable(_, let current) = try await store.read(.user(user), after: otherPosition, limit: .init()) {
            #expect(current == StreamPosition(epoch: epoch, offset: 2), "the answer says where the stream is")
        }

        for message in [
            BusMessage(origin: "srv-a", route: .control, payload: .control(.disconnectUser(userID: user, reason: "r"))),
            BusMessage(origin: "srv-a", route: .server("srv-b"), payload: event(user, 3).payload),
            BusMessage(
                origin: "srv-a",
                route: .user(user),
                payload: .control(.disconnectUser(userID: user, reason: "r"))
            ),
        ] {
            let error = await #expect(throws: RealtimeError.self) { _ = try await store.append(message) }
            #expect(error?.code == .invalidArgument)
        }
        for (entries, age) in [(-1, nil), (nil, Duration.seconds(-1))] as [(Int?, Duration?)] {
            let error = await #expect(throws: RealtimeError.self) {
                try await store.trim(.user(user), maxEntries: entries, maxAge: age)
            }
            #expect(error?.code == .invalidArgument)
        }
        #expect(try await store.position(of: .user(user)).offset == 2, "nothing changed the stream")
    }

    /// Two servers appending to the same streams at once get unique, contiguous offsets, and reads list every
    /// entry once, in offset order.
    public static func concurrentAppendsFromTwoServersGetUniqueOffsets(_ backend: Backend) async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.userStreams.maxEntries = 1000
        let storeA = try await backend.makeStore(configuration, clock.timestampSource)
        let storeB = try await backend.makePeer(storeA, clock.timestampSource)
        let user = uniqueName("u")
        let perServer = 100
        let offsets = try await withThrowingTaskGroup(of: [(Int, Int64)].self) { group in
            for (server, store) in [(0, storeA), (1, storeB)] {
                for worker in 0..<4 {
                    group.addTask {
                        var assigned: [(Int, Int64)] = []
                        for index in stride(from: worker, to: perServer, by: 4) {
                            let number = server * perServer + index
                            let origin: ServerID = server == 0 ? "srv-a" : "srv-b"
                            assigned.append(
                                (number, try await store.append(event(user, number, origin: origin)).offset)
                            )
                        }
                        return assigned
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(offsets.map(\.1).sorted() == Array(1...Int64(2 * perServer)), "unique, contiguous offsets")
        let epoch = try await storeB.position(of: .user(user)).epoch
        #expect(
            try await storeA.position(of: .user(user)) == StreamPosition(epoch: epoch, offset: Int64(2 * perServer))
        )
        let read = try #require(
            page(try await storeB.read(.user(user), after: start(epoch), limit: .init(maxEntries: 2 * perServer)))
        )
        let byOffset = Dictionary(uniqueKeysWithValues: offsets.map { ($0.1, $0.0) })
        #expect(read.entries.map { number(of: $0.message) } == read.entries.map { byOffset[$0.position.offset] })
        #expect(read.entries.map(\.position.offset) == Array(1...Int64(2 * perServer)))
        #expect(read.isComplete)
    }

    /// Two servers publishing a user's events at once through ``EventBus/publish(_:recordingIn:)``: every
    /// subscriber hears the user's messages, and the administrators' copies, in the order of their offsets
    /// (1, 2, 3, … with no gap), each with the position the publisher got back, and the history holds the same
    /// sequence. Holds for a bus that is a ``HistoryRecordingEventBus`` for the store.
    ///
    /// `servers` are two servers of one cluster (each its bus and its store, on one backend); `subscriber` opens
    /// the listening subscription. Give the calling `@Test` a `.timeLimit`.
    public static func publishingKeepsOffsetOrder(
        servers: [(bus: any EventBus, store: any HistoryStore)],
        subscriber: any EventBus
    ) async throws {
        let user = uniqueName("u")
        let subscription = try await subscriber.subscribe(server: ServerID(uniqueName("srv-sub")))
        try await subscription.addInterest(.user(user))
        try await subscription.addInterest(.admins)
        let perServer = 50
        let total = perServer * servers.count
        let published = try await withThrowingTaskGroup(of: [BusMessage].self) { group in
            for (index, server) in servers.enumerated() {
                group.addTask {
                    var published: [BusMessage] = []
                    for number in 0..<perServer {
                        let message = event(user, index * perServer + number, origin: ServerID("srv-\(index)"))
                        var forAdmins = message
                        forAdmins.route = .admins
                        published += try await server.bus.publish([message, forAdmins], recordingIn: server.store)
                    }
                    return published
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(published.count == 2 * total && published.allSatisfy { $0.position != nil })
        var heard: [BusRoute: [BusMessage]] = [:]
        var iterator = subscription.deliveries.makeAsyncIterator()
        while heard.values.reduce(0, { $0 + $1.count }) < 2 * total, let delivery = await iterator.next() {
            guard case .message(let message) = delivery, number(of: message) != nil else { continue }
            heard[message.route, default: []].append(message)
        }
        await subscription.close()
        for route in [BusRoute.user(user), .admins] {
            let messages = heard[route] ?? []
            #expect(messages.map { $0.position?.offset } == Array(1...Int64(total)), "offset order on \(route)")
            let sent = Dictionary(
                published.filter { $0.route == route }.map { (number(of: $0), $0.position) },
                uniquingKeysWith: { first, _ in first }
            )
            #expect(messages.allSatisfy { sent[number(of: $0)] == $0.position }, "positions as the publisher got them")
            let stream = try #require(HistoryStream(route))
            let epoch = try #require(messages.first?.position?.epoch)
            let recorded = try #require(
                page(try await servers[0].store.read(stream, after: start(epoch), limit: .init(maxEntries: total)))
            )
            #expect(recorded.entries.map { number(of: $0.message) } == messages.map { number(of: $0) })
        }
    }

    /// ``EventBus/publish(_:recordingIn:)`` with an entry over ``HistoryConfiguration/maxEntryBytes`` after a good
    /// one: `limitExceeded`, and neither is recorded nor published (fuzz: the good one was published, then published
    /// again without a position by the hub's fallback, and replayed at recovery). `store` must have a
    /// `maxEntryBytes` of 1,024; `subscriber` is a bus of the same cluster.
    public static func anOversizedEntryFailsTheWholePublish(
        bus: any EventBus,
        store: any HistoryStore,
        subscriber: any EventBus
    ) async throws {
        let user = uniqueName("u")
        let subscription = try await subscriber.subscribe(server: ServerID(uniqueName("srv-sub")))
        try await subscription.addInterest(.user(user))
        let error = await #expect(throws: RealtimeError.self) {
            _ = try await bus.publish([event(user, 1, bytes: 100), event(user, 2, bytes: 2000)], recordingIn: store)
        }
        #expect(error?.code == .limitExceeded)
        #expect(try await store.position(of: .user(user)).offset == 0, "nothing recorded")
        let published = try await bus.publish([event(user, 3, bytes: 100)], recordingIn: store)
        #expect(published.first?.position?.offset == 1)
        var iterator = subscription.deliveries.makeAsyncIterator()
        while let delivery = await iterator.next() {
            guard case .message(let message) = delivery, let number = number(of: message) else { continue }
            #expect(number == 3, "the refused publish reached no subscriber")
            #expect(message.position?.offset == 1)
            break
        }
        await subscription.close()
    }
}
