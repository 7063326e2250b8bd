import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Synchronization
import Testing

extension RedisIntegrationTests {
    /// The event bus on a real six-node Redis Cluster uses sharded pub/sub (`SSUBSCRIBE`/`SPUBLISH`), two hubs deliver
    /// across servers through it, and its subscriptions follow a slot migration and a failover during traffic.
    @Suite(.timeLimit(.minutes(6))) struct RedisShardedPubSubTests {
        static let secret = Array("cluster-secret-for-tests-0123456789".utf8)

        /// The cluster's configuration with sharded pub/sub on (the default on a cluster; set here so the suite keeps
        /// testing it whatever the default).
        static func sharded(_ cluster: RedisTestCluster) -> RedisConfiguration {
            var configuration = cluster.configuration
            configuration.clusterShardedPubSub = true
            return configuration
        }

        @Test func theBusUsesShardedPubSubAndHubsDeliverAcrossServers() async throws {
            try await withRedisCluster { cluster in
                try await Self.busIsSharded(cluster)
                try await Self.refusesAClusterThatRefusesSPUBLISH(cluster)
                try await RedisEventBusTests.runConformance(Self.sharded(cluster))
                try await Self.recordingPublishesInTheStreamsSlot(Self.sharded(cluster))
                let scenarios: [(HubClusterScenarios.Cluster) async throws -> Void] = [
                    HubClusterScenarios.eventsAndNotificationsCrossServersByScope,
                    HubClusterScenarios.aUserEventPublishedElsewhereArrivesInOrder,
                    HubClusterScenarios.eventsOfEachPublisherArriveInOrder,
                    HubClusterScenarios.revokingASessionClosesItsConnectionsOnEveryServer,
                    HubClusterScenarios.revokingAUserRefusesItsEarlierTokensOnEveryServer,
                    HubClusterScenarios.aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline,
                    HubClusterScenarios.listingConnectionsPagesThroughTheCluster,
                ]
                for scenario in scenarios { try await scenario(RedisHubCluster(Self.sharded(cluster)).scenarioCluster) }
            }
        }

        /// A cluster that refuses `SPUBLISH` (Redis before 7 answers "unknown command"; here an ACL user without the
        /// permission) fails the start-up check with an error that names sharded pub/sub and the way out, instead of a
        /// bus whose subscriptions keep being refused. The same user with classic pub/sub passes.
        static func refusesAClusterThatRefusesSPUBLISH(_ cluster: RedisTestCluster) async throws {
            let user = "nospublish\(RandomID.hex(bytes: 3))"
            for node in cluster.nodes {
                _ = try await cluster.send(
                    RedisCommand("ACL", "SETUSER", user, "on", ">pw-\(user)", "~*", "&*", "+@all", "-spublish"),
                    to: node
                )
            }
            var configuration = sharded(cluster)
            configuration.username = user
            configuration.password = "pw-\(user)"
            let client = RedisClient(configuration: configuration)
            let refusal = await #expect(throws: RealtimeError.self) { try await client.checkReady() }
            #expect(refusal?.code == .backendUnavailable)
            #expect(refusal?.message.contains("REDIS_CLUSTER_SHARDED_PUBSUB") == true, "\(String(describing: refusal))")
            await client.shutdown()
            configuration.clusterShardedPubSub = false
            let classic = RedisClient(configuration: configuration)
            try await classic.checkReady()
            #expect(try RedisEventBus(client: classic, clusterSecret: secret).ordersAcrossRoutes)
            let shardedClient = RedisClient(configuration: sharded(cluster))
            #expect(try !RedisEventBus(client: shardedClient, clusterSecret: secret).ordersAcrossRoutes)
            await shardedClient.shutdown()
            await classic.shutdown()
            for node in cluster.nodes { _ = try await cluster.send(RedisCommand("ACL", "DELUSER", user), to: node) }
        }

        /// Publishing through the bus with history: each route's script appends to its stream and `SPUBLISH`es on
        /// the route's channel, which is on the stream's slot (Redis refuses the script otherwise); every server hears
        /// a stream's messages in offset order.
        static func recordingPublishesInTheStreamsSlot(_ configuration: RedisConfiguration) async throws {
            let prefix = "t\(RandomID.hex(bytes: 4)):"
            let clients = (0..<3).map { _ in RedisClient(configuration: configuration) }
            let servers = try clients.prefix(2).map { client in
                (
                    bus: try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix) as any EventBus,
                    store: try RedisHistoryStore(client: client, clusterSecret: Self.secret, prefix: prefix)
                        as any HistoryStore
                )
            }
            let subscriber = try RedisEventBus(client: clients[2], clusterSecret: Self.secret, prefix: prefix)
            for route in [BusRoute.user("alice"), .admins, .everyone] {
                let channel = subscriber.channel(for: route)
                let stream = try #require(HistoryStream(route))
                let keys = try RedisHistoryStore(client: clients[2], clusterSecret: Self.secret, prefix: prefix)
                    .keys(of: stream)
                let slots = try await [channel, keys.entries, keys.meta].asyncMap { name in
                    try await clients[2].send(RedisCommand("CLUSTER", "KEYSLOT", name)).int
                }
                #expect(Set(slots).count == 1, "\(channel) shares its stream's slot")
            }
            try await HistoryStoreConformance.publishingKeepsOffsetOrder(servers: servers, subscriber: subscriber)
            for client in clients { await client.shutdown() }
        }

