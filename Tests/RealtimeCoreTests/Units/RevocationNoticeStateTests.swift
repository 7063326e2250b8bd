import Testing

@testable import RealtimeCore

/// `HubState.deliverNotice` against a connection's recovery seam: a revocation's close that arrives while the
/// connection is still replaying history. The notice must reach the client once, before its close, and must not
/// move the client's stored position past events the unfinished replay never delivered.
@Suite struct RevocationNoticeStateTests {
    static let userPosition = StreamPosition(epoch: "e1", offset: 12)

    let connections = HubStateTests.Connections()
    let event = RealtimeEvent(id: "revoked-1", type: .sessionRevoked, userID: "alice", sessionID: "s-alice")

    var notice: RevocationNotice { RevocationNotice(event: event, userStreamPosition: Self.userPosition) }

    /// The frames `RealtimeHub.applyControl` encodes, told apart by their text.
    let frames = HubState.NoticeFrames(
        userFrame: .text("notice with position"),
        adminsFrame: .text("admins notice with position"),
        userFrameWithoutPosition: .text("notice without position"),
        adminsFrameWithoutPosition: .text("admins notice without position")
    )

    init() throws {
        try connections.subscribe(connections.alice, ["session.*", "security.*"])
    }

    func beginRecovery(from offset: Int64) -> Bool {
        connections.state.beginRecovery(
            connections.alice.id,
            from: [.user("alice"): StreamPosition(epoch: "e1", offset: offset)],
            maxFrames: 100,
            maxBytes: 1 << 20
        )
    }

    /// Delivers `event` live on alice's route with its position in her stream, as the bus would.
    func deliverLive(_ event: RealtimeEvent, text: String, offset: Int64) -> Int {
        var effects = HubState.FanOutEffects()
        return connections.state.deliver(
            event,
            key: connections.state.matchKey(event.type),
            frame: .text(text),
            route: .user("alice"),
            position: StreamPosition(epoch: "e1", offset: offset),
            effects: &effects
        )
    }

    func deliverNotice() -> Int {
        var effects = HubState.FanOutEffects()
        return connections.state.deliverNotice(notice, frames: frames, to: [connections.alice], effects: &effects)
    }

    @Test func aCloseDuringRecoveryQueuesTheNoticeWithoutPositionAndEndsTheSeam() {
        #expect(beginRecovery(from: 5))
        // Live during the replay: an event and the revocation's own route copy, both held in the seam.
        #expect(deliverLive(RealtimeEvent(type: "security.alert", userID: "alice"), text: "alert", offset: 11) == 1)
        #expect(deliverLive(event, text: "route copy", offset: 12) == 1)
        #expect(connections.received(connections.alice) == [])

        // The close arrives before the replay ends: the held copy would never be sent, so the notice goes to the
        // queue now, without a position (the replay stopped at offset 5).
        #expect(deliverNotice() == 1)
        #expect(connections.received(connections.alice) == ["notice without position"])

        // The seam is ended: nothing more is replayed or held, and the recovery has nothing to answer.
        #expect(
            connections.state.withSeam(connections.alice.id) {
                $0.replay(.user("alice"), StreamPosition(epoch: "e1", offset: 6))
            } == false
        )
        #expect(deliverLive(RealtimeEvent(type: "security.alert", userID: "alice"), text: "late", offset: 13) == 0)
        #expect(connections.state.endRecovery(connections.alice.id) == nil)
        #expect(connections.received(connections.alice) == [])
        // Given now: a second control command (another server's copy) does not queue it again.
        #expect(deliverNotice() == 0)
    }

    @Test func aNoticeWhoseCopyTheFinishedRecoveryReleasedIsNotQueuedAgain() {
        #expect(beginRecovery(from: 11))
        #expect(deliverLive(event, text: "route copy", offset: 12) == 1)
        // The replay reaches the end of the stream, the held copy is released with its position.
        #expect(connections.state.endRecovery(connections.alice.id) == [.text("route copy")])
        #expect(deliverNotice() == 0)
    }

    @Test func aNoticeTheReplayDeliveredIsNotQueuedAgain() {
        #expect(beginRecovery(from: 11))
        // The revocation was recorded before the history read: the replay queues it (as the hub does) and marks it.
        #expect(
            connections.state.withSeam(connections.alice.id) { $0.replay(.user("alice"), Self.userPosition) } == true
        )
        _ = connections.alice.queue.enqueue(.text("replayed"), force: true)
        connections.state.replayed(event, to: connections.alice.id)
        #expect(deliverNotice() == 0)
        #expect(connections.received(connections.alice) == ["replayed"])
    }

    @Test func withoutRecoveryTheNoticeKeepsItsPositionAndFollowsTheRouteCopyRule() {
        #expect(deliverNotice() == 1)
        #expect(connections.received(connections.alice) == ["notice with position"])
        #expect(deliverLive(event, text: "route copy", offset: 12) == 1)
        #expect(deliverNotice() == 0)
    }
}

@Suite struct RecoverySeamEndTests {
    @Test func anEndedSeamDropsWhatItHeldAndHoldsOrReplaysNothingMore() {
        let position = StreamPosition(epoch: "e", offset: 1)
        var seam = RecoverySeam(from: [.everyone: position], maxFrames: 10, maxBytes: 1 << 16)
        #expect(
            seam.live(.init(frame: .text("held"), stream: .everyone, position: StreamPosition(epoch: "e", offset: 3)))
                == .held
        )
        seam.end()
        #expect(seam.isEnded)
        #expect(seam.live(.init(frame: .text("late"), stream: nil, position: nil)) == .dropped)
        #expect(seam.replay(.everyone, StreamPosition(epoch: "e", offset: 2)) == false)
        #expect(seam.finish() == [])
    }
}
