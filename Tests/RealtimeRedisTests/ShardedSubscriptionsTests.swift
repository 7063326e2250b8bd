import RealtimeCore
import Testing

@testable import RealtimeRedis

/// The sharded pub/sub bookkeeping as a value: every interleaving of interest, connections, replies, pushes and
/// slot-map changes, without a cluster.
@Suite struct ShardedSubscriptionsTests {
    typealias Machine = ShardedSubscriptions
    static let a = RedisNodeAddress(host: "127.0.0.1", port: 7001)
    static let b = RedisNodeAddress(host: "127.0.0.1", port: 7002)
    static let t0 = Timestamp(millisecondsSinceEpoch: 1_000)
    static let t1 = Timestamp(millisecondsSinceEpoch: 2_000)
    static let t2 = Timestamp(millisecondsSinceEpoch: 3_000)

    /// A machine with `channels` subscribed and confirmed on `node` (connection generation returned).
    static func subscribed(_ channels: [String], on node: RedisNodeAddress) -> (Machine, Int) {
        var machine = Machine()
        for channel in channels { _ = machine.addInterest(channel, owner: node) }
        let (generation, _) = machine.connected(node)
        for channel in channels { _ = machine.confirmed(channel, generation, on: node, now: t0) }
        return (machine, generation)
    }

    @Test func theFirstInterestConnectsThenSubscribesEveryChannelOfTheNode() {
        var machine = Machine()
        #expect(machine.addInterest("x", owner: Self.a) == [.connect(Self.a)])
        // Another channel of the same node while it connects: no second connection.
        #expect(machine.addInterest("y", owner: Self.a) == [])
        #expect(machine.addInterest("x", owner: Self.a) == [], "counted interest")
        #expect(!machine.isSettled("x"))
        let (generation, actions) = machine.connected(Self.a)
        #expect(actions == [.subscribe(Self.a, generation: generation, ["x", "y"])])
        #expect(machine.confirmed("x", generation, on: Self.a, now: Self.t0) == [])
        #expect(machine.isSettled("x") && !machine.isSettled("y"))
        #expect(machine.confirmed("y", generation, on: Self.a, now: Self.t0) == [], "no loss: no gap")
        #expect(machine.isComplete)
        // Once connected, a new channel is one SSUBSCRIBE.
        #expect(machine.addInterest("z", owner: Self.a) == [.subscribe(Self.a, generation: generation, ["z"])])
    }