        /// A subscription holds only shard channels (no classic channel, no pattern), each on its slot's owner, and
        /// a user event reaches both the user's and the administrators' route.
        static func busIsSharded(_ cluster: RedisTestCluster) async throws {
            let prefix = "t\(RandomID.hex(bytes: 4)):"
            let (publishing, receiving) = (
                RedisClient(configuration: sharded(cluster)), RedisClient(configuration: sharded(cluster))
            )
            let publisher = try RedisEventBus(client: publishing, clusterSecret: Self.secret, prefix: prefix)
            let receiver = try RedisEventBus(client: receiving, clusterSecret: Self.secret, prefix: prefix)
            let subscription = try await receiver.subscribe(server: ServerID("srv-b"))
            let user = "u\(RandomID.hex(bytes: 3))"
            try await subscription.addInterest(.user(user))
            try await subscription.addInterest(.admins)
            let userChannel = receiver.channel(for: .user(user))
            #expect(userChannel == "\(prefix)bus:{u:\(user)}")
            #expect(receiver.channel(for: .admins) == "\(prefix)bus:{admins}")

            var shardChannels: Set<String> = []
            for node in try await cluster.primaries() {
                #expect(try await cluster.send(RedisCommand("PUBSUB", "CHANNELS"), to: node).array == [])
                #expect(try await cluster.send(RedisCommand("PUBSUB", "NUMPAT"), to: node).int == 0)
                let listed = try await cluster.send(RedisCommand("PUBSUB", "SHARDCHANNELS", "\(prefix)*"), to: node)
                for channel in listed.array ?? [] {
                    let name = try #require(channel.string)
                    // Each channel is on the primary that owns its slot.
                    #expect(try await cluster.primary(serving: name).port == node.port)
                    shardChannels.insert(name)
                }
            }
            #expect(
                shardChannels
                    == Set(
                        [.user(user), .admins, .everyone, .control, .server(ServerID("srv-b"))].map {
                            receiver.channel(for: $0)
                        }
                    )
            )

            let event = RealtimeEvent(type: .authenticationLoginFailure, userID: user)
            try await publisher.publish([
                BusMessage(origin: ServerID("srv-a"), route: .user(user), payload: .event(event)),
                BusMessage(origin: ServerID("srv-a"), route: .admins, payload: .event(event)),
            ])
            var routes: Set<BusRoute> = []
            var iterator = subscription.deliveries.makeAsyncIterator()
            while routes.count < 2, let delivery = await iterator.next() {
                if case .message(let message) = delivery, message.payload == .event(event) {
                    routes.insert(message.route)
                }
            }
            #expect(routes == [.user(user), .admins])

