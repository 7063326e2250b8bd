public import RealtimeCore
import Testing

/// Checks that a ``HistoryStore`` keeps the protocol's contract: contiguous offsets in append order, exclusive
/// reads from a position, read limits, trimming by count and by age, a new epoch after the history is lost or a
/// stream was forgotten, bounded entries, unique offsets under concurrent appends from two servers, and clear
/// answers to malformed positions.
///
/// Ages are decided by the time a store is given (`makeStore`'s `now`), so the suite moves a ``ManualClock`` for
/// them on every backend; only forgetting unused streams (``HistoryConfiguration/retention``, a TTL on Redis)
/// follows ``Backend/time``.
public enum HistoryStoreConformance: Sendable {
    /// What the suite needs from a backend.
    public struct Backend: Sendable {
        /// A store in a fresh namespace, with `configuration` and the wall clock `now` for entries' times.
        public var makeStore:
            @Sendable (_ configuration: HistoryConfiguration, _ now: @escaping @Sendable () -> Timestamp)
                async throws -> any HistoryStore
        /// Another server's store on the same backend and namespace as `store`, with the wall clock `now`.
        public var makePeer:
            @Sendable (_ store: any HistoryStore, _ now: @escaping @Sendable () -> Timestamp) async throws ->
                any HistoryStore
        /// Loses every stream of `store`'s namespace, as a restart without persistence would (in-memory: a new
        /// store; Redis: its keys deleted); returns the store to use afterwards.
        public var loseHistory: @Sendable (_ store: any HistoryStore) async throws -> any HistoryStore
        /// How time passes for the expiry of unused streams (``ConformanceTime/manual(_:ttl:)`` in memory,
        /// ``ConformanceTime/realTime(ttl:tolerance:)`` on a server).
        public var time: ConformanceTime

        public init(
            makeStore:
                @escaping @Sendable (HistoryConfiguration, @escaping @Sendable () -> Timestamp) async throws ->
                any HistoryStore,
            makePeer:
                @escaping @Sendable (any HistoryStore, @escaping @Sendable () -> Timestamp) async throws ->
                any HistoryStore,
            loseHistory: @escaping @Sendable (any HistoryStore) async throws -> any HistoryStore,
            time: ConformanceTime
        ) {
            self.makeStore = makeStore
            self.makePeer = makePeer
            self.loseHistory = loseHistory
            self.time = time
        }
    }

    /// Runs every check, each on a new store.
    public static func run(_ backend: Backend) async throws {
        try await appendsWithContiguousOffsets(backend)
        try await readsAfterAPositionWithinTheLimit(backend)
        try await trimsByCount(backend)
        try await trimsByAge(backend)
        try await startsANewEpochWhenHistoryIsLost(backend)
        try await aResetStreamStartsANewEpoch(backend)
        try await forgetsUnusedStreams(backend)
        try await refusesOversizedEntries(backend)
        try await answersMalformedInputClearly(backend)
        try await concurrentAppendsFromTwoServersGetUniqueOffsets(backend)
    }

    /// A user-scoped event message numbered `number`.
    public static func event(_ user: String, _ number: Int, bytes: Int = 0, origin: ServerID = "srv-a") -> BusMessage {
        var data: JSONObject = ["n": .int(Int64(number))]
        if bytes > 0 { data["pad"] = .string(String(repeating: "x", count: bytes)) }
        let event = RealtimeEvent(type: "history.test", userID: user, data: data, scope: .user(user))
        return BusMessage(origin: origin, route: .user(user), payload: .event(event))
    }

    /// The number an ``event(_:_:bytes:origin:)`` message carries.
    static func number(of message: BusMessage) -> Int? {
        guard case .event(let event) = message.payload, let number = event.data["n"]?.intValue else { return nil }
        return Int(number)
    }

    /// The entries of a read that must be a page, or an issue recorded and none.
    static func page(
        _ read: HistoryRead,
        _ comment: Comment? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) -> HistoryPage? {
        guard case .page(let page) = read else {
            Issue.record(
                "expected a page, got \(read) \(comment.map { "(\($0))" } ?? "")",
                sourceLocation: sourceLocation
            )
            return nil
        }
        return page
    }

