public import RealtimeCore
import Synchronization

/// An ``OfflineNotificationStore`` on Redis, shared by every server of a cluster (and ready for Redis Cluster:
/// every script touches one key).
///
/// - **A list per user**, `<prefix>notif:{u:<userId>}` (the user's hash tag, as the session store's and history's
///   keys). Each entry is `<expiresAtMs> <token> <sealed>`: its expiry by the enqueuing server's clock, a random
///   token naming it in the index, and the notification as a bus body sealed with the cluster secret for this key
///   (so whoever can write to Redis cannot forge a notification, nor move one to another user's queue). The
///   *enqueue* script drops expired entries from the head, appends, drops the oldest beyond
///   ``OfflineNotificationLimits/maxPerUser`` and sets the key's TTL to the retention; the *take* script reads and
///   deletes the list in one step, so of two servers racing on the user's two new connections one gets everything
///   and the other nothing.
/// - **The count** (`notifications.queueLength`, cluster-wide) is a sorted set in its own slot,
///   `<prefix>notif:{notifq}:index`: one member per queued entry (its token), scored by its expiry. Enqueue adds
///   the new token and removes the dropped ones, take removes the taken ones, and every call first removes the
///   members past their expiry, so the count is exact while both steps succeed and heals itself otherwise (a member
///   left behind by a server that died between the two steps leaves with its expiry). Two scripts per enqueue
///   and per take (the list and the index live in different slots); we chose this over a counter (`INCRBY`), which
///   entries expiring by TTL would make drift for good, and over counting per shard, which needs a scan.
public final class RedisOfflineNotificationStore: OfflineNotificationStore, Sendable {
    /// The prefix of every key.
    public let prefix: String
    public let limits: OfflineNotificationLimits
    private let client: RedisClient
    private let signer: BusSigner
    private let now: @Sendable () -> Timestamp
    private let refusedEntries = Atomic<Int>(0)
    private let indexFailures = Atomic<Int>(0)

    /// Drops expired entries from the head (ARGV[2] now), appends ARGV[1], drops the oldest beyond ARGV[3], sets the
    /// TTL to ARGV[4] ms; returns the count, the tokens of the dropped entries (expired and displaced) and how many
    /// were displaced by the bound. Malformed entries are dropped.
    static let enqueueScript = RedisScript(
        """
        local now = tonumber(ARGV[2])
        local dropped = {}
        while true do
          local head = redis.call('LINDEX', KEYS[1], 0)
          if not head then break end
          local expires, token = string.match(head, '^(%d+) (%x+) ')
          if expires and tonumber(expires) > now then break end
          redis.call('LPOP', KEYS[1])
          if token then dropped[#dropped + 1] = token end
        end
        local count = redis.call('RPUSH', KEYS[1], ARGV[1])
        local max = tonumber(ARGV[3])
        local displaced = 0
        while count > max do
          local head = redis.call('LPOP', KEYS[1])
          local _, token = string.match(head, '^(%d+) (%x+) ')
          if token then dropped[#dropped + 1] = token end
          count = count - 1
          displaced = displaced + 1
        end
        redis.call('PEXPIRE', KEYS[1], ARGV[4])
        return {count, dropped, displaced}
        """
    )

    /// Reads and deletes the whole list in one step.
    static let takeScript = RedisScript(
        """
        local entries = redis.call('LRANGE', KEYS[1], 0, -1)
        if #entries > 0 then redis.call('DEL', KEYS[1]) end
        return entries
        """
    )

    /// The index: adds ARGV[3] scored ARGV[4] (when not empty, renewing the TTL to ARGV[2] ms), removes ARGV[5…],
    /// removes the members scored up to ARGV[1] (now); returns the count.
    static let indexScript = RedisScript(
        """
        if ARGV[3] ~= '' then
          redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        for index = 5, #ARGV do redis.call('ZREM', KEYS[1], ARGV[index]) end
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
        return redis.call('ZCARD', KEYS[1])
        """
    )

    /// - Parameters:
    ///   - client: the Redis client.
    ///   - clusterSecret: the cluster's secret (at least 16 bytes), sealing every queued notification.
    ///   - prefix: the prefix of every key.
    ///   - limits: per user bound, retention and largest notification.
    ///   - now: the wall clock deciding expiry (tests pass a manual clock; the keys' TTLs follow Redis's clock).
    /// - Throws: ``RealtimeError/Code/invalidConfiguration`` for a short secret or invalid limits.
    public init(
        client: RedisClient,
        clusterSecret: some Collection<UInt8>,
        prefix: String = "rthub:",
        limits: OfflineNotificationLimits = OfflineNotificationLimits(),
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) throws(RealtimeError) {
        guard clusterSecret.count >= 16 else {
            throw RealtimeError(.invalidConfiguration, "the cluster secret must have at least 16 bytes")
        }
        try limits.validate()
        self.client = client
        self.signer = BusSigner(secret: Array(clusterSecret))
        self.prefix = prefix
        self.limits = limits
        self.now = now
    }

    /// The key of a user's queue.
    public func queueKey(of userID: String) -> String { "\(prefix)notif:{u:\(userID)}" }
    /// The key of the cluster-wide index (the count).
    public var indexKey: String { "\(prefix)notif:{notifq}:index" }

