/// A set of slots kept as a dense array (fast to iterate: fan-out walks contiguous memory) with a position map
/// for O(1) removal by swapping in the last element.
struct SlotSet: Sendable {
    private(set) var members: [Int] = []
    private var positions: [Int: Int] = [:]

    var isEmpty: Bool { members.isEmpty }
    var count: Int { members.count }

    mutating func insert(_ slot: Int) -> Bool {
        guard positions[slot] == nil else { return false }
        positions[slot] = members.count
        members.append(slot)
        return true
    }

    mutating func remove(_ slot: Int) -> Bool {
        guard let position = positions.removeValue(forKey: slot) else { return false }
        let last = members.removeLast()
        if position < members.count {
            members[position] = last
            positions[last] = position
        }
        return true
    }
}

/// An index from patterns to the connections (slots) that subscribed to them, over a segment trie.
///
/// Looking up an event type visits one trie path per wildcard branch (a handful of nodes) and yields the
/// sets of subscribed slots directly, so publishing to N connections costs about the number of matching
/// connections, never the number of subscriptions.
struct PatternIndex: Sendable {
    private final class Node: @unchecked Sendable {
        // Safety: nodes are only reached through `PatternIndex`, a value type that the hub mutates and reads
        // exclusively inside its state `Mutex`; no node escapes that lock.
        var children: [String: Node] = [:]
        var wildcard: Node?
        /// Slots whose pattern ends exactly here.
        var exact = SlotSet()
        /// Slots whose pattern is this path followed by a trailing `*`.
        var prefix = SlotSet()

        var isEmpty: Bool { children.isEmpty && wildcard == nil && exact.isEmpty && prefix.isEmpty }
    }

    private var root = Node()
    private(set) var entryCount = 0

    mutating func insert(_ pattern: EventPattern, slot: Int) {
        var node = root
        for segment in pattern.segments {
            switch segment {
            case .wildcard:
                if node.wildcard == nil { node.wildcard = Node() }
                node = node.wildcard!
            case .literal(let literal):
                if let child = node.children[literal] {
                    node = child
                } else {
                    let child = Node()
                    node.children[literal] = child
                    node = child
                }
            }
        }
        let inserted = pattern.isPrefix ? node.prefix.insert(slot) : node.exact.insert(slot)
        if inserted { entryCount += 1 }
    }

    mutating func remove(_ pattern: EventPattern, slot: Int) {
        var path: [(Node, EventPattern.Segment)] = []
        var node = root
        for segment in pattern.segments {
            let next: Node?
            switch segment {
            case .wildcard: next = node.wildcard
            case .literal(let literal): next = node.children[literal]
            }
            guard let next else { return }
            path.append((node, segment))
            node = next
        }
        let removed = pattern.isPrefix ? node.prefix.remove(slot) : node.exact.remove(slot)
        if removed { entryCount -= 1 }
        // Prune empty nodes bottom-up so a churn of distinct patterns does not leave a growing trie behind.
        var child = node
        while let (parent, segment) = path.popLast(), child.isEmpty {
            switch segment {
            case .wildcard: parent.wildcard = nil
            case .literal(let literal): parent.children[literal] = nil
            }
            child = parent
        }
    }

    /// Calls `body` with every set of slots whose pattern matches `key`. A slot may appear in several sets
    /// when several of its patterns match; the caller de-duplicates.
    func forEachMatch(_ key: MatchKey, _ body: ([Int]) -> Void) {
        visit(root, key.segments, 0, body)
    }

    private func visit(_ node: Node, _ segments: [String], _ index: Int, _ body: ([Int]) -> Void) {
        if index == segments.count {
            if !node.exact.isEmpty { body(node.exact.members) }
            return
        }
        if !node.prefix.isEmpty { body(node.prefix.members) }
        if let child = node.children[segments[index]] { visit(child, segments, index + 1, body) }
        if let wildcard = node.wildcard { visit(wildcard, segments, index + 1, body) }
    }
}
