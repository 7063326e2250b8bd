/// Keeps user-targeted notifications sent while the user had no connection anywhere in the cluster, and hands
/// them over once, to the user's next connection (on any server).
///
/// Bounded per user (``OfflineNotificationLimits/maxPerUser``, the oldest dropped first) and in time
/// (``OfflineNotificationLimits/retention``); ``take(for:)`` removes what it returns in one step, so two servers
/// that see the user connect at once never both deliver a notification. Admin and broadcast notifications are not
/// queued: they are recorded in the `admins` and `everyone` history streams and recovered like events.
///
/// Implementations: ``InMemoryOfflineNotificationStore`` (one process) and `RedisOfflineNotificationStore`
/// (RealtimeRedis, cluster-wide). `OfflineNotificationStoreConformance` (RealtimeTesting) checks the contract.
public protocol OfflineNotificationStore: Sendable {
    /// Queues `notification` for `userID`. Returns how many are queued for the user now, and how many older
    /// notifications were dropped to make room for it.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a user id that is empty, longer than
    ///   ``OfflineNotificationLimits/maxUserIDBytes`` or holds a control character, or a notification not targeted
    ///   at that user; ``RealtimeError/Code/limitExceeded`` for a notification whose JSON exceeds
    ///   ``OfflineNotificationLimits/maxNotificationBytes`` (nothing is queued then);
    ///   ``RealtimeError/Code/backendUnavailable`` when the backend fails.
    func enqueue(
        _ notification: RealtimeNotification,
        for userID: String
    ) async throws(RealtimeError) -> OfflineEnqueueResult

    /// Removes and returns the notifications queued for `userID` that have not expired, oldest first.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a malformed user id (as for ``enqueue(_:for:)``);
    ///   ``RealtimeError/Code/backendUnavailable`` when the backend fails (nothing is removed then).
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

/// What ``OfflineNotificationStore/enqueue(_:for:)`` did.
public struct OfflineEnqueueResult: Sendable, Hashable {
    /// The notifications queued for the user now, this one included.
    public var queued: Int
    /// Notifications kept before that were dropped to make room for this one: the user's oldest beyond
    /// ``OfflineNotificationLimits/maxPerUser``, or (in memory) the oldest of any user beyond
    /// ``OfflineNotificationLimits/memoryLimitBytes``. Expired notifications removed on the way are not counted.
    public var displaced: Int

    public init(queued: Int, displaced: Int) {
        self.queued = queued
        self.displaced = displaced
    }
}

/// How many offline notifications are kept per user, and for how long.
public struct OfflineNotificationLimits: Sendable, Hashable {
    /// The longest user id a store accepts (the HTTP API's identifier bound).
    public static let maxUserIDBytes = 256
    /// The most ``maxPerUser`` may be.
    public static let maximumPerUser = 10_000
    /// The most ``maxNotificationBytes`` may be.
    public static let maximumNotificationBytes = 512 * 1024

    /// The most notifications queued per user; the oldest is dropped beyond (`WEBSOCKET_OFFLINE_NOTIFICATIONS`;
    /// `0` keeps none: hosts build no store).
    public var maxPerUser = 100
    /// How long a queued notification is kept (`WEBSOCKET_OFFLINE_NOTIFICATION_TTL`, ms).
    public var retention: Duration = .seconds(7 * 86_400)
    /// The largest notification kept, measured as its JSON (``RealtimeNotification/jsonObject``)
    /// (`WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES`).
    public var maxNotificationBytes = 16_384
    /// What the in-memory store keeps of all users together, counted as each notification's JSON plus
    /// ``InMemoryOfflineNotificationStore/entryOverheadBytes`` (`WEBSOCKET_OFFLINE_NOTIFICATION_MEMORY_LIMIT`,
    /// default 64 MiB): past it, the oldest notifications of any user are dropped first. The number of users is
    /// not bounded otherwise, so without it a publisher could grow the process by sending to ever new offline users.
    /// A Redis store is bounded by the server's own `maxmemory` instead.
    public var memoryLimitBytes = 64 * 1024 * 1024

    public init() {}

    /// Whether hosts keep offline notifications at all (``maxPerUser`` above 0).
    public var enabled: Bool { maxPerUser > 0 }

