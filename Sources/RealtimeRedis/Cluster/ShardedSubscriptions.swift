import RealtimeCore

/// The bookkeeping of sharded pub/sub (`SSUBSCRIBE`) on a Redis Cluster, as a value: which channels are wanted
/// (counted interest), on which node each one is subscribed or being subscribed, the phase of each node's
/// subscriber connection, and since when messages may have been lost. Every event returns the actions to take
/// (connect, `SSUBSCRIBE`, `SUNSUBSCRIBE`, close, refresh the slot map, report a gap); ``RedisShardedSubscriber``
/// applies them. Pure and synchronous, so every interleaving of pushes, replies, lost connections and slot-map
/// changes is unit-tested without a cluster.
///
/// A channel lives on the node that owns its slot. Delivery on a channel may have stopped when its node's
/// connection drops, when Redis tells us it unsubscribed us (`sunsubscribe` push: its slot moved), when
/// `SSUBSCRIBE` is refused (`MOVED`), or when the slot map puts it elsewhere; from the first of these until every
/// wanted channel is subscribed again, messages may have been lost: the window is reported once as a gap.
struct ShardedSubscriptions: Sendable {
    typealias Node = RedisNodeAddress

    /// Where a wanted channel is.
    enum Placement: Hashable, Sendable {
        /// Its slot's owner is not known (waiting for the slot map).
        case unplaced
        /// `SSUBSCRIBE` sent, or to be sent when the node's connection is up.
        case pending(Node)
        /// Confirmed by the node.
        case subscribed(Node)

        var node: Node? {
            switch self {
            case .unplaced: return nil
            case .pending(let node), .subscribed(let node): return node
            }
        }
    }

    /// A node's subscriber connection.
    enum Phase: Hashable, Sendable {
        case connecting
        /// Up; `generation` tells this connection from earlier ones of the node (late events of those are ignored).
        case connected(generation: Int)
        /// Lost or failed; a retry is scheduled.
        case down
    }

    enum Action: Hashable, Sendable {
        /// Open a subscriber connection to the node, then call ``connected(_:)`` or ``connectFailed(_:)``.
        case connect(Node)
        /// Send one `SSUBSCRIBE` per channel on the node's connection `generation`, then ``confirmed(_:_:on:)`` or
        /// ``refused(_:_:on:)`` per channel.
        case subscribe(Node, generation: Int, [String])
        /// Send one `SUNSUBSCRIBE` per channel on the node's connection `generation`.
        case unsubscribe(Node, generation: Int, [String])
        /// Close the node's connection `generation` (no channel left there).
        case close(Node, generation: Int)
        /// Call ``retry(_:)`` for the node after a backoff delay.
        case scheduleRetry(Node)
        /// Read the slot map again, then call ``topologyChanged(owner:now:)``.
        case refreshTopology
        /// Messages may have been lost in this window.
        case gap(from: Timestamp, to: Timestamp)
    }

    private(set) var interest: [String: Int] = [:]
    private(set) var placements: [String: Placement] = [:]
    private(set) var nodes: [Node: Phase] = [:]
    /// When delivery of some wanted channel stopped; cleared (and reported) once every wanted channel is
    /// subscribed again.
    private(set) var lostSince: Timestamp?
    /// How many loss windows closed (each reported as a gap).
    private(set) var recoveries = 0
    private(set) var closed = false
    private var generations = 0

    /// Whether every wanted channel is confirmed by its node.
    var isComplete: Bool { placements.values.allSatisfy { if case .subscribed = $0 { true } else { false } } }

    /// Whether an `addInterest` for `channel` has nothing more to wait for: subscribed, no longer wanted, or its
    /// node unreachable for now (the gap will cover it).
    func isSettled(_ channel: String) -> Bool {
        switch placements[channel] {
        case nil, .subscribed: return true
        case .unplaced: return closed
        case .pending(let node): return closed || nodes[node] == .down
        }
    }

    // MARK: Interest

    /// One more interest in `channel`, whose slot `owner` serves in the current map (`nil`: unknown).
    mutating func addInterest(_ channel: String, owner: Node?) -> [Action] {
        guard !closed else { return [] }
        interest[channel, default: 0] += 1
        guard interest[channel] == 1 else { return [] }
        return place(channel, on: owner)
    }

