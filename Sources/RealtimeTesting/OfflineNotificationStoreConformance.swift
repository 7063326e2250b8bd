public import RealtimeCore
import Testing

/// Checks that an ``OfflineNotificationStore`` keeps the protocol's contract: notifications handed over once,
/// oldest first, per user; the oldest dropped beyond ``OfflineNotificationLimits/maxPerUser``; expiry after
/// ``OfflineNotificationLimits/retention``; a cluster-wide count; exactly one taker among servers racing for a
/// user's queue; clear errors for malformed input, which queues nothing.
///
/// Expiry is decided by the time a store is given (`makeStore`'s `now`), so the suite moves a ``ManualClock`` on
/// every backend.
public enum OfflineNotificationStoreConformance: Sendable {
    /// What the suite needs from a backend.
    public struct Backend: Sendable {
        /// A store in a fresh namespace, with `limits` and the wall clock `now` deciding expiry.
        public var makeStore:
            @Sendable (_ limits: OfflineNotificationLimits, _ now: @escaping @Sendable () -> Timestamp) async throws ->
                any OfflineNotificationStore
        /// Another server's store on the same backend and namespace as `store`, with the same limits and the wall
        /// clock `now`.
        public var makePeer:
            @Sendable (_ store: any OfflineNotificationStore, _ now: @escaping @Sendable () -> Timestamp) async throws
                ->
                any OfflineNotificationStore

        public init(
            makeStore:
                @escaping @Sendable (OfflineNotificationLimits, @escaping @Sendable () -> Timestamp) async throws ->
                any OfflineNotificationStore,
            makePeer:
                @escaping @Sendable (any OfflineNotificationStore, @escaping @Sendable () -> Timestamp) async throws ->
                any OfflineNotificationStore
        ) {
            self.makeStore = makeStore
            self.makePeer = makePeer
        }
    }

    /// Runs every check, each on a new store.
    public static func run(_ backend: Backend) async throws {
        try await handsOverOnceOldestFirstPerUser(backend)
        try await dropsTheOldestBeyondTheBound(backend)
        try await expiresAfterTheRetention(backend)
        try await countsEveryServersQueuesTogether(backend)
        try await racingTakersGetEachNotificationOnce(backend)
        try await refusesMalformedInputAndQueuesNothing(backend)
    }

    /// A notification for `user` titled `title`.
    public static func notification(_ title: String, for user: String, data: JSONObject = [:]) -> RealtimeNotification {
        RealtimeNotification(level: .warning, title: title, message: "m-" + title, data: data, target: .user(user))
    }

