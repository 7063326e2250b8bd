import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct PatternTests {
    @Test(arguments: [
        ("authentication.login.success", "authentication.login.success", true),
        ("authentication.login.success", "authentication.login.failure", false),
        ("authentication.*", "authentication.login.success", true),
        ("authentication.*", "authentication.logout", true),
        ("authentication.*", "authentication", false),
        ("authentication.*", "authenticationx.logout", false),
        ("authentication.*.failure", "authentication.login.failure", true),
        ("authentication.*.failure", "authentication.mfa.failure", true),
        ("authentication.*.failure", "authentication.login.success", false),
        ("authentication.*.failure", "authentication.a.b.failure", false),
        ("*", "system.error.critical", true),
        ("*.user.*", "admin.user.created", true),
        ("*.*", "a.b", true),
        ("*.*", "a", false),
    ])
    func matching(_ pattern: String, _ type: String, _ expected: Bool) throws {
        #expect(try EventPattern(validating: pattern).matches(EventType(type)) == expected)
    }

    @Test(arguments: ["", "a..b", ".a", "a.", "auth*", "a.b c", "a.*x", String(repeating: "a.", count: 8) + "a", "é"])
    func invalidPatterns(_ pattern: String) {
        #expect(throws: EventPattern.ValidationError.self) { try EventPattern(validating: pattern) }
    }
}

@Suite struct DeliveryTests {
    let fixture = HubFixture()

