import RealtimeCore
import Testing

extension HubClusterScenarios {
    /// `RealtimeHub.connections(after:limit:)` pages through the connections of every live server of the cluster
    /// (the hubs' own and those of other servers in the registry) and `connections(ofUser:after:limit:)` through
    /// one user's; limits out of range and cursors the listing did not return are `invalidArgument`; each server's
    /// heartbeat reports its delivery counters, which the global statistics show.
    public static func listingConnectionsPagesThroughTheCluster(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let fast: (inout HubConfiguration) -> Void = { $0.serverHeartbeatInterval = .milliseconds(100) }
            let hubA = try servers.hub(fast)
            let hubB = try servers.hub(fast)
            // Servers of the cluster that the test only registers: two with connections, one empty.
            let others = (0..<3).map { _ in ServerID(uniqueName("srv")) }
            var expected = Set<ConnectionID>()
            var aliceExpected = Set<ConnectionID>()
            for (index, server) in others.enumerated() {
                let now = Timestamp.now()
                try await servers.store.heartbeat(
                    ServerRecord(
                        id: server,
                        startedAt: now,
                        lastHeartbeat: now,
                        expiresAt: now + .seconds(600),
                        connectionCount: index == 2 ? 0 : 5
                    )
                )
                guard index < 2 else { continue }
                for number in 0..<5 {
                    let record = ConnectionRecord(
                        id: .random(),
                        serverID: server,
                        userID: number == 0 ? "alice" : uniqueName("user"),
                        sessionID: uniqueName("sess"),
                        isAdmin: false,
                        remoteAddress: "192.0.2.9",
                        origin: "https://app.example",
                        connectedAt: now
                    )
                    _ = try await servers.store.register(record, maxConnectionsPerUser: nil)
                    expected.insert(record.id)
                    if record.userID == "alice" { aliceExpected.insert(record.id) }
                }
            }
            try await hubA.running {
                try await hubB.running {
                    let aliceOnA = try await hubA.connectClient(token: "alice-token")
                    let aliceOnB = try await hubB.connectClient(token: "alice-other-session")
                    let bob = try await hubB.connectClient(token: "bob-token")
                    for client in [aliceOnA, aliceOnB, bob] {
                        let id = try #require(try await client.next(type: "connected")["payload"]?["connectionId"])
                        let connection = ConnectionID(try #require(id.stringValue))
                        expected.insert(connection)
                        if client !== bob { aliceExpected.insert(connection) }
                    }
                    // The hubs list themselves once their first heartbeat is in.
                    #expect(
                        try await eventually {
                            let live = Set(try await servers.store.servers().map(\.id))
                            return live.isSuperset(of: [hubA.serverID, hubB.serverID])
                        }
                    )

                    var listed = Set<ConnectionID>()
                    var cursor: String?
                    var pages = 0
                    repeat {
                        let page = try await hubB.connections(after: cursor, limit: 2)
                        listed.formUnion(page.records.map(\.id))
                        cursor = page.nextCursor
                        pages += 1
                        try #require(pages <= 100, "the cluster listing does not end")
                    } while cursor != nil
                    #expect(listed.isSuperset(of: expected))
                    #expect(pages >= 3)

                    var alice: [ConnectionRecord] = []
                    cursor = nil
                    repeat {
                        let page = try await hubA.connections(ofUser: "alice", after: cursor, limit: 1)
                        #expect(page.records.count <= 1)
                        alice += page.records
                        cursor = page.nextCursor
                        try #require(alice.count <= 10, "the user listing does not end")
                    } while cursor != nil
                    #expect(alice.map(\.id).count == aliceExpected.count)
                    #expect(Set(alice.map(\.id)) == aliceExpected)
                    #expect(alice.allSatisfy { $0.userID == "alice" })

                    for limit in [0, -1, RealtimeHub.maxConnectionPageSize + 1] {
                        let cluster = await #expect(throws: RealtimeError.self) {
                            try await hubA.connections(after: nil, limit: limit)
                        }
                        let user = await #expect(throws: RealtimeError.self) {
                            try await hubA.connections(ofUser: "alice", after: nil, limit: limit)
                        }
                        #expect(cluster?.code == .invalidArgument && user?.code == .invalidArgument)
                    }
                    // "6162" is hex without the separator of a cluster cursor; "g" is no hex at all.
                    for garbage in ["zz", "abc", "", ".", "6162", "61.zz", String(repeating: "61", count: 600)] {
                        let error = await #expect(throws: RealtimeError.self, "cursor \(garbage.debugDescription)") {
                            try await hubA.connections(after: garbage, limit: 10)
                        }
                        #expect(error?.code == .invalidArgument)
                    }
                    for garbage in ["zz", "abc", "", "g", "61.62", String(repeating: "61", count: 600)] {
                        let error = await #expect(throws: RealtimeError.self, "cursor \(garbage.debugDescription)") {
                            try await hubA.connections(ofUser: "alice", after: garbage, limit: 1)
                        }
                        #expect(error?.code == .invalidArgument)
                    }

                    // Delivery counters travel with each heartbeat into the global statistics.
                    try await bob.subscribe(["system.*"])
                    try await hubA.publishSystemEvent(.systemMaintenanceScheduled, scope: .everyone)
                    _ = try await bob.next(type: "event")
                    #expect(
                        try await eventually {
                            let stats = await hubA.stats()
                            let reported = stats.global.servers.first { $0.serverID == hubB.serverID }
                            return (reported?.eventsDelivered ?? 0) >= 1 && reported?.eventsDropped == 0
                        }
                    )
                    let summary = await hubA.stats().global.servers.first { $0.serverID == others[0] }
                    #expect(summary != nil)
                    #expect(summary?.eventsDelivered == nil)
                }
            }
        }
    }
}
