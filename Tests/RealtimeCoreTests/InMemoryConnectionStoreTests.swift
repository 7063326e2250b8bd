import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct InMemoryConnectionStoreTests {
    let clock = ManualClock()

    func record(_ user: String, on server: ServerID, id: ConnectionID = .random()) -> ConnectionRecord {
        ConnectionRecord(
            id: id,
            serverID: server,
            userID: user,
            sessionID: nil,
            isAdmin: false,
            remoteAddress: "192.0.2.1",
            origin: nil,
            connectedAt: clock.timestamp
        )
    }

    func server(_ id: ServerID, ttl: Duration) -> ServerRecord {
        ServerRecord(
            id: id,
            startedAt: clock.timestamp,
            lastHeartbeat: clock.timestamp,
            expiresAt: clock.timestamp + ttl,
            connectionCount: 0
        )
    }

    @Test func refusesRecordsOverTheCap() async throws {
        let store = InMemoryConnectionStore(maxRecords: 3, now: clock.timestampSource)
        for index in 0..<3 { _ = try await store.register(record("u\(index)", on: "s"), maxConnectionsPerUser: nil) }
        await #expect(throws: RealtimeError.self) {
            try await store.register(record("u9", on: "s"), maxConnectionsPerUser: nil)
        }
        #expect(try await store.count(.total) == 3)
        // The per-user limit is decided before the cap.
        #expect(
            try await store.register(record("u0", on: "s"), maxConnectionsPerUser: 1)
                == .userLimitReached(userConnections: 1)
        )
    }

    @Test func registeringAnIdAgainReplacesItsRecord() async throws {
        let store = InMemoryConnectionStore(now: clock.timestampSource)
        let first = record("u1", on: "s1", id: "conn_x")
        var moved = first
        moved.serverID = "s2"
        _ = try await store.register(first, maxConnectionsPerUser: 1)
        #expect(try await store.register(moved, maxConnectionsPerUser: 1) == .registered(userConnections: 1))
        #expect(try await store.count(.server("s1")) == 0)
        #expect(try await store.count(.server("s2")) == 1)
        #expect(try await store.connection("conn_x") == moved)
    }

    @Test func userOnTwoDeadServersGoesOfflineOnce() async throws {
        let store = InMemoryConnectionStore(now: clock.timestampSource)
        try await store.heartbeat(server("s1", ttl: .seconds(10)))
        try await store.heartbeat(server("s2", ttl: .seconds(10)))
        try await store.heartbeat(server("s3", ttl: .seconds(100)))
        _ = try await store.register(record("both", on: "s1"), maxConnectionsPerUser: nil)
        _ = try await store.register(record("both", on: "s2"), maxConnectionsPerUser: nil)
        _ = try await store.register(record("alive", on: "s2"), maxConnectionsPerUser: nil)
        _ = try await store.register(record("alive", on: "s3"), maxConnectionsPerUser: nil)
        clock.advance(by: .seconds(10))
        let purged = try await store.purgeExpiredServers()
        #expect(purged.map(\.serverID) == ["s1", "s2"])
        #expect(purged.flatMap(\.usersGoneOffline) == ["both"])
        #expect(purged.reduce(0) { $0 + $1.connections.count } == 3)
        #expect(store.serverRegistrySize == 1)
        #expect(try await store.count(.total) == 1)
    }

    @Test func serverExpiresExactlyAtExpiresAt() async throws {
        let store = InMemoryConnectionStore(now: clock.timestampSource)
        try await store.heartbeat(server("s1", ttl: .seconds(10)))
        clock.advance(by: .milliseconds(9_999))
        #expect(try await store.servers().map(\.id) == ["s1"])
        #expect(try await store.purgeExpiredServers().isEmpty)
        clock.advance(by: .milliseconds(1))
        #expect(try await store.servers().isEmpty)
        #expect(try await store.purgeExpiredServers().map(\.serverID) == ["s1"])
    }
}
