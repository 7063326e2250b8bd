public import RealtimeCore

/// A `SessionStore` on Redis: every server reads the same keys, so a revocation is visible to all of them at once
/// (nothing is cached locally).
///
/// - Revocation list: `<prefix>sess:revoked:<id>` exists until `retainUntil` (`PXAT`).
/// - Registry: `<prefix>sess:<id>` holds the user id until the session's `expiresAt` (`PXAT`); revoking deletes it.
/// - User-wide revocations (both modes): `<prefix>{u:<userId>}:revoked` holds the instant (milliseconds since the
///   epoch) before which the user's tokens are refused, until the revocation's `retainUntil` (`PXAT`). The hash
///   tag keeps everything of one user in one cluster slot.
public final class RedisSessionStore: SessionStore, Sendable {
    public let mode: SessionStoreMode
    private let client: RedisClient
    private let prefix: String

    /// Sets the revocation marker unless its retention already passed; returns 1 if the session was active.
    static let revokeScript = RedisScript(
        """
        local wasActive = redis.call('EXISTS', KEYS[1]) == 0
        if tonumber(ARGV[1]) > tonumber(ARGV[2]) then
          redis.call('SET', KEYS[1], '1', 'PXAT', ARGV[1])
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

    public init(client: RedisClient, mode: SessionStoreMode = .revocationList, prefix: String = "rthub:") {
        self.client = client
        self.mode = mode
        self.prefix = prefix
    }

    private func revokedKey(_ id: String) -> String { "\(prefix)sess:revoked:\(id)" }
    private func sessionKey(_ id: String) -> String { "\(prefix)sess:\(id)" }
    private func userRevokedKey(_ userID: String) -> String { "\(prefix){u:\(userID)}:revoked" }

    public func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
        switch mode {
        case .revocationList:
            return try await client.send(RedisCommand("EXISTS", revokedKey(sessionID))).int == 0
        case .registry:
            return try await client.send(RedisCommand("EXISTS", sessionKey(sessionID))).int == 1
        }
    }

    public func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
        switch mode {
        case .revocationList:
            _ = try await client.send(RedisCommand("DEL", revokedKey(sessionID)))
        case .registry:
            guard expiresAt > .now() else {
                _ = try await client.send(RedisCommand("DEL", sessionKey(sessionID)))
                return
            }
            _ = try await client.send(
                RedisCommand("SET", sessionKey(sessionID), userID, "PXAT", String(expiresAt.millisecondsSinceEpoch))
            )
        }
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
            return try await client.send(RedisCommand("DEL", sessionKey(sessionID))).int == 1
        }
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
