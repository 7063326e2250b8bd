import Testing

@testable import RealtimeCore

/// The recovery's pure parts: the seam between replay and live delivery, the replay gate, the `recover` request,
/// positions in event frames, and replay visibility equal to live fan-out.
@Suite struct RecoverySeamTests {
    static let epoch = "e1"

    static func position(_ offset: Int64, epoch: String = epoch) -> StreamPosition {
        StreamPosition(epoch: epoch, offset: offset)
    }

    static func held(_ text: String, _ stream: HistoryStream?, _ offset: Int64?, epoch: String = epoch)
        -> RecoverySeam.Held
    {
        .init(frame: .text(text), stream: stream, position: offset.map { position($0, epoch: epoch) })
    }

    static func texts(_ frames: [OutboundFrame]) -> [String] {
        frames.compactMap { frame in
            if case .text(let text) = frame { return text }
            return nil
        }
    }

    @Test func liveFramesOverlappingTheReplayAreDroppedAndTheRestFollowInArrivalOrder() {
        var seam = RecoverySeam(from: [.user("u"): Self.position(50)], maxFrames: 10, maxBytes: 1 << 20)
        // Live subscription came first: 149 and 150 arrive live while history (51...150) is read.
        #expect({ seam.live(Self.held("149", .user("u"), 149)) }() == .held)
        #expect({ seam.live(Self.held("150", .user("u"), 150)) }() == .held)
        for offset in Int64(51)...150 { #expect({ seam.replay(.user("u"), Self.position(offset)) }()) }
        // Published after the history read: delivered after the replay.
        #expect({ seam.live(Self.held("151", .user("u"), 151)) }() == .held)
        #expect(Self.texts(seam.finish()) == ["151"])
    }

    @Test func replayDeliversOnlyTheNextOffsetOfTheSameEpoch() {
        var seam = RecoverySeam(from: [.everyone: Self.position(3)], maxFrames: 10, maxBytes: 1 << 20)
        #expect(!{ seam.replay(.everyone, Self.position(3)) }(), "the client has it")
        #expect(!{ seam.replay(.everyone, Self.position(5)) }(), "a gap is never skipped over")
        #expect(!{ seam.replay(.everyone, Self.position(4, epoch: "other")) }(), "another epoch")
        #expect(!{ seam.replay(.admins, Self.position(4)) }(), "a stream not under recovery")
        #expect({ seam.replay(.everyone, Self.position(4)) }())
        #expect({ seam.replay(.everyone, Self.position(5)) }())
        #expect(seam.reached[.everyone] == Self.position(5))
    }

    @Test func framesWithoutPositionOrOfAnotherStreamOrEpochAreNeverDropped() {
        var seam = RecoverySeam(from: [.user("u"): Self.position(10)], maxFrames: 10, maxBytes: 1 << 20)
        _ = seam.live(Self.held("unrecorded", .user("u"), nil))
        _ = seam.live(Self.held("everyone-2", .everyone, 2))
        _ = seam.live(Self.held("new-epoch-1", .user("u"), 1, epoch: "e2"))
        _ = seam.live(Self.held("old-9", .user("u"), 9))
        #expect(Self.texts(seam.finish()) == ["unrecorded", "everyone-2", "new-epoch-1"])
    }

    @Test func anAbandonedStreamDeliversEverythingHeld() {
        // The client claimed offset 1000 of a stream at 50 (`ahead`): nothing is replayed, live frames still flow.
        var seam = RecoverySeam(from: [.user("u"): Self.position(1000)], maxFrames: 10, maxBytes: 1 << 20)
        _ = seam.live(Self.held("51", .user("u"), 51))
        seam.abandon(.user("u"))
        #expect(Self.texts(seam.finish()) == ["51"])
    }

    @Test func theHoldIsBoundedInFramesAndBytes() {
        var byFrames = RecoverySeam(from: [:], maxFrames: 2, maxBytes: 1 << 20)
        #expect({ byFrames.live(Self.held("a", nil, nil)) }() == .held)
        #expect({ byFrames.live(Self.held("b", nil, nil)) }() == .held)
        #expect({ byFrames.live(Self.held("c", nil, nil)) }() == .overflow)
        var byBytes = RecoverySeam(from: [:], maxFrames: 100, maxBytes: 5)
        #expect({ byBytes.live(Self.held("1234", nil, nil)) }() == .held)
        #expect({ byBytes.live(Self.held("56", nil, nil)) }() == .overflow)
        #expect(Self.texts(byBytes.finish()) == ["1234"])
        #expect({ byBytes.finish() }().isEmpty, "finish empties the hold")
    }
}

@Suite struct ReplayGateStateTests {
    @Test func runsUpToTheLimitThenQueuesInOrderThenRefuses() {
        var gate = ReplayGateState(maxRunning: 2, maxWaiting: 2)
        #expect({ gate.enter(1) }() == .run)
        #expect({ gate.enter(2) }() == .run)
        #expect({ gate.enter(3) }() == .wait)
        #expect({ gate.enter(4) }() == .wait)
        #expect({ gate.enter(5) }() == .refuse)
        #expect({ gate.leave() }() == 3, "first come, first served")
        #expect(gate.running == 2)
        #expect({ gate.leave() }() == 4)
        #expect({ gate.leave() }() == nil)
        #expect({ gate.leave() }() == nil)
        #expect(gate.running == 0)
        #expect({ gate.leave() }() == nil)
        #expect(gate.running == 0, "never below zero")
    }

