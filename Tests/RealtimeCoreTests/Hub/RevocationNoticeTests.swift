import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

/// A revocation's close carries its `session.revoked` event (``RevocationNotice``): a connection the close ends gets
/// the event exactly once and before its close frame, whichever of the route copy and the control command arrives
/// first (with sharded pub/sub on a Redis Cluster they travel through different shards). Simulated here by
/// publishing both, in either order, as another server on the in-memory bus.
@Suite(.timeLimit(.minutes(1))) struct RevocationNoticeTests {
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

    /// Fuzz: `POST /sessions/hs2/revoke {"userId":"gina"}` sent gina hank's `session.revoked` (and his session id).
    @Test func aRevocationNamingAnotherUserTellsOnlyTheSessionsOwnUsers() async throws {
        let hub = try fixture.hub()
        try await hub.running {
            let alice = try await hub.connectClient(token: "alice-token")
            let bob = try await hub.connectClient(token: "bob-token")
            for client in [alice, bob] {
                _ = try await client.next(type: "connected")
                await client.send(#"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
                _ = try await client.next(type: "subscribed")
            }
            try await hub.revoke(sessionID: "s-alice", userID: "bob", reason: "the wrong user named")
            let revoked = try await alice.next(type: "event")
            #expect(revoked["payload"]?["type"] == "session.revoked")
            #expect(revoked["payload"]?["userId"] == "alice")
            #expect(try await alice.nextClose().0 == .sessionRevoked)
            // Bob heard nothing of it: the next message he gets is the answer to his ping.
            await bob.send(#"{"type":"ping","id":"after"}"#)
            #expect(try await bob.next()["type"] == "pong")
            // With no user known for the session anywhere, the caller's word is all there is.
            try await hub.revoke(sessionID: "s-nobody-connected", userID: "bob", reason: "logged out elsewhere")
            let told = try await bob.next(type: "event")
            #expect(told["payload"]?["sessionId"] == "s-nobody-connected")
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

    @Test func aConnectionClosedDuringItsRecoveryGetsTheNoticeWithoutPositionThenTheClose() async throws {
        let gate = ReadGate()
        let history = ForwardingHistoryStore(inner: try InMemoryHistoryStore(), beforeReading: gate.pass)
        let hub = try fixture.hub(historyStore: history)
        try await hub.running {
            let subscribe = #"{"type":"subscribe","payload":{"eventTypes":["session.*","security.*"]"#
            let first = try await hub.connectClient(token: "alice-token")
            _ = try await first.next(type: "connected")
            await first.send(subscribe + "}}")
            let start = try #require(try await first.next(type: "subscribed")["payload"]?["positions"]?["user:alice"])
            await first.close()
            for n in 1...3 {
                try await hub.publishSecurityEvent("security.test.missed", userID: "alice", data: ["n": .int(Int64(n))])
            }

            // Alice reconnects and recovers; her recovery waits on its history read.
            let alice = try await hub.connectClient(token: "alice-token")
            _ = try await alice.next(type: "connected")
            var reading = gate.reading.makeAsyncIterator()
            // Handling the subscribe includes the replay: it returns once the gate opens.
            let recover = subscribe + #","recover":{"user:alice":\#(JSONWriter.string(start))}}}"#
            async let subscribed: Void = alice.send(recover)
            _ = await reading.next()

            // Her session is revoked meanwhile, as another server publishes it: the route copy (held in her seam),
            // then the control command that closes her connection.
            let (event, _) = revocation()
            let notice = RevocationNotice(event: event, userStreamPosition: StreamPosition(epoch: "e-late", offset: 99))
            try await fixture.bus.publish(
                BusMessage(origin: "srv_other", route: .user("alice"), payload: .event(event))
            )
            try await fixture.bus.publish(
                BusMessage(
                    origin: "srv_other",
                    route: .control,
                    payload: .control(.disconnectSession(sessionID: "s-alice", reason: "r", notices: [notice]))
                )
            )
            var messages: [JSONValue] = []
            var close: CloseCode?
            while close == nil {
                switch try await alice.nextFrame() {
                case .close(let code, _): close = code
                case let frame:
                    if let text = frame.text { messages.append(try JSONParser().parse(text)) }
                }
            }
            gate.open()
            await subscribed

            #expect(close == .sessionRevoked)
            let events = messages.filter { $0["type"] == "event" }
            #expect(
                events.map { $0["payload"]?["id"]?.stringValue } == [event.id],
                "the notice, once, before the close"
            )
            // Without its position: the replay never reached offset 99, the client must not store it.
            #expect(events.first?["payload"]?["position"] == nil, "\(events)")
            #expect(!messages.contains { $0["type"] == "recovered" }, "no answer for a recovery that did not finish")
        }
    }
}

/// Holds the reads of entries (a recovery's) until ``open()``; ``reading`` yields when one starts waiting.
private final class ReadGate: Sendable {
    let reading: AsyncStream<Void>
    private let readingContinuation: AsyncStream<Void>.Continuation
    private let gate = Mutex<(open: Bool, waiting: [CheckedContinuation<Void, Never>])>((false, []))

    init() {
        (reading, readingContinuation) = AsyncStream.makeStream()
    }

    func open() {
        let waiting = gate.withLock { state in
            state.open = true
            defer { state.waiting = [] }
            return state.waiting
        }
        for continuation in waiting { continuation.resume() }
    }

    func pass(_ limit: HistoryReadLimit) async {
        guard limit.maxEntries > 0 else { return }
        await withCheckedContinuation { continuation in
            let now = gate.withLock { state in
                if state.open { return true }
                state.waiting.append(continuation)
                return false
            }
            if now {
                continuation.resume()
            } else {
                readingContinuation.yield()
            }
        }
    }
}
