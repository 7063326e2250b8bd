public import RealtimeCore

/// A `SessionStore` on Redis: every server reads the same keys, so a revocation is visible to all of them at once
/// (nothing is cached locally).
///
/// - Revocation list: `<prefix>sess:revoked:<id>` exists until `retainUntil` (`PXAT`).
/// - Registry: `<prefix>sess:<id>` holds the user id until the session's `expiresAt` (`PXAT`); revoking deletes it
///   and sets `<prefix>sess-revoked:<id>` until `retainUntil`, which ``create(_:userID:expiresAt:)`` checks (its own
///   key family: a session id such as `revoked:x` cannot name it).
///   `<prefix>{u:<userId>}:sessions` indexes the user's sessions (a sorted set scored by expiry, trimmed of expired
///   members on every create, at most ``maxIndexedSessionsPerUser`` members, expiring with its latest session) for
///   ``sessions(ofUser:limit:)``. The session key and the index are written by separate commands (they live in
///   different cluster slots); the session key decides, the index only lists.
/// - User-wide revocations (both modes): `<prefix>{u:<userId>}:revoked` holds the instant (milliseconds since the
///   epoch) before which the user's tokens are refused, until the revocation's `retainUntil` (`PXAT`). The hash
///   tag keeps everything of one user in one cluster slot.
public final class RedisSessionStore: SessionStore, Sendable {
    public let mode: SessionStoreMode
    private let client: RedisClient
    private let prefix: String

    /// Sets the revocation marker until `retainUntil` (ARGV[1]) or the marker's own later expiry, unless that
    /// already passed (ARGV[2] is now); returns 1 if there was no marker before (in revocation-list mode: the
    /// session was active). One key.
    static let revokeScript = RedisScript(
        """
        local untilAt = tonumber(ARGV[1])
        local earlier = redis.call('PEXPIRETIME', KEYS[1])
        local wasActive = earlier == -2
        if earlier > untilAt then untilAt = earlier end
        if untilAt > tonumber(ARGV[2]) then
          redis.call('SET', KEYS[1], '1', 'PXAT', untilAt)
        end
        if wasActive then return 1 else return 0 end
        """
    )

    /// Raises a user's revocation to the later instants: `issuedBefore` (ARGV[1]) and `retainUntil` (ARGV[2]),
    /// unless the retention already passed (ARGV[3] is now). One key, so one slot.
    static let revokeUserScript = RedisScript(
        """
        local before = tonumber(ARGV[1])
        local untilAt = tonumber(ARGV[2])
        local earlier = tonumber(redis.call('GET', KEYS[1]) or '')
        if earlier and earlier > before then before = earlier end
        local ttl = redis.call('PTTL', KEYS[1])
        if ttl > 0 and tonumber(ARGV[3]) + ttl > untilAt then untilAt = tonumber(ARGV[3]) + ttl end
        if untilAt > tonumber(ARGV[3]) then
          redis.call('SET', KEYS[1], tostring(before), 'PXAT', untilAt)
        end
        return 1
        """
    )

    /// The most sessions of one user the registry's index lists (the earliest expiring are dropped from the
    /// index, not from the registry, beyond it).
    public static let maxIndexedSessionsPerUser = 1000

    /// Indexes a session under its user: adds it (ARGV[1] expiry, ARGV[2] id), drops expired members (ARGV[3]
    /// now) and the earliest beyond ARGV[4] members, and lets the index expire with its latest member. One key.
    static let indexScript = RedisScript(
        """
        redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
        local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[4])
        if excess > 0 then redis.call('ZPOPMIN', KEYS[1], excess) end
        local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
        if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
        return 1
        """
    )

    public init(client: RedisClient, mode: SessionStoreMode = .revocationList, prefix: String = "rthub:") {
        self.client = client
        self.mode = mode
        self.prefix = prefix
    }

    private func revokedKey(_ id: String) -> String { "\(prefix)sess:revoked:\(id)" }
    private func sessionKey(_ id: String) -> String { "\(prefix)sess:\(id)" }
    private func registryRevokedKey(_ id: String) -> String { "\(prefix)sess-revoked:\(id)" }
    private func userRevokedKey(_ userID: String) -> String { "\(prefix){u:\(userID)}:revoked" }
    private func userSessionsKey(_ userID: String) -> String { "\(prefix){u:\(userID)}:sessions" }

