/// Per-address abuse state: rate-limit violations, blocks and authentication failures. Bounded: at most
/// `maxEntries` addresses are tracked; when full, expired entries go first, then the oldest.
struct AbuseTracker: Sendable {
    struct Entry: Sendable {
        var blockedUntil: ContinuousClock.Instant?
        var authFailures = WindowCounter()
        /// HTTP-level violations: oversized or too slowly sent request heads.
        var httpViolations = WindowCounter()
        var lastSeen: ContinuousClock.Instant
    }

    private var entries: [String: Entry] = [:]
    let maxEntries: Int

    init(maxEntries: Int) {
        self.maxEntries = maxEntries
    }

    var count: Int { entries.count }

    func blockedFor(_ key: String, now: ContinuousClock.Instant) -> Duration? {
        guard let until = entries[key]?.blockedUntil, until > now else { return nil }
        return until - now
    }

    mutating func block(_ key: String, for duration: Duration, now: ContinuousClock.Instant) {
        update(key, now: now) { $0.blockedUntil = now + duration }
    }

    /// Records an authentication failure; returns the count in the current window.
    mutating func recordAuthFailure(_ key: String, window: Duration, now: ContinuousClock.Instant) -> Int {
        var count = 0
        update(key, now: now) { count = $0.authFailures.record(now: now, window: window) }
        return count
    }

    /// Records an HTTP violation; returns the count in the current window.
    mutating func recordHTTPViolation(_ key: String, window: Duration, now: ContinuousClock.Instant) -> Int {
        var count = 0
        update(key, now: now) { count = $0.httpViolations.record(now: now, window: window) }
        return count
    }

    private mutating func update(_ key: String, now: ContinuousClock.Instant, _ body: (inout Entry) -> Void) {
        if entries[key] == nil && entries.count >= maxEntries { evict(now: now) }
        body(&entries[key, default: Entry(lastSeen: now)])
        entries[key]?.lastSeen = now
    }

    /// Forgets entries idle for longer than `idle` that are not blocked.
    mutating func sweep(now: ContinuousClock.Instant, idle: Duration) {
        entries = entries.filter { _, entry in
            if let until = entry.blockedUntil, until > now { return true }
            return now - entry.lastSeen < idle
        }
    }

    private mutating func evict(now: ContinuousClock.Instant) {
        sweep(now: now, idle: .seconds(60))
        guard entries.count >= maxEntries else { return }
        // Still full: forget the least recently seen tenth.
        let victims = entries.sorted { $0.value.lastSeen < $1.value.lastSeen }.prefix(max(1, maxEntries / 10))
        for (key, _) in victims { entries[key] = nil }
    }
}
