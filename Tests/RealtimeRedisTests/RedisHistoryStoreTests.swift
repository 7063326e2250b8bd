import Foundation
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(2))) struct RedisHistoryStoreTests {
        static let secret = Array("history-cluster-secret-0123456789".utf8)

        static func store(
            _ client: RedisClient,
            prefix: String = "t\(RandomID.hex(bytes: 4)):",
            configuration: HistoryConfiguration = HistoryConfiguration(),
            now: @escaping @Sendable () -> Timestamp = Timestamp.now
        ) throws -> RedisHistoryStore {
            try RedisHistoryStore(
                client: client,
                clusterSecret: secret,
                prefix: prefix,
                configuration: configuration,
                now: now
            )
        }

        /// Deletes every key under `prefix` (SCAN, then DEL), as a flush of the namespace. On a cluster, `nodes`
        /// are clients of each primary (SCAN sees one node's keys) and `client` the cluster client that deletes.
        static func deleteKeys(prefix: String, on client: RedisClient, scanning nodes: [RedisClient]? = nil)
            async throws
        {
            for node in nodes ?? [client] {
                var cursor = "0"
                repeat {
                    let reply = try await node.send(
                        RedisCommand("SCAN", cursor, "MATCH", "\(prefix)*", "COUNT", "1000")
                    )
                    let parts = try #require(reply.array)
                    cursor = try #require(parts.first?.string)
                    for key in parts.last?.array ?? [] {
                        _ = try await client.send(RedisCommand("DEL", try #require(key.string)))
                    }
                } while cursor != "0"
            }
        }

        @Test func conformsToTheHistoryStoreContract() async throws {
            try await withRedis { configuration, _ in
                let (client, peerClient) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                try await HistoryStoreConformance.run(
                    HistoryStoreConformance.Backend(
                        makeStore: { configuration, now in
                            try Self.store(client, configuration: configuration, now: now)
                        },
                        makePeer: { store, now in
                            let store = try #require(store as? RedisHistoryStore)
                            return try Self.store(
                                peerClient,
                                prefix: store.prefix,
                                configuration: store.configuration,
                                now: now
                            )
                        },
                        loseHistory: { store in
                            let store = try #require(store as? RedisHistoryStore)
                            try await Self.deleteKeys(prefix: store.prefix, on: client)
                            return store
                        },
                        time: .realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))
                    )
                )
                await client.shutdown()
                await peerClient.shutdown()
            }
        }

        /// A node restarted from a snapshot older than what it acknowledged (the same as a replica promoted before
        /// it had every write): the stream's meta survives with an older offset, and the next append reuses an
        /// offset a client already holds, for another event. Before: that client's recovery read past it and was
        /// told the replay was complete, without the new event. Now the restart's new replication id ends the
        /// epoch at the next read: `unavailable`, and the client resynchronises.
        @Test func aNodeRestartedFromAnOlderSnapshotEndsTheEpoch() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                let client = RedisClient(configuration: configuration)
                let store = try Self.store(client)
                let stream = HistoryStream.user("u1")
                for number in 1...2 { _ = try await store.append(HistoryStoreConformance.event("u1", number)) }
                #expect(try await client.send(RedisCommand("SAVE")).string == "OK")
                let held = try await store.append(HistoryStoreConformance.event("u1", 3))
                // Without a restart, reading keeps the epoch (the node's replication id is stable).
                guard case .page = try await store.read(stream, after: held, limit: .init()) else {
                    Issue.record("a read on the same node ended the epoch")
                    return
                }
                server.stop()
                try await server.launch()  // loads the snapshot: offsets 1 and 2
                var reused: StreamPosition?
                #expect(
                    try await eventually {
                        reused = try? await store.append(HistoryStoreConformance.event("u1", 4))
                        return reused != nil
                    }
                )
                #expect(reused == held, "the restarted node gave the held offset to another event")
                let read = try await store.read(stream, after: held, limit: .init())
                guard case .unavailable(let reason, let current) = read else {
                    Issue.record("recovery across the reused offset answered \(read)")
                    return
                }
                #expect(reason == .epochChanged)
                #expect(current.epoch != held.epoch && current.offset == 0)
                // The new epoch holds: the next read keeps it.
                #expect(try await store.position(of: stream) == current)
                await client.shutdown()
            }
        }

        @Test func anOversizedEntryFailsTheWholePublish() async throws {
            try await withRedis { configuration, _ in
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let clients = (0..<2).map { _ in RedisClient(configuration: configuration) }
                var history = HistoryConfiguration()
                history.maxEntryBytes = 1024
                try await HistoryStoreConformance.anOversizedEntryFailsTheWholePublish(
                    bus: try RedisEventBus(client: clients[0], clusterSecret: Self.secret, prefix: prefix),
                    store: try Self.store(clients[0], prefix: prefix, configuration: history),
                    subscriber: try RedisEventBus(client: clients[1], clusterSecret: Self.secret, prefix: prefix)
                )
                for client in clients { await client.shutdown() }
            }
        }

        @Test func publishingThroughTheBusKeepsOffsetOrderAcrossServers() async throws {
            try await withRedis { configuration, _ in
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let clients = (0..<3).map { _ in RedisClient(configuration: configuration) }
                let servers = try clients.prefix(2).map { client in
                    (
                        bus: try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                            as any EventBus,
                        store: try Self.store(client, prefix: prefix) as any HistoryStore
                    )
                }
                let subscriber = try RedisEventBus(client: clients[2], clusterSecret: Self.secret, prefix: prefix)
                try await HistoryStoreConformance.publishingKeepsOffsetOrder(servers: servers, subscriber: subscriber)
                for client in clients { await client.shutdown() }
            }
        }

        /// One script per publish: a user event's pair is one EVALSHA with two XADDs and one PUBLISH.
        @Test func aUserEventIsAppendedToBothStreamsAndPublishedInOneScript() async throws {
            try await withRedis(ownServer: true) { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let bus = try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                let store = try Self.store(client, prefix: prefix)
                let message = HistoryStoreConformance.event("u1", 1)
                var forAdmins = message
                forAdmins.route = .admins
                _ = try await bus.publish([message, forAdmins], recordingIn: store)  // loads the script
                let before = try await Self.commandCalls(client)
                let published = try await bus.publish([message, forAdmins], recordingIn: store)
                let after = try await Self.commandCalls(client)
                #expect(published.map { $0.position?.offset } == [2, 2])
                #expect(after["evalsha", default: 0] - before["evalsha", default: 0] == 1)
                #expect(after["xadd", default: 0] - before["xadd", default: 0] == 2)
                #expect(after["publish", default: 0] - before["publish", default: 0] == 1)

                // Another client (or secret) cannot record in the bus's script: the default path appends, then
                // publishes.
                let other = RedisClient(configuration: configuration)
                let elsewhere = try Self.store(other, prefix: prefix)
                #expect(try await bus.recordAndPublish([message], in: elsewhere) == nil)
                let foreign = try RedisHistoryStore(
                    client: client,
                    clusterSecret: Array("another-secret-entirely-0123456".utf8),
                    prefix: prefix
                )
                #expect(try await bus.recordAndPublish([message], in: foreign) == nil)
                let viaDefault = try await bus.publish([message], recordingIn: elsewhere)
                #expect(viaDefault.map { $0.position?.offset } == [3])
                await other.shutdown()
                await client.shutdown()
            }
        }

        static func commandCalls(_ client: RedisClient) async throws -> [String: Int] {
            let text = try #require(try await client.send(RedisCommand("INFO", "commandstats")).string)
            var calls: [String: Int] = [:]
            for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("cmdstat_") {
                let name = line.dropFirst(8).prefix { $0 != ":" }
                guard let range = line.firstRange(of: "calls="),
                    let count = Int(line[range.upperBound...].prefix { $0.isNumber })
                else { continue }
                calls[String(name)] = count
            }
            return calls
        }

        @Test func keysCarryTheirTTLsAndAHashTagPerStream() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let store = try Self.store(client)
                for stream in [HistoryStream.user("a}b{c"), .user(""), .admins, .everyone] {
                    let keys = store.keys(of: stream)
                    #expect(Self.hashTag(keys.entries) == Self.hashTag(keys.meta), "\(stream)")
                    #expect(keys.entries != keys.meta)
                }
                #expect(store.keys(of: .user("admins")).entries != store.keys(of: .admins).entries)
                _ = try await store.append(HistoryStoreConformance.event("u1", 1))
                let keys = store.keys(of: .user("u1"))
                let entriesTTL = try #require(try await client.send(RedisCommand("PTTL", keys.entries)).int)
                let metaTTL = try #require(try await client.send(RedisCommand("PTTL", keys.meta)).int)
                #expect(entriesTTL > 0 && entriesTTL <= 3_600_000, "the entries live the maximum age")
                #expect(metaTTL > 3_600_000 && metaTTL <= 86_400_000, "the epoch lives the retention")
                _ = try await client.send(RedisCommand("PEXPIRE", keys.meta, "5000"))
                _ = try await store.position(of: .user("u1"))
                let renewed = try #require(try await client.send(RedisCommand("PTTL", keys.meta)).int)
                #expect(renewed > 5000, "a read renews the epoch's retention")
                await client.shutdown()
            }
        }

        /// The hash tag as Redis Cluster computes it: the text between the first `{` and the first `}` after it.
        static func hashTag(_ key: String) -> Substring {
            guard let open = key.firstIndex(of: "{"),
                let close = key[key.index(after: open)...].firstIndex(of: "}"), close > key.index(after: open)
            else { return key[...] }
            return key[key.index(after: open)..<close]
        }

        /// A single-node Redis Cluster (all slots on one node): every script of one stream touches one slot.
        @Test func runsOnARedisClusterNode() async throws {
            let configFile = "/tmp/realtime-history-cluster-\(RandomID.hex(bytes: 4)).conf"
            // The cluster bus port defaults to port + 10,000, which may be taken or above 65,535.
            let server = try await RedisTestServer.start([
                "--cluster-enabled", "yes", "--cluster-config-file", configFile,
                "--cluster-port", String(try RedisTestServer.freePort()),
            ])
            defer {
                server.stop()
                try? FileManager.default.removeItem(atPath: configFile)
            }
            let client = RedisClient(configuration: server.configuration)
            _ = try await client.send(RedisCommand("CLUSTER", "ADDSLOTSRANGE", "0", "16383"))
            #expect(
                try await eventually {
                    try await client.send(RedisCommand("CLUSTER", "INFO")).string?.contains("cluster_state:ok") == true
                }
            )
            let store = try Self.store(client)
            for stream in [HistoryStream.user("alice"), .admins, .everyone] {
                let keys = store.keys(of: stream)
                let slots = try await client.pipeline([
                    RedisCommand("CLUSTER", "KEYSLOT", keys.entries), RedisCommand("CLUSTER", "KEYSLOT", keys.meta),
                ])
                #expect(slots[0] == slots[1], "\(stream)")
                let message: BusMessage
                switch stream {
                case .user(let id): message = HistoryStoreConformance.event(id, 1)
                case .admins, .everyone:
                    let notification = RealtimeNotification(level: .info, title: "t", message: "m", target: .everyone)
                    message = BusMessage(origin: "srv-a", route: stream.route, payload: .notification(notification))
                }
                let position = try await store.append(message)
                let read = try await store.read(
                    stream,
                    after: StreamPosition(epoch: position.epoch, offset: 0),
                    limit: .init()
                )
                guard case .page(let page) = read else { throw RealtimeError(.internalError, "\(read)") }
                #expect(page.entries.count == 1)
                try await store.trim(stream, maxEntries: 0, maxAge: .seconds(1))
            }
            await client.shutdown()
        }

        @Test func entriesWithoutTheirEpochAreDeleted() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let store = try Self.store(client)
                var last = StreamPosition(epoch: "", offset: 0)
                for number in 1...3 { last = try await store.append(HistoryStoreConformance.event("u1", number)) }
                let keys = store.keys(of: .user("u1"))
                _ = try await client.send(RedisCommand("DEL", keys.meta))
                let now = try await store.position(of: .user("u1"))
                #expect(now.epoch != last.epoch && now.offset == 0)
                #expect(try await client.send(RedisCommand("EXISTS", keys.entries)).int == 0)
                #expect(try await store.append(HistoryStoreConformance.event("u1", 4)).offset == 1)
                await client.shutdown()
            }
        }

        @Test func forgedOrMisplacedEntriesAreUnreadable() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let store = try Self.store(client)
                let alice = try await store.append(HistoryStoreConformance.event("alice", 1))
                let keys = store.keys(of: .user("alice"))
                // Whoever writes to Redis without the secret: an entry with a bad seal.
                let forged = Array(String(repeating: "0", count: 64).utf8) + Array("[2]\n{}".utf8)
                try await Self.inject(forged, into: keys, on: client)
                let read = try await store.read(.user("alice"), after: alice, limit: .init())
                guard case .unavailable(.unreadable, _) = read else { throw RealtimeError(.internalError, "\(read)") }
                #expect(store.refusedEntryCount == 1)

                // A genuine entry of bob's stream copied into carol's stream.
                let bob = try await store.append(HistoryStoreConformance.event("bob", 1))
                let bobEntry = try await client.send(
                    RedisCommand("XRANGE", store.keys(of: .user("bob")).entries, "-", "+")
                )
                let payload = try #require(bobEntry.array?.first?.array?.last?.array?[1].bytes)
                let carol = try await store.append(HistoryStoreConformance.event("carol", 1))
                try await Self.inject(payload, into: store.keys(of: .user("carol")), on: client)
                let stolen = try await store.read(.user("carol"), after: carol, limit: .init())
                guard case .unavailable(.unreadable, _) = stolen else {
                    throw RealtimeError(.internalError, "\(stolen)")
                }
                #expect(bob.offset == 1 && store.refusedEntryCount == 2)
                let health = await store.healthCheck()
                #expect(health.details["refusedEntries"] == .int(2))
                await client.shutdown()
            }
        }

        /// Appends `payload` as the stream's next entry behind the store's back.
        static func inject(_ payload: [UInt8], into keys: (entries: String, meta: String), on client: RedisClient)
            async throws
        {
            let offset = try #require(try await client.send(RedisCommand("HINCRBY", keys.meta, "o", "1")).int)
            var add = RedisCommand("XADD", keys.entries, String(offset), "d")
            add.append(bytes: payload)
            add.append("t")
            add.append(String(Timestamp.now().millisecondsSinceEpoch))
            _ = try await client.send(add)
        }

        @Test func positionsOnTheBusAreCheckedAndCarried() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let bus = try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                let subscription = try await bus.subscribe(server: "srv-sub")
                try await subscription.addInterest(.user("u1"))
                var deliveries = subscription.deliveries.makeAsyncIterator()
                let channel = bus.channel(for: .user("u1"))
                let sealed = bus.sealedPayload(HistoryStoreConformance.event("u1", 7))
                for prefix in ["@nooffset\n", "@e:-1\n", "@e:1,e:2,e:3\n", "@e:99999999999999999\n", "@e:1"] {
                    var command = RedisCommand("PUBLISH", channel)
                    command.append(bytes: Array(prefix.utf8) + sealed)
                    _ = try await client.send(command)
                }
                var good = RedisCommand("PUBLISH", channel)
                good.append(bytes: Array("@abc123:42\n".utf8) + sealed)
                _ = try await client.send(good)
                var heard: BusMessage?
                while let delivery = await deliveries.next() {
                    if case .message(let message) = delivery {
                        heard = message
                        break
                    }
                }
                #expect(heard?.position == StreamPosition(epoch: "abc123", offset: 42))
                #expect(bus.statistics.refusedMessages == 5)
                await subscription.close()
                await client.shutdown()
            }
        }

        @Test func failsWithBackendUnavailableWhenRedisIsDown() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                let client = RedisClient(configuration: configuration)
                let store = try Self.store(client)
                _ = try await store.append(HistoryStoreConformance.event("u1", 1))
                server.stop()
                #expect(try await eventually { !client.isConnected })
                let error = await #expect(throws: RealtimeError.self) {
                    _ = try await store.append(HistoryStoreConformance.event("u1", 2))
                }
                #expect(error?.code == .backendUnavailable)
                #expect(await store.healthCheck().status == .unhealthy)
                await client.shutdown()
            }
        }
    }
}