    public func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
        switch mode {
        case .revocationList:
            return try await client.send(RedisCommand("EXISTS", revokedKey(sessionID))).int == 0
        case .registry:
            return try await client.send(RedisCommand("EXISTS", sessionKey(sessionID))).int == 1
        }
    }

    public func isActive(_ sessionID: String, userID: String) async throws(RealtimeError) -> Bool {
        switch mode {
        case .revocationList:
            return try await isActive(sessionID)
        case .registry:
            // The key holds the owner and expires with the session (PXAT): one GET answers both.
            return try await client.send(RedisCommand("GET", sessionKey(sessionID))).string == userID
        }
    }

    public func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
        switch mode {
        case .revocationList:
            try await refuseIfRevoked(sessionID, marker: revokedKey(sessionID))
        case .registry:
            let marker = registryRevokedKey(sessionID)
            try await refuseIfRevoked(sessionID, marker: marker)
            guard expiresAt > .now() else {
                _ = try await client.send(RedisCommand("DEL", sessionKey(sessionID)))
                return
            }
            _ = try await client.send(
                RedisCommand("SET", sessionKey(sessionID), userID, "PXAT", String(expiresAt.millisecondsSinceEpoch))
            )
            // Asked again after the write: a revocation that wrote its marker between the first check and the SET
            // may have deleted nothing yet (the two keys are in different slots, so no script can do both). Whatever
            // the interleaving, either the revocation deletes the key written here or this sees its marker.
            do {
                try await refuseIfRevoked(sessionID, marker: marker)
            } catch {
                if error.code == .conflict { _ = try? await client.send(RedisCommand("DEL", sessionKey(sessionID))) }
                throw error
            }
            _ = try await Self.indexScript.run(
                on: client,
                keys: [userSessionsKey(userID)],
                arguments: [
                    String(expiresAt.millisecondsSinceEpoch), sessionID, String(Timestamp.now().millisecondsSinceEpoch),
                    String(Self.maxIndexedSessionsPerUser),
                ]
            )
        }
    }

    /// Throws ``RealtimeError/Code/conflict`` while `marker`, the revocation of `sessionID`, exists.
    private func refuseIfRevoked(_ sessionID: String, marker: String) async throws(RealtimeError) {
        // -2: no marker; -1 cannot happen (always written with PXAT).
        guard let until = try await client.send(RedisCommand("PEXPIRETIME", marker)).int, until > 0 else { return }
        throw RealtimeError.sessionStillRevoked(sessionID, until: Timestamp(millisecondsSinceEpoch: until))
    }

    @discardableResult
    public func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool {
        switch mode {
        case .revocationList:
            let reply = try await Self.revokeScript.run(
                on: client,
                keys: [revokedKey(sessionID)],
                arguments: [String(retainUntil.millisecondsSinceEpoch), String(Timestamp.now().millisecondsSinceEpoch)]
            )
            return reply.int == 1
        case .registry:
            // The marker first: a `create` racing this one then sees it, or its key is deleted below.
            _ = try await Self.revokeScript.run(
                on: client,
                keys: [registryRevokedKey(sessionID)],
                arguments: [String(retainUntil.millisecondsSinceEpoch), String(Timestamp.now().millisecondsSinceEpoch)]
            )
            let owner = try await client.send(RedisCommand("GETDEL", sessionKey(sessionID)))
            guard let userID = owner.string else { return false }
            _ = try await client.send(RedisCommand("ZREM", userSessionsKey(userID), sessionID))
            return true
        }
    }

    public func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord? {
        guard mode == .registry else { return nil }
        guard let userID = try await client.send(RedisCommand("GET", sessionKey(sessionID))).string else { return nil }
        // -2: gone since the GET; -1 cannot happen (always written with PXAT).
        guard let expiry = try await client.send(RedisCommand("PEXPIRETIME", sessionKey(sessionID))).int, expiry > 0
        else { return nil }
        return SessionRecord(
            sessionID: sessionID,
            userID: userID,
            expiresAt: Timestamp(millisecondsSinceEpoch: expiry)
        )
    }

    public func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord] {
        guard mode == .registry, limit > 0 else { return [] }
        let reply = try await client.send(
            RedisCommand(
                "ZRANGE",
                userSessionsKey(userID),
                "(" + String(Timestamp.now().millisecondsSinceEpoch),
                "+inf",
                "BYSCORE",
                "LIMIT",
                "0",
                String(limit),
                "WITHSCORES"
            )
        )
        let elements = reply.array ?? []
        var records: [SessionRecord] = []
        records.reserveCapacity(elements.count / 2)
        var index = 0
        while index + 1 < elements.count {
            if let id = elements[index].string, let score = elements[index + 1].string.flatMap(Double.init) {
                records.append(
                    SessionRecord(sessionID: id, userID: userID, expiresAt: .init(millisecondsSinceEpoch: Int64(score)))
                )
            }
            index += 2
        }
        return records
    }

    public func revokeUser(
        _ userID: String,
        issuedBefore: Timestamp,
        retainUntil: Timestamp
    ) async throws(RealtimeError) {
        _ = try await Self.revokeUserScript.run(
            on: client,
            keys: [userRevokedKey(userID)],
            arguments: [
                String(issuedBefore.millisecondsSinceEpoch), String(retainUntil.millisecondsSinceEpoch),
                String(Timestamp.now().millisecondsSinceEpoch),
            ]
        )
    }

    public func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp? {
        let reply = try await client.send(RedisCommand("GET", userRevokedKey(userID)))
        guard let text = reply.string else { return nil }
        guard let milliseconds = Int64(text) else {
            throw RealtimeError(.backendUnavailable, "the user revocation of \(userID.prefix(64)) is not a number")
        }
        return Timestamp(millisecondsSinceEpoch: milliseconds)
    }

    public func healthCheck() async -> ComponentHealth {
        await client.healthCheck()
    }
}
