import RealtimeCore
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

@testable import RealtimeRedis

extension RedisIntegrationTests {
    /// Classic pub/sub (`clusterShardedPubSub = false`) on a real cluster, with the bus subscriber on another node than the one its
    /// server publishes to: the message crosses the cluster bus, and `PUBLISH` answers 0 receivers (it counts only
    /// the node it was sent to). The canary used to take that 0 for a lost subscription and re-subscribed every
    /// interval, losing the events of each window (3.6–10 % at 10,000 events/s in `RedisBenchmarks
    /// latency-cluster`).
    @Suite(.timeLimit(.minutes(3))) struct RedisClusterClassicPubSubTests {
        /// The router publishes on the primary with the lowest address (`RedisClusterRouter.anyPrimary`) and the
        /// subscriber connects to the first primary `CLUSTER SLOTS` lists, the owner of slot 0: move slot 0 away from
        /// the publishing node if it owns it, so the two differ.
        static func separatePublishingAndSubscribingNodes(_ cluster: RedisTestCluster) async throws -> RedisTestServer {
            let primaries = try await cluster.primaries().sorted { $0.port < $1.port }
            let publishing = try #require(primaries.first)
            let slotZero = try #require((0..<200_000).lazy.map { "k\($0)" }.first { RedisHashSlot.slot(of: $0) == 0 })
            if try await cluster.primary(serving: slotZero).port == publishing.port {
                try await cluster.migrateSlot(of: slotZero, to: primaries[1])
            }
            return publishing
        }

        /// `INFO commandstats` calls of `command` on `node`.
        static func calls(of command: String, on node: RedisTestServer, in cluster: RedisTestCluster) async throws
            -> Int
        {
            let info = try await cluster.send(RedisCommand("INFO", "commandstats"), to: node).string ?? ""
            let line = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("cmdstat_\(command):") }
            let calls = line?.split(separator: ",").first?.split(separator: "=").last
            return calls.flatMap { Int($0) } ?? 0
        }

        @Test func aSubscriberOnAnotherNodeKeepsItsSubscriptionAndGetsEveryMessage() async throws {
            try await withRedisCluster { cluster in
                let publishing = try await Self.separatePublishingAndSubscribingNodes(cluster)
                var classic = cluster.configuration
                classic.clusterShardedPubSub = false
                let client = RedisClient(configuration: classic)
                try await client.checkReady()
                // Canaries every 20 ms; a timeout long enough that only the publish reply could cause a stall.
                let bus = try RedisEventBus(
                    client: client,
                    clusterSecret: Array("cluster-secret-for-tests-0123456789".utf8),
                    prefix: "t\(RandomID.hex(bytes: 4)):",
                    options: RedisEventBus.Options(canaryInterval: .milliseconds(20), canaryTimeout: .seconds(10))
                )
                let subscription = try await bus.subscribe(server: "srv-classic")
                try await subscription.addInterest(.user("u1"))
                let before = try await Self.calls(of: "publish", on: publishing, in: cluster)

                // Fifty canaries later (each one a PUBLISH on the publishing node), none stalled.
                #expect(
                    try await eventually {
                        try await Self.calls(of: "publish", on: publishing, in: cluster) >= before + 50
                    }
                )
                // The setup this test is about: the subscriber sits on another node than the publishes.
                for node in cluster.nodes {
                    let subscribers = try await cluster.send(RedisCommand("CLIENT", "LIST", "TYPE", "pubsub"), to: node)
                    let listed = !(subscribers.string ?? "").isEmpty
                    #expect(!listed || node.port != publishing.port, "the subscriber is on the publishing node")
                }
                let report = try #require(await bus.healthCheck().details["subscriptions"]?.arrayValue?.first)
                #expect(report["canaryStalls"]?.intValue == 0)
                #expect(report["resubscribes"]?.intValue == 0)
                #expect(report["subscriberConnected"] == true)
                #expect(await bus.healthCheck().status == .healthy)

                // Every message arrives, and no gap is reported in between.
                let origin = ServerID("srv-other")
                let messages = (0..<200).map {
                    BusMessage(
                        origin: origin,
                        route: .user("u1"),
                        payload: .control(.disconnectUser(userID: "u1", reason: "m\($0)"))
                    )
                }
                for message in messages { try await bus.publish(message) }
                var received: [String] = []
                for await delivery in subscription.deliveries {
                    guard case .message(let message) = delivery else {
                        Issue.record("unexpected \(delivery) after \(received.count) messages")
                        break
                    }
                    if case .control(.disconnectUser(_, let reason)) = message.payload { received.append(reason) }
                    if received.count == messages.count { break }
                }
                #expect(received == (0..<200).map { "m\($0)" })
                await subscription.close()
                await client.shutdown()

                // The bus's conformance checks in this mode, one publisher's order across routes included.
                try await RedisEventBusTests.runConformance(classic)
            }
        }
    }
}
