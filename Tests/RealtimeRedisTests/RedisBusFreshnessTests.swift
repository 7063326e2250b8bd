import Metrics
import MetricsTestKit
import NIOCore
import RealtimeCore
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

@testable import RealtimeRedis

extension RedisIntegrationTests {
    /// Freshness of sealed bus messages against a real Redis: a captured message replayed on its own channel, and
    /// messages sealed too long ago or too far ahead, are refused; two servers' ordinary traffic, on several
    /// channels at once (so one sender's sequence reaches a subscriber with gaps and out of order), is not.
    @Suite(.timeLimit(.minutes(1))) struct RedisBusFreshnessTests {
        static let secret = RedisEventBusTests.secret

        static func message(_ origin: ServerID, _ route: BusRoute, _ label: String) -> BusMessage {
            RedisEventBusTests.message(origin, route, label)
        }

        static func label(_ delivery: BusDelivery?) -> String? { RedisEventBusTests.label(delivery) }

        @Test func aCapturedMessageReplayedOnItsChannelAndStaleMessagesAreRefused() async throws {
            try await withRedis { configuration, _ in
                let metrics = TestMetrics()
                let clientA = RedisClient(configuration: configuration)
                let clientB = withMetricsFactory(metrics) { RedisClient(configuration: configuration) }
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let busA = try RedisEventBus(client: clientA, clusterSecret: Self.secret, prefix: prefix)
                let busB = try RedisEventBus(client: clientB, clusterSecret: Self.secret, prefix: prefix)
                let subscription = try await busB.subscribe(server: "srv-b")
                var deliveries = subscription.deliveries.makeAsyncIterator()
                let everyone = busA.channel(for: .everyone)

                // An eavesdropper with access to Redis: a raw subscriber of everyone's channel.
                let (captured, capture) = AsyncStream.makeStream(of: [UInt8].self)
                let eavesdropper = RedisSubscriber(
                    configuration: configuration,
                    eventLoop: clientA.eventLoopGroup.next(),
                    logger: clientA.logger,
                    metrics: clientA.metrics,
                    onMessage: { _, payload, _ in capture.yield(payload) },
                    onResubscribed: { _, _ in }
                )
                await eavesdropper.start(channels: [everyone])
                var capturedPayloads = captured.makeAsyncIterator()

                try await busA.publish(Self.message("srv-a", .everyone, "genuine"))
                #expect(Self.label(await deliveries.next()) == "genuine")
                let genuine = try #require(await capturedPayloads.next())

                // 1. The captured payload, published again on its own channel (MAC and route are valid).
                var replay = RedisCommand("PUBLISH", everyone)
                replay.append(bytes: genuine)
                _ = try await clientA.send(replay)
                // 2. and 3. Sealed with the cluster secret, but 60 s in the past or in the future.
                for offset in [Duration.seconds(-60), .seconds(60)] {
                    var stale = RedisCommand("PUBLISH", everyone)
                    stale.append(
                        bytes: busA.sealedPayload(
                            Self.message("srv-a", .everyone, "stale"),
                            sentAt: Timestamp.now() + offset
                        )
                    )
                    _ = try await clientA.send(stale)
                }
                // Redis delivers in order: the sentinel comes after the three refused messages.
                try await busA.publish(Self.message("srv-a", .everyone, "sentinel"))
                #expect(Self.label(await deliveries.next()) == "sentinel")

                let health = await busB.healthCheck()
                #expect(health.details["refusedMessages"] == .int(3))
                #expect(health.details["staleMessages"] == .int(2))
                #expect(health.details["replayedMessages"] == .int(1))
                let label = "realtime_redis_bus_refused_messages_total"
                #expect(metrics.counterTotal(label: label, dimensions: [("reason", "replayed")]) == 1)
                #expect(metrics.counterTotal(label: label, dimensions: [("reason", "stale")]) == 2)
                #expect(metrics.counterTotal(label: label, dimensions: [("reason", "invalid")]) == 0)
                await eavesdropper.close()
                capture.finish()
                await subscription.close()
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func twoServersTrafficOnManyChannelsIsAllAccepted() async throws {
            try await withRedis { configuration, _ in
                let clients = [RedisClient(configuration: configuration), RedisClient(configuration: configuration)]
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                let buses = try clients.map {
                    try RedisEventBus(client: $0, clusterSecret: Self.secret, prefix: prefix)
                }
                let servers: [ServerID] = ["srv-a", "srv-b"]
                var subscriptions: [any EventBusSubscription] = []
                for (bus, server) in zip(buses, servers) {
                    let subscription = try await bus.subscribe(server: server)
                    // Both user channels directly, and every user channel again through the admins' pattern.
                    for route in [BusRoute.user("u1"), .user("u2"), .admins] {
                        try await subscription.addInterest(route)
                    }
                    subscriptions.append(subscription)
                }
                // Each server publishes from 4 tasks at once, on 3 channels (the pool spreads channels over its
                // connections): every subscription hears both senders' sequences with gaps and reordered.
                let perTask = 40
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for (bus, server) in zip(buses, servers) {
                        for task in 0..<4 {
                            group.addTask {
                                for index in 0..<perTask {
                                    let label = "\(server.rawValue)-\(task)-\(index)"
                                    switch index % 3 {
                                    case 0: try await bus.publish(Self.message(server, .everyone, label))
                                    default:
                                        let user = BusRoute.user(index % 3 == 1 ? "u1" : "u2")
                                        let event = RealtimeEvent(
                                            type: "auth.login",
                                            userID: index % 3 == 1 ? "u1" : "u2",
                                            data: ["l": .string(label)]
                                        )
                                        try await bus.publish([
                                            BusMessage(origin: server, route: user, payload: .event(event)),
                                            BusMessage(origin: server, route: .admins, payload: .event(event)),
                                        ])
                                    }
                                }
                            }
                        }
                    }
                    try await group.waitForAll()
                }
                // Per sender: a third on everyone's channel (heard once), two thirds on user channels (heard on the
                // channel and through the pattern).
                let perSender = 4 * perTask
                let everyoneCount = 4 * (0..<perTask).filter { $0 % 3 == 0 }.count
                let expected = 2 * (everyoneCount + 2 * (perSender - everyoneCount))
                for (bus, subscription) in zip(buses, subscriptions) {
                    var received = 0
                    for await delivery in subscription.deliveries {
                        if case .message = delivery { received += 1 }
                        if received == expected { break }
                    }
                    #expect(received == expected)
                    let health = await bus.healthCheck()
                    #expect(health.details["refusedMessages"] == .int(0))
                }
                for subscription in subscriptions { await subscription.close() }
                for client in clients { await client.shutdown() }
            }
        }
    }
}
