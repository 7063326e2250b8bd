public import RealtimeCore

/// A `SessionStore` on Redis: every server reads the same keys, so a revocation is visible to all of them at once
/// (nothing is cached locally).
///
/// - Revocation list: `<prefix>sess:revoked:<id>` exists until `retainUntil` (`PXAT`).
/// - Registry: `<prefix>sess:<id>` holds the user id until the session's `expiresAt` (`PXAT`); revoking deletes it.
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

    public init(client: RedisClient, mode: SessionStoreMode = .revocationList, prefix: String = "rthub:") {
        self.client = client
        self.mode = mode
        self.prefix = prefix
    }

    private func revokedKey(_ id: String) -> String { "\(prefix)sess:revoked:\(id)" }
    private func sessionKey(_ id: String) -> String { "\(prefix)sess:\(id)" }

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

    public func healthCheck() async -> ComponentHealth {
        await client.healthCheck()
    }
}
