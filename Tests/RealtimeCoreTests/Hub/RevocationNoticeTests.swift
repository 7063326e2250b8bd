import RealtimeCore
import RealtimeTesting
import Testing

/// A revocation's close carries its `session.revoked` event (``RevocationNotice``): a connection the close ends gets
/// the event exactly once and before its close frame, whichever of the route copy and the control command arrives
/// first (with sharded pub/sub on a Redis Cluster they travel through different shards). Simulated here by
/// publishing both, in either order, as another server on the in-memory bus.
@Suite struct RevocationNoticeTests {
    let fixture = HubFixture()

    /// Every frame a client receives up to and including its close frame.
    private static func framesUntilClose(_ client: TestClient) async throws -> (events: [JSONValue], close: CloseCode) {
        var events: [JSONValue] = []
        while true {
            switch try await client.nextFrame() {
            case .close(let code, _): return (events, code)
            case let frame:
                guard let text = frame.text else { continue }
                let message = try JSONParser().parse(text)
                if message["type"]?.stringValue == "event" { events.append(message) }
            }
        }
    }

    private func revocation(userPosition: StreamPosition? = nil) -> (RealtimeEvent, RevocationNotice) {
        let event = RealtimeEvent(
            type: .sessionRevoked,
            userID: "alice",
            sessionID: "s-alice",
            data: ["reason": "password changed"]
        )
        return (event, RevocationNotice(event: event, userStreamPosition: userPosition))
    }

    @Test(arguments: [true, false])
    func theClosedConnectionGetsTheEventOnceBeforeItsCloseWhicheverArrivesFirst(controlFirst: Bool) async throws {
        let hub = try fixture.hub()
        try await hub.running {
            let subscribed = try await hub.connectClient(token: "alice-token")
            let unsubscribed = try await hub.connectClient(token: "alice-token-2")
            let otherSession = try await hub.connectClient(token: "alice-other-session")
            try await subscribed.subscribe(["session.*"])
            try await otherSession.subscribe(["session.*"])
            _ = try await unsubscribed.next(type: "connected")
            let (event, notice) = revocation()
            let routeCopy = BusMessage(origin: "srv_other", route: .user("alice"), payload: .event(event))
            let control = BusMessage(
                origin: "srv_other",
                route: .control,
                payload: .control(
                    .disconnectSession(sessionID: "s-alice", reason: "password changed", notices: [notice])
                )
            )
            for message in controlFirst ? [control, routeCopy] : [routeCopy, control] {
                try await fixture.bus.publish(message)
            }

            let (events, code) = try await Self.framesUntilClose(subscribed)
            #expect(code == .sessionRevoked)
            #expect(events.map { $0["payload"]?["id"]?.stringValue } == [event.id])
            #expect(events.first?["payload"]?["type"] == "session.revoked")
            // Not subscribed to `session.*`: closed without the event, as live delivery would have done.
            let quiet = try await Self.framesUntilClose(unsubscribed)
            #expect(quiet.events.isEmpty)
            #expect(quiet.close == .sessionRevoked)
            // The user's other session gets the route copy once and stays.
            let told = try await otherSession.drainUntilPong()
            #expect(told.filter { $0["type"] == "event" }.map { $0["payload"]?["id"]?.stringValue } == [event.id])
        }
    }

