// The connection's record in the cluster registry: written once the upgrade is authorized, removed once the
// connection is gone, and reconciled with the live connections on every server heartbeat. The order of the
// store calls is decided by each connection's `RegistrationLifecycle`.

import Logging
import Synchronization

extension RealtimeHub {
    /// What ``register(_:identity:maxConnectionsPerUser:)`` ended with.
    enum RegistrationOutcome: Sendable {
        /// Registered; the user has `userConnections` connections in the cluster.
        case registered(userConnections: Int)
        /// The user's limit refused it; nothing was written.
        case limitReached(userConnections: Int)
        /// The connection closed before or while its record was written; no record is left.
        case closed
        /// The store failed. The record may have been written; the connection's close removes it.
        case failed(RealtimeError)
    }

    /// Writes a connection's record to the store, unless the connection already closed. A close that lands while
    /// the write is in flight removes the record as soon as the write completes (the result is then
    /// ``RegistrationOutcome/closed``). Also re-registers a live connection whose record the store lost.
    func register(
        _ core: ConnectionCore,
        identity: VerifiedIdentity,
        maxConnectionsPerUser: Int?
    ) async -> RegistrationOutcome {
        let started = state.withLock { state -> Bool in
            // A close sets the close code before it asks the lifecycle to close: checked under the hub's lock,
            // either the close finds the write in flight, or the write never starts.
            guard core.state.withLock({ $0.closeCode == nil }) else { return false }
            return state.updateRegistration(core.id) { $0.startRegistering() }
        }
        guard started else { return .closed }
        let registration: ConnectionRegistration
        do {
            registration = try await backends.connectionStore.register(
                core.record(serverID: serverID, identity: identity),
                maxConnectionsPerUser: maxConnectionsPerUser
            )
        } catch {
            if state.withLock({ $0.updateRegistration(core.id) { $0.registerFailed() } }) == .unregister {
                await removeRegistration(core.id)
            }
            return .failed(error)
        }
        switch registration {
        case .registered(let count):
            if state.withLock({ $0.updateRegistration(core.id) { $0.registerSucceeded() } }) == .unregister {
                await removeRegistration(core.id)
                return .closed
            }
            return .registered(userConnections: count)
        case .userLimitReached(let count):
            state.withLock { $0.updateRegistration(core.id) { $0.registerRefused() } }
            return .limitReached(userConnections: count)
        }
    }

    /// Removes a closed connection from the cluster registry once — now if its record is written, or as soon as
    /// the write in flight completes — publishing `presence.user.offline` when it was the user's last connection
    /// in the cluster. Call it after the connection's close code is set.
    func unregister(_ core: ConnectionCore) async {
        guard state.withLock({ $0.updateRegistration(core.id) { $0.close() } }) == .unregister else { return }
        counters.connectionsClosed.add(1, ordering: .relaxed)
        await removeRegistration(core.id)
    }

    /// Gives up a connection that will never be activated: releases its reservation and, if it has a registry
    /// lifecycle, hands it to the run loop, which unregisters it. Sets its close code first (see
    /// ``RegistrationLifecycle/close()``).
    func abandon(_ core: ConnectionCore, _ code: CloseCode) {
        core.state.withLock { connection in
            if connection.closeCode == nil { connection.closeCode = code }
        }
        let tracked = state.withLock { state -> Bool in
            state.reserved[core.id] = nil
            guard state.registrations[core.id] != nil else { return false }
            state.closedCores[core.id] = core
            return true
        }
        if tracked { unregisterContinuation.yield(core.id) }
    }

    /// The lifecycle's ``RegistrationLifecycle/Action/unregister``: removes the record, then settles the lifecycle.
    private func removeRegistration(_ id: ConnectionID) async {
        do {
            _ = try await removeFromStore(id, reason: nil)
        } catch {
            logger.warning(
                "could not unregister connection; this server's registry reconciliation will remove it",
                metadata: ["realtime.connection.id": "\(id)", "realtime.error": "\(error)"]
            )
        }
        state.withLock { $0.updateRegistration(id) { $0.unregisterFinished() } }
    }

    /// Removes one record from the store and publishes `presence.user.offline` when it was the user's last
    /// connection in the cluster. Returns whether there was a record.
    private func removeFromStore(_ id: ConnectionID, reason: String?) async throws(RealtimeError) -> Bool {
        guard let removal = try await backends.connectionStore.unregister(id) else { return false }
        if removal.remainingUserConnections == 0 {
            var data: JSONObject = ["serverId": .string(serverID.rawValue)]
            if let reason { data["reason"] = .string(reason) }
            await publishResolvedEvent(
                RealtimeEvent(type: .presenceUserOffline, userID: removal.record.userID, data: data, scope: .admins)
            )
        }
        return true
    }

    /// Removes this server's records that belong to no connection it holds, writes or removes — left by a bug, a
    /// store call whose outcome was lost, or an earlier process with the same server id — once they are older
    /// than ``HubConfiguration/registryGrace``. Pages through the store, so its cost is bounded per call. Returns
    /// how many it removed.
    @discardableResult
    func reconcileRegistry() async throws(RealtimeError) -> Int {
        var cursor: String?
        var removed = 0
        repeat {
            let page = try await backends.connectionStore.connections(
                ofServer: serverID,
                after: cursor,
                limit: Self.reconciliationPageSize
            )
            // Taken after the page was read: a record listed there whose connection is unknown now was written
            // before its lifecycle ended, so it is left over, not in flight.
            let oldEnough = Timestamp.now() - configuration.registryGrace
            let strays = state.withLock { state in
                page.records.filter { state.registrations[$0.id] == nil && $0.connectedAt <= oldEnough }
            }
            for stray in strays where try await removeFromStore(stray.id, reason: "stale_registration") {
                removed += 1
            }
            cursor = page.nextCursor
        } while cursor != nil
        if removed > 0 {
            logger.warning(
                "removed registry records of connections this server does not hold",
                metadata: ["realtime.count": "\(removed)"]
            )
        }
        return removed
    }

    /// Records read per store call during reconciliation.
    static let reconciliationPageSize = 500
}