    public func enqueue(
        _ notification: RealtimeNotification,
        for userID: String
    ) async throws(RealtimeError) -> OfflineEnqueueResult {
        _ = try limits.check(notification, for: userID)
        let key = queueKey(of: userID)
        let body = RedisBusCodec.encode(
            BusMessage(origin: ServerID("offline-queue"), route: .user(userID), payload: .notification(notification)),
            alsoAdmins: false
        )
        let expiresAt = String((now() + limits.retention).millisecondsSinceEpoch)
        let token = RandomID.hex(bytes: 8)
        let reply = try await Self.enqueueScript.run(on: client, keys: [key]) { command in
            command.append(bytes: Array("\(expiresAt) \(token) ".utf8) + signer.seal(channel: key, body: body))
            command.append(String(now().millisecondsSinceEpoch))
            command.append(String(limits.maxPerUser))
            command.append(String(limits.retention.milliseconds))
        }
        guard let values = reply.array, values.count == 3, let count = values[0].int, let dropped = values[1].array,
            let displaced = values[2].int
        else {
            throw RealtimeError(.protocolViolation, "the offline notification enqueue script returned \(reply)")
        }
        await updateIndex(adding: (token, expiresAt), removing: dropped.compactMap(\.string))
        return OfflineEnqueueResult(queued: Int(count), displaced: Int(displaced))
    }

    public func take(for userID: String) async throws(RealtimeError) -> [RealtimeNotification] {
        try OfflineNotificationLimits.check(userID: userID)
        let key = queueKey(of: userID)
        let reply = try await Self.takeScript.run(on: client, keys: [key], arguments: [])
        guard let entries = reply.array else {
            throw RealtimeError(.protocolViolation, "the offline notification take script returned \(reply)")
        }
        guard !entries.isEmpty else { return [] }
        let now = self.now().millisecondsSinceEpoch
        var tokens: [String] = []
        var notifications: [RealtimeNotification] = []
        for entry in entries {
            guard let parsed = Self.parse(entry.bytes ?? []) else {
                refusedEntries.add(1, ordering: .relaxed)
                continue
            }
            tokens.append(parsed.token)
            guard parsed.expiresAt > now else { continue }
            guard let notification = open(parsed.sealed, key: key, userID: userID) else {
                refusedEntries.add(1, ordering: .relaxed)
                continue
            }
            notifications.append(notification)
        }
        await updateIndex(adding: nil, removing: tokens)
        return notifications
    }

    public func queueLength() async throws(RealtimeError) -> Int {
        let reply = try await Self.indexScript.run(
            on: client,
            keys: [indexKey],
            arguments: [String(now().millisecondsSinceEpoch), "", "", ""]
        )
        guard let count = reply.int else {
            throw RealtimeError(.protocolViolation, "the offline notification index script returned \(reply)")
        }
        return Int(count)
    }

    /// Adds and removes index members; a failure is counted, not thrown (the queue itself changed already, and
    /// the members' scores let a stale count heal).
    private func updateIndex(adding added: (token: String, expiresAt: String)?, removing removed: [String]) async {
        guard added != nil || !removed.isEmpty else { return }
        do {
            _ = try await Self.indexScript.run(on: client, keys: [indexKey]) { command in
                command.append(String(now().millisecondsSinceEpoch))
                command.append(String(limits.retention.milliseconds))
                command.append(added?.token ?? "")
                command.append(added?.expiresAt ?? "")
                for token in removed { command.append(token) }
            }
        } catch {
            indexFailures.add(1, ordering: .relaxed)
        }
    }

    /// An entry's expiry, token and sealed notification; `nil` when it is not `<digits> <hex digits> <rest>`.
    static func parse(_ entry: [UInt8]) -> (expiresAt: Int64, token: String, sealed: [UInt8])? {
        guard let firstSpace = entry.firstIndex(of: UInt8(ascii: " ")), firstSpace > 0, firstSpace <= 19,
            let expiresAt = Int64(String(decoding: entry[..<firstSpace], as: UTF8.self)),
            let secondSpace = entry[(firstSpace + 1)...].firstIndex(of: UInt8(ascii: " ")),
            secondSpace > firstSpace + 1, secondSpace - firstSpace <= 33
        else { return nil }
        let token = String(decoding: entry[(firstSpace + 1)..<secondSpace], as: UTF8.self)
        guard token.utf8.allSatisfy({ $0.isHexDigit }) else { return nil }
        return (expiresAt, token, Array(entry[(secondSpace + 1)...]))
    }

    /// The notification of a sealed entry of `key`, if its seal holds and it is a notification for `userID`.
    private func open(_ sealed: [UInt8], key: String, userID: String) -> RealtimeNotification? {
        guard let opened = signer.open(channel: Array(key.utf8), payload: sealed),
            let decoded = try? RedisBusCodec.decode(opened.body),
            decoded.message.route == .user(userID),
            case .notification(let notification) = decoded.message.payload,
            notification.target == .user(userID)
        else { return nil }
        return notification
    }

    /// Entries whose form or seal did not hold, since the store was created.
    package var refusedEntryCount: Int { refusedEntries.load(ordering: .relaxed) }

    /// The client's health, with the entries refused and the index updates that failed so far.
    public func healthCheck() async -> ComponentHealth {
        var health = await client.healthCheck()
        health.details["refusedEntries"] = .int(Int64(refusedEntryCount))
        health.details["indexFailures"] = .int(Int64(indexFailures.load(ordering: .relaxed)))
        return health
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
    }
}
