/// The rules every ``HistoryStore`` applies to a read, in one place: which entries a stream still holds under its
/// ``HistoryLimits``, and whether the entries after a position can all be returned.
///
/// A store hands over what it has after the position (in offset order); the window decides the answer. Backends
/// may keep more than the limits allow (Redis trims streams approximately, whole nodes at a time); the window
/// hides what the limits exclude, so every store answers alike.
package struct HistoryWindow {
    /// An entry as a store holds it. `message` is `nil` when the entry could not be read back.
    package struct Candidate {
        package var offset: Int64
        package var timestamp: Timestamp
        /// The entry's size as the store counts it, for ``HistoryReadLimit/maxBytes``.
        package var bytes: Int
        package var message: BusMessage?

        package init(offset: Int64, timestamp: Timestamp, bytes: Int, message: BusMessage?) {
            self.offset = offset
            self.timestamp = timestamp
            self.bytes = bytes
            self.message = message
        }
    }

    package var limits: HistoryLimits
    package var now: Timestamp

    package init(limits: HistoryLimits, now: Timestamp) {
        self.limits = limits
        self.now = now
    }

    /// Checks the arguments of ``HistoryStore/trim(_:maxEntries:maxAge:)``.
    package static func checkTrim(maxEntries: Int?, maxAge: Duration?) throws(RealtimeError) {
        if let maxEntries, maxEntries < 0 {
            throw RealtimeError(.invalidArgument, "cannot keep a negative number of entries (\(maxEntries))")
        }
        if let maxAge, maxAge < .zero { throw RealtimeError(.invalidArgument, "a maximum age cannot be negative") }
    }

    /// Whether an entry appended at `timestamp` is past ``HistoryLimits/maxAge`` (gone once its age reaches it).
    package func isExpired(_ timestamp: Timestamp) -> Bool {
        timestamp <= now - limits.maxAge
    }

    /// The first offset the count limit still keeps when the stream's last offset is `last`.
    package func firstKept(last: Int64) -> Int64 {
        max(1, last - Int64(limits.maxEntries) + 1)
    }

    /// The answer to a read after `position` of a stream at `current`, given the entries the store holds from
    /// `position.offset + 1` on, in offset order (it may stop early; the answer then says the page is cut or that
    /// entries are missing).
    package func read(
        after position: StreamPosition,
        current: StreamPosition,
        limit: HistoryReadLimit,
        candidates: some Sequence<Candidate>
    ) -> HistoryRead {
        guard position.epoch == current.epoch else { return .unavailable(.epochChanged, current: current) }
        guard position.offset <= current.offset else { return .unavailable(.ahead, current: current) }
        guard position.offset < current.offset else {
            return .page(HistoryPage(entries: [], current: current, isComplete: true))
        }
        var expected = position.offset + 1
        guard expected >= firstKept(last: current.offset) else { return .unavailable(.trimmed, current: current) }
        var entries: [HistoryEntry] = []
        var bytes = 0
        var cut = false
        for candidate in candidates where candidate.offset >= expected {
            guard candidate.offset == expected, !isExpired(candidate.timestamp) else {
                return .unavailable(.trimmed, current: current)
            }
            guard let message = candidate.message else { return .unavailable(.unreadable, current: current) }
            if entries.count == limit.maxEntries || (!entries.isEmpty && bytes + candidate.bytes > limit.maxBytes) {
                cut = true
                break
            }
            let position = StreamPosition(epoch: current.epoch, offset: candidate.offset)
            entries.append(HistoryEntry(position: position, timestamp: candidate.timestamp, message: message))
            bytes += candidate.bytes
            expected += 1
            if candidate.offset == current.offset { break }
        }
        let reached = entries.last?.position.offset == current.offset
        // Fewer entries than the stream's offsets promise, and no limit reached: some were lost.
        guard reached || cut || entries.count == limit.maxEntries else {
            return .unavailable(.trimmed, current: current)
        }
        return .page(HistoryPage(entries: entries, current: current, isComplete: reached))
    }
}
