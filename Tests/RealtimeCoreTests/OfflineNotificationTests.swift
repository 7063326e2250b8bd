import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

@Suite struct OfflineNotificationTests {
    final class Clock: Sendable {
        let now = Mutex(Timestamp(millisecondsSinceEpoch: 1_800_000_000_000))
        func advance(_ duration: Duration) { now.withLock { $0 = $0 + duration } }
    }

    static func notification(_ title: String, for user: String = "alice") -> RealtimeNotification {
        RealtimeNotification(level: .info, title: title, message: "", target: .user(user))
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

    @Test func limitsComeFromTheEnvironment() throws {
        let defaults = HubConfiguration().offlineNotifications
        #expect(defaults.maxPerUser == 100)
        #expect(defaults.retention == .seconds(7 * 86_400))
        #expect(defaults.enabled)
        let configuration = try HubConfiguration(environment: [
            "WEBSOCKET_OFFLINE_NOTIFICATIONS": "20",
            "WEBSOCKET_OFFLINE_NOTIFICATION_TTL": "3600000",
            "WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES": "2048",
        ])
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
