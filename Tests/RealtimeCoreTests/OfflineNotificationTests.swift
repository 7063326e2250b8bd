import MetricsTestKit
import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

@Suite struct OfflineNotificationTests {
    final class Clock: Sendable {
        let now = Mutex(Timestamp(millisecondsSinceEpoch: 1_800_000_000_000))
        func advance(_ duration: Duration) { now.withLock { $0 = $0 + duration } }
    }

    static func notification(
        _ title: String,
        for user: String = "alice",
        data: JSONObject = [:]
    ) -> RealtimeNotification {
        RealtimeNotification(level: .info, title: title, message: "", data: data, target: .user(user))
    }

    /// The shared contract; hubs of one process share one store, so a "peer" is the same store.
    @Test func conformsToTheOfflineNotificationStoreContract() async throws {
        try await OfflineNotificationStoreConformance.run(
            OfflineNotificationStoreConformance.Backend(
                makeStore: { limits, now in try InMemoryOfflineNotificationStore(limits: limits, now: now) },
                makePeer: { store, _ in store }
            )
        )
    }

    @Test func theStoreBoundsPerUserExpiresAndHandsOverOnce() async throws {
        let clock = Clock()
        var limits = OfflineNotificationLimits()
        limits.maxPerUser = 3
        limits.retention = .seconds(60)
        let store = try InMemoryOfflineNotificationStore(limits: limits) { clock.now.withLock { $0 } }
        for index in 1...5 { _ = try await store.enqueue(Self.notification("n\(index)"), for: "alice") }
        _ = try await store.enqueue(Self.notification("b", for: "bob"), for: "bob")
        #expect(try await store.queueLength() == 4, "3 kept for alice (oldest dropped), 1 for bob")
        #expect(try await store.take(for: "alice").map(\.title) == ["n3", "n4", "n5"])
        #expect(try await store.take(for: "alice").isEmpty, "handed over once")
        clock.advance(.seconds(60))
        #expect(try await store.queueLength() == 0, "bob's expired")
        #expect(try await store.take(for: "bob").isEmpty)
    }

    /// Fuzz: 7,431 notifications of 15 KB to different offline users grew a server from 144 to 255 MB, linearly;
    /// each user was bounded, the number of users was not.
    @Test func allUsersTogetherStayUnderTheMemoryLimitOldestDroppedFirst() async throws {
        var limits = OfflineNotificationLimits()
        limits.maxNotificationBytes = 1024
        let entry =
            try limits.check(Self.notification("x", for: "u000"), for: "u000").count
            + InMemoryOfflineNotificationStore.entryOverheadBytes + 2 * 4
        limits.memoryLimitBytes = max(10 * entry, 1024 + InMemoryOfflineNotificationStore.entryOverheadBytes + 512)
        let fits = limits.memoryLimitBytes / entry
        let store = try InMemoryOfflineNotificationStore(limits: limits)
        // Churn first: notifications handed over at once leave only skipped entries behind in the age order.
        for _ in 0..<500 {
            _ = try await store.enqueue(Self.notification("x", for: "u999"), for: "u999")
            #expect(try await store.take(for: "u999").count == 1)
        }
        var displaced = 0
        for index in 0..<100 {
            let user = "u" + String(1000 + index).dropFirst()
            let result = try await store.enqueue(Self.notification("x", for: user), for: user)
            #expect(result.queued == 1)
            displaced += result.displaced
        }
        #expect(try await store.queueLength() == fits)
        #expect(displaced == 100 - fits, "every notification dropped for room is reported")
        // The oldest users lost theirs, the newest kept theirs.
        #expect(try await store.take(for: "u000").isEmpty)
        #expect(try await store.take(for: "u099").count == 1)
        #expect(try await store.take(for: "u" + String(1100 - fits).dropFirst()).count == 1)
        // A user's newest notification gets in even when the store is full of others.
        _ = try await store.enqueue(Self.notification("new", for: "u000"), for: "u000")
        #expect(try await store.take(for: "u000").map(\.title) == ["new"])
    }

