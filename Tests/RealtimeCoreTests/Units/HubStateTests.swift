import Synchronization
import Testing

@testable import RealtimeCore

/// `HubState` fan-out on its own: routes, pattern matching, visibility, de-duplication, overflow and clean-up.
/// No hub, no bus, no socket: connections are bare `ConnectionCore`s whose queues the test reads.
@Suite struct HubStateTests {
    final class Connections {
        var state = HubState()
        let alice: ConnectionCore
        let bob: ConnectionCore
        let admin: ConnectionCore

        init(queueFrames: Int = 100) {
            var limits = HubConfiguration().limits
            limits.outboundQueueFrames = queueFrames
            func core(_ endpoint: Endpoint, _ identity: VerifiedIdentity) -> ConnectionCore {
                ConnectionCore(
                    id: .random(),
                    endpoint: endpoint,
                    remoteAddress: IPAddress("127.0.0.1")!,
                    origin: nil,
                    identity: identity,
                    limits: limits,
                    now: .now
                )
            }
            let aliceIdentity = VerifiedIdentity(userID: "alice", sessionID: "s-alice")
            let bobIdentity = VerifiedIdentity(userID: "bob", sessionID: "s-bob")
            let adminIdentity = VerifiedIdentity(userID: "root", sessionID: "s-root", isAdmin: true, roles: ["admin"])
            alice = core(.events, aliceIdentity)
            bob = core(.events, bobIdentity)
            admin = core(.admin, adminIdentity)
            state.activate(alice, identity: aliceIdentity)
            state.activate(bob, identity: bobIdentity)
            state.activate(admin, identity: adminIdentity)
        }

        func subscribe(_ core: ConnectionCore, _ patterns: [String]) throws {
            _ = state.subscribe(core.id, try patterns.map { try EventPattern(validating: $0) })
        }

        /// Delivers `event` on `route`; returns the delivery count and the overflowed connections.
        func deliver(_ event: RealtimeEvent, on route: BusRoute) -> (Int, [ConnectionID]) {
            var effects = HubState.FanOutEffects()
            let key = state.matchKey(event.type)
            let count = state.deliver(
                event,
                key: key,
                frame: .text(event.id),
                route: route,
                effects: &effects
            )
            return (count, effects.overflowed.map(\.id))
        }

        /// The ids of the texts queued for `core`, emptying its queue.
        func received(_ core: ConnectionCore) -> [String] {
            var texts: [String] = []
            _ = core.queue.drain(maxFrames: .max) { frame in
                if let text = frame.text { texts.append(text) }
            }
            return texts
        }
    }

    @Test func aUserRouteReachesThatUsersMatchingConnectionsButNotAdministrators() throws {
        let connections = Connections()
        for core in [connections.alice, connections.bob, connections.admin] {
            try connections.subscribe(core, ["*"])
        }
        let event = RealtimeEvent(id: "e1", type: "authentication.login.success", userID: "alice")
        #expect(connections.deliver(event, on: .user("alice")).0 == 1)
        #expect(connections.deliver(event, on: .user("carol")).0 == 0)
        // The same event on the admins' route reaches the administrator, once.
        #expect(connections.deliver(event, on: .admins).0 == 1)
        #expect(connections.received(connections.alice) == ["e1"])
        #expect(connections.received(connections.bob) == [])
        #expect(connections.received(connections.admin) == ["e1"])
        // Control and server routes deliver to nobody.
        #expect(connections.deliver(event, on: .control).0 == 0)
        #expect(connections.deliver(event, on: .server("srv_x")).0 == 0)
    }

    @Test func theEveryoneRouteAppliesEachConnectionsVisibility() throws {
        let connections = Connections()
        for core in [connections.alice, connections.bob, connections.admin] {
            try connections.subscribe(core, ["*"])
        }
        let broadcast = RealtimeEvent(id: "all", type: "system.maintenance.scheduled", scope: .everyone)
        let alicesOwn = RealtimeEvent(id: "alice-only", type: "authentication.login.success", userID: "alice")
        let adminScoped = RealtimeEvent(id: "admins", type: "system.config.changed", scope: .admins)
        let adminType = RealtimeEvent(id: "admin-type", type: "admin.user.deleted", scope: .everyone)
        #expect(connections.deliver(broadcast, on: .everyone).0 == 3)
        // A user's event on the wrong route still reaches only that user (and administrators).
        #expect(connections.deliver(alicesOwn, on: .everyone).0 == 2)
        #expect(connections.deliver(adminScoped, on: .everyone).0 == 1)
        // An admin-only type stays with administrators whatever its scope says.
        #expect(connections.deliver(adminType, on: .everyone).0 == 1)
        #expect(connections.deliver(adminType, on: .user("alice")).0 == 0)
        #expect(connections.received(connections.alice) == ["all", "alice-only"])
        #expect(connections.received(connections.bob) == ["all"])
        #expect(connections.received(connections.admin) == ["all", "alice-only", "admins", "admin-type"])
    }

