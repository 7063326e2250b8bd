/// Keeps user-targeted notifications sent while the user had no connection anywhere in the cluster, and hands
/// them over once, to the user's next connection (on any server).
///
/// Bounded per user (``OfflineNotificationLimits/maxPerUser``, the oldest dropped first) and in time
/// (``OfflineNotificationLimits/retention``); ``take(for:)`` removes what it returns in one step, so two servers
/// that see the user connect at once never both deliver a notification. Admin and broadcast notifications are not
/// queued.
public protocol OfflineNotificationStore: Sendable {
    /// Queues `notification` for `userID`. Returns how many are queued for the user now.
    ///
    /// - Throws: ``RealtimeError/Code/backendUnavailable`` when the backend fails.
    func enqueue(_ notification: RealtimeNotification, for userID: String) async throws(RealtimeError) -> Int

    /// Removes and returns the notifications queued for `userID` that have not expired, oldest first.
    ///
    /// - Throws: ``RealtimeError/Code/backendUnavailable`` when the backend fails (nothing is removed then).
    func take(for userID: String) async throws(RealtimeError) -> [RealtimeNotification]

    /// Notifications queued and not yet taken, expired or dropped, for every user (the stats'
    /// `notifications.queueLength`).
    func queueLength() async throws(RealtimeError) -> Int

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension OfflineNotificationStore {
    public func healthCheck() async -> ComponentHealth { .healthy }
}

/// How many offline notifications are kept per user, and for how long.
public struct OfflineNotificationLimits: Sendable, Hashable {
    /// The most notifications queued per user; the oldest is dropped beyond (`WEBSOCKET_OFFLINE_NOTIFICATIONS`).
    public var maxPerUser = 100
    /// How long a queued notification is kept (`WEBSOCKET_OFFLINE_NOTIFICATION_TTL`, ms).
    public var retention: Duration = .seconds(7 * 86_400)

    public init() {}
}