    /// `enqueue` answers the user's count; `take` returns the user's notifications, oldest first, whole (every
    /// field as sent), and removes them: a second `take` returns none. Other users' queues are untouched.
    public static func handsOverOnceOldestFirstPerUser(_ backend: Backend) async throws {
        let store = try await backend.makeStore(OfflineNotificationLimits(), ManualClock().timestampSource)
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        var sent: [RealtimeNotification] = []
        for index in 1...3 {
            let notification = notification("n\(index)", for: alice, data: ["n": .int(Int64(index)), "x": "é✓"])
            sent.append(notification)
            #expect(
                try await store.enqueue(notification, for: alice) == OfflineEnqueueResult(queued: index, displaced: 0)
            )
        }
        #expect(try await store.enqueue(notification("b", for: bob), for: bob).queued == 1)
        #expect(try await store.take(for: alice) == sent, "oldest first, every field kept")
        #expect(try await store.take(for: alice).isEmpty, "handed over once")
        #expect(try await store.take(for: uniqueName("nobody")).isEmpty)
        #expect(try await store.take(for: bob).map(\.title) == ["b"])
    }

    /// With the default bound (100), the 101st notification drops the oldest, and says so.
    public static func dropsTheOldestBeyondTheBound(_ backend: Backend) async throws {
        let limits = OfflineNotificationLimits()
        #expect(limits.maxPerUser == 100)
        let store = try await backend.makeStore(limits, ManualClock().timestampSource)
        let user = uniqueName("user")
        for index in 1...101 {
            let result = try await store.enqueue(notification("n\(index)", for: user), for: user)
            #expect(result == OfflineEnqueueResult(queued: min(index, 100), displaced: index > 100 ? 1 : 0))
        }
        #expect(try await store.queueLength() == 100)
        let taken = try await store.take(for: user)
        #expect(taken.map(\.title) == (2...101).map { "n\($0)" }, "the 101st dropped the oldest")
        #expect(try await store.queueLength() == 0)
    }

    /// A notification is kept for the retention and gone after it: not taken, not counted, and its slot no longer
    /// counts against the bound.
    public static func expiresAfterTheRetention(_ backend: Backend) async throws {
        var limits = OfflineNotificationLimits()
        limits.maxPerUser = 2
        limits.retention = .seconds(60)
        let clock = ManualClock()
        let store = try await backend.makeStore(limits, clock.timestampSource)
        let user = uniqueName("user")
        _ = try await store.enqueue(notification("old", for: user), for: user)
        clock.advance(by: .seconds(30))
        _ = try await store.enqueue(notification("newer", for: user), for: user)
        clock.advance(by: .seconds(29))
        #expect(try await store.queueLength() == 2, "both kept before the retention")
        clock.advance(by: .seconds(1))
        #expect(try await store.queueLength() == 1, "the first expired at its retention")
        #expect(
            try await store.enqueue(notification("newest", for: user), for: user)
                == OfflineEnqueueResult(queued: 2, displaced: 0),
            "an expired notification does not count against the bound, nor as displaced"
        )
        #expect(try await store.take(for: user).map(\.title) == ["newer", "newest"])
        _ = try await store.enqueue(notification("late", for: user), for: user)
        clock.advance(by: .seconds(60))
        #expect(try await store.take(for: user).isEmpty, "an expired notification is not handed over")
        #expect(try await store.queueLength() == 0)
    }

    /// `queueLength` counts every user's queue, whichever server queued it, as every server sees it; taking and
    /// dropping lower it.
    public static func countsEveryServersQueuesTogether(_ backend: Backend) async throws {
        var limits = OfflineNotificationLimits()
        limits.maxPerUser = 3
        let clock = ManualClock()
        let store = try await backend.makeStore(limits, clock.timestampSource)
        let peer = try await backend.makePeer(store, clock.timestampSource)
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        for index in 1...2 { _ = try await store.enqueue(notification("a\(index)", for: alice), for: alice) }
        for index in 1...4 { _ = try await peer.enqueue(notification("b\(index)", for: bob), for: bob) }
        #expect(try await store.queueLength() == 5, "2 for alice, 3 for bob (one dropped)")
        #expect(try await peer.queueLength() == 5)
        #expect(try await peer.take(for: alice).map(\.title) == ["a1", "a2"], "queued on one server, taken on another")
        #expect(try await store.queueLength() == 3)
        #expect(try await store.take(for: bob).map(\.title) == ["b2", "b3", "b4"])
        #expect(try await peer.queueLength() == 0)
    }

    /// Two servers taking one user's queue at once (the user's two new connections) hand each notification to
    /// exactly one of them; repeated over several rounds.
    public static func racingTakersGetEachNotificationOnce(_ backend: Backend) async throws {
        let clock = ManualClock()
        let store = try await backend.makeStore(OfflineNotificationLimits(), clock.timestampSource)
        let peer = try await backend.makePeer(store, clock.timestampSource)
        let user = uniqueName("user")
        for round in 0..<10 {
            let titles = (1...5).map { "r\(round)-\($0)" }
            for title in titles { _ = try await store.enqueue(notification(title, for: user), for: user) }
            let taken = try await withThrowingTaskGroup(of: [String].self) { group in
                for index in 0..<4 {
                    let taker = index % 2 == 0 ? store : peer
                    group.addTask { try await taker.take(for: user).map(\.title) }
                }
                var all: [[String]] = []
                for try await titles in group { all.append(titles) }
                return all
            }
            #expect(taken.filter { !$0.isEmpty } == [titles], "one taker got all, in order; the others none")
        }
        #expect(try await store.queueLength() == 0)
    }

    /// Malformed user ids, a notification for another user and an oversized one get clear errors, and nothing is
    /// queued; a store with invalid limits is refused by ``OfflineNotificationLimits/validate()``.
    public static func refusesMalformedInputAndQueuesNothing(_ backend: Backend) async throws {
        var limits = OfflineNotificationLimits()
        limits.maxNotificationBytes = 1024
        let store = try await backend.makeStore(limits, ManualClock().timestampSource)
        let user = uniqueName("user")
        for bad in ["", String(repeating: "u", count: OfflineNotificationLimits.maxUserIDBytes + 1), "a\nb", "a\u{0}"] {
            await expectCode(.invalidArgument, "user id \(bad.debugDescription.prefix(20))") {
                _ = try await store.enqueue(notification("x", for: bad), for: bad)
            }
            await expectCode(.invalidArgument, "take for \(bad.debugDescription.prefix(20))") {
                _ = try await store.take(for: bad)
            }
        }
        await expectCode(.invalidArgument, "a notification for another user") {
            _ = try await store.enqueue(notification("x", for: uniqueName("other")), for: user)
        }
        await expectCode(.invalidArgument, "a broadcast notification") {
            _ = try await store.enqueue(
                RealtimeNotification(level: .info, title: "x", message: "", target: .everyone),
                for: user
            )
        }
        await expectCode(.limitExceeded, "an oversized notification") {
            let big = notification("big", for: user, data: ["pad": .string(String(repeating: "x", count: 1024))])
            _ = try await store.enqueue(big, for: user)
        }
        #expect(try await store.queueLength() == 0, "nothing queued by refused input")
        #expect(try await store.take(for: user).isEmpty)
        for invalid in [
            { (limits: inout OfflineNotificationLimits) in limits.maxPerUser = 0 },
            { $0.maxPerUser = OfflineNotificationLimits.maximumPerUser + 1 },
            { $0.retention = .zero },
            { $0.maxNotificationBytes = 255 },
        ] {
            var limits = OfflineNotificationLimits()
            invalid(&limits)
            await expectCode(.invalidConfiguration, "invalid limits") { try limits.validate() }
        }
    }

    /// Records an issue unless `body` throws a ``RealtimeError`` with `code`.
    static func expectCode(
        _ code: RealtimeError.Code,
        _ what: String,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            Issue.record("\(what): no error, expected \(code)", sourceLocation: sourceLocation)
        } catch let error as RealtimeError {
            #expect(error.code == code, "\(what)", sourceLocation: sourceLocation)
        } catch {
            Issue.record("\(what): \(error), expected \(code)", sourceLocation: sourceLocation)
        }
    }
}
