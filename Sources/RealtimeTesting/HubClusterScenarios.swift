import Logging
public import RealtimeCore
import Testing

/// The two-server scenarios every backend set of a cluster must pass: hubs that share one registry, bus, rate
/// limiter and session store behave like servers of one cluster (cross-server delivery by scope, ordering,
/// revocation, purge of a dead server).
///
/// Call each scenario from a `@Test` with a fresh ``Cluster``:
///
/// ```swift
/// @Test func revokingASessionClosesItsConnectionsOnEveryServer() async throws {
///     try await HubClusterScenarios.revokingASessionClosesItsConnectionsOnEveryServer(makeCluster())
/// }
/// ```
public enum HubClusterScenarios: Sendable {
    /// One cluster under test.
    public struct Cluster: Sendable {
        /// The backends of one more server of the cluster (sharing the cluster's store, bus, limiter and sessions),
        /// authenticating with the scenario's token table.
        public var makeBackends: @Sendable (_ tokenVerifier: any TokenVerifier) throws -> HubBackends
        /// The cluster's registry, as the test looks at it.
        public var registry: any ConnectionStore
        /// Applied to every hub's configuration before the scenario's own settings.
        public var configure: @Sendable (inout HubConfiguration) -> Void
        /// Releases what the cluster holds (clients), after the scenario.
        public var shutdown: @Sendable () async -> Void

        public init(
            makeBackends: @escaping @Sendable (_ tokenVerifier: any TokenVerifier) throws -> HubBackends,
            registry: any ConnectionStore,
            configure: @escaping @Sendable (inout HubConfiguration) -> Void = { _ in },
            shutdown: @escaping @Sendable () async -> Void = {}
        ) {
            self.makeBackends = makeBackends
            self.registry = registry
            self.configure = configure
            self.shutdown = shutdown
        }
    }

    /// The token table every scenario uses: `alice-token` and `alice-token-2` (alice, session `s-alice`),
    /// `alice-other-session` (alice, `s-alice-2`), `bob-token` (bob, `s-bob`), `admin-token` (root, an administrator).
    public static func tokens() -> StaticTokenVerifier {
        let tokens = StaticTokenVerifier()
        tokens.add("alice-token", VerifiedIdentity(userID: "alice", sessionID: "s-alice"))
        tokens.add("alice-token-2", VerifiedIdentity(userID: "alice", sessionID: "s-alice"))
        tokens.add("alice-other-session", VerifiedIdentity(userID: "alice", sessionID: "s-alice-2"))
        tokens.add("bob-token", VerifiedIdentity(userID: "bob", sessionID: "s-bob"))
        tokens.add(
            "admin-token",
            VerifiedIdentity(userID: "root", sessionID: "s-root", isAdmin: true, roles: ["admin"])
        )
        return tokens
    }

    /// Builds the cluster's servers.
    struct Servers {
        let cluster: Cluster
        let tokens = HubClusterScenarios.tokens()
        var store: any ConnectionStore { cluster.registry }

        func hub(_ adjust: (inout HubConfiguration) -> Void = { _ in }) throws -> RealtimeHub {
            var logger = Logger(label: "realtime-cluster-scenarios")
            logger.logLevel = .critical
            let configuration = HubConfiguration.testing {
                cluster.configure(&$0)
                adjust(&$0)
            }
            return try RealtimeHub(
                configuration: configuration,
                backends: try cluster.makeBackends(tokens),
                logger: logger
            )
        }
    }