    /// The reason of a read that must be unavailable.
    static func reason(_ read: HistoryRead) -> HistoryUnavailableReason? {
        if case .unavailable(let reason, _) = read { return reason }
        return nil
    }

    static func start(_ epoch: String) -> StreamPosition { StreamPosition(epoch: epoch, offset: 0) }

    /// Offsets start at 1 and grow by 1 per append, in one epoch per stream; reads return the messages appended,
    /// with their positions; each stream (a user's, the administrators', everyone's; user ids with `{`, `}` or
    /// `:` included) numbers its own; a new stream has a stable epoch before its first append.
    public static func appendsWithContiguousOffsets(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(HistoryConfiguration(), clock.timestampSource)
        let (user, other) = (uniqueName("u"), uniqueName("u") + "}{x:*")
        let fresh = try await store.position(of: .user(other))
        #expect(fresh.offset == 0)
        #expect(try await store.position(of: .user(other)) == fresh, "a new stream's epoch is stable")
        var appended: [BusMessage] = []
        for number in 1...5 {
            let message = event(user, number)
            let position = try await store.append(message)
            #expect(position.offset == Int64(number))
            #expect(position.epoch == appended.first?.position?.epoch ?? position.epoch)
            var recorded = message
            recorded.position = position
            appended.append(recorded)
        }
        let epoch = try #require(appended.first?.position?.epoch)
        #expect(try await store.position(of: .user(user)) == StreamPosition(epoch: epoch, offset: 5))
        let all = try #require(page(try await store.read(.user(user), after: start(epoch), limit: .init())))
        #expect(all.entries.map(\.message) == appended.map { $0 })
        #expect(all.entries.map(\.position.offset) == [1, 2, 3, 4, 5])
        #expect(all.entries.allSatisfy { $0.message.position == $0.position })
        #expect(all.isComplete && all.current == StreamPosition(epoch: epoch, offset: 5))

        let first = try await store.append(event(other, 1))
        #expect(first == StreamPosition(epoch: fresh.epoch, offset: 1), "the first append keeps the reported epoch")
        #expect(try await store.position(of: .user(user)).offset == 5, "streams number independently")

        let notification = RealtimeNotification(level: .warning, title: "t", message: "m", target: .everyone)
        let everyone = BusMessage(origin: "srv-a", route: .everyone, payload: .notification(notification))
        let broadcast = try await store.append(everyone)
        #expect(broadcast.offset == 1)
        let admin = BusMessage(
            origin: "srv-b",
            route: .admins,
            payload: .event(RealtimeEvent(type: "admin.action", data: ["a": 1], scope: .admins))
        )
        #expect(try await store.append(admin).offset == 1)
        let shared = try #require(page(try await store.read(.everyone, after: start(broadcast.epoch), limit: .init())))
        #expect(shared.entries.map(\.message) == [everyone])
        let admins = try await store.position(of: .admins)
        let adminPage = try #require(page(try await store.read(.admins, after: start(admins.epoch), limit: .init())))
        #expect(adminPage.entries.map(\.message) == [admin])
    }

