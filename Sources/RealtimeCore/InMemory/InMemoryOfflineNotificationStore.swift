import DequeModule
import Synchronization

/// An ``OfflineNotificationStore`` in this process (one server, or hubs of one process sharing it).
///
/// One `Mutex` over a `Deque` per user. Memory is bounded twice: ``OfflineNotificationLimits/maxPerUser``
/// notifications of at most ``OfflineNotificationLimits/maxNotificationBytes`` per user, and
/// ``OfflineNotificationLimits/memoryLimitBytes`` for all users together (each notification counted as its JSON plus
/// ``entryOverheadBytes``): past it, the oldest notifications of any user are dropped first, so a flood to ever new
/// offline users displaces old notifications instead of growing the process, and the newest always gets in.
public final class InMemoryOfflineNotificationStore: OfflineNotificationStore {
    /// What one kept notification is charged beyond its JSON: its entry in the user's queue and in the store-wide
    /// age order, the notification's own strings and the user's dictionary entry, estimated.
    public static let entryOverheadBytes = 512

    private struct Queued: Sendable {
        var notification: RealtimeNotification
        var expiresAt: Timestamp
        /// The store-wide enqueue sequence: a user's queue holds increasing sequences.
        var sequence: UInt64
        /// What the notification is charged against the memory limit.
        var footprint: Int
    }

    private struct State: ~Copyable {
        var queues: [String: Deque<Queued>] = [:]
        var count = 0
        var bytes = 0
        var nextSequence: UInt64 = 0
        /// Every kept notification's user and sequence, oldest first, plus entries of notifications already gone
        /// (taken, expired, dropped by the per-user bound): those are skipped, and compacted away once they
        /// outnumber the live ones.
        var ageOrder: Deque<(userID: String, sequence: UInt64)> = []

        /// Drops the user's expired notifications (they are oldest first).
        mutating func expire(_ userID: String, now: Timestamp) {
            guard var queue = queues[userID] else { return }
            while let first = queue.first, first.expiresAt <= now {
                remove(queue.removeFirst())
            }
            queues[userID] = queue.isEmpty ? nil : queue
        }

        /// Accounts for a notification that left its user's queue.
        mutating func remove(_ queued: Queued) {
            count -= 1
            bytes -= queued.footprint
        }

        /// Whether `entry` of ``ageOrder`` is still kept: a user's queue holds every sequence from its first on.
        func isKept(_ entry: (userID: String, sequence: UInt64)) -> Bool {
            guard let first = queues[entry.userID]?.first else { return false }
            return entry.sequence >= first.sequence
        }

        /// Drops the oldest notifications of any user until the kept ones fit in `limit`; returns how many.
        mutating func evict(toFit limit: Int) -> Int {
            var dropped = 0
            while bytes > limit, let entry = ageOrder.popFirst() {
                guard isKept(entry), var queue = queues[entry.userID] else { continue }
                remove(queue.removeFirst())
                queues[entry.userID] = queue.isEmpty ? nil : queue
                dropped += 1
            }
            if ageOrder.count > 2 * count + 64 {
                ageOrder = Deque(ageOrder.filter { isKept($0) })
            }
            return dropped
        }
    }

    private let state = Mutex(State())
    private let limits: OfflineNotificationLimits
    private let now: @Sendable () -> Timestamp

    /// - Parameters:
    ///   - limits: per user bound and retention.
    ///   - now: the wall clock deciding expiry (tests pass a manual clock).
    /// - Throws: ``RealtimeError/Code/invalidConfiguration`` for invalid limits
    ///   (``OfflineNotificationLimits/validate()``).
    public init(
        limits: OfflineNotificationLimits = .init(),
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) throws(RealtimeError) {
        try limits.validate()
        self.limits = limits
        self.now = now
    }

    public func enqueue(
        _ notification: RealtimeNotification,
        for userID: String
    ) async throws(RealtimeError) -> OfflineEnqueueResult {
        let json = try limits.check(notification, for: userID)
        let footprint = json.count + Self.entryOverheadBytes + 2 * userID.utf8.count
        let now = self.now()
        return state.withLock { state in
            state.expire(userID, now: now)
            var queue = state.queues[userID] ?? []
            let sequence = state.nextSequence
            state.nextSequence += 1
            queue.append(
                Queued(
                    notification: notification,
                    expiresAt: now + limits.retention,
                    sequence: sequence,
                    footprint: footprint
                )
            )
            state.count += 1
            state.bytes += footprint
            state.ageOrder.append((userID, sequence))
            var displaced = 0
            while queue.count > limits.maxPerUser {
                state.remove(queue.removeFirst())
                displaced += 1
            }
            state.queues[userID] = queue
            displaced += state.evict(toFit: limits.memoryLimitBytes)
            return OfflineEnqueueResult(queued: state.queues[userID]?.count ?? 0, displaced: displaced)
        }
    }

    public func take(for userID: String) async throws(RealtimeError) -> [RealtimeNotification] {
        try OfflineNotificationLimits.check(userID: userID)
        let now = self.now()
        return state.withLock { state in
            state.expire(userID, now: now)
            guard let queue = state.queues.removeValue(forKey: userID) else { return [] }
            for queued in queue { state.remove(queued) }
            return queue.map(\.notification)
        }
    }

    public func queueLength() async throws(RealtimeError) -> Int {
        let now = self.now()
        return state.withLock { state in
            for userID in Array(state.queues.keys) { state.expire(userID, now: now) }
            return state.count
        }
    }
}
