public import RealtimeCore
import Testing

/// Checks that a hub never leaves a record in the cluster registry for a connection that is gone, whatever step
/// of the upgrade and registration a close lands in, and that its heartbeat removes a stray record. For hubs on
/// any `ConnectionStore` wrapped in a ``PausingConnectionStore``.
///
/// The hub must use ``configure(_:)`` (short ticket timeout and heartbeats, first-message authentication, a
/// reconciliation grace longer than the checks, a small per-user limit) and be running (`hub.running { … }`); its token verifier must
/// accept `token` for `userID`, and `adminToken` for an administrator. No other connection may be open.
public struct RegistryConsistencyChecks: Sendable {
    public let hub: RealtimeHub
    public let store: PausingConnectionStore
    public let token: String
    public let userID: String
    public let adminToken: String

    public init(hub: RealtimeHub, store: PausingConnectionStore, token: String, userID: String, adminToken: String) {
        self.hub = hub
        self.store = store
        self.token = token
        self.userID = userID
        self.adminToken = adminToken
    }

    /// The per-user limit the checks run under: a single leaked record would show as a refused connection.
    public static let maxConnectionsPerUser = 3

    /// The configuration the checks need.
    public static func configure(_ configuration: inout HubConfiguration) {
        // The run loop's tick follows the shortest of these: tickets expire within 75 ms of their timeout. The
        // authentication timeout stays long, so that a first-message `auth` is never refused for lateness however
        // slowly a loaded machine runs the checks.
        configuration.upgradeTicketTimeout = .milliseconds(150)
        configuration.serverHeartbeatInterval = .milliseconds(100)
        // Longer than a run of the checks: the heartbeat's reconciliation removes only the planted strays (an
        // hour old), so every record the churn leaves behind shows, instead of being cleaned up after the fact.
        configuration.registryGrace = .seconds(60)
        configuration.firstMessageAuthentication = true
        configuration.maxConnectionsPerUser = maxConnectionsPerUser
    }

    // MARK: Churn

    /// Closes connections at every step of the upgrade and registration, `rounds` times, then checks that once
    /// idle the registry holds nothing, the hub's cluster-wide count is zero and the user has their whole budget.
    public func closesAtEveryStep(rounds: Int) async throws {
        for round in 0..<rounds {
            let steps: [(String, () async throws -> Void)] = [
                (
                    "ticket expires while registering (before the write)",
                    { try await ticketExpiresWhileRegistering(.beforeWrite) }
                ),
                (
                    "ticket expires while registering (after the write)",
                    { try await ticketExpiresWhileRegistering(.afterWrite) }
                ),
                ("ticket never connected", ticketNeverConnected),
                ("connect after the ticket expired", connectAfterTicketExpired),
                ("close right after connect", closeRightAfterConnect),
                ("close during first-message authentication", closeWhileFirstMessageAuthenticationRegisters),
                (
                    "close while restoring a lost record (before the write)",
                    { try await closeWhileRestoringALostRecord(.beforeWrite) }
                ),
                (
                    "close while restoring a lost record (after the write)",
                    { try await closeWhileRestoringALostRecord(.afterWrite) }
                ),
                ("register reply lost", registerReplyLost),
            ]
            for (name, step) in steps {
                do {
                    try await step()
                } catch {
                    // Names the step, so that a failure under CI load says where the churn stopped.
                    Issue.record("round \(round + 1), step \"\(name)\": \(error)")
                    throw error
                }
            }
        }
        try await expectIdleWithFullBudget()
    }

    /// The ticket expires while its `register` call is held before or after the write.
    func ticketExpiresWhileRegistering(_ point: PausingConnectionStore.Point) async throws {
        let hold = store.holdNextRegister(at: point)
        defer { hold.release() }
        async let decision = hub.authorizeUpgrade(upgrade(withToken: true))
        try await hold.arrived()
        try await until("the ticket expired") { await hub.stats().server.pendingConnections == 0 }
        hold.release()
        guard case .reject(let rejection) = await decision else {
            Issue.record("a ticket that expired while registering was accepted")
            return
        }
        #expect(rejection.code == "backend_unavailable")
        try await expectNoRecords("after a ticket expired while registering (\(point))")
    }

    /// The host never calls `connect`.
    func ticketNeverConnected() async throws {
        _ = try await acceptedTicket()
        try await expectNoRecords("after an unused ticket expired")
    }

    /// The host calls `connect` after the ticket expired.
    func connectAfterTicketExpired() async throws {
        let ticket = try await acceptedTicket()
        try await until("the ticket expired") { await hub.stats().server.pendingConnections == 0 }
        await #expect(throws: RealtimeError.self) { _ = try await hub.connect(ticket) }
        try await expectNoRecords("after connecting an expired ticket")
    }

    /// The socket closes as soon as the connection is activated.
    func closeRightAfterConnect() async throws {
        let connection = try await hub.connect(try await acceptedTicket())
        await connection.closed()
        try await expectNoRecords("after a close right after connect")
    }

