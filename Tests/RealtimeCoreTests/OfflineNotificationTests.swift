import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

@Suite struct OfflineNotificationTests {
    final class Clock: Sendable {
        let now = Mutex(Timestamp(millisecondsSinceEpoch: 1_800_000_000_000))
        func advance(_ duration: Duration) { now.withLock { $0 = $0 + duration } }
    }

    static func notification(_ title: String) -> RealtimeNotification {
        RealtimeNotification(level: .info, title: title, message: "", target: .user("alice"))
    }

    @Test func theStoreBoundsPerUserExpiresAndHandsOverOnce() async throws {
        let clock = Clock()
        var limits = OfflineNotificationLimits()
        limits.maxPerUser = 3
        limits.retention = .seconds(60)
        let store = InMemoryOfflineNotificationStore(limits: limits) { clock.now.withLock { $0 } }
        for index in 1...5 { _ = try await store.enqueue(Self.notification("n\(index)"), for: "alice") }
        _ = try await store.enqueue(Self.notification("b"), for: "bob")
        #expect(try await store.queueLength() == 4, "3 kept for alice (oldest dropped), 1 for bob")
        #expect(try await store.take(for: "alice").map(\.title) == ["n3", "n4", "n5"])
        #expect(try await store.take(for: "alice").isEmpty, "handed over once")
        clock.advance(.seconds(60))
        #expect(try await store.queueLength() == 0, "bob's expired")
        #expect(try await store.take(for: "bob").isEmpty)
    }

    /// A notification for a user with no connection on either server is delivered once, to the user's next
    /// connection, whichever server it reaches; the stats count it while it waits.
    @Test func anOfflineUsersNotificationIsDeliveredOnceOnTheNextConnection() async throws {
        let offline = InMemoryOfflineNotificationStore()
        let fixture = HubFixture()
        func hub() throws -> RealtimeHub {
            try RealtimeHub(
                configuration: HubConfiguration.testing(),
                backends: .inMemory(
                    tokenVerifier: fixture.tokens,
                    connectionStore: fixture.store,
                    eventBus: fixture.bus,
                    rateLimiter: fixture.limiter,
                    sessionStore: fixture.sessions,
                    offlineNotifications: offline
                )
            )
        }
        let hubA = try hub()
        let hubB = try hub()
        try await hubA.running {
            try await hubB.running {
                let receipt = await hubA.sendUserNotification(
                    userID: "alice",
                    level: .warning,
                    title: "MFA",
                    message: ""
                )
                #expect(receipt.localDeliveries == 0)
                #expect(await hubA.stats().queueLength == 1)
                #expect(await hubB.stats().jsonObject["notifications"]?["queueLength"] == 1)
                let onB = try await hubB.connectClient(token: "alice-token")
                _ = try await onB.next(type: "connected")
                #expect(try await onB.next(type: "notification")["payload"]?["title"] == "MFA")
                let onA = try await hubA.connectClient(token: "alice-token-2")
                _ = try await onA.next(type: "connected")
                #expect(try await onA.drainUntilPong().filter { $0["type"] == "notification" }.isEmpty, "once")
                #expect(await hubA.stats().queueLength == 0)
                // Online now: delivered live, not queued.
                await hubB.sendUserNotification(userID: "alice", level: .info, title: "live", message: "")
                #expect(try await onA.next(type: "notification")["payload"]?["title"] == "live")
                #expect(try await offline.queueLength() == 0)
            }
        }
    }
}