    /// A read is exclusive of its position, stops at the entry count and byte limits (always returning at least
    /// one entry) and says when it was cut; reading on from the last entry continues without gap or repeat.
    public static func readsAfterAPositionWithinTheLimit(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(HistoryConfiguration(), clock.timestampSource)
        let user = uniqueName("u")
        var epoch = ""
        for number in 1...10 { epoch = try await store.append(event(user, number, bytes: 100)).epoch }
        let after2 = try #require(
            page(try await store.read(.user(user), after: StreamPosition(epoch: epoch, offset: 2), limit: .init()))
        )
        #expect(after2.entries.compactMap { number(of: $0.message) } == Array(3...10), "exclusive of the position")
        #expect(after2.isComplete)
        let end = try #require(
            page(try await store.read(.user(user), after: StreamPosition(epoch: epoch, offset: 10), limit: .init()))
        )
        #expect(end.entries.isEmpty && end.isComplete, "nothing after the last offset")

        var position = start(epoch)
        var seen: [Int] = []
        var pages = 0
        while pages < 10 {
            let next = try #require(
                page(try await store.read(.user(user), after: position, limit: .init(maxEntries: 3)))
            )
            pages += 1
            #expect(next.entries.count <= 3)
            seen += next.entries.compactMap { number(of: $0.message) }
            if let last = next.entries.last { position = last.position }
            if next.isComplete { break }
        }
        #expect(seen == Array(1...10), "pages continue without gap or repeat")
        #expect(pages == 4)

        let tiny = try #require(
            page(try await store.read(.user(user), after: start(epoch), limit: .init(maxEntries: 100, maxBytes: 1)))
        )
        #expect(tiny.entries.count == 1, "a page holds at least one entry")
        #expect(!tiny.isComplete)
    }

    /// Each stream keeps its newest `maxEntries`: reading from before them is `trimmed`, from within them works;
    /// an explicit trim removes more and the numbering continues.
    public static func trimsByCount(_ backend: Backend) async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.userStreams.maxEntries = 5
        let store = try await backend.makeStore(configuration, clock.timestampSource)
        let user = uniqueName("u")
        var epoch = ""
        for number in 1...8 { epoch = try await store.append(event(user, number)).epoch }
        func read(after offset: Int64) async throws -> HistoryRead {
            try await store.read(.user(user), after: StreamPosition(epoch: epoch, offset: offset), limit: .init())
        }
        #expect(reason(try await read(after: 0)) == .trimmed)
        #expect(reason(try await read(after: 2)) == .trimmed, "offset 3 is gone: 4...8 are kept")
        let kept = try #require(page(try await read(after: 3)))
        #expect(kept.entries.compactMap { number(of: $0.message) } == [4, 5, 6, 7, 8])

        try await store.trim(.user(user), maxEntries: 2, maxAge: nil)
        #expect(reason(try await read(after: 5)) == .trimmed)
        #expect(try #require(page(try await read(after: 6))).entries.compactMap { number(of: $0.message) } == [7, 8])
        #expect(try await store.append(event(user, 9)).offset == 9, "trimming keeps the numbering")
        try await store.trim(.user(user), maxEntries: 0, maxAge: nil)
        #expect(reason(try await read(after: 8)) == .trimmed)
        #expect(try #require(page(try await read(after: 9))).entries.isEmpty)
    }

    /// Entries past `maxAge` are gone for readers at once; a client that missed nothing still reads an empty,
    /// complete page; an explicit trim by age removes entries older than it asks.
    public static func trimsByAge(_ backend: Backend) async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.userStreams.maxAge = .seconds(60)
        let store = try await backend.makeStore(configuration, clock.timestampSource)
        let user = uniqueName("u")
        let epoch = try await store.append(event(user, 1)).epoch
        func read(after offset: Int64) async throws -> HistoryRead {
            try await store.read(.user(user), after: StreamPosition(epoch: epoch, offset: offset), limit: .init())
        }
        clock.advance(by: .seconds(30))
        _ = try await store.append(event(user, 2))
        clock.advance(by: .milliseconds(29_999))
        #expect(try #require(page(try await read(after: 0))).entries.count == 2, "entry 1 is 59.999 s old")
        clock.advance(by: .milliseconds(1))
        #expect(reason(try await read(after: 0)) == .trimmed, "entry 1 is 60 s old")
        #expect(try #require(page(try await read(after: 1))).entries.compactMap { number(of: $0.message) } == [2])
        clock.advance(by: .seconds(30))
        #expect(reason(try await read(after: 1)) == .trimmed)
        let caughtUp = try #require(page(try await read(after: 2)))
        #expect(caughtUp.entries.isEmpty && caughtUp.isComplete, "nothing was missed after offset 2")

        _ = try await store.append(event(user, 3))
        clock.advance(by: .seconds(10))
        _ = try await store.append(event(user, 4))
        try await store.trim(.user(user), maxEntries: nil, maxAge: .seconds(5))
        #expect(reason(try await read(after: 2)) == .trimmed)
        #expect(try #require(page(try await read(after: 3))).entries.compactMap { number(of: $0.message) } == [4])
    }

    /// After the backend lost its history, a position of the old epoch reads as `epochChanged`, and the stream
    /// starts again at offset 1 under a new epoch.
    public static func startsANewEpochWhenHistoryIsLost(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(HistoryConfiguration(), clock.timestampSource)
        let user = uniqueName("u")
        var last = StreamPosition(epoch: "", offset: 0)
        for number in 1...3 { last = try await store.append(event(user, number)) }
        let restarted = try await backend.loseHistory(store)
        #expect(reason(try await restarted.read(.user(user), after: last, limit: .init())) == .epochChanged)
        let now = try await restarted.position(of: .user(user))
        #expect(now.epoch != last.epoch && now.offset == 0)
        #expect(try await restarted.append(event(user, 4)) == StreamPosition(epoch: now.epoch, offset: 1))
        #expect(reason(try await restarted.read(.user(user), after: last, limit: .init())) == .epochChanged)
    }

    /// ``HistoryStore/reset(_:)`` ends one stream's epoch: its positions read as `epochChanged`, it starts again at
    /// offset 1 under a new epoch, and other streams keep theirs. Resetting an unknown stream is no error.
    public static func aResetStreamStartsANewEpoch(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(HistoryConfiguration(), clock.timestampSource)
        let (user, other) = (uniqueName("u"), uniqueName("u"))
        var last = StreamPosition(epoch: "", offset: 0)
        for number in 1...3 { last = try await store.append(event(user, number)) }
        let untouched = try await store.append(event(other, 1))
        try await store.reset(.user(user))
        #expect(reason(try await store.read(.user(user), after: last, limit: .init())) == .epochChanged)
        #expect(reason(try await store.read(.user(user), after: start(last.epoch), limit: .init())) == .epochChanged)
        let now = try await store.position(of: .user(user))
        #expect(now.epoch != last.epoch && now.offset == 0)
        #expect(try await store.append(event(user, 4)) == StreamPosition(epoch: now.epoch, offset: 1))
        #expect(try await store.position(of: .user(other)) == untouched, "another stream keeps its epoch")
        try await store.reset(.user(uniqueName("never-used")))
        try await store.reset(.everyone)
        #expect(try await store.position(of: .everyone).offset == 0)
    }

    /// A stream neither appended to nor read for `retention` is forgotten (a new epoch next time); one that is
    /// read keeps its epoch.
    public static func forgetsUnusedStreams(_ backend: Backend) async throws {
        let time = backend.time
        var configuration = HistoryConfiguration()
        configuration.retention = time.ttl
        configuration.userStreams.maxAge = time.ttl
        configuration.sharedStreams.maxAge = time.ttl
        let store = try await backend.makeStore(configuration, time.now)
        let (idle, read) = (uniqueName("u"), uniqueName("u"))
        let idlePosition = try await store.append(event(idle, 1))
        let readPosition = try await store.append(event(read, 1))
        _ = time.stalledSinceLastCheck("")
        for _ in 0..<3 {
            try await time.advance(time.ttl * 0.6)
            _ = try await store.position(of: .user(read))
        }
        let kept = try await store.position(of: .user(read))
        if !time.stalledSinceLastCheck("a stream that is read keeps its epoch") {
            #expect(kept == readPosition, "reads keep a stream")
        }
        let forgotten = try await store.position(of: .user(idle))
        #expect(forgotten.epoch != idlePosition.epoch && forgotten.offset == 0, "an unused stream is forgotten")
        #expect(reason(try await store.read(.user(idle), after: idlePosition, limit: .init())) == .epochChanged)
    }

    /// An entry over `maxEntryBytes` is refused with `limitExceeded` and leaves the stream as it was.
    public static func refusesOversizedEntries(_ backend: Backend) async throws {
        let clock = ManualClock()
        var configuration = HistoryConfiguration()
        configuration.maxEntryBytes = 1024
        let store = try await backend.makeStore(configuration, clock.timestampSource)
        let user = uniqueName("u")
        _ = try await store.append(event(user, 1, bytes: 400))
        let error = await #expect(throws: RealtimeError.self) {
            _ = try await store.append(event(user, 2, bytes: 2000))
        }
        #expect(error?.code == .limitExceeded)
        #expect(try await store.position(of: .user(user)).offset == 1)
        #expect(try await store.append(event(user, 3, bytes: 400)).offset == 2)
    }
}