    /// One less interest in `channel`; the last one unsubscribes it.
    mutating func removeInterest(_ channel: String) -> [Action] {
        guard !closed, let count = interest[channel] else { return [] }
        guard count == 1 else {
            interest[channel] = count - 1
            return []
        }
        interest[channel] = nil
        let placement = placements.removeValue(forKey: channel)
        var actions: [Action] = []
        if let node = placement?.node, case .connected(let generation) = nodes[node] {
            actions.append(.unsubscribe(node, generation: generation, [channel]))
        }
        actions += releaseIdleNodes()
        actions += completeIfRecovered(now: .now())
        return actions
    }

    // MARK: Connections

    /// The node's connection is up: it gets a generation and every channel placed on it is subscribed.
    mutating func connected(_ node: Node) -> (generation: Int, actions: [Action]) {
        generations += 1
        let generation = generations
        guard !closed, nodes[node] == .connecting else { return (generation, [.close(node, generation: generation)]) }
        let channels = placements.filter { $0.value.node == node }.keys.sorted()
        guard !channels.isEmpty else {
            nodes[node] = nil
            return (generation, [.close(node, generation: generation)])
        }
        nodes[node] = .connected(generation: generation)
        for channel in channels { placements[channel] = .pending(node) }
        return (generation, [.subscribe(node, generation: generation, channels)])
    }

    /// The node could not be reached.
    mutating func connectFailed(_ node: Node, now: Timestamp) -> [Action] {
        guard !closed, nodes[node] == .connecting else { return [] }
        return goDown(node, now: now)
    }

    /// The node's connection `generation` was lost.
    mutating func lost(_ node: Node, generation: Int, now: Timestamp) -> [Action] {
        guard !closed, nodes[node] == .connected(generation: generation) else { return [] }
        return goDown(node, now: now)
    }

    private mutating func goDown(_ node: Node, now: Timestamp) -> [Action] {
        nodes[node] = .down
        var affected = false
        for (channel, placement) in placements where placement.node == node {
            placements[channel] = .pending(node)
            affected = true
        }
        guard affected else {
            nodes[node] = nil
            return [.refreshTopology]
        }
        if lostSince == nil { lostSince = now }
        return [.refreshTopology, .scheduleRetry(node)]
    }

    /// The retry delay of a node that went down has passed.
    mutating func retry(_ node: Node) -> [Action] {
        guard !closed, nodes[node] == .down else { return [] }
        guard placements.values.contains(where: { $0.node == node }) else {
            nodes[node] = nil
            return []
        }
        nodes[node] = .connecting
        return [.connect(node)]
    }

    // MARK: Replies and pushes

    /// The node confirmed `SSUBSCRIBE channel` on connection `generation`.
    mutating func confirmed(_ channel: String, _ generation: Int, on node: Node, now: Timestamp) -> [Action] {
        guard !closed, nodes[node] == .connected(generation: generation), placements[channel] == .pending(node)
        else { return [] }
        placements[channel] = .subscribed(node)
        return completeIfRecovered(now: now)
    }

    /// The node refused `SSUBSCRIBE channel` (`MOVED`: it does not serve the slot) or the command failed.
    mutating func refused(_ channel: String, _ generation: Int, on node: Node, now: Timestamp) -> [Action] {
        guard !closed, nodes[node] == .connected(generation: generation), placements[channel] == .pending(node)
        else { return [] }
        placements[channel] = .unplaced
        if lostSince == nil { lostSince = now }
        return [.refreshTopology]
    }

    /// A `sunsubscribe` push for `channel` that is not the reply to our own `SUNSUBSCRIBE`: the node no longer
    /// serves its slot (it moved, or the node became a replica).
    mutating func unsubscribedByServer(
        _ channel: String,
        _ generation: Int,
        on node: Node,
        now: Timestamp
    ) -> [Action] {
        guard !closed, nodes[node] == .connected(generation: generation), placements[channel] == .subscribed(node)
        else { return [] }
        placements[channel] = .unplaced
        if lostSince == nil { lostSince = now }
        return [.refreshTopology]
    }

    // MARK: Slot map