    /// The client leaves while its `auth` message's registration is held after the write.
    func closeWhileFirstMessageAuthenticationRegisters() async throws {
        guard case .accept(let ticket) = await hub.authorizeUpgrade(upgrade(withToken: false)) else {
            Issue.record("an upgrade for first-message authentication was refused")
            return
        }
        let connection = try await hub.connect(ticket)
        let hold = store.holdNextRegister(at: .afterWrite)
        defer { hold.release() }
        async let authenticated: Void = connection.receive(text: #"{"type":"auth","payload":{"token":"\#(token)"}}"#)
        try await hold.arrived()
        await connection.closed()
        hold.release()
        await authenticated
        try await expectNoRecords("after a close during first-message authentication")
    }

    /// The store loses a live connection's record; the heartbeat re-registers it, and the client leaves while that
    /// write is held (before it: the close's removal must not overtake the write).
    func closeWhileRestoringALostRecord(_ point: PausingConnectionStore.Point) async throws {
        let connection = try await hub.connect(try await acceptedTicket())
        let hold = store.holdNextRegister(at: point)
        defer { hold.release() }
        #expect(try await store.base.unregister(connection.id) != nil)
        try await hold.arrived()
        await connection.closed()
        hold.release()
        try await expectNoRecords("after a close while the heartbeat restored the record (\(point))")
    }

    /// The store writes the record but the reply is lost: the upgrade fails and the record is removed.
    func registerReplyLost() async throws {
        store.loseNextRegisterReply()
        guard case .reject(let rejection) = await hub.authorizeUpgrade(upgrade(withToken: true)) else {
            Issue.record("an upgrade whose registration failed was accepted")
            return
        }
        #expect(rejection.code == "backend_unavailable")
        try await expectNoRecords("after a lost register reply")
    }

    /// No record, no connection counted anywhere, and the user can open their whole budget of connections.
    func expectIdleWithFullBudget() async throws {
        try await expectNoRecords("once idle")
        let stats = await hub.stats()
        #expect(stats.global.totalConnections == 0)
        #expect(stats.server.connections == 0)
        #expect(stats.server.pendingConnections == 0)
        var clients: [TestClient] = []
        for _ in 0..<Self.maxConnectionsPerUser {
            clients.append(try await hub.connectClient(token: token))
        }
        #expect(await hub.rejection(uri: "/ws/events?token=\(token)")?.code == "too_many_connections")
        for client in clients { await client.close() }
        try await expectNoRecords("after the budget check")
    }

    // MARK: Stray records

    /// A record of this server that no connection owns (as a crash mid-operation leaves) is removed by the next
    /// heartbeat: the user's budget is whole again and administrators hear `presence.user.offline`.
    public func strayRecordIsRemovedByTheHeartbeat() async throws {
        let admin = try await hub.connectClient(token: adminToken, path: "/ws/admin")
        try await admin.subscribe(["presence.*"])
        let strays = (0..<Self.maxConnectionsPerUser).map { _ in
            ConnectionRecord(
                id: .random(),
                serverID: hub.serverID,
                userID: userID,
                sessionID: nil,
                isAdmin: false,
                remoteAddress: "192.0.2.1",
                origin: nil,
                connectedAt: .now() - .seconds(3600)
            )
        }
        for stray in strays { _ = try await store.base.register(stray, maxConnectionsPerUser: nil) }
        while true {
            let event = try await admin.next(type: "event")
            if event["payload"]?["type"] == "presence.user.offline", event["payload"]?["userId"]?.stringValue == userID
            {
                break
            }
        }
        for stray in strays { #expect(try await store.base.connection(stray.id) == nil) }
        #expect(try await store.base.count(.user(userID)) == 0)
        await admin.close()
        try await expectIdleWithFullBudget()
    }

    // MARK: Helpers

    private func upgrade(withToken: Bool) -> UpgradeRequest {
        UpgradeRequest(uri: withToken ? "/ws/events?token=\(token)" : "/ws/events", remoteAddress: "127.0.0.1")
    }

    private func acceptedTicket() async throws -> UpgradeTicket {
        switch await hub.authorizeUpgrade(upgrade(withToken: true)) {
        case .accept(let ticket): return ticket
        case .reject(let rejection):
            Issue.record("upgrade refused: \(rejection)")
            throw rejection
        }
    }

    /// Waits until the store holds no record and counts no connection of the user (with a hang guard).
    private func expectNoRecords(_ when: String) async throws {
        try await until("no record left \(when)") {
            let user = try await store.base.count(.user(userID))
            let server = try await store.base.count(.server(hub.serverID))
            return user == 0 && server == 0
        }
    }

    /// Polls `condition` until it holds; fails with ``TestTimeout`` after `timeout` (a hang guard).
    private func until(
        _ what: String,
        timeout: Duration = .seconds(20),
        _ condition: () async throws -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while try await !condition() {
            guard ContinuousClock.now < deadline else { throw TestTimeout(description: "waited for \(what)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }
}
