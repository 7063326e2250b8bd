import DequeModule
import Synchronization

/// An ``OfflineNotificationStore`` in this process (one server, or hubs of one process sharing it).
///
/// One `Mutex` over a `Deque` per user; memory is bounded by ``OfflineNotificationLimits/maxPerUser`` notifications
/// of at most ``OfflineNotificationLimits/maxNotificationBytes`` per user, for as many users as were sent one.
public final class InMemoryOfflineNotificationStore: OfflineNotificationStore {
    private struct Queued: Sendable {
        var notification: RealtimeNotification
        var expiresAt: Timestamp
    }

    private struct State: ~Copyable {
        var queues: [String: Deque<Queued>] = [:]
        var count = 0

        /// Drops the user's expired notifications (they are oldest first).
        mutating func expire(_ userID: String, now: Timestamp) {
            guard var queue = queues[userID] else { return }
            while let first = queue.first, first.expiresAt <= now {
                queue.removeFirst()
                count -= 1
            }
            queues[userID] = queue.isEmpty ? nil : queue
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

    public func enqueue(_ notification: RealtimeNotification, for userID: String) async throws(RealtimeError) -> Int {
        _ = try limits.check(notification, for: userID)
        let now = self.now()
        return state.withLock { state in
            state.expire(userID, now: now)
            var queue = state.queues[userID] ?? []
            queue.append(Queued(notification: notification, expiresAt: now + limits.retention))
            state.count += 1
            while queue.count > limits.maxPerUser {
                queue.removeFirst()
                state.count -= 1
            }
            state.queues[userID] = queue
            return queue.count
        }
    }

    public func take(for userID: String) async throws(RealtimeError) -> [RealtimeNotification] {
        try OfflineNotificationLimits.check(userID: userID)
        let now = self.now()
        return state.withLock { state in
            state.expire(userID, now: now)
            guard let queue = state.queues.removeValue(forKey: userID) else { return [] }
            state.count -= queue.count
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
