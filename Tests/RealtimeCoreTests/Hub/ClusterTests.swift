import RealtimeTesting
import Synchronization
import Testing

@testable import RealtimeCore

/// Two hubs sharing one in-memory bus and store behave like two servers of one cluster. The scenarios every
/// backend shares are in `HubClusterScenarios` (InMemoryClusterScenarioTests); these are the in-memory-only ones.
@Suite struct ClusterTests {
    let fixture = HubFixture()

    @Test func busEventsOnARouteTheirScopeDoesNotAllowAreDropped() async throws {
        let hub = try fixture.hub()
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            let bob = try await hub.connectClient(token: "bob-token")
            let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
            for client in [alice, bob, admin] { try await client.subscribe(["*"]) }
            _ = try await admin.drainUntilPong()
            let aliceEvent = RealtimeEvent(type: "auth.secret", userID: "alice", data: [:])
            let everyoneEvent = RealtimeEvent(type: "auth.barrier", data: [:], scope: .everyone)
            // Alice's event on everyone's route and on bob's route: not delivered to anyone.
            for route in [BusRoute.everyone, .user("bob")] {
                try await fixture.bus.publish(
                    BusMessage(origin: "srv_other", route: route, payload: .event(aliceEvent))
                )
            }
            // An everyone-scoped event on the admins' route: not delivered either.
            try await fixture.bus.publish(
                BusMessage(origin: "srv_other", route: .admins, payload: .event(everyoneEvent))
            )
            // Alice's event on its own routes, then a barrier everyone may see.
            try await fixture.bus.publish(
                [
                    BusMessage(origin: "srv_other", route: .user("alice"), payload: .event(aliceEvent)),
                    BusMessage(origin: "srv_other", route: .admins, payload: .event(aliceEvent)),
                ]
            )
            try await fixture.bus.publish(
                BusMessage(origin: "srv_other", route: .everyone, payload: .event(everyoneEvent))
            )
            func typesUntilBarrier(_ client: TestClient) async throws -> [String] {
                var types: [String] = []
                while true {
                    let message = try await client.next(type: "event")
                    let type = message["payload"]?["type"]?.stringValue ?? "?"
                    if type == "auth.barrier" { return types }
                    // Administrators also see presence and audit events of the connections above.
                    if type.hasPrefix("auth.") { types.append(type) }
                }
            }
            #expect(try await typesUntilBarrier(alice) == ["auth.secret"])
            #expect(try await typesUntilBarrier(bob) == [])
            #expect(try await typesUntilBarrier(admin) == ["auth.secret"])
        }
    }

    @Test func disconnectingAUserOrAConnectionWorksAcrossServers() async throws {
        let hubA = try fixture.hub()
        let hubB = try fixture.hub()
        try await hubA.running {
            try await hubB.running {
                let bobOnB = try await hubB.connectClient(token: "bob-token")
                let aliceOnB = try await hubB.connectClient(token: "alice-token")
                try await hubA.disconnect(userID: "bob", reason: "account locked")
                #expect(try await bobOnB.nextClose() == (.disconnected, "account locked"))
                let longReason = String(repeating: "é", count: 100)  // 200 bytes of UTF-8
                try await hubA.disconnect(connectionID: aliceOnB.id, reason: longReason)
                let (code, reason) = try await aliceOnB.nextClose()
                #expect(code == .disconnected)
                #expect(reason.utf8.count <= 123)
                #expect(reason.hasPrefix("éé"))
                await #expect(throws: RealtimeError.self) { try await hubA.disconnect(connectionID: "conn_unknown") }
            }
        }
    }

    /// The run loop keeps every deadline to within half its length, whichever setting is the shortest (server
    /// heartbeats and ticket expiry ran up to a second late while only the authentication timeout and the client
    /// heartbeat set the tick).
    @Test func theRunLoopTickFollowsTheShortestDeadline() throws {
        var configuration = HubConfiguration()
        #expect(RealtimeHub.tick(for: configuration) == .seconds(1))
        configuration.serverHeartbeatInterval = .milliseconds(100)
        #expect(RealtimeHub.tick(for: configuration) == .milliseconds(50))
        configuration.upgradeTicketTimeout = .milliseconds(60)
        #expect(RealtimeHub.tick(for: configuration) == .milliseconds(30))
        configuration.authenticationTimeout = .milliseconds(40)
        #expect(RealtimeHub.tick(for: configuration) == .milliseconds(20))
        configuration.heartbeatInterval = .milliseconds(2)
        #expect(RealtimeHub.tick(for: configuration) == .milliseconds(10))
    }

    /// A failed server heartbeat marks the hub unhealthy until one succeeds; it is tried again after a second (then
    /// 2, 4 … up to the interval), not after the whole interval (ninth probe, M1: servers stayed unready ≈ 10 s after
    /// a Redis failover was over).
    @Test func aFailedServerHeartbeatIsRetriedWithinASecond() async throws {
        let delays = (0...5).map { RealtimeHub.serverHeartbeatDelay(failures: $0, interval: .seconds(10)) }
        #expect(delays == [.seconds(10), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(10)])
        #expect(RealtimeHub.serverHeartbeatDelay(failures: 1, interval: .milliseconds(200)) == .milliseconds(200))
        #expect(RealtimeHub.serverHeartbeatDelay(failures: 1_000, interval: .seconds(10)) == .seconds(10))

        let store = PausingConnectionStore(fixture.store)
        store.failHeartbeats(true)
        // An interval longer than the wait's hang guard (20 s): only the retry can bring the next heartbeat.
        let hub = try fixture.hub(connectionStore: store) {
            $0.serverHeartbeatInterval = .seconds(60)
            $0.serverTTL = .seconds(120)
        }
        try await hub.running {
            try await store.waitForHeartbeats(1)
            #expect(try await eventually { await hub.healthCheck().components["hub"]?.status == .unhealthy })
            store.failHeartbeats(false)
            let failed = store.heartbeats
            try await store.waitForHeartbeats(failed + 1)
            #expect(try await eventually { await hub.healthCheck().components["hub"]?.status == .healthy })
        }
    }

    @Test func connectionsTheRegistryLostAreRegisteredAgain() async throws {
        let hub = try fixture.hub {
            $0.serverHeartbeatInterval = .milliseconds(100)
        }
        try await hub.running {
            _ = try await hub.connectClient(token: "alice-token")
            _ = try await hub.connectClient(token: "bob-token")
            // The registry loses everything (e.g. Redis restarted without persistence).
            _ = try await fixture.store.removeServer(hub.serverID)
            #expect(try await fixture.store.count(.total) == 0)
            // Re-registration happens on a heartbeat and offers no event: poll (bounded at 20 s, a hang guard).
            #expect(try await eventually { try await fixture.store.count(.server(hub.serverID)) == 2 })
            #expect(try await fixture.store.count(.user("alice")) == 1)
        }
    }

    @Test func gracefulShutdownDrainsInBatchesAndLeavesTheCluster() async throws {
        let hub = try fixture.hub {
            $0.shutdown.batchSize = 2
            $0.shutdown.batchInterval = .milliseconds(20)
            $0.shutdown.reconnectDelay = .seconds(1)
            $0.shutdown.reconnectJitter = .seconds(4)
        }
        let task = Task { try await hub.run() }
        var clients: [TestClient] = []
        for index in 0..<5 {
            fixture.tokens.add("u\(index)", VerifiedIdentity(userID: "user-\(index)"))
            clients.append(try await hub.connectClient(token: "u\(index)"))
        }
        #expect(try await fixture.store.count(.server(hub.serverID)) == 5)
        hub.shutdown()
        try await task.value
        for client in clients {
            let reconnect = try await client.next(type: "reconnect")
            let delay = try #require(reconnect["payload"]?["retryAfterMs"]?.intValue)
            #expect((1000...5000).contains(delay))
            #expect(try await client.nextClose().0 == .goingAway)
        }
        #expect(try await fixture.store.count(.total) == 0)
        #expect(try await fixture.store.servers().isEmpty)
        #expect(await hub.rejection(uri: "/ws/events?token=u0")?.code == "shutting_down")
        let health = await hub.healthCheck()
        #expect(!health.healthy)
        #expect(health.draining)
    }

    @Test func theDrainWaitsForTheHostToCloseDrainedSocketsBoundedByCloseWait() async throws {
        let hub = try fixture.hub {
            $0.shutdown.reconnectJitter = .zero
            // Far beyond the slow host's 300 ms, so a loaded machine that runs the closer late cannot make run()
            // give up waiting first; a run() that did not wait would still return before the closer reports.
            $0.shutdown.closeWait = .seconds(120)
        }
        // Whether the slow host below has reported its socket closed, read the moment run() returns.
        let reported = Flag()
        let task = Task {
            try await hub.run()
            return reported.isSet
        }
        // A host that finishes the close handshake 300 ms after the close frame, and one that never reports.
        let prompt = try await hub.connectClient(token: "alice-token")
        let silent = try await hub.rawConnection(token: "bob-token")
        hub.shutdown()
        #expect(try await prompt.nextClose().0 == .goingAway)
        let closer = Task {
            try await Task.sleep(for: .milliseconds(300))
            reported.set()
            await silent.closed(code: .goingAway)
        }
        // run() returned only after the slower host reported its socket closed …
        #expect(try await task.value, "run() returned before the host reported the drained socket closed")
        try await closer.value

        // … and a host that never reports does not hold shutdown beyond closeWait.
        let second = try fixture.hub {
            $0.shutdown.reconnectJitter = .zero
            $0.shutdown.closeWait = .milliseconds(500)
        }
        let secondTask = Task { try await second.run() }
        let neverCloses = try await second.rawConnection(token: "bob-token")
        let secondStarted = ContinuousClock.now
        second.shutdown()
        try await secondTask.value
        #expect(ContinuousClock.now - secondStarted >= .milliseconds(500))
        await neverCloses.closed()
    }

    @Test func healthAndStatsHaveTheSpecifiedShape() async throws {
        let hub = try fixture.hub { $0.residentMemoryBytes = { 12_345_678 } }
        try await hub.running {
            _ = try await hub.connectClient(token: "alice-token")
            let health = await hub.healthCheck()
            #expect(health.healthy)
            let json = health.jsonObject
            #expect(json["healthy"] == true)
            #expect(json["serverId"] == .string(hub.serverID.rawValue))
            #expect(json["connections"] == 1)
            let stats = await hub.stats().jsonObject
            #expect(stats["server"]?["connections"] == 1)
            // The host supplies the figure (the core reads no process statistics itself).
            #expect(stats["server"]?["memory"]?["residentBytes"] == 12_345_678)
            #expect(stats["global"]?["totalConnections"] == 1)
            #expect(stats["notifications"]?["queueLength"]?.intValue != nil)
        }
    }
}

/// A flag set once by one task and read by another.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