    @Test func aNewcomerNeverOvertakesAWaiter() {
        var gate = ReplayGateState(maxRunning: 1, maxWaiting: 5)
        #expect({ gate.enter(1) }() == .run)
        #expect({ gate.enter(2) }() == .wait)
        #expect({ gate.cancel(2) }())
        #expect(!{ gate.cancel(2) }())
        #expect({ gate.leave() }() == nil)
        #expect({ gate.enter(3) }() == .run)
    }

    @Test func theGateResumesAWaiterWhenARecoveryLeaves() async {
        let gate = ReplayGate(maxRunning: 1, maxWaiting: 1)
        #expect(await gate.enter())
        async let second = gate.enter()
        // The second waits until the first leaves; a third is refused while the second waits.
        while gate.load.waiting == 0 { await Task.yield() }
        #expect(await gate.enter() == false)
        gate.leave()
        #expect(await second)
        #expect(gate.load.running == 1)
        gate.leave()
        #expect(gate.load.running == 0)
    }
}

@Suite struct RecoveryRequestTests {
    static func parse(_ json: String, endpoint: Endpoint = .events, user: String = "alice") throws -> RecoveryRequest {
        guard case .object(let object) = try JSONParser().parse(json) else { throw RealtimeError(.invalidArgument, "") }
        return try RecoveryRequest(object, endpoint: endpoint, userID: user, id: nil)
    }

    static func code(_ json: String, endpoint: Endpoint = .events) -> ProtocolErrorCode? {
        do {
            _ = try parse(json, endpoint: endpoint)
            return nil
        } catch let error as WireError {
            return error.code
        } catch {
            return nil
        }
    }

    @Test func acceptsTheStreamsTheConnectionReads() throws {
        let request = try Self.parse(
            #"{"user:alice":{"stream":"user:alice","epoch":"e","offset":5},"everyone":{"epoch":"f","offset":0}}"#
        )
        #expect(request.positions[.user("alice")] == StreamPosition(epoch: "e", offset: 5))
        #expect(request.positions[.everyone] == StreamPosition(epoch: "f", offset: 0))
        let admin = try Self.parse(#"{"admins":{"epoch":"e","offset":9}}"#, endpoint: .admin)
        #expect(admin.positions[.admins]?.offset == 9)
    }

    @Test func refusesForgedAndForeignStreams() {
        #expect(Self.code(#"{"user:bob":{"epoch":"e","offset":1}}"#) == .forbiddenStream)
        #expect(Self.code(#"{"admins":{"epoch":"e","offset":1}}"#) == .forbiddenStream)
        #expect(Self.code(#"{"user:alice":{"epoch":"e","offset":1}}"#, endpoint: .admin) == .forbiddenStream)
        #expect(Self.code(#"{"control":{"epoch":"e","offset":1}}"#) == .forbiddenStream)
        #expect(Self.code(#"{"server:srv_1":{"epoch":"e","offset":1}}"#) == .forbiddenStream)
        #expect(Self.code(#"{"user:alice":{"stream":"user:bob","epoch":"e","offset":1}}"#) == .invalidPosition)
    }

    @Test func refusesMalformedPositions() {
        #expect(Self.code(#"{"everyone":{"epoch":"e","offset":-1}}"#) == .invalidPosition)
        #expect(Self.code(#"{"everyone":{"epoch":"e","offset":9007199254740992}}"#) == .invalidPosition)
        #expect(Self.code(#"{"everyone":{"epoch":"e","offset":1.5}}"#) == .invalidPosition)
        #expect(Self.code(#"{"everyone":{"epoch":"","offset":1}}"#) == .invalidPosition)
        #expect(Self.code(#"{"everyone":{"offset":1}}"#) == .invalidPosition)
        #expect(Self.code(#"{"everyone":"e:1"}"#) == .invalidPosition)
        let longEpoch = String(repeating: "x", count: 65)
        #expect(Self.code(#"{"everyone":{"epoch":"\#(longEpoch)","offset":1}}"#) == .invalidPosition)
        #expect(Self.code(#"{"a":{},"b":{},"c":{},"d":{},"e":{}}"#) == .invalidPosition)
    }
}

@Suite struct EventFramePositionTests {
    @Test func aRecordedEventCarriesItsStreamPositionLastInItsPayload() throws {
        let event = RealtimeEvent(type: "security.mfa.required", userID: "u1", data: ["n": 1])
        var message = BusMessage(origin: "srv", route: .user("u1"), payload: .event(event))
        let plain = WireProtocol.eventFrame(for: message, event)
        #expect(plain == WireProtocol.event(event), "unrecorded: the plain frame")
        message.position = StreamPosition(epoch: "k3x9", offset: 42)
        let frame = WireProtocol.eventFrame(for: message, event)
        let parsed = try JSONParser().parse(frame)
        #expect(parsed["type"]?.stringValue == "event")
        #expect(parsed["payload"]?["id"]?.stringValue == event.id)
        #expect(parsed["payload"]?["data"]?["n"]?.intValue == 1)
        #expect(parsed["payload"]?["position"]?["stream"]?.stringValue == "user:u1")
        #expect(parsed["payload"]?["position"]?["epoch"]?.stringValue == "k3x9")
        #expect(parsed["payload"]?["position"]?["offset"]?.intValue == 42)
        // The carried (bus) frame gets the same position: one encoder either way.
        let carried = BusMessage(origin: "srv", route: .admins, payload: .event(event), eventFrame: plain)
        var positioned = carried
        positioned.position = StreamPosition(epoch: "a", offset: 7)
        #expect(
            WireProtocol.eventFrame(for: positioned, event)
                == WireProtocol.positioned(plain, StreamPosition(epoch: "a", offset: 7), in: .admins)
        )
        #expect(
            try JSONParser().parse(WireProtocol.eventFrame(for: positioned, event))["payload"]?["position"]?["stream"]
                == "admins"
        )
    }
}