    /// Checks the limits a store is built with.
    ///
    /// - Throws: ``RealtimeError/Code/invalidConfiguration`` for ``maxPerUser`` outside 1…``maximumPerUser``, a
    ///   ``retention`` under 1 ms or a ``maxNotificationBytes`` outside 256…``maximumNotificationBytes``.
    public func validate() throws(RealtimeError) {
        func fail(_ message: String) -> RealtimeError {
            RealtimeError(.invalidConfiguration, "offline notifications: \(message)")
        }
        guard (1...Self.maximumPerUser).contains(maxPerUser) else {
            throw fail("maxPerUser must be 1 to \(Self.maximumPerUser)")
        }
        guard retention >= .milliseconds(1) else { throw fail("retention must be at least 1 ms") }
        guard (256...Self.maximumNotificationBytes).contains(maxNotificationBytes) else {
            throw fail("maxNotificationBytes must be 256 to \(Self.maximumNotificationBytes)")
        }
        let largestEntry =
            maxNotificationBytes + InMemoryOfflineNotificationStore.entryOverheadBytes + 2 * Self.maxUserIDBytes
        guard memoryLimitBytes >= largestEntry else {
            throw fail("memoryLimitBytes must hold at least one notification of maxNotificationBytes")
        }
    }

    /// Checks a user id given to a store.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for an empty id, one over ``maxUserIDBytes`` or one with a
    ///   control character.
    public static func check(userID: String) throws(RealtimeError) {
        guard !userID.isEmpty, userID.utf8.count <= maxUserIDBytes,
            !userID.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
        else {
            throw RealtimeError(
                .invalidArgument,
                "an offline notification's user id must be 1 to \(maxUserIDBytes) bytes without control characters"
            )
        }
    }

    /// Checks a notification to queue for `userID` and returns its JSON (whose size the limit measures).
    ///
    /// - Throws: as ``OfflineNotificationStore/enqueue(_:for:)``.
    public func check(_ notification: RealtimeNotification, for userID: String) throws(RealtimeError) -> [UInt8] {
        try Self.check(userID: userID)
        guard notification.target == .user(userID) else {
            throw RealtimeError(.invalidArgument, "an offline notification must target the user it is queued for")
        }
        var writer = JSONWriter(reservingCapacity: 256)
        writer.write(notification.jsonObject)
        guard writer.bytes.count <= maxNotificationBytes else {
            throw RealtimeError(
                .limitExceeded,
                "an offline notification of \(writer.bytes.count) bytes exceeds the limit of \(maxNotificationBytes)"
            )
        }
        return writer.bytes
    }

    /// The environment variables ``HubConfiguration/init(environment:)`` reads into
    /// ``HubConfiguration/offlineNotifications``.
    public static let environmentVariables: [(name: String, meaning: String)] = [
        (
            "WEBSOCKET_OFFLINE_NOTIFICATIONS",
            "user notifications kept per user while they have no connection, 0 = none (default 100)"
        ),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_TTL", "ms a queued offline notification is kept (default 604800000)"),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES", "largest offline notification kept (default 16384)"),
        (
            "WEBSOCKET_OFFLINE_NOTIFICATION_MEMORY_LIMIT",
            "bytes the in-memory store keeps for all users, oldest dropped first (default 67108864)"
        ),
    ]

    /// Applies the `WEBSOCKET_OFFLINE_NOTIFICATION*` variables that are set.
    mutating func apply(_ reader: EnvironmentReader) throws(RealtimeError) {
        if let value = try reader.int("WEBSOCKET_OFFLINE_NOTIFICATIONS", min: 0) {
            guard value <= Self.maximumPerUser else {
                throw RealtimeError(
                    .invalidConfiguration,
                    "WEBSOCKET_OFFLINE_NOTIFICATIONS must be 0 to \(Self.maximumPerUser), got '\(value)'"
                )
            }
            maxPerUser = value
        }
        if let value = try reader.milliseconds("WEBSOCKET_OFFLINE_NOTIFICATION_TTL") { retention = value }
        if let value = try reader.int("WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES", min: 256) {
            maxNotificationBytes = value
        }
        if let value = try reader.int("WEBSOCKET_OFFLINE_NOTIFICATION_MEMORY_LIMIT", min: 1024) {
            memoryLimitBytes = value
        }
    }
}