    /// The publisher learns what became of a notification to an offline user, and operators see what was dropped:
    /// kept (with the user's count), too large to keep (the reason), older ones displaced by the per-user bound.
    @Test func theReceiptStatsAndMetricsSayWhatWasKept() async throws {
        var limits = OfflineNotificationLimits()
        limits.maxPerUser = 2
        limits.maxNotificationBytes = 1024
        let metrics = TestMetrics()
        let hub = try RealtimeHub(
            configuration: HubConfiguration.testing(),
            backends: .inMemory(
                tokenVerifier: HubClusterScenarios.tokens(),
                offlineNotifications: try InMemoryOfflineNotificationStore(limits: limits)
            ),
            metricsFactory: metrics
        )
        var receipts: [PublishReceipt] = []
        for title in ["a", "b", "c"] {
            receipts.append(await hub.send(Self.notification(title)))
        }
        #expect(receipts.map(\.offline) == [.kept(queued: 1), .kept(queued: 2), .kept(queued: 2)])
        let big = await hub.send(Self.notification("big", data: ["blob": .string(String(repeating: "x", count: 2000))]))
        guard case .notKept(let reason)? = big.offline else {
            Issue.record("an oversized notification was reported as \(String(describing: big.offline))")
            return
        }
        #expect(reason.contains("exceeds the limit of 1024"), "\(reason)")
        #expect(big.publishedToCluster, "it was still sent live")
        let broadcast = await hub.sendBroadcastNotification(level: .info, title: "all", message: "")
        #expect(broadcast.offline == nil, "only a user's notification is kept for them")

        let stats = await hub.stats()
        #expect(stats.server.offlineNotifications.kept == 3)
        #expect(stats.server.offlineNotifications.displaced == 1, "c displaced a")
        #expect(stats.server.offlineNotifications.tooLarge == 1)
        #expect(stats.server.offlineNotifications.storeFailures == 0)
        #expect(stats.jsonObject["server"]?["offlineNotifications"]?["displaced"] == 1)
        #expect(try metrics.expectCounter("realtime_offline_notifications_kept_total").totalValue == 3)
        let dropped = "realtime_offline_notifications_dropped_total"
        #expect(try metrics.expectCounter(dropped, [("reason", "displaced")]).totalValue == 1)
        #expect(try metrics.expectCounter(dropped, [("reason", "too_large")]).totalValue == 1)
    }

    @Test func limitsComeFromTheEnvironment() throws {
        let defaults = HubConfiguration().offlineNotifications
        #expect(defaults.maxPerUser == 100)
        #expect(defaults.retention == .seconds(7 * 86_400))
        #expect(defaults.enabled)
        let configuration = try HubConfiguration(environment: [
            "WEBSOCKET_OFFLINE_NOTIFICATIONS": "20",
            "WEBSOCKET_OFFLINE_NOTIFICATION_TTL": "3600000",
            "WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES": "2048",
            "WEBSOCKET_OFFLINE_NOTIFICATION_MEMORY_LIMIT": "1048576",
        ])
        #expect(defaults.memoryLimitBytes == 64 * 1024 * 1024)
        #expect(configuration.offlineNotifications.memoryLimitBytes == 1_048_576)
        #expect(configuration.offlineNotifications.maxPerUser == 20)
        #expect(configuration.offlineNotifications.retention == .seconds(3600))
        #expect(configuration.offlineNotifications.maxNotificationBytes == 2048)
        try configuration.validate()
        let off = try HubConfiguration(environment: ["WEBSOCKET_OFFLINE_NOTIFICATIONS": "0"])
        #expect(!off.offlineNotifications.enabled)
        try off.validate()
    }

    @Test func oversizedLimitsAreRefusedByValidation() {
        var configuration = HubConfiguration()
        configuration.offlineNotifications.maxNotificationBytes = 1 << 20
        #expect(throws: RealtimeError.self) { try configuration.validate() }
        #expect(throws: RealtimeError.self) {
            try InMemoryOfflineNotificationStore(limits: configuration.offlineNotifications)
        }
    }
}