@Suite struct ReplayVisibilityTests {
    /// Replay's per-connection rule against live fan-out, for every connection, route and a set of event kinds.
    @Test func replayShowsExactlyWhatLiveDeliveryShows() throws {
        let connections = HubStateTests.Connections()
        try connections.subscribe(connections.alice, ["security.*", "system.*"])
        try connections.subscribe(connections.bob, ["*"])
        try connections.subscribe(connections.admin, ["security.*", "admin.*"])
        let events: [RealtimeEvent] = [
            RealtimeEvent(type: "security.mfa.required", userID: "alice"),
            RealtimeEvent(type: "security.mfa.required", userID: "bob"),
            RealtimeEvent(type: "admin.user.locked", userID: "alice"),
            RealtimeEvent(type: "system.maintenance.scheduled", scope: .everyone),
            RealtimeEvent(type: "security.scan", scope: .everyone),
            RealtimeEvent(type: "admin.audit", scope: .admins),
            RealtimeEvent(type: "presence.user.online", userID: "bob", scope: .everyone),
        ]
        for event in events {
            for route in RealtimeHub.routes(for: event.scope) + [.everyone, .user("alice"), .user("bob"), .admins] {
                let live = Set(
                    connections.deliver(event, on: route).0 >= 0
                        ? [connections.alice, connections.bob, connections.admin].filter {
                            !connections.received($0).isEmpty
                        }.map(\.id) : []
                )
                let key = connections.state.matchKey(event.type)
                let replay = Set(
                    [connections.alice, connections.bob, connections.admin].filter {
                        connections.state.wouldDeliver(event, key: key, route: route, to: $0.id)
                    }.map(\.id)
                )
                #expect(live == replay, "\(event.type) on \(route)")
            }
        }
    }
}

/// After a recovery, the bus may bring this server live copies of messages the replay already read from history
/// (history is written at publish time, live delivery follows the bus): they must not reach the client twice.
@Suite struct RecoveryTrailTests {
    let connections = HubStateTests.Connections()

    init() throws {
        try connections.subscribe(connections.alice, ["security.*"])
    }

    func live(_ offset: Int64, epoch: String = "e1") -> Int {
        var effects = HubState.FanOutEffects()
        let event = RealtimeEvent(id: "n\(offset)", type: "security.alert", userID: "alice")
        return connections.state.deliver(
            event,
            key: connections.state.matchKey(event.type),
            frame: .text("\(epoch):\(offset)"),
            route: .user("alice"),
            position: StreamPosition(epoch: epoch, offset: offset),
            effects: &effects
        )
    }

    /// Alice comes back at offset 2 and the replay delivers 3…5 before the bus brought them to this server.
    func recover() {
        let alice = connections.alice.id
        let start = StreamPosition(epoch: "e1", offset: 2)
        let began = connections.state.beginRecovery(
            alice,
            from: [.user("alice"): start],
            maxFrames: 100,
            maxBytes: 1 << 20
        )
        #expect(began)
        for offset in Int64(3)...5 {
            let next = StreamPosition(epoch: "e1", offset: offset)
            let replayed = connections.state.withSeam(alice) { $0.replay(.user("alice"), next) }
            #expect(replayed == true)
        }
        let held = connections.state.endRecovery(alice)
        #expect(held == [])
    }

    @Test func lateLiveCopiesOfWhatTheReplayDeliveredAreDroppedUntilLiveOvertakesIt() {
        recover()
        #expect(live(4) == 0)
        #expect(live(5) == 0)
        #expect(live(6) == 1)
        #expect(live(7) == 1)
        #expect(connections.received(connections.alice) == ["e1:6", "e1:7"])
    }

    @Test func aNewEpochIsNeverALateCopy() {
        recover()
        #expect(live(1, epoch: "e2") == 1)
        #expect(connections.received(connections.alice) == ["e2:1"])
    }
}