    @Test func theLastInterestUnsubscribesAndAnIdleNodeIsClosed() {
        let started = Self.subscribed(["x", "y"], on: Self.a)
        var machine = started.0
        let generation = started.1
        _ = machine.addInterest("x", owner: Self.a)
        #expect(machine.removeInterest("x") == [], "one interest left")
        #expect(machine.removeInterest("x") == [.unsubscribe(Self.a, generation: generation, ["x"])])
        #expect(
            machine.removeInterest("y") == [
                .unsubscribe(Self.a, generation: generation, ["y"]), .close(Self.a, generation: generation),
            ]
        )
        #expect(machine.nodes.isEmpty && machine.placements.isEmpty)
        #expect(machine.removeInterest("y") == [], "no interest: nothing")
    }

    @Test func aLostConnectionResubscribesAndReportsTheWindowOnce() {
        let started = Self.subscribed(["x", "y"], on: Self.a)
        var machine = started.0
        let generation = started.1
        #expect(
            machine.lost(Self.a, generation: generation, now: Self.t1) == [.refreshTopology, .scheduleRetry(Self.a)]
        )
        #expect(!machine.isComplete && machine.lostSince == Self.t1)
        #expect(machine.isSettled("x"), "an addInterest does not wait for a node that is down")
        // A late event of the old connection changes nothing.
        #expect(machine.confirmed("x", generation, on: Self.a, now: Self.t1) == [])
        #expect(machine.lost(Self.a, generation: generation, now: Self.t1) == [])
        #expect(machine.retry(Self.a) == [.connect(Self.a)])
        #expect(machine.connectFailed(Self.a, now: Self.t2) == [.refreshTopology, .scheduleRetry(Self.a)])
        #expect(machine.lostSince == Self.t1, "the window starts at the first loss")
        #expect(machine.retry(Self.a) == [.connect(Self.a)])
        let (second, actions) = machine.connected(Self.a)
        #expect(second != generation)
        #expect(actions == [.subscribe(Self.a, generation: second, ["x", "y"])])
        #expect(machine.confirmed("x", second, on: Self.a, now: Self.t2) == [])
        #expect(machine.confirmed("y", second, on: Self.a, now: Self.t2) == [.gap(from: Self.t1, to: Self.t2)])
        #expect(machine.lostSince == nil && machine.recoveries == 1)
    }

    @Test func aFailoverMovesTheChannelsToThePromotedNode() {
        let started = Self.subscribed(["x", "y"], on: Self.a)
        var machine = started.0
        let generation = started.1
        _ = machine.lost(Self.a, generation: generation, now: Self.t1)
        // The slot map still names the dead primary: nothing moves, the retry keeps trying.
        #expect(machine.topologyChanged(owner: { _ in Self.a }, now: Self.t1) == [])
        // The replica is promoted: the channels go there, the dead node is forgotten (its retry does nothing).
        #expect(machine.topologyChanged(owner: { _ in Self.b }, now: Self.t2) == [.connect(Self.b)])
        #expect(machine.nodes[Self.a] == nil)
        #expect(machine.retry(Self.a) == [])
        let (onB, actions) = machine.connected(Self.b)
        #expect(actions == [.subscribe(Self.b, generation: onB, ["x", "y"])])
        _ = machine.confirmed("x", onB, on: Self.b, now: Self.t2)
        #expect(machine.confirmed("y", onB, on: Self.b, now: Self.t2) == [.gap(from: Self.t1, to: Self.t2)])
    }

    @Test func aSunsubscribePushMeansTheSlotMovedAndOnlyThatChannelMoves() {
        var machine = Machine()
        _ = machine.addInterest("x", owner: Self.a)
        _ = machine.addInterest("y", owner: Self.a)
        _ = machine.addInterest("z", owner: Self.b)
        let (onA, _) = machine.connected(Self.a)
        let (onB, _) = machine.connected(Self.b)
        for channel in ["x", "y"] { _ = machine.confirmed(channel, onA, on: Self.a, now: Self.t0) }
        _ = machine.confirmed("z", onB, on: Self.b, now: Self.t0)
        // Redis unsubscribed us from x (its slot left a): read the slot map again.
        #expect(machine.unsubscribedByServer("x", onA, on: Self.a, now: Self.t1) == [.refreshTopology])
        #expect(machine.placements["x"] == .unplaced && machine.lostSince == Self.t1)
        // A push for a channel not subscribed there (e.g. the reply to an unsubscribe we already forgot) is ignored.
        #expect(machine.unsubscribedByServer("z", onA, on: Self.a, now: Self.t1) == [])
        // The new map puts x on b, which is connected: one SSUBSCRIBE there; y and z stay.
        let owners = ["x": Self.b, "y": Self.a, "z": Self.b]
        #expect(
            machine.topologyChanged(owner: { owners[$0] }, now: Self.t2) == [.subscribe(Self.b, generation: onB, ["x"])]
        )
        #expect(machine.confirmed("x", onB, on: Self.b, now: Self.t2) == [.gap(from: Self.t1, to: Self.t2)])
    }

    @Test func aMovedReplyToSubscribeRereadsTheMapAndAMigrationFoundByTheMapUnsubscribesTheOldNode() {
        var machine = Machine()
        _ = machine.addInterest("x", owner: Self.a)
        _ = machine.addInterest("y", owner: Self.a)
        let (onA, _) = machine.connected(Self.a)
        _ = machine.confirmed("y", onA, on: Self.a, now: Self.t0)
        // x's slot moved before we knew: MOVED.
        #expect(machine.refused("x", onA, on: Self.a, now: Self.t1) == [.refreshTopology])
        #expect(machine.isSettled("x") == false)
        // The periodic map read finds x on b and y on b too (no push came for y): y is unsubscribed on a.
        #expect(
            machine.topologyChanged(owner: { _ in Self.b }, now: Self.t1) == [
                .connect(Self.b), .unsubscribe(Self.a, generation: onA, ["y"]), .close(Self.a, generation: onA),
            ]
        )
        let (onB, actions) = machine.connected(Self.b)
        #expect(actions == [.subscribe(Self.b, generation: onB, ["x", "y"])])
        _ = machine.confirmed("x", onB, on: Self.b, now: Self.t2)
        #expect(machine.confirmed("y", onB, on: Self.b, now: Self.t2) == [.gap(from: Self.t1, to: Self.t2)])
    }

    @Test func anUncoveredSlotWaitsForTheMapAndTheGapCoversIt() {
        var machine = Machine()
        #expect(machine.addInterest("x", owner: nil) == [.refreshTopology])
        #expect(!machine.isSettled("x"))
        // A map that still leaves the slot uncovered: wait for the next (periodic) one, no read loop.
        #expect(machine.topologyChanged(owner: { _ in nil }, now: Self.t0) == [])
        #expect(machine.topologyChanged(owner: { _ in Self.a }, now: Self.t1) == [.connect(Self.a)])
        let (generation, _) = machine.connected(Self.a)
        #expect(machine.confirmed("x", generation, on: Self.a, now: Self.t1) == [], "never subscribed: no loss")
    }

    @Test func aConnectionThatComesUpForNothingIsClosedAndRemovingInterestEndsAWindow() {
        var machine = Machine()
        _ = machine.addInterest("x", owner: Self.a)
        _ = machine.removeInterest("x")
        let (generation, actions) = machine.connected(Self.a)
        #expect(actions == [.close(Self.a, generation: generation)])
        #expect(machine.nodes.isEmpty)

        // A window open only for a channel nobody wants any more closes when its interest goes.
        let started = Self.subscribed(["y"], on: Self.a)
        var other = started.0
        let onA = started.1
        _ = other.addInterest("z", owner: Self.b)
        let (onB, _) = other.connected(Self.b)
        _ = other.confirmed("z", onB, on: Self.b, now: Self.t0)
        _ = other.lost(Self.b, generation: onB, now: Self.t1)
        let ending = other.removeInterest("z")
        #expect(ending.contains(.gap(from: Self.t1, to: ending.compactMap(\.gapEnd).first ?? Self.t1)))
        #expect(
            other.lostSince == nil && other.nodes[Self.b] == nil && other.nodes[Self.a] == .connected(generation: onA)
        )
    }

    @Test func resubscribeAllDropsEveryConnectionAndCloseStopsEverything() {
        let started = Self.subscribed(["x"], on: Self.a)
        var machine = started.0
        let generation = started.1
        #expect(
            machine.resubscribeAll(now: Self.t1) == [
                .close(Self.a, generation: generation), .refreshTopology, .scheduleRetry(Self.a),
            ]
        )
        #expect(machine.lostSince == Self.t1)
        #expect(machine.retry(Self.a) == [.connect(Self.a)])
        let (second, _) = machine.connected(Self.a)
        #expect(machine.close() == [.close(Self.a, generation: second)])
        #expect(machine.confirmed("x", second, on: Self.a, now: Self.t2) == [])
        #expect(machine.addInterest("w", owner: Self.a) == [])
        #expect(machine.isSettled("x"), "nothing waits on a closed subscriber")
    }
}

extension ShardedSubscriptions.Action {
    var gapEnd: Timestamp? {
        if case .gap(_, let to) = self { return to }
        return nil
    }
}
