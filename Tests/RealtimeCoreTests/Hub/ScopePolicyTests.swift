import RealtimeCore
import RealtimeTesting
import Testing

/// Events that name no user reach only the connections the scope policy allows: security and operational
/// internals never reach ordinary users unless the publisher broadcasts them explicitly.
@Suite struct ScopePolicyTests {
    let fixture = HubFixture()

    /// The types each client received until the broadcast barrier notification.
    static func typesUntilBarrier(_ client: TestClient) async throws -> [String] {
        var seen: [String] = []
        while true {
            let message = try await client.next()
            if message["payload"]?["title"] == "barrier" { return seen }
            if message["type"] == "event", let type = message["payload"]?["type"]?.stringValue { seen.append(type) }
        }
    }

    /// Publishes one event of each category without a user on `publisher`, then a barrier, and returns what
    /// alice, bob and the admin (all subscribed to `*`, connected to `receiver`) saw.
    static func deliveries(
        publisher: RealtimeHub,
        receiver: RealtimeHub
    ) async throws -> (alice: [String], bob: [String], admin: [String]) {
        let alice = try await receiver.connectClient(token: "alice-token")
        let bob = try await receiver.connectClient(token: "bob-token")
        let admin = try await receiver.connectClient(token: "admin-token", path: "/ws/admin")
        for client in [alice, bob, admin] { try await client.subscribe(["*"]) }
        _ = try await admin.drainUntilPong()
        for type: EventType in [
            .securitySuspiciousActivity, .systemErrorCritical, .systemPerformanceDegraded, "billing.invoice.overdue",
            .systemMaintenanceScheduled, .adminUserCreated,
        ] {
            try await publisher.publish(RealtimeEvent(type: type, data: ["ip": "192.0.2.7"]))
        }
        // An explicit broadcast is still a broadcast.
        try await publisher.publish(RealtimeEvent(type: "security.advisory.published", scope: .everyone))
        await publisher.sendBroadcastNotification(level: .info, title: "barrier", message: "")
        return (
            try await typesUntilBarrier(alice), try await typesUntilBarrier(bob), try await typesUntilBarrier(admin)
        )
    }

    static let adminSees = [
        "security.suspicious.activity", "system.error.critical", "system.performance.degraded",
        "billing.invoice.overdue", "system.maintenance.scheduled", "admin.user.created",
        "security.advisory.published",
    ]

    @Test func eventsWithoutAUserReachOnlyTheIntendedConnections() async throws {
        let hub = try fixture.hub()
        let seen = try await Self.deliveries(publisher: hub, receiver: hub)
        // Before the policy, every one of these reached alice and bob.
        #expect(seen.alice == ["system.maintenance.scheduled", "security.advisory.published"])
        #expect(seen.bob == ["system.maintenance.scheduled", "security.advisory.published"])
        #expect(seen.admin == Self.adminSees)
    }

    @Test func everyServerOfAClusterDeliversToTheSameSet() async throws {
        let hubA = try fixture.hub()
        // The receiving server's own policy would broadcast everything: the bus carries the resolved scope, so
        // the publishing server's decision holds.
        let hubB = try fixture.hub { $0.scopePolicy = EventScopePolicy { _ in .everyone } }
        try await hubA.running {
            try await hubB.running {
                let seen = try await Self.deliveries(publisher: hubA, receiver: hubB)
                #expect(seen.alice == ["system.maintenance.scheduled", "security.advisory.published"])
                #expect(seen.bob == ["system.maintenance.scheduled", "security.advisory.published"])
                #expect(seen.admin == Self.adminSees)
            }
        }
    }

    @Test func authenticationAndSessionEventsWithoutAUserAreRefused() async throws {
        let hub = try fixture.hub()
        for type: EventType in [.authenticationLoginFailure, .sessionRevoked, .authenticationMFAChallenge] {
            let error = await #expect(throws: RealtimeError.self) { try await hub.publish(RealtimeEvent(type: type)) }
            #expect(error?.code == .userRequired)
        }
        // With a user, or an explicit scope, they are published.
        let alice = try await hub.connectClient(token: "alice-token")
        try await alice.subscribe(["*"])
        try await hub.publish(RealtimeEvent(type: .authenticationLoginFailure, userID: "alice"))
        try await hub.publish(RealtimeEvent(type: .sessionRevoked, scope: .admins))
        let events = try await alice.drainUntilPong().compactMap { $0["payload"]?["type"]?.stringValue }
        #expect(events == ["authentication.login.failure"])
    }

    @Test func aHostCanReplaceThePolicy() async throws {
        let hub = try fixture.hub {
            $0.scopePolicy = EventScopePolicy { type in
                type.category == "billing" ? .everyone : EventScopePolicy.standard.decide(type)
            }
        }
        let seen = try await Self.deliveries(publisher: hub, receiver: hub)
        let expected = ["billing.invoice.overdue", "system.maintenance.scheduled", "security.advisory.published"]
        #expect(seen.alice == expected)
        #expect(seen.bob == expected)
        #expect(seen.admin == Self.adminSees)
    }

    @Test func theScopeAnEventWasGivenStaysExplicit() {
        var event = RealtimeEvent(type: .securitySuspiciousActivity)
        #expect(event.scope == .admins)
        event.scope = .everyone
        #expect(event.scope == .everyone)
        // The system helper follows the policy unless told otherwise.
        #expect(RealtimeEvent(type: .systemMaintenanceScheduled).scope == .everyone)
        #expect(RealtimeEvent(type: .systemErrorCritical).scope == .admins)
        #expect(RealtimeEvent(type: .authenticationLogout, userID: "alice").scope == .user("alice"))
    }
}
