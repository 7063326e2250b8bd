public import RealtimeCore
import Testing

/// Checks that a `ConnectionStore` keeps every rule of the protocol's contract.
///
/// Call ``run(makeStore:time:)`` from a `@Test` of your backend, or each check from its own `@Test`:
///
/// ```swift
/// @Test func conformance() async throws {
///     let clock = ManualClock()
///     try await ConnectionStoreConformance.run(
///         makeStore: { InMemoryConnectionStore(now: clock.timestampSource) },
///         time: .manual(clock)
///     )
/// }
/// ```
///
/// `makeStore` must return an empty store (for a shared server, one in a fresh namespace). Every check uses
/// random user, session and server ids.
public enum ConnectionStoreConformance: Sendable {
    /// A factory of empty stores.
    public typealias MakeStore = @Sendable () async throws -> any ConnectionStore

    /// Runs every check, each on a new store.
    public static func run(makeStore: MakeStore, time: ConformanceTime) async throws {
        try await registersAndIndexes(makeStore: makeStore, time: time)
        try await enforcesUserLimit(makeStore: makeStore, time: time)
        try await enforcesUserLimitUnderConcurrency(makeStore: makeStore, time: time)
        try await unregistersIdempotently(makeStore: makeStore, time: time)
        try await purgesExpiredServersOnce(makeStore: makeStore, time: time)
        try await heartbeatKeepsServerAlive(makeStore: makeStore, time: time)
        try await removesServer(makeStore: makeStore, time: time)
        try await listsServerConnectionsInPages(makeStore: makeStore, time: time)
        try await refusesForeignCursorsCleanly(makeStore: makeStore, time: time)
        try await reportsServerCounters(makeStore: makeStore, time: time)
    }

    static func record(
        user: String,
        session: String? = nil,
        server: ServerID,
        admin: Bool = false,
        time: ConformanceTime
    ) -> ConnectionRecord {
        ConnectionRecord(
            id: .random(),
            serverID: server,
            userID: user,
            sessionID: session,
            isAdmin: admin,
            remoteAddress: "192.0.2.1",
            origin: nil,
            connectedAt: time.now()
        )
    }

    static func server(_ id: ServerID, ttl: Duration, time: ConformanceTime) -> ServerRecord {
        let now = time.now()
        return ServerRecord(id: id, startedAt: now, lastHeartbeat: now, expiresAt: now + ttl, connectionCount: 0)
    }

    /// Records are found by id, user and session, and counted in every scope.
    public static func registersAndIndexes(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let (serverA, serverB) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let (user, other) = (uniqueName("user"), uniqueName("user"))
        let (session1, session2) = (uniqueName("sess"), uniqueName("sess"))
        try await store.heartbeat(server(serverA, ttl: time.ttl * 10, time: time))
        try await store.heartbeat(server(serverB, ttl: time.ttl * 10, time: time))

        let first = record(user: user, session: session1, server: serverA, time: time)
        let second = record(user: user, session: session1, server: serverB, time: time)
        let third = record(user: user, session: session2, server: serverA, admin: true, time: time)
        let foreign = record(user: other, server: serverB, time: time)
        #expect(try await store.register(first, maxConnectionsPerUser: nil) == .registered(userConnections: 1))
        #expect(try await store.register(second, maxConnectionsPerUser: nil) == .registered(userConnections: 2))
        #expect(try await store.register(third, maxConnectionsPerUser: 10) == .registered(userConnections: 3))
        #expect(try await store.register(foreign, maxConnectionsPerUser: 1) == .registered(userConnections: 1))

        #expect(try await store.connection(third.id) == third)
        #expect(try await store.connection(.random()) == nil)
        #expect(Set(try await store.connections(ofUser: user)) == [first, second, third])
        #expect(Set(try await store.connections(ofSession: session1)) == [first, second])
        #expect(try await store.connections(ofSession: session2) == [third])
        #expect(try await store.connections(ofUser: uniqueName("nobody")).isEmpty)

        #expect(try await store.count(.user(user)) == 3)
        #expect(try await store.count(.user(other)) == 1)
        #expect(try await store.count(.session(session1)) == 2)
        #expect(try await store.count(.session(session2)) == 1)
        #expect(try await store.count(.server(serverA)) == 2)
        #expect(try await store.count(.server(serverB)) == 2)
        #expect(try await store.count(.total) == 4)
        #expect(try await store.count(.user(uniqueName("nobody"))) == 0)
    }