            await subscription.close()
            for client in [publishing, receiving] { await client.shutdown() }
        }

        /// Alice is connected to hub B; hub A publishes her events all along. Her slot moves to another primary
        /// (the `redis-cli --cluster reshard` steps), then that primary is killed and its replica promoted: each
        /// time, events published afterwards reach her again, and the failover's window reaches her as a `gap`.
        @Test func deliveryFollowsASlotMigrationAndAFailoverDuringTraffic() async throws {
            try await withRedisCluster { cluster in
                let hubs = RedisHubCluster(Self.sharded(cluster))
                let hubA = try hubs.hub()
                let hubB = try hubs.hub()
                try await hubA.running {
                    try await hubB.running {
                        let alice = try await hubB.connectClient(token: "alice-token")
                        try await alice.subscribe(["authentication.*"])
                        let published = Counter()
                        let stop = Flag()
                        // Bounded traffic: at most 20,000 events and 120 s, about 200 per second.
                        let traffic = Task {
                            let deadline = ContinuousClock.now + .seconds(120)
                            while !stop.isSet, published.value < 20_000, ContinuousClock.now < deadline {
                                let next = published.value + 1
                                _ = try? await hubA.publishAuthenticationEvent(
                                    .authenticationLoginFailure,
                                    userID: "alice",
                                    data: ["n": .int(Int64(next))]
                                )
                                published.set(next)
                                try? await Task.sleep(for: .milliseconds(5))
                            }
                        }
                        defer { traffic.cancel() }
                        let reader = AliceReader(alice)
                        try await reader.waitForEvent(after: 10)

                        // The slot migration (no node goes down): events published after it still arrive.
                        let channel = "{u:alice}"  // the hash tag of every key and channel of alice
                        let source = try await cluster.primary(serving: channel)
                        let destination = try #require(
                            try await cluster.primaries().first { $0.port != source.port }
                        )
                        try await cluster.migrateSlot(of: channel, to: destination)
                        let afterMigration = published.value
                        try await reader.waitForEvent(after: afterMigration)
                        #expect(try await cluster.primary(serving: channel).port == destination.port)

                        // The failover of the primary that now serves alice.
                        let gapsBefore = reader.gaps
                        destination.stop()
                        let killed = ContinuousClock.now
                        // The subscription's own health shows the window, and so does the hub's status, which is what
                        // /health/ready reports.
                        #expect(
                            try await eventually(timeout: .seconds(10)) {
                                await Self.subscriberConnected(hubB) == false
                            }
                        )
                        #expect(await hubB.healthCheck().status != .healthy)
                        try await cluster.waitUntilReady(primaries: 3, replicas: 2)
                        let promoted = ContinuousClock.now
                        let atPromotion = published.value
                        try await reader.waitForEvent(after: atPromotion, timeout: .seconds(30))
                        let resumed = ContinuousClock.now
                        try await reader.waitForGap(moreThan: gapsBefore, timeout: .seconds(30))
                        print(
                            "sharded pub/sub failover: promotion \(promoted - killed) after the kill, delivery resumed "
                                + "\(resumed - promoted) after the promotion"
                        )
                        #expect(resumed - promoted <= .seconds(5), "goal: delivery resumes within 5 s of promotion")
                        #expect(try await eventually(timeout: .seconds(10)) { await Self.subscriberConnected(hubB) })
                        #expect(
                            try await eventually(timeout: .seconds(10)) { await hubB.healthCheck().status == .healthy }
                        )
                        stop.set()
                        await traffic.value
                        #expect(await hubB.stats().server.gaps >= 1)
                    }
                }
                await hubs.shutdown()
            }
        }

        /// Whether the hub's bus subscription reports every channel subscribed on its shard.
        static func subscriberConnected(_ hub: RealtimeHub) async -> Bool {
            let bus = await hub.healthCheck().components["eventBus"]
            let subscriptions = bus?.details["subscriptions"]?.arrayValue ?? []
            return !subscriptions.isEmpty && subscriptions.allSatisfy { $0["subscriberConnected"]?.boolValue == true }
        }
    }
}

/// A count written by one task and read by others.
final class Counter: Sendable {
    private let stored = Mutex(0)
    var value: Int { stored.withLock { $0 } }
    func set(_ value: Int) { stored.withLock { $0 = value } }
}

/// Reads a client's frames in order: the highest event number `n` seen and whether a `gap` came.
final class AliceReader: Sendable {
    private let client: TestClient
    private let seen = Mutex((highest: Int64(0), gaps: 0))

    init(_ client: TestClient) { self.client = client }

    /// Reads until an event with `n` greater than `after` arrives.
    func waitForEvent(after: Int, timeout: Duration = .seconds(20)) async throws {
        try await read(timeout: timeout) { $0.highest > Int64(after) }
    }

    /// How many `gap` messages were read so far.
    var gaps: Int { seen.withLock { $0.gaps } }

    /// Reads until more than `count` `gap` messages have arrived (maybe already).
    func waitForGap(moreThan count: Int, timeout: Duration) async throws {
        try await read(timeout: timeout) { $0.gaps > count }
    }

    private func read(timeout: Duration, until done: ((highest: Int64, gaps: Int)) -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !done(seen.withLock { $0 }) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw TestTimeout(description: "no such message within \(timeout)") }
            let message = try await client.next(timeout: left)
            seen.withLock { seen in
                if message["type"] == "gap" { seen.gaps += 1 }
                if message["type"] == "event", let n = message["payload"]?["data"]?["n"]?.intValue {
                    seen.highest = max(seen.highest, n)
                }
            }
        }
    }
}

extension Array {
    /// `map` with an `async` transform, in order.
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
