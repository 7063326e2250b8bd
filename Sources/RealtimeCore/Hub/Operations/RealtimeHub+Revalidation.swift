// After a gap in the bus: the live connections' sessions and users checked again, as admission checks them.

import Logging
import Synchronization

extension RealtimeHub {
    /// How many session checks ``revalidateSessions()`` keeps in flight.
    static let revalidationWidth = 16

    /// Checks every live connection's session and user-wide revocation again, with admission's own check
    /// (`Admission.checkSession`), and closes with 4009 (`session_revoked`) the connections it would no longer admit.
    ///
    /// Revocations reach other servers on the bus; a server cut off from it (a Redis failover, a killed subscriber
    /// connection, an overflowing buffer) misses them and learns only that it missed something (a gap). The
    /// revocation itself is in the session store, so after every gap the hub asks the store again, once per distinct
    /// identity, a few at a time. A store that fails keeps the connection (the check is retried at the next gap); a
    /// token's expiry is enforced by the heartbeat as always. In registry mode a session the registry no longer holds
    /// (revoked, expired, or lost with the store's data) is closed too, as admission would refuse it.
    ///
    /// Returns how many connections it closed.
    @discardableResult
    func revalidateSessions() async -> Int {
        struct Key: Hashable {
            var userID: String
            var sessionID: String?
            var issuedAt: Timestamp?
        }
        var connections: [Key: (identity: VerifiedIdentity, cores: [ConnectionCore])] = [:]
        for core in state.withLock({ $0.allCores }) {
            let (identity, open) = core.state.withLock { ($0.identity, $0.closeCode == nil) }
            guard let identity, open else { continue }
            let key = Key(userID: identity.userID, sessionID: identity.sessionID, issuedAt: identity.issuedAt)
            connections[key, default: (identity, [])].cores.append(core)
        }
        guard !connections.isEmpty else { return 0 }
        var refused: [(ConnectionCore, AdmissionRejection.Reason)] = []
        await withTaskGroup(of: (Key, AdmissionRejection.Reason?).self) { group in
            var pending = connections.makeIterator()
            func startNext() -> Bool {
                guard let (key, entry) = pending.next() else { return false }
                // A connection's path: the upgrade and the first-message `auth` check a session alike.
                group.addTask { (key, await self.admission.checkSession(entry.identity, path: .upgrade)) }
                return true
            }
            for _ in 0..<Self.revalidationWidth where !startNext() { break }
            while let (key, reason) = await group.next() {
                _ = startNext()
                guard let reason, reason == .sessionRevoked || reason == .sessionInactive else { continue }
                for core in connections[key]?.cores ?? [] { refused.append((core, reason)) }
            }
        }
        for (core, reason) in refused {
            close(
                core,
                .sessionRevoked,
                reason: reason == .sessionRevoked ? "session revoked" : "session no longer active in the registry"
            )
        }
        if !refused.isEmpty {
            logger.notice(
                "closed connections whose session was revoked while this server was cut off from the bus",
                metadata: ["realtime.connections": "\(refused.count)"]
            )
        }
        return refused.count
    }
}
