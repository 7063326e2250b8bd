public import RealtimeCore
import Testing

/// Administrators' and everyone's notifications follow the history rules of events (issue 14, item 4): recorded in
/// the `admins` and `everyone` streams, carrying their position, recovered after a reconnect.
extension HubClusterScenarios {
    /// The notification titles (`notification:<title>`) and event types a client received up to its `recovered`
    /// message, and that message.
    static func replayedItems(_ client: TestClient) async throws -> (items: [String], recovered: JSONValue) {
        let (messages, recovered) = try await untilRecovered(client)
        let items = messages.compactMap { message -> String? in
            switch message["type"]?.stringValue {
            case "notification": "notification:" + (message["payload"]?["title"]?.stringValue ?? "?")
            case "event": message["payload"]?["type"]?.stringValue
            default: nil
            }
        }
        return (items, recovered)
    }

    /// A broadcast and an admin notification carry their position in the `everyone` and `admins` streams, live on
    /// every server; a user and an administrator who were away when more were sent (on either server) recover them
    /// on another server, in stream order among the events of the same streams, each exactly once: the user only
    /// the broadcasts, the administrator both.
    public static func adminAndBroadcastNotificationsAreRecoveredLikeEvents(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let alice = try await hubA.connectClient(token: "alice-token")
                    let admin = try await hubA.connectClient(token: "admin-token", path: "/ws/admin")
                    await alice.send(#"{"type":"subscribe","payload":{"eventTypes":["system.*"]}}"#)
                    _ = try await alice.next(type: "subscribed")
                    await admin.send(#"{"type":"subscribe","payload":{"eventTypes":["system.*"]}}"#)
                    _ = try await admin.next(type: "subscribed")

                    await hubB.sendBroadcastNotification(level: .info, title: "b1", message: "")
                    await hubB.sendAdminNotification(level: .warning, title: "a1", message: "")
                    let b1 = try await alice.next(type: "notification")
                    #expect(b1["payload"]?["title"] == "b1")
                    #expect(position(of: b1)?["stream"] == "everyone", "a broadcast carries its everyone position")
                    let aliceAt = try #require(position(of: b1))
                    // Two streams, two channels: their order relative to each other is not defined.
                    var byTitle: [String: JSONValue] = [:]
                    for _ in 0..<2 {
                        let notification = try await admin.next(type: "notification")
                        byTitle[notification["payload"]?["title"]?.stringValue ?? "?"] = notification
                    }
                    #expect(byTitle.keys.sorted() == ["a1", "b1"])
                    #expect(byTitle["b1"].flatMap(position(of:)) == aliceAt, "one position per stream, on every server")
                    let adminAt = try #require(byTitle["a1"].flatMap(position(of:)))
                    #expect(adminAt["stream"] == "admins")
                    await alice.close()
                    await admin.close()

                    // Missed, sent on both servers: broadcasts, admin notifications and broadcast events.
                    await hubA.sendBroadcastNotification(level: .info, title: "b2", message: "")
                    await hubB.sendAdminNotification(level: .critical, title: "a2", message: "")
                    try await hubA.publishSystemEvent(.systemMaintenanceScheduled, data: ["n": 1])
                    await hubB.sendBroadcastNotification(level: .info, title: "b3", message: "")
                    let missed = [
                        "notification:b2", EventType.systemMaintenanceScheduled.rawValue, "notification:b3",
                    ]

                    let back = try await hubB.connectClient(token: "alice-token")
                    _ = try await back.next(type: "connected")
                    await back.send(
                        #"{"type":"subscribe","payload":{"eventTypes":["system.*"],"recover":{"everyone":\#(JSONWriter.string(aliceAt))}}}"#
                    )
                    _ = try await back.next(type: "subscribed")
                    let (items, recovered) = try await replayedItems(back)
                    #expect(items == missed, "the broadcasts recovered in stream order; no admin notification")
                    #expect(recovered["payload"]?["recovered"] == true)
                    #expect(recovered["payload"]?["replayed"]?.intValue == 3)

                    let adminBack = try await hubA.connectClient(token: "admin-token", path: "/ws/admin")
                    _ = try await adminBack.next(type: "connected")
                    await adminBack.send(
                        #"{"type":"subscribe","payload":{"eventTypes":["system.*"],"recover":{"everyone":\#(JSONWriter.string(aliceAt)),"admins":\#(JSONWriter.string(adminAt))}}}"#
                    )
                    _ = try await adminBack.next(type: "subscribed")
                    let (adminItems, adminRecovered) = try await replayedItems(adminBack)
                    #expect(adminRecovered["payload"]?["recovered"] == true)
                    #expect(
                        adminItems.filter { $0.hasPrefix("notification:b") } == ["notification:b2", "notification:b3"]
                    )
                    #expect(adminItems.filter { $0.hasPrefix("notification:a") } == ["notification:a2"])

                    // Live again, once each.
                    await hubA.sendBroadcastNotification(level: .info, title: "b4", message: "")
                    #expect(try await back.next(type: "notification")["payload"]?["title"] == "b4")
                    #expect(try await adminBack.next(type: "notification")["payload"]?["title"] == "b4")
                    #expect(try await back.drainUntilPong().filter { $0["type"] == "notification" }.isEmpty)
                }
            }
        }
    }
}