    /// A slot map was read: each wanted channel goes to its slot's owner (moving a channel is a loss window: what
    /// the new owner delivered before we subscribed there is missed); nodes left without channels are closed.
    mutating func topologyChanged(owner: (String) -> Node?, now: Timestamp) -> [Action] {
        guard !closed else { return [] }
        var actions: [Action] = []
        for channel in placements.keys.sorted() {
            let placement = placements[channel]!
            let target = owner(channel)
            if let current = placement.node, current == target { continue }
            if case .subscribed(let old) = placement, case .connected(let generation) = nodes[old] {
                actions.append(.unsubscribe(old, generation: generation, [channel]))
            }
            if placement != .unplaced, lostSince == nil { lostSince = now }
            actions += place(channel, on: target, refresh: false)
        }
        actions += releaseIdleNodes()
        return merged(actions)
    }

    /// Every node's connection is to be dropped and made again (a canary stalled): they go down like lost ones.
    mutating func resubscribeAll(now: Timestamp) -> [Action] {
        guard !closed else { return [] }
        var actions: [Action] = []
        for (node, phase) in nodes.sorted(by: { $0.key.description < $1.key.description }) {
            guard case .connected(let generation) = phase else { continue }
            actions.append(.close(node, generation: generation))
            actions += goDown(node, now: now)
        }
        return merged(actions)
    }

    /// Stops everything: every connection is closed, later events do nothing.
    mutating func close() -> [Action] {
        closed = true
        let actions: [Action] = nodes.sorted(by: { $0.key.description < $1.key.description }).compactMap {
            if case .connected(let generation) = $0.value { return .close($0.key, generation: generation) }
            return nil
        }
        nodes = [:]
        return actions
    }

    // MARK: Helpers

    /// Places `channel` on `owner`; with no owner known it waits for a slot map (asked for with `refresh`; a map
    /// that still leaves the slot uncovered waits for the periodic one rather than asking again at once).
    private mutating func place(_ channel: String, on owner: Node?, refresh: Bool = true) -> [Action] {
        guard let owner else {
            placements[channel] = .unplaced
            return refresh ? [.refreshTopology] : []
        }
        placements[channel] = .pending(owner)
        switch nodes[owner] {
        case .connected(let generation): return [.subscribe(owner, generation: generation, [channel])]
        case .connecting, .down: return []
        case nil:
            nodes[owner] = .connecting
            return [.connect(owner)]
        }
    }

    /// Closes (or forgets) nodes that no wanted channel is placed on.
    private mutating func releaseIdleNodes() -> [Action] {
        let used = Set(placements.values.compactMap(\.node))
        var actions: [Action] = []
        for (node, phase) in nodes.sorted(by: { $0.key.description < $1.key.description }) where !used.contains(node) {
            switch phase {
            case .connected(let generation):
                actions.append(.close(node, generation: generation))
                nodes[node] = nil
            case .down:
                nodes[node] = nil
            case .connecting:
                break  // `connected` closes it if still idle.
            }
        }
        return actions
    }

    private mutating func completeIfRecovered(now: Timestamp) -> [Action] {
        guard let since = lostSince, isComplete else { return [] }
        lostSince = nil
        recoveries += 1
        return [.gap(from: since, to: now)]
    }

    /// One `subscribe`/`unsubscribe` action per node and generation, one `refreshTopology`, order kept otherwise.
    private func merged(_ actions: [Action]) -> [Action] {
        var result: [Action] = []
        var refresh = false
        for action in actions {
            switch action {
            case .refreshTopology:
                if !refresh { result.append(action) }
                refresh = true
            case .subscribe(let node, let generation, let channels):
                if let index = result.firstIndex(where: {
                    if case .subscribe(node, generation, _) = $0 { true } else { false }
                }), case .subscribe(_, _, let earlier) = result[index] {
                    result[index] = .subscribe(node, generation: generation, earlier + channels)
                } else {
                    result.append(action)
                }
            case .unsubscribe(let node, let generation, let channels):
                if let index = result.firstIndex(where: {
                    if case .unsubscribe(node, generation, _) = $0 { true } else { false }
                }), case .unsubscribe(_, _, let earlier) = result[index] {
                    result[index] = .unsubscribe(node, generation: generation, earlier + channels)
                } else {
                    result.append(action)
                }
            default:
                result.append(action)
            }
        }
        return result
    }
}
