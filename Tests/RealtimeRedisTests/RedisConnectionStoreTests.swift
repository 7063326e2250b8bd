import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(1))) struct RedisConnectionStoreTests {
        static func record(_ user: String, server: ServerID, session: String? = nil) -> ConnectionRecord {
            ConnectionRecord(
                id: .random(),
                serverID: server,
                userID: user,
                sessionID: session,
                isAdmin: false,
                remoteAddress: "192.0.2.9",
                origin: "https://app.example",
                connectedAt: .now()
            )
        }

        @Test func conformsToTheConnectionStoreContract() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                try await ConnectionStoreConformance.run(
                    makeStore: { RedisConnectionStore(client: client, prefix: "t\(RandomID.hex(bytes: 4)):") },
                    time: .realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))
                )
                await client.shutdown()
            }
        }

        /// A failover that loses an unregistration on the user's slot only (its server's set, on another slot, kept
        /// the removal) leaves the closed connection's record in the user's hash. At the limit, the claim removes
        /// such records (older than the grace) and claims again (ninth probe, H2: before, the user was refused until
        /// the hash expired). A record whose set is still being written (younger than the grace) is kept.
        @Test func aClaimAtTheLimitRemovesRecordsTheirServersNoLongerList() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let store = RedisConnectionStore(
                    client: client,
                    prefix: prefix,
                    recordTTL: .seconds(3600),
                    orphanGrace: .seconds(30)
                )
                let (user, server) = ("u-\(RandomID.hex(bytes: 3))", ServerID("srv-a"))
                let userKey = "\(prefix)cs:{u:\(user)}"
                func record(age: Duration, on server: ServerID = server) -> ConnectionRecord {
                    var record = Self.record(user, server: server, session: "s1")
                    record.connectedAt = .now() - age
                    return record
                }
                let (closed, live) = (record(age: .seconds(120)), record(age: .seconds(120)))
                #expect(try await store.register(closed, maxConnectionsPerUser: 2) == .registered(userConnections: 1))
                #expect(try await store.register(live, maxConnectionsPerUser: 2) == .registered(userConnections: 2))
                // The closed connection's unregistration, then the user's slot rolled back to before it.
                let field = try #require(
                    try await client.send(RedisCommand("HGET", userKey, closed.id.rawValue)).string
                )
                #expect(try await store.unregister(closed.id) != nil)
                _ = try await client.send(RedisCommand("HSET", userKey, closed.id.rawValue, field))
                #expect(try await store.count(.user(user)) == 2)

                let next = record(age: .zero)
                #expect(try await store.register(next, maxConnectionsPerUser: 2) == .registered(userConnections: 2))
                #expect(Set(try await store.connections(ofUser: user).map(\.id)) == [live.id, next.id])

                // A record whose server's set is not written yet (a registration under way on another server; here
                // its set is removed) is younger than the grace: not an orphan, so the claim at the limit is refused.
                let young = record(age: .zero, on: "srv-b")
                #expect(try await store.register(young, maxConnectionsPerUser: 3) == .registered(userConnections: 3))
                _ = try await client.send(RedisCommand("DEL", "\(prefix)cs:{srv:srv-b}"))
                #expect(
                    try await store.register(record(age: .zero), maxConnectionsPerUser: 3)
                        == .userLimitReached(userConnections: 3)
                )
                #expect(Set(try await store.connections(ofUser: user).map(\.id)) == [live.id, next.id, young.id])
                await client.shutdown()
            }
        }

        @Test func twoServersShareTheUserLimitAndPurgeADeadPeer() async throws {
            try await withRedis { configuration, _ in
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let storeA = RedisConnectionStore(client: clientA, prefix: prefix)
                let storeB = RedisConnectionStore(client: clientB, prefix: prefix)
                let (serverA, serverB) = (ServerID("srv-a"), ServerID("srv-b"))
                let now = Timestamp.now()
                try await storeA.heartbeat(
                    ServerRecord(
                        id: serverA,
                        startedAt: now,
                        lastHeartbeat: now,
                        expiresAt: now + .seconds(60),
                        connectionCount: 0
                    )
                )
                try await storeB.heartbeat(
                    ServerRecord(
                        id: serverB,
                        startedAt: now,
                        lastHeartbeat: now,
                        expiresAt: now + .milliseconds(300),
                        connectionCount: 0
                    )
                )
                // Both servers race to admit carol's connections under a limit of 3: exactly 3 win.
                let outcomes = try await withThrowingTaskGroup(of: ConnectionRegistration.self) { group in
                    for index in 0..<20 {
                        let (store, server) = index.isMultiple(of: 2) ? (storeA, serverA) : (storeB, serverB)
                        group.addTask {
                            try await store.register(Self.record("carol", server: server), maxConnectionsPerUser: 3)
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(outcomes.filter { if case .registered = $0 { true } else { false } }.count == 3)
                #expect(try await storeA.count(.user("carol")) == 3)
                _ = try await storeB.register(
                    Self.record("dave", server: serverB, session: "s-dave"),
                    maxConnectionsPerUser: nil
                )
                #expect(try await storeA.count(.total) == 4)
                #expect(Set(try await storeA.servers().map(\.id)) == [serverA, serverB])

                // B stops heartbeating; A purges it and learns who went offline.
                #expect(try await eventually { try await !storeA.servers().contains { $0.id == serverB } })
                let purged = try await storeA.purgeExpiredServers()
                #expect(purged.map(\.serverID) == [serverB])
                #expect(purged.first?.usersGoneOffline.contains("dave") == true)
                #expect(try await storeA.connections(ofSession: "s-dave").isEmpty)
                #expect(try await storeA.count(.total) == (try await storeA.count(.server(serverA))))
                let stats = try await storeA.servers()
                #expect(stats.map(\.id) == [serverA])
                // The record is A's own last heartbeat (given above), not a time measured against the clock now.
                #expect(
                    stats.first.map { $0.lastHeartbeat >= now - .milliseconds(1) && $0.lastHeartbeat <= now } == true
                )
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func heartbeatRefreshesRecordTTLs() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let store = RedisConnectionStore(client: client, prefix: prefix, recordTTL: .seconds(10))
                let server = ServerID("srv-ttl")
                let record = Self.record("erin", server: server, session: "s-erin")
                _ = try await store.register(record, maxConnectionsPerUser: nil)
                _ = try await client.send(RedisCommand("PEXPIRE", "\(prefix)cs:{c:\(record.id)}", "1000"))
                let now = Timestamp.now()
                try await store.heartbeat(
                    ServerRecord(
                        id: server,
                        startedAt: now,
                        lastHeartbeat: now,
                        expiresAt: now + .seconds(5),
                        connectionCount: 1
                    )
                )
                for key in [
                    "{c:\(record.id)}", "{u:erin}", "{s:s-erin}", "{srv:srv-ttl}", "{servers}:srv-ttl",
                ] {
                    let ttl = try await client.send(RedisCommand("PTTL", "\(prefix)cs:\(key)")).int ?? -1
                    #expect(ttl > 9000 && ttl <= 10_000, "\(key) has TTL \(ttl)")
                }
                #expect(try await store.connection(record.id) == record)
                await client.shutdown()
            }
        }
    }
}
