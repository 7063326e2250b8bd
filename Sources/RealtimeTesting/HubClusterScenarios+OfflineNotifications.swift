public import RealtimeCore
import Testing

/// Offline notification scenarios (issue 14, item 4) for a cluster whose backends share one
/// ``OfflineNotificationStore`` (``HubBackends/offlineNotifications``).
extension HubClusterScenarios {
    /// The titles of the notifications a client received up to the pong of a ping sent now.
    static func notificationTitles(_ client: TestClient) async throws -> [String] {
        try await client.drainUntilPong().compactMap { message in
            message["type"] == "notification" ? message["payload"]?["title"]?.stringValue : nil
        }
    }

    /// A notification for a user with no connection anywhere is queued (both servers count it in
    /// `notifications.queueLength`) and delivered exactly once, to the user's next connection, whichever server it
    /// reaches: first on the server that did not send it, then, after the user left, on the one that did. A later
    /// connection gets nothing again; once online, notifications are delivered live and not queued. A `/ws/admin`
    /// connection of the user does not take them: they wait for the user's next `/ws/events` connection.
    public static func anOfflineUsersNotificationIsDeliveredOnceOnEitherServer(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let first = await hubA.sendUserNotification(
                        userID: "alice",
                        level: .warning,
                        title: "mfa",
                        message: ""
                    )
                    #expect(first.localDeliveries == 0)
                    #expect(first.offline == .kept(queued: 1), "the receipt says it waits")
                    #expect(await hubA.stats().server.offlineNotifications.kept == 1)
                    #expect(await hubA.stats().queueLength == 1)
                    #expect(await hubB.stats().jsonObject["notifications"]?["queueLength"] == 1, "cluster-wide")

                    let onB = try await hubB.connectClient(token: "alice-token")
                    #expect(try await notificationTitles(onB) == ["mfa"], "delivered on the other server")
                    let onA = try await hubA.connectClient(token: "alice-token-2")
                    #expect(try await notificationTitles(onA).isEmpty, "delivered once")
                    #expect(await hubA.stats().queueLength == 0)
                    #expect(await hubB.stats().queueLength == 0)

                    // Online: delivered live, not queued.
                    let live = await hubB.sendUserNotification(
                        userID: "alice",
                        level: .info,
                        title: "live",
                        message: ""
                    )
                    #expect(live.offline == nil, "the user is connected (on the other server)")
                    #expect(try await onA.next(type: "notification")["payload"]?["title"] == "live")
                    #expect(try await onB.next(type: "notification")["payload"]?["title"] == "live")
                    #expect(await hubA.stats().queueLength == 0)

                    // Offline again: queued by B, delivered on A.
                    await onA.close()
                    await onB.close()
                    #expect(try await eventually { try await servers.store.count(.user("alice")) == 0 })
                    await hubB.sendUserNotification(userID: "alice", level: .critical, title: "lockout", message: "")
                    #expect(await hubA.stats().queueLength == 1)
                    let again = try await hubA.connectClient(token: "alice-token")
                    #expect(try await notificationTitles(again) == ["lockout"])
                    let later = try await hubB.connectClient(token: "alice-token-2")
                    #expect(try await notificationTitles(later).isEmpty)
                    #expect(await hubB.stats().queueLength == 0)

                    // Kept for the user's app: an admin console the user opens first does not take it.
                    await hubA.sendUserNotification(userID: "root", level: .warning, title: "for-the-app", message: "")
                    #expect(await hubA.stats().queueLength == 1)
                    let console = try await hubB.connectClient(token: "admin-token", path: "/ws/admin")
                    #expect(try await notificationTitles(console).isEmpty)
                    let app = try await hubA.connectClient(token: "admin-token")
                    #expect(try await notificationTitles(app) == ["for-the-app"])
                    #expect(await hubA.stats().queueLength == 0)
                }
            }
        }
    }

    /// The user's two connections reach both servers at once: each queued notification is delivered exactly once,
    /// and in order, to one of them.
    public static func anOfflineUserConnectingToBothServersAtOnceGetsEachNotificationOnce(
        _ cluster: Cluster
    ) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let titles = (1...5).map { "n\($0)" }
                    for (index, title) in titles.enumerated() {
                        let hub = index % 2 == 0 ? hubA : hubB
                        await hub.sendUserNotification(userID: "alice", level: .info, title: title, message: "")
                    }
                    #expect(await hubB.stats().queueLength == titles.count)
                    async let onA = hubA.connectClient(token: "alice-token")
                    async let onB = hubB.connectClient(token: "alice-token-2")
                    let (clientA, clientB) = try await (onA, onB)
                    let (receivedA, receivedB) = (
                        try await notificationTitles(clientA), try await notificationTitles(clientB)
                    )
                    #expect(
                        [receivedA, receivedB].filter { !$0.isEmpty } == [titles],
                        "one connection got every notification, in order; the other none (A: \(receivedA), B: \(receivedB))"
                    )
                    #expect(await hubA.stats().queueLength == 0)
                }
            }
        }
    }
}