    @Test func theNoticeCarriesItsStreamPositionAndAdministratorsGetTheirsToo() async throws {
        let hub = try fixture.hub()
        fixture.tokens.add(
            "admin-in-alices-session",
            VerifiedIdentity(userID: "alice", sessionID: "s-alice", isAdmin: true, roles: ["admin"])
        )
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            let admin = try await hub.connectClient(token: "admin-in-alices-session", path: "/ws/admin")
            try await alice.subscribe(["session.*"])
            try await admin.subscribe(["session.*"])
            let (event, _) = revocation()
            let notice = RevocationNotice(
                event: event,
                userStreamPosition: StreamPosition(epoch: "e1", offset: 7),
                adminsStreamPosition: StreamPosition(epoch: "e2", offset: 70)
            )
            // The control command alone (its route copies are late): both are told, each with its own stream's position.
            try await fixture.bus.publish(
                BusMessage(
                    origin: "srv_other",
                    route: .control,
                    payload: .control(.disconnectSession(sessionID: "s-alice", reason: "r", notices: [notice]))
                )
            )
            let toAlice = try await Self.framesUntilClose(alice)
            #expect(toAlice.events.count == 1)
            #expect(toAlice.events.first?["payload"]?["position"]?["stream"] == "user:alice")
            #expect(toAlice.events.first?["payload"]?["position"]?["offset"] == 7)
            let toAdmin = try await Self.framesUntilClose(admin)
            #expect(toAdmin.events.count == 1)
            #expect(toAdmin.events.first?["payload"]?["position"]?["stream"] == "admins")
            #expect(toAdmin.events.first?["payload"]?["position"]?["offset"] == 70)
        }
    }

    @Test(arguments: [true, false])
    func aUserRevocationsCloseCarriesItsEventToTheConnectionsItEnds(controlFirst: Bool) async throws {
        let hub = try fixture.hub()
        let issuedBefore = Timestamp.now()
        fixture.tokens.add(
            "alice-new",
            VerifiedIdentity(userID: "alice", sessionID: "s-new", issuedAt: issuedBefore + .seconds(1))
        )
        fixture.tokens.add(
            "alice-old",
            VerifiedIdentity(userID: "alice", sessionID: "s-old", issuedAt: issuedBefore - .seconds(1))
        )
        try await hub.running {
            let old = try await hub.connectClient(token: "alice-old")
            let new = try await hub.connectClient(token: "alice-new")
            try await old.subscribe(["session.*"])
            try await new.subscribe(["session.*"])
            let event = RealtimeEvent(type: .sessionRevoked, userID: "alice", data: ["scope": "user"])
            let routeCopy = BusMessage(origin: "srv_other", route: .user("alice"), payload: .event(event))
            let control = BusMessage(
                origin: "srv_other",
                route: .control,
                payload: .control(
                    .revokeUser(
                        userID: "alice",
                        issuedBefore: issuedBefore,
                        reason: "r",
                        notice: RevocationNotice(event: event)
                    )
                )
            )
            for message in controlFirst ? [control, routeCopy] : [routeCopy, control] {
                try await fixture.bus.publish(message)
            }
            let (events, code) = try await Self.framesUntilClose(old)
            #expect(code == .sessionRevoked)
            #expect(events.map { $0["payload"]?["id"]?.stringValue } == [event.id])
            // The newer token's connection stays and gets the event once, from its route.
            let told = try await new.drainUntilPong()
            #expect(told.filter { $0["type"] == "event" }.map { $0["payload"]?["id"]?.stringValue } == [event.id])
        }
    }

    @Test func aNoticeAboutAnotherUserIsNotDelivered() async throws {
        let hub = try fixture.hub()
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            try await alice.subscribe(["session.*"])
            let bobsEvent = RealtimeEvent(type: .sessionRevoked, userID: "bob", data: [:])
            try await fixture.bus.publish(
                BusMessage(
                    origin: "srv_other",
                    route: .control,
                    payload: .control(
                        .revokeUser(
                            userID: "alice",
                            issuedBefore: .now() + .seconds(1),
                            reason: "r",
                            notice: RevocationNotice(event: bobsEvent)
                        )
                    )
                )
            )
            let (events, code) = try await Self.framesUntilClose(alice)
            #expect(code == .sessionRevoked)
            #expect(events.isEmpty)
        }
    }

    @Test func revokingLocallyQueuesTheEventBeforeTheCloseEvenWhenNothingWasWrittenYet() async throws {
        let hub = try fixture.hub()
        try await hub.running {
            // Nobody reads this connection's queue until the revocation is done: the close must not drop the event.
            let connection = try await hub.rawConnection(token: "alice-token")
            await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
            try await hub.revoke(sessionID: "s-alice", reason: "password changed")
            var texts: [String] = []
            var closeCode: CloseCode?
            for await frame in connection.outbound {
                if case .close(let code, _) = frame {
                    closeCode = code
                    break
                }
                if let text = frame.text { texts.append(text) }
            }
            #expect(closeCode == .sessionRevoked)
            #expect(texts.filter { $0.contains("\"session.revoked\"") }.count == 1)
        }
    }
}