    /// A registration over the per-user limit is refused and changes nothing; `nil` means no limit.
    public static func enforcesUserLimit(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        let user = uniqueName("user")
        try await store.heartbeat(server(serverID, ttl: time.ttl * 10, time: time))
        for index in 1...2 {
            let outcome = try await store.register(
                record(user: user, server: serverID, time: time),
                maxConnectionsPerUser: 2
            )
            #expect(outcome == .registered(userConnections: index))
        }
        let refused = record(user: user, server: serverID, time: time)
        #expect(try await store.register(refused, maxConnectionsPerUser: 2) == .userLimitReached(userConnections: 2))
        #expect(try await store.connection(refused.id) == nil)
        #expect(try await store.count(.user(user)) == 2)
        #expect(try await store.register(refused, maxConnectionsPerUser: nil) == .registered(userConnections: 3))
        #expect(
            try await store.register(record(user: user, server: serverID, time: time), maxConnectionsPerUser: 1)
                == .userLimitReached(userConnections: 3)
        )
    }

    /// 50 concurrent registrations under a limit of 5 admit exactly 5.
    public static func enforcesUserLimitUnderConcurrency(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        let user = uniqueName("user")
        try await store.heartbeat(server(serverID, ttl: time.ttl * 10, time: time))
        let records = (0..<50).map { _ in record(user: user, server: serverID, time: time) }
        let outcomes = try await withThrowingTaskGroup(of: ConnectionRegistration.self) { group in
            for record in records {
                group.addTask { try await store.register(record, maxConnectionsPerUser: 5) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let admitted = outcomes.compactMap { outcome -> Int? in
            if case .registered(let count) = outcome { return count }
            return nil
        }
        #expect(admitted.sorted() == [1, 2, 3, 4, 5])
        #expect(outcomes.count - admitted.count == 45)
        for outcome in outcomes {
            if case .userLimitReached(let count) = outcome { #expect(count >= 5) }
        }
        #expect(try await store.count(.user(user)) == 5)
        #expect(try await store.connections(ofUser: user).count == 5)
    }

    /// Unregistering reports the user's remaining connections, and a second unregister returns `nil`.
    public static func unregistersIdempotently(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        let (user, session) = (uniqueName("user"), uniqueName("sess"))
        try await store.heartbeat(server(serverID, ttl: time.ttl * 10, time: time))
        let first = record(user: user, session: session, server: serverID, time: time)
        let second = record(user: user, session: session, server: serverID, time: time)
        _ = try await store.register(first, maxConnectionsPerUser: nil)
        _ = try await store.register(second, maxConnectionsPerUser: nil)

        #expect(try await store.unregister(first.id) == ConnectionRemoval(record: first, remainingUserConnections: 1))
        #expect(try await store.unregister(first.id) == nil)
        #expect(try await store.connection(first.id) == nil)
        #expect(try await store.count(.session(session)) == 1)
        #expect(try await store.unregister(second.id) == ConnectionRemoval(record: second, remainingUserConnections: 0))
        #expect(try await store.count(.user(user)) == 0)
        #expect(try await store.count(.session(session)) == 0)
        #expect(try await store.count(.server(serverID)) == 0)
        #expect(try await store.connections(ofUser: user).isEmpty)
        #expect(try await store.unregister(.random()) == nil)
        // Freed capacity can be used again.
        #expect(try await store.register(first, maxConnectionsPerUser: 1) == .registered(userConnections: 1))
    }

    /// A server whose heartbeat expired disappears from `ConnectionStore.servers()`; concurrent purgers
    /// report it exactly once, with its connections and only the users who have no connection left.
    public static func purgesExpiredServersOnce(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let (dying, living) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let (onlyDying, both, onlyLiving) = (uniqueName("user"), uniqueName("user"), uniqueName("user"))
        try await store.heartbeat(server(dying, ttl: time.ttl, time: time))
        try await store.heartbeat(server(living, ttl: time.ttl * 100, time: time))
        let lost1 = record(user: onlyDying, server: dying, time: time)
        let lost2 = record(user: onlyDying, server: dying, time: time)
        let lost3 = record(user: both, server: dying, time: time)
        let kept1 = record(user: both, server: living, time: time)
        let kept2 = record(user: onlyLiving, server: living, time: time)
        for record in [lost1, lost2, lost3, kept1, kept2] {
            _ = try await store.register(record, maxConnectionsPerUser: nil)
        }
        let before = Set(try await store.servers().map(\.id))
        #expect(before.isSuperset(of: [dying, living]))
        #expect(
            try await store.purgeExpiredServers().contains { $0.serverID == dying || $0.serverID == living } == false
        )

        try await time.advance(time.ttl * 2)
        let serversAfter = Set(try await store.servers().map(\.id))
        #expect(!serversAfter.contains(dying))
        #expect(serversAfter.contains(living))

        let reports = try await withThrowingTaskGroup(of: [PurgedServer].self) { group in
            for _ in 0..<8 { group.addTask { try await store.purgeExpiredServers() } }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let ours = reports.filter { $0.serverID == dying || $0.serverID == living }
        try #require(ours.count == 1)
        let purged = ours[0]
        #expect(purged.serverID == dying)
        #expect(Set(purged.connections) == [lost1, lost2, lost3])
        #expect(purged.usersGoneOffline == [onlyDying])

        #expect(try await store.purgeExpiredServers().contains { $0.serverID == dying } == false)
        #expect(try await store.connection(lost1.id) == nil)
        #expect(try await store.count(.server(dying)) == 0)
        #expect(try await store.count(.server(living)) == 2)
        #expect(try await store.count(.user(both)) == 1)
        #expect(try await store.count(.user(onlyDying)) == 0)
        #expect(try await store.unregister(lost3.id) == nil)
    }

    /// A server that heartbeats again before its expiry stays alive with its connections.
    public static func heartbeatKeepsServerAlive(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        let user = uniqueName("user")
        try await store.heartbeat(server(serverID, ttl: time.ttl, time: time))
        let connection = record(user: user, server: serverID, time: time)
        _ = try await store.register(connection, maxConnectionsPerUser: nil)
        try await time.advance(time.ttl / 2)
        var refreshed = server(serverID, ttl: time.ttl * 2, time: time)
        refreshed.connectionCount = 1
        try await store.heartbeat(refreshed)
        _ = time.stalledSinceLastCheck("")
        try await time.advance(time.ttl)
        let purged = try await store.purgeExpiredServers().contains { $0.serverID == serverID }
        if time.stalledSinceLastCheck("a refreshed server outlives its first expiry") { return }
        #expect(!purged)
        let listed = try await store.servers().first { $0.id == serverID }
        #expect(listed?.connectionCount == 1)
        #expect(listed?.expiresAt == refreshed.expiresAt)
        #expect(try await store.connection(connection.id) == connection)
    }

    /// `ConnectionStore.removeServer(_:)` removes a server and its connections at once.
    public static func removesServer(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let (leaving, staying) = (ServerID(uniqueName("srv")), ServerID(uniqueName("srv")))
        let (gone, both) = (uniqueName("user"), uniqueName("user"))
        try await store.heartbeat(server(leaving, ttl: time.ttl * 10, time: time))
        try await store.heartbeat(server(staying, ttl: time.ttl * 10, time: time))
        let removed1 = record(user: gone, server: leaving, time: time)
        let removed2 = record(user: both, server: leaving, time: time)
        let kept = record(user: both, server: staying, time: time)
        for record in [removed1, removed2, kept] { _ = try await store.register(record, maxConnectionsPerUser: nil) }

        let purged = try await store.removeServer(leaving)
        #expect(purged.serverID == leaving)
        #expect(Set(purged.connections) == [removed1, removed2])
        #expect(purged.usersGoneOffline == [gone])
        #expect(try await store.servers().contains { $0.id == leaving } == false)
        #expect(try await store.count(.server(leaving)) == 0)
        #expect(try await store.count(.user(both)) == 1)
        #expect(try await store.removeServer(leaving).connections.isEmpty)
    }

    /// `ConnectionStore.connections(ofServer:after:limit:)` pages through exactly one server's records, and no
    /// longer lists a removed one.
    public static func listsServerConnectionsInPages(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let (listed, other, empty) = (
            ServerID(uniqueName("srv")), ServerID(uniqueName("srv")), ServerID(uniqueName("srv"))
        )
        let user = uniqueName("user")
        let ours = (0..<7).map { index in
            record(
                user: user,
                session: index.isMultiple(of: 2) ? uniqueName("session") : nil,
                server: listed,
                time: time
            )
        }
        let theirs = (0..<3).map { _ in record(user: user, server: other, time: time) }
        for record in ours + theirs { _ = try await store.register(record, maxConnectionsPerUser: nil) }

        func listAll(_ server: ServerID) async throws -> Set<ConnectionRecord> {
            var all = Set<ConnectionRecord>()
            var cursor: String?
            var pages = 0
            repeat {
                let page = try await store.connections(ofServer: server, after: cursor, limit: 2)
                all.formUnion(page.records)
                cursor = page.nextCursor
                pages += 1
                try #require(pages <= 100, "the listing does not end")
            } while cursor != nil
            return all
        }
        #expect(try await listAll(listed) == Set(ours))
        #expect(try await listAll(other) == Set(theirs))
        #expect(try await listAll(empty).isEmpty)

        _ = try await store.unregister(ours[3].id)
        #expect(try await listAll(listed) == Set(ours).subtracting([ours[3]]))
    }

    /// A cursor `ConnectionStore.connections(ofServer:after:limit:)` did not return (it may come from outside,
    /// through the admin API) gives a page or `invalidArgument`, never another failure.
    public static func refusesForeignCursorsCleanly(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        try await store.heartbeat(server(serverID, ttl: time.ttl * 10, time: time))
        for record in (0..<3).map({ _ in record(user: uniqueName("user"), server: serverID, time: time) }) {
            _ = try await store.register(record, maxConnectionsPerUser: nil)
        }
        let foreign = ["not-a-cursor", "-1", "+5", "99999999999999999999999999", "0x10", " 1", "\u{0}", "é"]
        for cursor in foreign {
            do {
                let page = try await store.connections(ofServer: serverID, after: cursor, limit: 2)
                #expect(page.records.allSatisfy { $0.serverID == serverID }, "cursor \(cursor.debugDescription)")
            } catch {
                #expect(error.code == .invalidArgument, "cursor \(cursor.debugDescription): \(error)")
            }
        }
    }

    /// `ConnectionStore.servers()` returns the delivery counters of each server's last heartbeat, and `nil` for
    /// a heartbeat that reported none.
    public static func reportsServerCounters(makeStore: MakeStore, time: ConformanceTime) async throws {
        let store = try await makeStore()
        let serverID = ServerID(uniqueName("srv"))
        var record = server(serverID, ttl: time.ttl * 10, time: time)
        record.eventsDelivered = 1_234_567_890_123
        record.eventsDropped = 7
        try await store.heartbeat(record)
        var listed = try await store.servers().first { $0.id == serverID }
        #expect(listed?.eventsDelivered == 1_234_567_890_123)
        #expect(listed?.eventsDropped == 7)
        #expect(listed?.connectionCount == 0)

        record.eventsDelivered = nil
        record.eventsDropped = nil
        try await store.heartbeat(record)
        listed = try await store.servers().first { $0.id == serverID }
        #expect(listed != nil)
        #expect(listed?.eventsDelivered == nil)
        #expect(listed?.eventsDropped == nil)
    }
}