    @Test func usersSeeOnlyTheirOwnEventsAndEveryonesEvents() async throws {
        let hub = try fixture.hub()
        let alice = try await hub.connectClient(token: "alice-token")
        let bob = try await hub.connectClient(token: "bob-token")
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        try await alice.subscribe(["*"])
        try await bob.subscribe(["*"])
        try await admin.subscribe(["authentication.*", "admin.*", "system.*"])
        _ = try await admin.drainUntilPong()

        try await hub.publishAuthenticationEvent(
            .authenticationLoginSuccess,
            userID: "alice",
            sessionID: "s-alice",
            data: ["ip": "192.0.2.1"]
        )
        try await hub.publishSystemEvent(.systemMaintenanceScheduled, data: ["at": "02:00"])
        try await hub.publishAdminEvent(.adminUserCreated, userID: "dave")
        // An admin-only type is never delivered to users, even if published with an everyone scope.
        try await hub.publish(RealtimeEvent(type: .adminRoleAssigned, scope: .everyone))

        let aliceEvents = try await alice.drainUntilPong().compactMap { $0["payload"]?["type"]?.stringValue }
        let bobEvents = try await bob.drainUntilPong().compactMap { $0["payload"]?["type"]?.stringValue }
        let adminEvents = try await admin.drainUntilPong().compactMap { $0["payload"]?["type"]?.stringValue }
        #expect(aliceEvents == ["authentication.login.success", "system.maintenance.scheduled"])
        #expect(bobEvents == ["system.maintenance.scheduled"])
        #expect(
            adminEvents == [
                "authentication.login.success", "system.maintenance.scheduled", "admin.user.created",
                "admin.role.assigned",
            ]
        )
    }

    @Test func theEventMessageCarriesTheEvent() async throws {
        let hub = try fixture.hub()
        let alice = try await hub.connectClient(token: "alice-token")
        try await alice.subscribe(["security.*"])
        let receipt = try await hub.publishSecurityEvent(
            .securityHighRiskDetected,
            userID: "alice",
            sessionID: "s-alice",
            data: ["riskScore": 85, "factors": ["unusual_location", "new_device"]]
        )
        #expect(receipt.localDeliveries == 1)
        let message = try await alice.next(type: "event")
        #expect(message["payload"]?["id"] == .string(receipt.id))
        #expect(message["payload"]?["type"] == "security.high_risk.detected")
        #expect(message["payload"]?["userId"] == "alice")
        #expect(message["payload"]?["sessionId"] == "s-alice")
        #expect(message["payload"]?["data"]?["riskScore"] == 85)
        #expect(message["payload"]?["timestamp"]?.stringValue?.hasSuffix("Z") == true)
    }

    @Test func aPatternAcceptedEarlierNeverLeaksAnotherUsersEvents() async throws {
        let hub = try fixture.hub()
        let bob = try await hub.connectClient(token: "bob-token")
        try await bob.subscribe(["*", "security.*", "*.*.success"])
        // Every type a publisher may publish (the hub's own audit and presence types are refused to publishers).
        for type in EventType.catalogue where !type.isReservedForTheHub {
            try await hub.publish(RealtimeEvent(type: type, userID: "alice"))
        }
        #expect(try await bob.drainUntilPong().isEmpty)
    }

    @Test func aConnectionMatchedByManyPatternsGetsTheEventOnce() async throws {
        let hub = try fixture.hub()
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        try await admin.subscribe(["*", "system.*", "system.error.critical", "*.error.*", "system.*.critical"])
        _ = try await admin.drainUntilPong()
        try await hub.publishSystemEvent(.systemErrorCritical)
        let events = try await admin.drainUntilPong().filter { $0["type"] == "event" }
        #expect(events.count == 1)
    }

    @Test func subscriptionChurnLeavesNothingBehind() async throws {
        let hub = try fixture.hub {
            $0.rateLimits.messagesPerConnection = RateLimitPolicy(name: "m", limit: 10_000, period: .seconds(1))
        }
        let alice = try await hub.connectClient(token: "alice-token")
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        for round in 0..<20 {
            let patterns = ["r\(round).*", "r\(round).*.x", "*.r\(round)", "r\(round).a.b"]
            try await alice.subscribe(patterns)
            try await admin.subscribe(patterns)
            let list = patterns.map { "\"\($0)\"" }.joined(separator: ",")
            await alice.send(#"{"type":"unsubscribe","payload":{"eventTypes":[\#(list)]}}"#)
            await admin.send(#"{"type":"unsubscribe","payload":{"eventTypes":[\#(list)]}}"#)
            _ = try await alice.next(type: "unsubscribed")
            _ = try await admin.next(type: "unsubscribed")
        }
        #expect(hub.patternIndexEntryCount == 0)
        try await alice.subscribe(["security.*"])
        try await admin.subscribe(["*"])
        #expect(hub.patternIndexEntryCount == 3)
        await alice.close()
        await admin.close()
        #expect(hub.patternIndexEntryCount == 0, "closing a connection removes its patterns")
        try await hub.publishSecurityEvent(.securityValidationFailed, userID: "alice")
    }

    @Test func invalidPublishesAreRefused() async throws {
        let hub = try fixture.hub()
        await #expect(throws: RealtimeError.self) { try await hub.publish(RealtimeEvent(type: "not valid")) }
        await #expect(throws: RealtimeError.self) {
            try await hub.publish(RealtimeEvent(type: .authenticationLogout, userID: "a", scope: .user("b")))
        }
        await #expect(throws: RealtimeError.self) {
            try await hub.publishSecurityEvent(.authenticationLogout, userID: "a")
        }
    }

    @Test func notificationsNeedNoSubscription() async throws {
        let hub = try fixture.hub()
        let alice = try await hub.connectClient(token: "alice-token")
        let bob = try await hub.connectClient(token: "bob-token")
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        _ = try await admin.drainUntilPong()
        await hub.sendUserNotification(
            userID: "alice",
            level: .warning,
            title: "Unusual Login Detected",
            message: "New device",
            data: ["device": "Unknown"]
        )
        await hub.sendBroadcastNotification(level: .info, title: "System Maintenance", message: "Tonight")
        await hub.sendAdminNotification(level: .critical, title: "Breach", message: "Investigate")
        let toAlice = try await alice.drainUntilPong().filter { $0["type"] == "notification" }
        let toBob = try await bob.drainUntilPong().filter { $0["type"] == "notification" }
        let toAdmin = try await admin.drainUntilPong().filter { $0["type"] == "notification" }
        #expect(toAlice.map { $0["payload"]?["title"] } == ["Unusual Login Detected", "System Maintenance"])
        #expect(toAlice.first?["payload"]?["level"] == "warning")
        #expect(toAlice.first?["payload"]?["data"]?["device"] == "Unknown")
        #expect(toBob.map { $0["payload"]?["title"] } == ["System Maintenance"])
        #expect(toAdmin.map { $0["payload"]?["title"] } == ["System Maintenance", "Breach"])
    }

    @Test func adminsAreAuditedAndSeePresence() async throws {
        let hub = try fixture.hub()
        let watcher = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        try await watcher.subscribe(["admin.*", "presence.*"])
        fixture.tokens.add("admin-2", VerifiedIdentity(userID: "ops", sessionID: "s-ops", isAdmin: true))
        let second = try await hub.connectClient(token: "admin-2", path: "/ws/admin")
        try await second.subscribe(["security.*"])
        let alice = try await hub.connectClient(token: "alice-token")
        await alice.close()
        let types = try await watcher.drainUntilPong().compactMap { $0["payload"]?["type"]?.stringValue }
        #expect(
            types == [
                // The watcher's own subscription is audited too; each admin action also has its admin.action.* event.
                "admin.subscription.changed", "admin.action.subscribe",
                "presence.user.online", "admin.connection.opened", "admin.action.connect",
                "admin.subscription.changed", "admin.action.subscribe",
                "presence.user.online", "presence.user.offline",
            ]
        )
    }

    @Test func aSlowConsumerIsClosedAndDoesNotGrowMemory() async throws {
        let hub = try fixture.hub { $0.limits.outboundQueueFrames = 8 }
        guard
            case .accept(let ticket) = await hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events?token=alice-token", remoteAddress: "127.0.0.1")
            )
        else { return }
        let connection = try await hub.connect(ticket)  // nobody reads its outbound frames
        await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["authentication.*"]}}"#)
        for _ in 0..<20 {
            try await hub.publishAuthenticationEvent(.authenticationLoginFailure, userID: "alice")
        }
        var frames: [OutboundFrame] = []
        for await frame in connection.outbound { frames.append(frame) }
        #expect(frames == [.close(.slowConsumer, reason: "outbound queue overflow; reconnect and resynchronise")])
        let stats = await hub.stats()
        #expect(stats.server.slowConsumerCloses == 1)
        #expect(stats.server.eventsDropped == 1)
        #expect(stats.server.connections == 0)
        await connection.closed()
        #expect(try await fixture.store.count(.user("alice")) == 0)
    }

    @Test func manyConcurrentPublishersAndSubscribersLoseNothing() async throws {
        let hub = try fixture.hub {
            $0.limits.outboundQueueFrames = 10_000
            $0.maxConnectionsPerUser = nil
        }
        let users = (0..<40).map { "user-\($0)" }
        for user in users { fixture.tokens.add("t-\(user)", VerifiedIdentity(userID: user)) }
        let clients = try await withThrowingTaskGroup(of: (String, TestClient).self) { group in
            for user in users {
                group.addTask {
                    let client = try await hub.connectClient(token: "t-\(user)")
                    await client.send(#"{"type":"subscribe","payload":{"eventTypes":["authentication.*","system.*"]}}"#)
                    _ = try await client.next(type: "subscribed")
                    return (user, client)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        let perUser = 25
        try await withThrowingTaskGroup(of: Void.self) { group in
            for user in users {
                group.addTask {
                    for index in 0..<perUser {
                        try await hub.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: user,
                            data: ["n": .int(Int64(index))]
                        )
                    }
                }
            }
            group.addTask {
                for index in 0..<perUser {
                    try await hub.publishSystemEvent(
                        .systemPerformanceDegraded,
                        data: ["n": .int(Int64(index))],
                        scope: .everyone
                    )
                }
            }
            try await group.waitForAll()
        }
        for (user, client) in clients {
            let events = try await client.drainUntilPong().filter { $0["type"] == "event" }
            let own = events.filter { $0["payload"]?["type"] == "authentication.login.success" }
            #expect(own.count == perUser, "\(user)")
            #expect(own.allSatisfy { $0["payload"]?["userId"] == .string(user) })
            #expect(
                own.map { $0["payload"]?["data"]?["n"]?.intValue } == (0..<perUser).map { Int64($0) },
                "in publish order"
            )
            #expect(events.count == perUser * 2)
        }
    }
}