    @Test func onlyMatchingPatternsDeliverAndSeveralMatchesDeliverOnce() throws {
        let connections = Connections()
        try connections.subscribe(connections.alice, ["*", "authentication.*", "authentication.login.success"])
        try connections.subscribe(connections.bob, ["security.*"])
        try connections.subscribe(connections.admin, ["authentication.*.failure"])
        let login = RealtimeEvent(id: "login", type: "authentication.login.success", scope: .everyone)
        let failure = RealtimeEvent(id: "failure", type: "authentication.login.failure", scope: .everyone)
        #expect(connections.deliver(login, on: .everyone).0 == 1)
        #expect(connections.deliver(failure, on: .everyone).0 == 2)
        #expect(connections.deliver(failure, on: .admins).0 == 1)
        #expect(connections.received(connections.alice) == ["login", "failure"])
        #expect(connections.received(connections.bob) == [])
        #expect(connections.received(connections.admin) == ["failure", "failure"])
        // Unsubscribing removes the route to the connection.
        _ = connections.state.unsubscribe(
            connections.admin.id,
            [try EventPattern(validating: "authentication.*.failure")]
        )
        #expect(connections.deliver(failure, on: .admins).0 == 0)
    }

    @Test func aFullQueueIsReportedAsOverflowedAndGetsNothing() throws {
        let connections = Connections(queueFrames: 1)
        try connections.subscribe(connections.alice, ["*"])
        try connections.subscribe(connections.bob, ["*"])
        let first = RealtimeEvent(id: "1", type: "system.maintenance.scheduled", scope: .everyone)
        let second = RealtimeEvent(id: "2", type: "system.maintenance.scheduled", scope: .everyone)
        #expect(connections.deliver(first, on: .everyone) == (2, []))
        #expect(connections.received(connections.bob) == ["1"])
        let (count, overflowed) = connections.deliver(second, on: .everyone)
        #expect(count == 1)
        #expect(overflowed == [connections.alice.id])
        #expect(connections.received(connections.alice) == ["1"])
    }

    @Test func notificationsReachTheirTargetWithoutSubscriptions() {
        let connections = Connections()
        var effects = HubState.FanOutEffects()
        #expect(connections.state.deliver(notification: .text("n1"), target: .user("alice"), effects: &effects) == 1)
        #expect(connections.state.deliver(notification: .text("n2"), target: .admins, effects: &effects) == 1)
        #expect(connections.state.deliver(notification: .text("n3"), target: .everyone, effects: &effects) == 3)
        #expect(effects.overflowed.isEmpty)
        #expect(connections.received(connections.alice) == ["n1", "n3"])
        #expect(connections.received(connections.bob) == ["n3"])
        #expect(connections.received(connections.admin) == ["n2", "n3"])
    }

    @Test func deactivatingLeavesNoIndexEntriesAndUpdatesTheWantedRoutes() throws {
        let connections = Connections()
        #expect(connections.state.desiredInterest == [.user("alice"), .user("bob"), .user("root"), .admins])
        for core in [connections.alice, connections.bob, connections.admin] {
            try connections.subscribe(core, ["*", "authentication.*", "a.*.c"])
        }
        #expect(connections.state.indexEntryCount == 12)  // 3 + 3 everyone entries each, admin's 3 twice
        for core in [connections.alice, connections.bob, connections.admin] {
            #expect(connections.state.deactivate(core.id) === core)
            #expect(connections.state.deactivate(core.id) == nil)
        }
        #expect(connections.state.indexEntryCount == 0)
        #expect(connections.state.activeCount == 0)
        #expect(connections.state.desiredInterest.isEmpty)
        #expect(connections.state.pendingInterest[.admins] == false)
        #expect(connections.state.pendingInterest[.user("alice")] == false)
        let event = RealtimeEvent(type: "authentication.login.success", scope: .everyone)
        #expect(connections.deliver(event, on: .everyone).0 == 0)
        #expect(connections.deliver(event, on: .admins).0 == 0)
    }

    @Test func aFanOutWakesNobodyUnderTheLockAndListsTheConsumersToWakeOnce() throws {
        let connections = Connections()
        try connections.subscribe(connections.alice, ["*"])
        try connections.subscribe(connections.bob, ["*"])
        // Alice's consumer waits for frames; nobody consumes Bob's queue push-style.
        let wakeUps = Mutex(0)
        connections.alice.queue.onReady { wakeUps.withLock { $0 += 1 } }
        var effects = HubState.FanOutEffects()
        for _ in 0..<2 {
            let event = RealtimeEvent(type: "security.alert", scope: .everyone)
            let key = connections.state.matchKey(event.type)
            #expect(
                connections.state.deliver(event, key: key, frame: .text(event.id), route: .everyone, effects: &effects)
                    == 2
            )
        }
        #expect(wakeUps.withLock { $0 } == 0)
        #expect(effects.consumersToWake.map { ObjectIdentifier($0) } == [ObjectIdentifier(connections.alice.queue)])
        for queue in effects.consumersToWake { queue.wakeConsumer() }
        #expect(wakeUps.withLock { $0 } == 1)
    }
}
