import Metrics
import MetricsTestKit
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Synchronization
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(1))) struct RedisEventBusTests {
        static let secret = Array("cluster-secret-for-tests-0123456789".utf8)
        static let fastCanary = RedisEventBus.Options(
            canaryInterval: .milliseconds(100),
            canaryTimeout: .milliseconds(400)
        )

        static func message(_ origin: ServerID, _ route: BusRoute, _ label: String) -> BusMessage {
            BusMessage(origin: origin, route: route, payload: .control(.disconnectUser(userID: "u", reason: label)))
        }

        static func label(_ delivery: BusDelivery?) -> String? {
            if case .message(let message) = delivery, case .control(.disconnectUser(_, let reason)) = message.payload {
                return reason
            }
            return nil
        }

        @Test func conformsToTheEventBusContract() async throws {
            try await withRedis { configuration, _ in try await Self.runConformance(configuration) }
        }

        /// The event bus conformance suite with buses on `configuration` (one node or a cluster).
        static func runConformance(_ configuration: RedisConfiguration) async throws {
            let clients = ClientList()
            try await EventBusConformance.run(makeCluster: { count in
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                return try (0..<count).map { _ in
                    let client = RedisClient(configuration: configuration)
                    clients.append(client)
                    return try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                }
            })
            for client in clients.all { await client.shutdown() }
        }

        @Test func refusesForgedReplayedAndMisroutedMessages() async throws {
            try await withRedis { configuration, _ in
                let metrics = TestMetrics()
                let client = withMetricsFactory(metrics) { RedisClient(configuration: configuration) }
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let bus = try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                let attackerBus = try RedisEventBus(
                    client: client,
                    clusterSecret: Array("not-the-cluster-secret-at-all!!".utf8),
                    prefix: prefix
                )
                let subscription = try await bus.subscribe(server: "srv-a")
                var deliveries = subscription.deliveries.makeAsyncIterator()
                let everyone = bus.channel(for: .everyone)
                // 1. Signed with the wrong secret.
                try await attackerBus.publish(Self.message("evil", .everyone, "forged"))
                // 2. No MAC at all.
                _ = try await client.send(
                    RedisCommand("PUBLISH", everyone, Self.message("evil", .everyone, "bare").bodyText)
                )
                // 3. A genuine payload of the control channel, replayed onto everyone's channel.
                var replay = RedisCommand("PUBLISH", everyone)
                replay.append(bytes: bus.sealedPayload(Self.message("srv-b", .control, "replayed")))
                _ = try await client.send(replay)
                // 4. Sealed for everyone's channel, but its body names another route.
                var misrouted = RedisCommand("PUBLISH", everyone)
                misrouted.append(
                    bytes: bus.sealedPayload(Self.message("srv-b", .control, "misrouted"), channel: everyone)
                )
                _ = try await client.send(misrouted)
                // 5. A genuine user-route event, re-marked as standing for the admins route too (the MAC covers it).
                try await subscription.addInterest(.admins)
                let event = RealtimeEvent(type: "auth.login", userID: "bob", data: [:])
                let userOnly = BusMessage(origin: "srv-b", route: .user("bob"), payload: .event(event))
                let genuine = bus.sealedPayload(userOnly)
                let flag = Array(",false]".utf8)
                let flagAt = try #require(genuine.firstRange(of: flag))
                var remarked = RedisCommand("PUBLISH", bus.channel(for: .user("bob")))
                remarked.append(
                    bytes: genuine[..<flagAt.lowerBound] + Array(",true]".utf8) + genuine[flagAt.upperBound...]
                )
                _ = try await client.send(remarked)
                // 6. The same event, genuinely for the user's route only: the admins' pattern hears it and ignores it.
                var userRouteOnly = RedisCommand("PUBLISH", bus.channel(for: .user("bob")))
                userRouteOnly.append(bytes: genuine)
                _ = try await client.send(userRouteOnly)
                try await bus.publish(Self.message("srv-b", .everyone, "genuine"))
                #expect(Self.label(await deliveries.next()) == "genuine")
                let health = await bus.healthCheck()
                #expect(health.details["refusedMessages"] == .int(5))
                #expect(metrics.counterTotal(label: "realtime_redis_bus_refused_messages_total") == 5)
                await subscription.close()
                await client.shutdown()
            }
        }

        @Test func killedSubscriberResubscribesAndReportsTheGap() async throws {
            try await withRedis { configuration, _ in
                var configuration = configuration
                configuration.initialReconnectDelay = .milliseconds(20)
                let metrics = TestMetrics()
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration),
                    withMetricsFactory(metrics) { RedisClient(configuration: configuration) }
                )
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let busA = try RedisEventBus(client: clientA, clusterSecret: Self.secret, prefix: prefix)
                let busB = try RedisEventBus(client: clientB, clusterSecret: Self.secret, prefix: prefix)
                let subscription = try await busB.subscribe(server: "srv-b")
                try await subscription.addInterest(.user("alice"))
                var deliveries = subscription.deliveries.makeAsyncIterator()
                let before = Timestamp.now()
                _ = try await clientA.send(RedisCommand("CLIENT", "KILL", "TYPE", "pubsub"))
                guard case .gap(let from, let to) = await deliveries.next() else {
                    Issue.record("expected a gap after the subscriber was killed")
                    return
                }
                #expect(from >= before - .milliseconds(5))
                #expect(to >= from)
                // Every channel was re-subscribed, including the user's.
                try await busA.publish(Self.message("srv-a", .user("alice"), "after-kill"))
                #expect(Self.label(await deliveries.next()) == "after-kill")
                try await busA.publish(Self.message("srv-a", .server("srv-b"), "direct"))
                #expect(Self.label(await deliveries.next()) == "direct")
                let health = await busB.healthCheck()
                let report = health.details["subscriptions"]?.arrayValue?.first
                #expect(report?["resubscribes"] == .int(1))
                #expect(
                    metrics.counterTotal(
                        label: "realtime_redis_reconnects_total",
                        dimensions: [("connection", "pubsub")]
                    )
                        == 1
                )
                await subscription.close()
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func queuesPublishesWhileRedisIsDownAndFlushesThemOnReconnect() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                var fast = configuration
                fast.initialReconnectDelay = .milliseconds(10)
                fast.maximumReconnectDelay = .milliseconds(50)
                var slow = configuration
                // The publisher reconnects later than the subscriber, so the flushed publishes find it subscribed.
                slow.initialReconnectDelay = .milliseconds(600)
                slow.maximumReconnectDelay = .milliseconds(600)
                let (clientA, clientB) = (RedisClient(configuration: slow), RedisClient(configuration: fast))
                let options = RedisEventBus.Options(publishQueueLimit: 3)
                let busA = try RedisEventBus(client: clientA, clusterSecret: Self.secret, options: options)
                let busB = try RedisEventBus(client: clientB, clusterSecret: Self.secret, options: options)
                let subscription = try await busB.subscribe(server: "srv-b")
                var deliveries = subscription.deliveries.makeAsyncIterator()
                try await busA.publish(Self.message("srv-a", .everyone, "before"))
                #expect(Self.label(await deliveries.next()) == "before")

                server.stop()
                #expect(try await eventually { !clientA.isConnected })
                for index in 0..<5 {
                    // Never throws for an outage: queued (and the two oldest dropped, limit 3).
                    try await busA.publish(Self.message("srv-a", .everyone, "queued-\(index)"))
                }
                let down = await busA.healthCheck()
                #expect(down.status == .unhealthy)
                #expect(down.details["queuedPublishes"] == .int(3))
                #expect(down.details["droppedPublishes"] == .int(2))
                #expect(down.details["redisConnected"] == .bool(false))

                try await server.launch()
                guard case .gap = await deliveries.next() else {
                    Issue.record("expected a gap after Redis came back")
                    return
                }
                for index in 2..<5 {
                    #expect(Self.label(await deliveries.next()) == "queued-\(index)")
                }
                #expect(try await eventually { await busA.healthCheck().details["queuedPublishes"] == .int(0) })
                await subscription.close()
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func canaryReportsRoundTripAndAStalledSubscriptionIsResubscribed() async throws {
            try await withRedis(ownServer: true) { configuration, _ in
                var configuration = configuration
                configuration.initialReconnectDelay = .milliseconds(20)
                configuration.commandTimeout = .seconds(5)
                let client = RedisClient(configuration: configuration)
                let bus = try RedisEventBus(client: client, clusterSecret: Self.secret, options: Self.fastCanary)
                let subscription = try await bus.subscribe(server: "srv-a")
                var deliveries = subscription.deliveries.makeAsyncIterator()
                #expect(
                    try await eventually {
                        let report = await bus.healthCheck().details["subscriptions"]?.arrayValue?.first
                        return report?["canaryRoundTripMs"] != nil && report?["canaryAgeMs"] != nil
                    }
                )
                #expect(await bus.healthCheck().status == .healthy)
                // Stall the pub/sub path: Redis holds every command (canaries included) for a while.
                let admin = RedisClient(configuration: configuration)
                _ = try await admin.send(RedisCommand("CLIENT", "PAUSE", "1500", "ALL"))
                #expect(try await eventually(timeout: .seconds(2)) { await bus.healthCheck().status == .unhealthy })
                // The stall forced a re-subscribe, reported as a gap once Redis answers again.
                guard case .gap = await deliveries.next() else {
                    Issue.record("expected a gap after the stalled subscription was re-subscribed")
                    return
                }
                #expect(try await eventually { await bus.healthCheck().status == .healthy })
                let report = await bus.healthCheck().details["subscriptions"]?.arrayValue?.first
                #expect((report?["canaryStalls"]?.intValue ?? 0) >= 1)
                await subscription.close()
                await admin.shutdown()
                await client.shutdown()
            }
        }

        @Test func fullDeliveryBufferDropsAndReportsAGap() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let options = RedisEventBus.Options(deliveryBufferSize: 2)
                let bus = try RedisEventBus(
                    client: client,
                    clusterSecret: Self.secret,
                    prefix: "t\(RandomID.hex(bytes: 4)):",
                    options: options
                )
                let subscription = try await bus.subscribe(server: "srv-a")
                var deliveries = subscription.deliveries.makeAsyncIterator()
                for index in 0..<5 { try await bus.publish(Self.message("srv-b", .everyone, "m\(index)")) }
                // The counter proves the reader has handled all five before the buffer is drained.
                #expect(try await eventually { await bus.healthCheck().details["droppedDeliveries"] == .int(3) })
                #expect(Self.label(await deliveries.next()) == "m0")
                #expect(Self.label(await deliveries.next()) == "m1")
                try await bus.publish(Self.message("srv-b", .everyone, "m5"))
                guard case .gap(let from, let to) = await deliveries.next() else {
                    Issue.record("expected a gap for the dropped deliveries")
                    return
                }
                #expect(from <= to)
                #expect(Self.label(await deliveries.next()) == "m5")
                await subscription.close()
                await client.shutdown()
            }
        }

        @Test func aUserScopedEventIsOnePublishThatAdministratorsHear() async throws {
            // Its own server: the test counts the PUBLISH commands Redis executed.
            try await withRedis(ownServer: true) { configuration, _ in
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                // Glob characters in the prefix are escaped in the pattern: the other namespace would match it.
                let hex = RandomID.hex(bytes: 4)
                let prefix = "t*\(hex)?:"
                // No canary PUBLISH while the test counts them.
                let quiet = RedisEventBus.Options(canaryInterval: .seconds(3600), canaryTimeout: .seconds(3600))
                let busA = try RedisEventBus(client: clientA, clusterSecret: Self.secret, prefix: prefix)
                let busB = try RedisEventBus(
                    client: clientB,
                    clusterSecret: Self.secret,
                    prefix: prefix,
                    options: quiet
                )
                let otherPrefixBus = try RedisEventBus(
                    client: clientA,
                    clusterSecret: Self.secret,
                    prefix: "tQQ\(hex)Z:"
                )
                let admins = try await busB.subscribe(server: "srv-b")
                try await admins.addInterest(.admins)
                var deliveries = admins.deliveries.makeAsyncIterator()
                let event = RealtimeEvent(type: "auth.login", userID: "bob", data: ["n": 1])
                let pair = [
                    BusMessage(origin: "srv-a", route: .user("bob"), payload: .event(event)),
                    BusMessage(origin: "srv-a", route: .admins, payload: .event(event)),
                ]
                let before = try await Self.publishCount(clientA)
                try await busA.publish(pair)
                #expect(try await Self.publishCount(clientA) == before + 1)
                #expect(await deliveries.next() == .message(pair[1]))
                // Another namespace's user channels are not heard.
                try await otherPrefixBus.publish(pair)
                try await busA.publish(Self.message("srv-a", .server("srv-b"), "sentinel"))
                #expect(Self.label(await deliveries.next()) == "sentinel")
                // Without interest in the admins route, neither the channel nor the pattern is heard.
                try await admins.removeInterest(.admins)
                try await busA.publish(pair)
                try await busA.publish(Self.message("srv-a", .server("srv-b"), "sentinel-2"))
                #expect(Self.label(await deliveries.next()) == "sentinel-2")
                await admins.close()
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        /// Messages recorded by a history store outside the append script (the hub's path while publishes queue
        /// behind a Redis outage) are published with their positions, so other servers' clients get them too
        /// (ninth probe, M2: they arrived without, and a later recovery replayed them again).
        @Test func messagesRecordedOutsideTheScriptKeepTheirPositionsOnTheBus() async throws {
            try await Self.withTwoBuses { busA, busB in
                let subscription = try await busB.subscribe(server: "srv-b")
                try await subscription.addInterest(.user("bob"))
                try await subscription.addInterest(.admins)
                var deliveries = subscription.deliveries.makeAsyncIterator()
                let event = RealtimeEvent(type: "auth.login", userID: "bob", data: ["n": 1])
                var pair = [
                    BusMessage(origin: "srv-a", route: .user("bob"), payload: .event(event)),
                    BusMessage(origin: "srv-a", route: .admins, payload: .event(event)),
                ]
                pair[0].position = StreamPosition(epoch: "e-user", offset: 41)
                pair[1].position = StreamPosition(epoch: "e-admins", offset: 7)
                try await busA.publish(pair)
                var heard: [BusMessage] = []
                for _ in 0..<2 {
                    guard case .message(let message) = await deliveries.next() else { break }
                    heard.append(message)
                }
                #expect(Set(heard.map(\.route)) == [.user("bob"), .admins])
                for message in heard {
                    #expect(message.position == pair.first { $0.route == message.route }?.position, "\(message.route)")
                }
                var everyone = BusMessage(origin: "srv-a", route: .everyone, payload: .event(event))
                everyone.position = StreamPosition(epoch: "e-everyone", offset: 3)
                try await busA.publish(everyone)
                guard case .message(let message) = await deliveries.next() else {
                    Issue.record("no delivery")
                    return
                }
                #expect(message.position == everyone.position)
                // A custom store's epoch that the prefix cannot carry (`:`): the message goes out without its
                // position, not refused by every receiver.
                everyone.position = StreamPosition(epoch: "node:42", offset: 4)
                try await busA.publish(everyone)
                guard case .message(let plain) = await deliveries.next() else {
                    Issue.record("a message with an epoch the prefix cannot carry was not delivered")
                    return
                }
                #expect(plain.position == nil && plain.payload == everyone.payload)
                await subscription.close()
            }
        }

        /// How many PUBLISH commands Redis executed so far.
        static func publishCount(_ client: RedisClient) async throws -> Int {
            let info = try await client.send(RedisCommand("INFO", "commandstats")).string ?? ""
            guard let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("cmdstat_publish:") }),
                let calls = line.split(separator: ",").first?.split(separator: "=").last
            else { return 0 }
            return Int(calls) ?? 0
        }

        @Test func aDirectSubscriptionHandsDeliveriesToItsHandlerInOrder() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let bus = try RedisEventBus(client: client, clusterSecret: Self.secret, prefix: prefix)
                let received = Mutex<[String]>([])
                let subscription = try await bus.subscribe(server: "srv-b") { delivery in
                    if let label = Self.label(delivery) { received.withLock { $0.append(label) } }
                }
                try await subscription.addInterest(.user("bob"))
                for index in 0..<50 {
                    let route: BusRoute = index.isMultiple(of: 2) ? .user("bob") : .everyone
                    try await bus.publish(Self.message("srv-a", route, "\(index)"))
                }
                #expect(try await eventually { received.withLock { $0.count } == 50 })
                #expect(received.withLock { $0 } == (0..<50).map { "\($0)" })
                // Nothing goes to the stream, which finishes on close; nothing read after close is handed over.
                await subscription.close()
                var deliveries = subscription.deliveries.makeAsyncIterator()
                #expect(await deliveries.next() == nil)
                // A probe subscribed before the publish: once it heard the message, Redis has handed it to every
                // subscriber (an event to wait for, instead of a grace period).
                let probed = Mutex<[String]>([])
                let probe = try await bus.subscribe(server: "srv-c") { delivery in
                    if let label = Self.label(delivery) { probed.withLock { $0.append(label) } }
                }
                try await bus.publish(Self.message("srv-a", .everyone, "after-close"))
                #expect(try await eventually { probed.withLock { $0 } == ["after-close"] })
                #expect(received.withLock { $0.count } == 50)
                await probe.close()
                await client.shutdown()
            }
        }

        @Test func twoServersExchangeMessagesByRoute() async throws {
            try await Self.withTwoBuses { busA, busB in
                let subA = try await busA.subscribe(server: "srv-a")
                let subB = try await busB.subscribe(server: "srv-b")
                try await subB.addInterest(.user("bob"))
                try await subA.addInterest(.admins)
                var itA = subA.deliveries.makeAsyncIterator()
                var itB = subB.deliveries.makeAsyncIterator()
                let event = RealtimeEvent(
                    type: EventType("auth.login"),
                    userID: "bob",
                    data: ["ip": "192.0.2.1"],
                    scope: .user("bob")
                )
                let toBob = BusMessage(origin: "srv-a", route: .user("bob"), payload: .event(event))
                try await busA.publish(toBob)
                #expect(await itB.next() == .message(toBob))
                let toAdmins = BusMessage(origin: "srv-b", route: .admins, payload: .event(event))
                try await busB.publish(toAdmins)
                #expect(await itA.next() == .message(toAdmins))
                await subA.close()
                await subB.close()
            }
        }

        /// Two buses on one Redis, each on its own client, in one namespace (two servers of a cluster).
        static func withTwoBuses(_ body: (RedisEventBus, RedisEventBus) async throws -> Void) async throws {
            try await withRedis { configuration, _ in
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                try await body(
                    try RedisEventBus(client: clientA, clusterSecret: Self.secret, prefix: prefix),
                    try RedisEventBus(client: clientB, clusterSecret: Self.secret, prefix: prefix)
                )
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }
    }
}

/// Collects clients created inside a `@Sendable` factory.
final class ClientList: Sendable {
    private let storage = Mutex<[RedisClient]>([])
    func append(_ client: RedisClient) { storage.withLock { $0.append(client) } }
    var all: [RedisClient] { storage.withLock { $0 } }
}

extension BusMessage {
    var bodyText: String { String(decoding: RedisBusCodec.encode(self, alsoAdmins: false), as: UTF8.self) }
}