    /// Runs `body` on the cluster's servers, then shuts the cluster down (also when `body` throws).
    static func with(_ cluster: Cluster, _ body: (Servers) async throws -> Void) async throws {
        do {
            try await body(Servers(cluster: cluster))
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
    }

    /// Event types and notification titles a client received, sorted, up to a broadcast notification titled
    /// `barrier` (which the publisher sends last) and until every one of `expected` arrived. One publisher's
    /// messages on different routes may arrive in another order on a sharded bus (`ordersAcrossRoutes`): the
    /// barrier bounds what arrived before it on its own route only, so the wait goes on for the expected ones (each
    /// read is bounded by the client's timeout), and the comparison ignores the order across routes (the order per
    /// route is `eventsOfEachPublisherArriveInOrder`'s).
    static func received(_ client: TestClient, expecting expected: [String]) async throws -> [String] {
        var seen: [String] = []
        var barrier = false
        func complete() -> Bool {
            barrier
                && expected.allSatisfy { item in
                    seen.count(where: { $0 == item }) >= expected.count(where: { $0 == item })
                }
        }
        while !complete() {
            let message = try await client.next()
            if message["payload"]?["title"] == "barrier" {
                barrier = true
            } else if message["type"] == "event", let type = message["payload"]?["type"]?.stringValue {
                seen.append(type)
            } else if message["type"] == "notification", let title = message["payload"]?["title"]?.stringValue {
                seen.append("notification:" + title)
            }
        }
        return seen.sorted()
    }

    /// Events and notifications published on one server reach the connections of another by scope: a user's own
    /// events, broadcasts, admin-only events and notifications, each to exactly who may see them.
    public static func eventsAndNotificationsCrossServersByScope(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let alice = try await hubB.connectClient(token: "alice-token")
                    let bob = try await hubB.connectClient(token: "bob-token")
                    let admin = try await hubB.connectClient(token: "admin-token", path: "/ws/admin")
                    try await alice.subscribe(["*"])
                    try await bob.subscribe(["*"])
                    try await admin.subscribe(["authentication.*", "admin.*", "system.*"])
                    _ = try await admin.drainUntilPong()

                    try await hubA.publishAuthenticationEvent(.authenticationMFAChallenge, userID: "alice")
                    try await hubA.publishAdminEvent(.adminUserDeleted, userID: "mallory")
                    try await hubA.publishSystemEvent(.systemMaintenanceScheduled)
                    await hubA.sendUserNotification(userID: "bob", level: .info, title: "hi bob", message: "")
                    await hubA.sendAdminNotification(level: .warning, title: "admins only", message: "")
                    // The last message works as a barrier on its route (see `received(_:expecting:)`).
                    await hubA.sendBroadcastNotification(level: .info, title: "barrier", message: "")
                    for (client, expected) in [
                        (alice, ["authentication.mfa.challenge", "system.maintenance.scheduled"]),
                        (bob, ["system.maintenance.scheduled", "notification:hi bob"]),
                        (
                            admin,
                            [
                                "authentication.mfa.challenge", "admin.user.deleted", "system.maintenance.scheduled",
                                "notification:admins only",
                            ]
                        ),
                    ] {
                        #expect(try await received(client, expecting: expected) == expected.sorted())
                    }
                    let stats = await hubB.stats()
                    #expect(stats.server.busMessagesReceived >= 6)
                    #expect(stats.global.totalServers == 2)
                }
            }
        }
    }

    /// A user's events published on another server arrive in the order they were published.
    public static func aUserEventPublishedElsewhereArrivesInOrder(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub { $0.limits.outboundQueueFrames = 5000 }
            let hubB = try servers.hub { $0.limits.outboundQueueFrames = 5000 }
            try await hubA.running {
                try await hubB.running {
                    let alice = try await hubB.connectClient(token: "alice-token")
                    try await alice.subscribe(["authentication.*"])
                    for index in 0..<500 {
                        try await hubA.publishAuthenticationEvent(
                            .authenticationLoginFailure,
                            userID: "alice",
                            data: ["n": .int(Int64(index))]
                        )
                    }
                    var received: [Int64] = []
                    while received.count < 500 {
                        let event = try await alice.next(type: "event")
                        received.append(event["payload"]?["data"]?["n"]?.intValue ?? -1)
                    }
                    #expect(received == (0..<500).map { Int64($0) })
                }
            }
        }
    }

    /// Two publishers on two other servers, concurrently, to one user: each publisher's events arrive in order.
    public static func eventsOfEachPublisherArriveInOrder(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let adjust: (inout HubConfiguration) -> Void = { $0.limits.outboundQueueFrames = 5000 }
            let (hubA, hubB, hubC) = (try servers.hub(adjust), try servers.hub(adjust), try servers.hub(adjust))
            try await hubA.running {
                try await hubB.running {
                    try await hubC.running {
                        let alice = try await hubB.connectClient(token: "alice-token")
                        try await alice.subscribe(["authentication.*"])
                        let count = 400
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for (name, hub) in [("a", hubA), ("c", hubC)] {
                                group.addTask {
                                    for index in 0..<count {
                                        try await hub.publishAuthenticationEvent(
                                            .authenticationLoginFailure,
                                            userID: "alice",
                                            data: ["from": .string(name), "n": .int(Int64(index))]
                                        )
                                    }
                                }
                            }
                            try await group.waitForAll()
                        }
                        var received: [String: [Int64]] = [:]
                        for _ in 0..<(2 * count) {
                            let data = try await alice.next(type: "event")["payload"]?["data"]
                            received[data?["from"]?.stringValue ?? "?", default: []].append(
                                data?["n"]?.intValue ?? -1
                            )
                        }
                        #expect(received["a"] == (0..<count).map { Int64($0) })
                        #expect(received["c"] == (0..<count).map { Int64($0) })
                    }
                }
            }
        }
    }

    /// Revoking a session on one server closes its connections on every server with 4009, tells the user's other
    /// sessions, leaves other users alone, and refuses the session's tokens everywhere.
    public static func revokingASessionClosesItsConnectionsOnEveryServer(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let onA = try await hubA.connectClient(token: "alice-token")
                    let onB = try await hubB.connectClient(token: "alice-token-2")
                    let otherSession = try await hubB.connectClient(token: "alice-other-session")
                    let bob = try await hubA.connectClient(token: "bob-token")
                    _ = try await bob.next(type: "connected")
                    try await onA.subscribe(["session.*"])
                    try await onB.subscribe(["session.*"])
                    try await otherSession.subscribe(["session.*"])

                    try await hubA.revoke(sessionID: "s-alice", reason: "password changed")

                    for client in [onA, onB] {
                        // The event comes first: `next` fails on a close frame.
                        let event = try await client.next(type: "event")
                        #expect(event["payload"]?["type"] == "session.revoked")
                        #expect(event["payload"]?["sessionId"] == "s-alice")
                        let (code, reason) = try await client.nextClose()
                        #expect(code == .sessionRevoked)
                        #expect(code.rawValue == 4009)
                        #expect(reason == "password changed")
                    }
                    // Alice's other session is told but stays connected; Bob is untouched.
                    #expect(try await otherSession.next(type: "event")["payload"]?["type"] == "session.revoked")
                    await otherSession.send(#"{"type":"ping","id":"still-here"}"#)
                    #expect(try await otherSession.next(type: "pong")["id"] == "still-here")
                    #expect(try await bob.drainUntilPong().isEmpty)
                    // New connections with the revoked session are refused on both servers.
                    #expect(await hubA.rejection(uri: "/ws/events?token=alice-token")?.code == "session_revoked")
                    #expect(await hubB.rejection(uri: "/ws/events?token=alice-token")?.code == "session_revoked")
                }
            }
        }
    }

    /// Revoking a user on one server closes the user's connections on every server with 4009 (tokens with an
    /// earlier `iat` and tokens without one), tells the user, leaves other users alone, refuses those tokens
    /// everywhere, and admits a token issued afterwards.
    public static func revokingAUserRefusesItsEarlierTokensOnEveryServer(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            servers.tokens.add(
                "alice-dated",
                VerifiedIdentity(userID: "alice", sessionID: "s-alice-3", issuedAt: .now() - .seconds(1))
            )
            try await hubA.running {
                try await hubB.running {
                    let undated = try await hubA.connectClient(token: "alice-token")
                    let dated = try await hubB.connectClient(token: "alice-dated")
                    let bob = try await hubB.connectClient(token: "bob-token")
                    _ = try await bob.next(type: "connected")
                    try await undated.subscribe(["session.*"])
                    try await dated.subscribe(["session.*"])

                    let issuedBefore = try await hubA.revoke(userID: "alice", reason: "account compromised")

                    for client in [undated, dated] {
                        let event = try await client.next(type: "event")
                        #expect(event["payload"]?["type"] == "session.revoked")
                        #expect(event["payload"]?["data"]?["scope"] == "user")
                        let (code, reason) = try await client.nextClose()
                        #expect(code == .sessionRevoked)
                        #expect(reason == "account compromised")
                    }
                    #expect(try await bob.drainUntilPong().isEmpty)
                    for hub in [hubA, hubB] {
                        for token in ["alice-token", "alice-dated", "alice-other-session"] {
                            #expect(await hub.rejection(uri: "/ws/events?token=\(token)")?.code == "session_revoked")
                        }
                    }
                    // A token issued at the revocation or later connects, on either server.
                    servers.tokens.add(
                        "alice-fresh",
                        VerifiedIdentity(userID: "alice", sessionID: "s-alice-4", issuedAt: issuedBefore)
                    )
                    let fresh = try await hubB.connectClient(token: "alice-fresh")
                    #expect(try await fresh.next(type: "connected")["payload"]?["userId"] == "alice")
                }
            }
        }
    }

    /// A server that stops heartbeating is purged by a survivor, and its users go offline (presence event with
    /// reason `server_purged` and the dead server's id); the registry and the global stats forget it.
    public static func aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            // A "crashed" server: its registrations exist but it never heartbeats again.
            let crashed = try servers.hub {
                $0.serverTTL = .milliseconds(300)
                $0.serverHeartbeatInterval = .milliseconds(100)
            }
            try await servers.store.heartbeat(
                ServerRecord(
                    id: crashed.serverID,
                    startedAt: .now(),
                    lastHeartbeat: .now(),
                    expiresAt: .now() + .milliseconds(300),
                    connectionCount: 1
                )
            )
            _ = try await crashed.connectClient(token: "alice-token")
            #expect(try await servers.store.count(.user("alice")) == 1)

            let survivor = try servers.hub {
                $0.serverHeartbeatInterval = .milliseconds(100)
                $0.serverTTL = .seconds(5)
            }
            // Subscribe before the survivor runs, so the purge cannot happen before anyone listens.
            let admin = try await survivor.connectClient(token: "admin-token", path: "/ws/admin")
            try await admin.subscribe(["presence.user.offline"])
            try await survivor.running {
                let offline = try await admin.next(type: "event")
                #expect(offline["payload"]?["userId"] == "alice")
                #expect(offline["payload"]?["data"]?["reason"] == "server_purged")
                #expect(offline["payload"]?["data"]?["serverId"] == .string(crashed.serverID.rawValue))
                #expect(try await servers.store.count(.user("alice")) == 0)
                let stats = await survivor.stats()
                #expect(stats.global.servers.map(\.serverID) == [survivor.serverID])
                #expect(stats.global.totalConnections == 1)
            }
        }
    }
}
