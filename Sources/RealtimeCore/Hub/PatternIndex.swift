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
        var exact: Set<Int> = []
        /// Slots whose pattern is this path followed by a trailing `*`.
        var prefix: Set<Int> = []

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
        let inserted = pattern.isPrefix ? node.prefix.insert(slot).inserted : node.exact.insert(slot).inserted
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
        let removed = pattern.isPrefix ? node.prefix.remove(slot) != nil : node.exact.remove(slot) != nil
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
    func forEachMatch(_ key: MatchKey, _ body: (Set<Int>) -> Void) {
        visit(root, key.segments, 0, body)
    }

    private func visit(_ node: Node, _ segments: [String], _ index: Int, _ body: (Set<Int>) -> Void) {
        if index == segments.count {
            if !node.exact.isEmpty { body(node.exact) }
            return
        }
        if !node.prefix.isEmpty { body(node.prefix) }
        if let child = node.children[segments[index]] { visit(child, segments, index + 1, body) }
        if let wildcard = node.wildcard { visit(wildcard, segments, index + 1, body) }
    }
}
