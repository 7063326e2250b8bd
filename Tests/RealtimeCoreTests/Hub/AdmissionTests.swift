import CoreMetrics
import Logging
import RealtimeTesting
import Synchronization
import Testing

@testable import RealtimeCore

/// The admission policy on its own: in-memory backends on a manual clock, and a recording host in place of the
/// hub (draining, capacity, reservations, the registry's user slots, published events).
@Suite struct AdmissionTests {
    /// What the policy asks of the hub, recorded; user slots are claimed in an in-memory connection store.
    final class Host: AdmissionHost {
        struct State {
            var draining = false
            var capacity = 100
            var registryFails = false
            var reserved: [ConnectionID: ConnectionCore] = [:]
            var abandoned: [(ConnectionID, CloseCode)] = []
            var claimed: [String] = []
            var events: [RealtimeEvent] = []
        }

        let state = Mutex(State())
        let store = InMemoryConnectionStore()
        let maxConnectionsPerUser: Int?

        init(maxConnectionsPerUser: Int? = 2) {
            self.maxConnectionsPerUser = maxConnectionsPerUser
        }

        var isDraining: Bool { state.withLock { $0.draining } }
        var isFull: Bool { state.withLock { $0.reserved.count >= $0.capacity } }

        func reserve(_ connection: ConnectionCore) -> Bool {
            state.withLock { state in
                guard state.reserved.count < state.capacity else { return false }
                state.reserved[connection.id] = connection
                return true
            }
        }

        func abandon(_ connection: ConnectionCore, _ code: CloseCode) {
            state.withLock { state in
                state.reserved[connection.id] = nil
                state.abandoned.append((connection.id, code))
            }
        }

        func claimUserSlot(_ connection: ConnectionCore, identity: VerifiedIdentity) async -> UserSlotClaim {
            if state.withLock({ $0.registryFails }) { return .unavailable }
            state.withLock { $0.claimed.append(identity.userID) }
            do {
                switch try await store.register(
                    connection.record(serverID: ServerID("srv_test"), identity: identity),
                    maxConnectionsPerUser: maxConnectionsPerUser
                ) {
                case .registered(let count): return .claimed(userConnections: count)
                case .userLimitReached(let count): return .limitReached(userConnections: count)
                }
            } catch {
                return .unavailable
            }
        }

        func publishAdmissionEvent(_ event: RealtimeEvent) async {
            state.withLock { $0.events.append(event) }
        }

        var events: [RealtimeEvent] { state.withLock { $0.events } }
    }

    /// A session store whose every call fails.
    struct BrokenSessionStore: SessionStore {
        var mode: SessionStoreMode { .revocationList }
        func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func revokeUser(_ userID: String, issuedBefore: Timestamp, retainUntil: Timestamp) async throws(RealtimeError) {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp? {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord? {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord] {
            throw RealtimeError(.backendUnavailable, "down")
        }
    }

    /// A rate limiter whose every call fails.
    struct BrokenRateLimiter: RateLimiter {
        func consume(_ key: String, cost: Int, policy: RateLimitPolicy) async throws(RealtimeError) -> RateLimitDecision
        {
            throw RealtimeError(.backendUnavailable, "down")
        }
        func reset(_ key: String, policy: RateLimitPolicy) async throws(RealtimeError) {}
    }

    /// The token table, with a genuine token of the wrong kind (`refresh-token`).
    struct Verifier: TokenVerifier {
        let table: StaticTokenVerifier
        func verify(_ token: String) async throws(TokenVerificationError) -> VerifiedIdentity {
            if token == "refresh-token" { throw TokenVerificationError(.wrongTokenType, "a refresh token") }
            return try await table.verify(token)
        }
    }

    let clock = ManualClock()
    let origin = ContinuousClock.now
    let tokens = HubClusterScenarios.tokens()
    let counters = HubCounters(factory: NOOPMetricsHandler.instance)

    init() {
        tokens.add("carol-no-session", VerifiedIdentity(userID: "carol"))
    }

    func admission(
        sessions: (any SessionStore)? = nil,
        rateLimiter: (any RateLimiter)? = nil,
        _ adjust: (inout HubConfiguration) -> Void = { _ in }
    ) -> Admission {
        var configuration = HubConfiguration.testing()
        configuration.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 3, period: .seconds(60))
        configuration.rateLimits.connectionsPerUser = RateLimitPolicy(name: "conn-user", limit: 2, period: .seconds(60))
        configuration.rateLimits.apiRequestsPerIP = RateLimitPolicy(name: "api-ip", limit: 5, period: .seconds(60))
        configuration.maxConnectionsPerUser = 2
        adjust(&configuration)
        var logger = Logger(label: "admission-test")
        logger.logLevel = .critical
        let backends = HubBackends.inMemory(
            tokenVerifier: Verifier(table: tokens),
            rateLimiter: rateLimiter ?? InMemoryRateLimiter(clock: clock),
            sessionStore: sessions ?? InMemorySessionStore(now: clock.timestampSource)
        )
        let (clock, origin) = (clock, origin)
        return Admission(
            configuration: configuration,
            backends: backends,
            counters: counters,
            logger: logger,
            now: { origin + clock.now.offset }
        )
    }

    static func request(
        _ uri: String = "/ws/events?token=alice-token",
        headers: [(name: String, value: String)] = [],
        address: String = "192.0.2.1"
    ) -> UpgradeRequest {
        UpgradeRequest(uri: uri, headers: headers, remoteAddress: address)
    }

    /// A connection as an upgrade without a token leaves it, for the in-band paths.
    static func connection(_ endpoint: Endpoint = .events, address: String = "192.0.2.1") -> ConnectionCore {
        ConnectionCore(
            id: .random(),
            endpoint: endpoint,
            remoteAddress: IPAddress(address)!,
            origin: nil,
            identity: nil,
            limits: HubConfiguration().limits,
            now: .now
        )
    }

    /// The refusal of an attempt that must be refused.
    func refusal(
        _ admission: Admission,
        _ attempt: Admission.Attempt,
        host: Host = Host(),
        sourceLocation: SourceLocation = #_sourceLocation
    ) async -> AdmissionRejection? {
        switch await admission.admit(attempt, host: host) {
        case .failure(let rejection): return rejection
        case .success:
            Issue.record("admitted", sourceLocation: sourceLocation)
            return nil
        }
    }

    // MARK: Reasons

    @Test func everyReasonHasTheWireFormClientsSeeToday() throws {
        let table: [(AdmissionRejection.Reason, String, Int, UInt16, String)] = [
            (.notFound, "not_found", 404, 4001, "token_invalid"),
            (.shuttingDown, "shutting_down", 503, 1001, "unavailable"),
            (.originNotAllowed, "origin_not_allowed", 403, 4001, "token_invalid"),
            (.badRemoteAddress, "bad_remote_address", 400, 4001, "token_invalid"),
            (.addressBlocked, "address_blocked", 429, 1008, "rate_limited"),
            (.rateLimited, "rate_limited", 429, 1008, "rate_limited"),
            (.serverFull, "server_full", 503, 1001, "unavailable"),
            (.invalidAuthorization, "invalid_authorization", 401, 4001, "token_invalid"),
            (.queryTokenDisabled, "query_token_disabled", 400, 4001, "token_invalid"),
            (.missingToken, "missing_token", 401, 4001, "token_invalid"),
            (.invalidToken, "invalid_token", 401, 4001, "token_invalid"),
            (.wrongTokenType, "wrong_token_type", 401, 4001, "wrong_token_type"),
            (.sessionRevoked, "session_revoked", 401, 4001, "session_revoked"),
            (.sessionInactive, "session_inactive", 401, 4001, "session_inactive"),
            (.sessionRequired, "session_required", 401, 4001, "token_invalid"),
            (.adminRequired, "admin_required", 403, 4001, "token_invalid"),
            (.tooManyConnections, "too_many_connections", 429, 1008, "rate_limited"),
            (.backendUnavailable, "backend_unavailable", 503, 1011, "unavailable"),
        ]
        #expect(Set(table.map(\.0)) == Set(AdmissionRejection.Reason.allCases))
        for (reason, code, status, close, inBand) in table {
            let rejection = AdmissionRejection(reason)
            #expect(rejection.code == code)
            #expect(rejection.status == status, "\(code)")
            #expect(reason.closeCode.rawValue == close, "\(code)")
            #expect(reason.protocolErrorCode.rawValue == inBand, "\(code)")
            #expect(!rejection.message.isEmpty)
            #expect((rejection.wwwAuthenticate != nil) == (status == 401), "\(code)")
            // Every 429 and 503 tells the client when to come back, by default or from the limiter.
            if status == 503 || reason == .tooManyConnections {
                #expect(reason == .shuttingDown || rejection.retryAfter != nil, "\(code)")
            }
        }
        #expect(AdmissionRejection(.missingToken).wwwAuthenticate == #"Bearer realm="realtime""#)
        #expect(
            AdmissionRejection(.sessionRevoked).wwwAuthenticate == #"Bearer realm="realtime", error="invalid_token""#
        )
        let limited = AdmissionRejection(.rateLimited, retryAfter: .milliseconds(1500))
        #expect(limited.retryAfterSeconds == 2)
        let body = try JSONParser().parse(limited.jsonBody)
        #expect(body["error"]?["code"] == "rate_limited")
        #expect(body["error"]?["message"] == "too many attempts; try again later")
        #expect(body["error"]?["retryAfterMs"] == 1500)
    }

    /// Each reason, reached through the policy. The switch is exhaustive: a new reason needs a way to reach it.
    @Test(arguments: AdmissionRejection.Reason.allCases)
    func everyReasonIsReachable(_ reason: AdmissionRejection.Reason) async throws {
        var host = Host()
        var admission = admission()
        var attempt = Admission.Attempt.upgrade(Self.request())
        switch reason {
        case .notFound: attempt = .upgrade(Self.request("/ws/nothing?token=alice-token"))
        case .shuttingDown: host.state.withLock { $0.draining = true }
        case .originNotAllowed: attempt = .upgrade(Self.request(headers: [("Origin", "https://evil.example")]))
        case .badRemoteAddress: attempt = .upgrade(Self.request(address: "not-an-address"))
        case .addressBlocked: admission.block("192.0.2.1")
        case .rateLimited:
            // Three attempts with forged tokens spend the address's budget (and are refused for their token).
            for _ in 0..<3 { _ = await admission.admit(.upgrade(Self.request("/ws/events?token=forged")), host: host) }
        case .serverFull: host.state.withLock { $0.capacity = 0 }
        case .invalidAuthorization:
            attempt = .upgrade(Self.request("/ws/events", headers: [("Authorization", "Basic x")]))
        case .queryTokenDisabled: admission = self.admission { $0.allowQueryToken = false }
        case .missingToken: attempt = .upgrade(Self.request("/ws/events"))
        case .invalidToken: attempt = .upgrade(Self.request("/ws/events?token=forged"))
        case .wrongTokenType: attempt = .upgrade(Self.request("/ws/events?token=refresh-token"))
        case .sessionRevoked:
            let sessions = InMemorySessionStore(now: clock.timestampSource)
            try await sessions.revoke("s-alice", retainUntil: clock.timestamp + .seconds(60))
            admission = self.admission(sessions: sessions)
        case .sessionInactive:
            admission = self.admission(sessions: InMemorySessionStore(mode: .registry, now: clock.timestampSource))
        case .sessionRequired:
            admission = self.admission(sessions: InMemorySessionStore(mode: .registry, now: clock.timestampSource))
            attempt = .upgrade(Self.request("/ws/events?token=carol-no-session"))
        case .adminRequired: attempt = .upgrade(Self.request("/ws/admin?token=alice-token"))
        case .tooManyConnections: host = Host(maxConnectionsPerUser: 0)
        case .backendUnavailable: host.state.withLock { $0.registryFails = true }
        }
        let rejection = await refusal(admission, attempt, host: host)
        #expect(rejection?.reason == reason)
        #expect(counters.rejectionsByReason[reason.code] == 1)
    }

    // MARK: The paths' step sets

    @Test func anUpgradeReservesAConnectionAndClaimsTheUsersSlot() async throws {
        let host = Host()
        let admitted = try await admission().admit(.upgrade(Self.request()), host: host).get()
        #expect(admitted.identity?.userID == "alice")
        #expect(admitted.userConnections == 1)
        let connection = try #require(admitted.connection)
        #expect(connection.endpoint == .events)
        #expect(connection.remoteAddress.description == "192.0.2.1")
        #expect(host.state.withLock { $0.reserved[connection.id] } === connection)
        #expect(host.state.withLock { $0.claimed } == ["alice"])
    }

    @Test func aBearerHeaderWinsOverTheQuery() async throws {
        let request = Self.request(
            "/ws/events?token=bob-token",
            headers: [("authorization", "bearer  alice-token ")]
        )
        let admitted = try await admission().admit(.upgrade(request), host: Host()).get()
        #expect(admitted.identity?.userID == "alice")
    }

    @Test func theBearerHeaderIsParsedInOnePlace() {
        #expect(Admission.bearerToken("Bearer abc") == "abc")
        #expect(Admission.bearerToken("BEARER abc ") == "abc")
        #expect(Admission.bearerToken("Bearer ") == nil)
        #expect(Admission.bearerToken("Bearer") == nil)
        #expect(Admission.bearerToken("Basic abc") == nil)
        #expect(Admission.bearerToken("Bearerabc") == nil)
    }

    @Test func anUpgradeWithoutATokenWaitsForTheFirstMessageOnlyWhenConfigured() async throws {
        let host = Host()
        let deferred = admission { $0.firstMessageAuthentication = true }
        let admitted = try await deferred.admit(.upgrade(Self.request("/ws/events")), host: host).get()
        #expect(admitted.identity == nil)
        #expect(admitted.connection != nil, "the connection holds a server slot while it authenticates")
        #expect(host.state.withLock { $0.claimed }.isEmpty)
        #expect(await refusal(admission(), .upgrade(Self.request("/ws/events")))?.reason == .missingToken)
    }

    @Test func theAPIClaimsNoConnectionAndIgnoresQueryTokens() async throws {
        let host = Host()
        let admission = admission()
        let bearer = Self.request("/api/v1/stats", headers: [("Authorization", "Bearer alice-token")])
        // More requests than the user's upgrade rate limit and connection limit allow: neither applies.
        for _ in 0..<5 {
            let admitted = try await admission.admit(.api(bearer, verifier: nil), host: host).get()
            #expect(admitted.identity?.userID == "alice")
            #expect(admitted.connection == nil)
        }
        #expect(host.state.withLock { $0.reserved.isEmpty && $0.claimed.isEmpty })
        // Then the API's own per-address limit.
        #expect(await refusal(admission, .api(bearer, verifier: nil))?.reason == .rateLimited)
        let query = Self.request("/api/v1/stats?token=alice-token", address: "192.0.2.2")
        #expect(await refusal(admission, .api(query, verifier: nil))?.reason == .missingToken)
        // A host that cannot tell the peer skips the address checks, and the API has no endpoint to check.
        let anonymous = Self.request("/anything", headers: [("Authorization", "Bearer admin-token")], address: "")
        #expect(try await admission.admit(.api(anonymous, verifier: nil), host: host).get().identity?.isAdmin == true)
    }

    @Test func theAPIChecksTheSessionAndTakesItsOwnVerifier() async throws {
        let sessions = InMemorySessionStore(now: clock.timestampSource)
        let admission = admission(sessions: sessions)
        let request = Self.request("/api/v1/events", headers: [("Authorization", "Bearer alice-token")])
        _ = try await admission.admit(.api(request, verifier: nil), host: Host()).get()
        try await sessions.revoke("s-alice", retainUntil: clock.timestamp + .seconds(60))
        #expect(await refusal(admission, .api(request, verifier: nil))?.reason == .sessionRevoked)
        let other = StaticTokenVerifier(["service-token": VerifiedIdentity(userID: "svc", roles: ["service"])])
        let service = Self.request("/api/v1/events", headers: [("Authorization", "Bearer service-token")])
        #expect(try await admission.admit(.api(service, verifier: other), host: Host()).get().identity?.userID == "svc")
        #expect(await refusal(admission, .api(service, verifier: nil))?.reason == .invalidToken)
    }

    @Test func theFirstMessageTakesTheUserRateLimitAndTheSlotWithItsEvent() async throws {
        let host = Host(maxConnectionsPerUser: 1)
        let admission = admission()
        let first = Self.connection()
        let admitted = try await admission.admit(.firstMessage(token: "alice-token", on: first), host: host).get()
        #expect(admitted.connection === first)
        #expect(admitted.userConnections == 1)
        // The user's second attempt: within the rate limit, over the connection limit.
        let second = Self.connection()
        let limited = await refusal(admission, .firstMessage(token: "alice-token", on: second), host: host)
        #expect(limited?.reason == .tooManyConnections)
        let event = try #require(host.events.first)
        #expect(event.type == .sessionConcurrentLimit)
        #expect(event.userID == "alice")
        #expect(event.data["limit"] == 2)
        #expect(host.state.withLock { $0.abandoned.isEmpty }, "an in-band path reserved nothing to give up")
        // The third is over the user's attempt rate limit (2 per minute) before any slot is claimed.
        let third = await refusal(admission, .firstMessage(token: "alice-token", on: Self.connection()), host: host)
        #expect(third?.reason == .rateLimited)
        #expect(host.state.withLock { $0.claimed.count } == 2)
    }

    @Test func aRefreshChecksTheTokenSessionPrivilegeAndTheUsersAttemptRateOnly() async throws {
        let host = Host(maxConnectionsPerUser: 0)
        let admission = admission()
        admission.block("192.0.2.1")
        let connection = Self.connection()
        for _ in 0..<2 {
            let admitted = try await admission.admit(.refresh(token: "alice-token", on: connection), host: host).get()
            #expect(admitted.identity?.userID == "alice")
        }
        // The user's attempt rate limit (2 per minute) holds for refreshes too; no slot is claimed or reserved.
        #expect(await refusal(admission, .refresh(token: "alice-token", on: connection))?.reason == .rateLimited)
        #expect(host.state.withLock { $0.claimed.isEmpty && $0.reserved.isEmpty })
        let admin = Self.connection(.admin)
        #expect(await refusal(admission, .refresh(token: "alice-token", on: admin))?.reason == .adminRequired)
        #expect(await refusal(admission, .refresh(token: "refresh-token", on: connection))?.reason == .wrongTokenType)
    }

    @Test func aUserRevocationRefusesTheUsersEarlierTokensOnEveryPath() async throws {
        let sessions = InMemorySessionStore(now: clock.timestampSource)
        let admission = admission(sessions: sessions) {
            $0.rateLimits.apiRequestsPerIP.limit = 100
            $0.rateLimits.connectionsPerIP.limit = 100
            $0.rateLimits.connectionsPerUser = RateLimitPolicy(name: "conn-user", limit: 100, period: .seconds(60))
        }
        let issued = clock.timestamp
        tokens.add("dave-old", VerifiedIdentity(userID: "dave", sessionID: "s-dave", issuedAt: issued))
        tokens.add("dave-no-iat", VerifiedIdentity(userID: "dave", sessionID: "s-dave"))
        tokens.add("erin-old", VerifiedIdentity(userID: "erin", sessionID: "s-erin", issuedAt: issued))
        let host = Host(maxConnectionsPerUser: 10)
        _ = try await admission.admit(.upgrade(Self.request("/ws/events?token=dave-old")), host: host).get()
        _ = try await admission.admit(.upgrade(Self.request("/ws/events?token=dave-no-iat")), host: host).get()

        clock.advance(by: .seconds(1))
        try await sessions.revokeUser(
            "dave",
            issuedBefore: clock.timestamp,
            retainUntil: clock.timestamp + .seconds(60)
        )
        tokens.add("dave-new", VerifiedIdentity(userID: "dave", sessionID: "s-dave", issuedAt: clock.timestamp))
        for token in ["dave-old", "dave-no-iat"] {
            let attempts: [Admission.Attempt] = [
                .upgrade(Self.request("/ws/events?token=\(token)")),
                .firstMessage(token: token, on: Self.connection()),
                .refresh(token: token, on: Self.connection()),
                .api(Self.request("/api/v1/stats", headers: [("Authorization", "Bearer \(token)")]), verifier: nil),
            ]
            for attempt in attempts {
                let rejection = await refusal(admission, attempt, host: host)
                #expect(rejection?.reason == .sessionRevoked, "\(token) on \(attempt.path)")
            }
        }
        // A token issued at the revocation or later, and another user's earlier token, are admitted.
        let fresh = try await admission.admit(.refresh(token: "dave-new", on: Self.connection()), host: host).get()
        #expect(fresh.identity?.userID == "dave")
        _ = try await admission.admit(.refresh(token: "erin-old", on: Self.connection()), host: host).get()
        // The revocation is forgotten after its retention (the earlier tokens have expired by then).
        clock.advance(by: .seconds(61))
        _ = try await admission.admit(.refresh(token: "dave-old", on: Self.connection()), host: host).get()
    }

    @Test func aTokenThatWouldOutliveARevocationIsRefusedOnEveryPath() async throws {
        // A revocation is kept `revocationRetention`; a token expiring later would work again once it is forgotten.
        let admission = admission {
            $0.revocationRetention = .seconds(3600)
            $0.rateLimits.apiRequestsPerIP.limit = 100
            $0.rateLimits.connectionsPerIP.limit = 100
            $0.rateLimits.connectionsPerUser = RateLimitPolicy(name: "conn-user", limit: 100, period: .seconds(60))
        }
        let now = Timestamp.now()
        tokens.add("frank-long", VerifiedIdentity(userID: "frank", sessionID: "s-f", expiresAt: now + .seconds(3720)))
        tokens.add("frank-ok", VerifiedIdentity(userID: "frank", sessionID: "s-f", expiresAt: now + .seconds(3480)))
        let host = Host(maxConnectionsPerUser: 10)
        func attempts(_ token: String) -> [Admission.Attempt] {
            [
                .upgrade(Self.request("/ws/events?token=\(token)")),
                .firstMessage(token: token, on: Self.connection()),
                .refresh(token: token, on: Self.connection()),
                .api(Self.request("/api/v1/stats", headers: [("Authorization", "Bearer \(token)")]), verifier: nil),
            ]
        }
        for attempt in attempts("frank-long") {
            let rejection = await refusal(admission, attempt, host: host)
            #expect(rejection?.reason == .invalidToken, "\(attempt.path)")
        }
        #expect(counters.authFailuresByReason["lifetime_too_long"] == 4)
        for attempt in attempts("frank-ok") {
            _ = try await admission.admit(attempt, host: host).get()
        }
    }

    @Test func inRegistryModeOnlyTheAPITakesATokenWithoutASession() async throws {
        let admission = admission(sessions: InMemorySessionStore(mode: .registry, now: clock.timestampSource))
        let service = Self.request("/api/v1/sessions", headers: [("Authorization", "Bearer carol-no-session")])
        let admitted = try await admission.admit(.api(service, verifier: nil), host: Host()).get()
        #expect(admitted.identity?.userID == "carol")
        // A token that names a session must name a registered one, on the API too.
        let user = Self.request("/api/v1/sessions", headers: [("Authorization", "Bearer alice-token")])
        #expect(await refusal(admission, .api(user, verifier: nil))?.reason == .sessionInactive)
        for attempt: Admission.Attempt in [
            .upgrade(Self.request("/ws/events?token=carol-no-session")),
            .firstMessage(token: "carol-no-session", on: Self.connection()),
            .refresh(token: "carol-no-session", on: Self.connection()),
        ] {
            #expect(await refusal(admission, attempt)?.reason == .sessionRequired, "\(attempt.path)")
        }
    }

    @Test func aUserRevocationTheStoreCannotCheckIsUnavailable() async throws {
        let sessions = AdmissionThroughTheHubTests.FlakySessionStore()
        let admission = admission(sessions: sessions)
        sessions.failing.withLock { $0 = true }
        let rejection = await refusal(admission, .refresh(token: "carol-no-session", on: Self.connection()))
        #expect(rejection?.reason == .backendUnavailable)
    }

    @Test func aRefusalAfterTheReservationGivesTheConnectionUp() async throws {
        let host = Host(maxConnectionsPerUser: 0)
        let rejection = await refusal(admission(), .upgrade(Self.request()), host: host)
        #expect(rejection?.reason == .tooManyConnections)
        let abandoned = host.state.withLock { $0.abandoned }
        #expect(abandoned.map(\.1) == [.policyViolation])
        #expect(host.state.withLock { $0.reserved.isEmpty })
    }

    // MARK: Backends that fail

    @Test func aFailingSessionStoreIsUnavailableNotAnAuthenticationFailure() async throws {
        let admission = admission(sessions: BrokenSessionStore())
        let rejection = await refusal(admission, .upgrade(Self.request()))
        #expect(rejection?.reason == .backendUnavailable)
        #expect(rejection?.retryAfter == .seconds(2))
        #expect(counters.authFailuresByReason.isEmpty)
    }

    @Test func aFailingRateLimiterAdmits() async throws {
        let admission = admission(rateLimiter: BrokenRateLimiter())
        for _ in 0..<5 { _ = try await admission.admit(.upgrade(Self.request()), host: Host()).get() }
    }

    // MARK: Time

    @Test func aBlockedAddressIsRefusedUntilTheBlockEnds() async throws {
        let admission = admission {
            $0.rateLimits.violationsBeforeBlock = 3
            $0.rateLimits.blockDuration = .seconds(300)
        }
        let host = Host()
        for _ in 0..<3 { await admission.httpViolation(reason: "header_too_large", peer: "192.0.2.1", host: host) }
        #expect(host.events.map(\.type) == [.securitySuspiciousActivity])
        #expect(host.events.first?.data["blockedForSeconds"] == 300)
        clock.advance(by: .seconds(100))
        let blocked = await refusal(admission, .upgrade(Self.request()))
        #expect(blocked?.reason == .addressBlocked)
        #expect(blocked?.retryAfter == .seconds(200))
        // The API path is refused as well; other addresses are not.
        let api = Self.request("/api/v1/stats", headers: [("Authorization", "Bearer alice-token")])
        #expect(await refusal(admission, .api(api, verifier: nil))?.reason == .addressBlocked)
        _ = try await admission.admit(.upgrade(Self.request(address: "192.0.2.2")), host: Host()).get()
        clock.advance(by: .seconds(200))
        _ = try await admission.admit(.upgrade(Self.request()), host: Host()).get()
    }

    @Test func authenticationFailuresOfOneAddressAlertOncePerWindowOnEveryPath() async throws {
        let admission = admission {
            $0.rateLimits.authFailuresBeforeAlert = 3
            $0.rateLimits.abuseWindow = .seconds(60)
            $0.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 100, period: .seconds(1))
        }
        let host = Host()
        let connection = Self.connection()
        // One failure on each path that carries a token, from the same address.
        _ = await admission.admit(.upgrade(Self.request("/ws/events?token=forged")), host: host)
        let api = Self.request("/api/v1/stats", headers: [("Authorization", "Bearer forged")])
        _ = await admission.admit(.api(api, verifier: nil), host: host)
        _ = await admission.admit(.firstMessage(token: "forged", on: connection), host: host)
        _ = await admission.admit(.refresh(token: "forged", on: connection), host: host)
        #expect(host.events.count == 1)
        #expect(host.events.first?.type == .securitySuspiciousActivity)
        #expect(host.events.first?.data["address"] == "192.0.2.1")
        #expect(counters.authFailuresByReason["unknown_token"] == 4)
        // A new window counts from one again.
        clock.advance(by: .seconds(61))
        for _ in 0..<2 { _ = await admission.admit(.refresh(token: "forged", on: connection), host: host) }
        #expect(host.events.count == 1)
        _ = await admission.admit(.refresh(token: "forged", on: connection), host: host)
        #expect(host.events.count == 2)
    }

    @Test func theUsersAttemptRateLimitRecoversWithTime() async throws {
        let admission = admission()
        let host = Host(maxConnectionsPerUser: nil)
        for _ in 0..<2 { _ = try await admission.admit(.upgrade(Self.request()), host: host).get() }
        let limited = await refusal(admission, .upgrade(Self.request(address: "192.0.2.2")), host: host)
        #expect(limited?.reason == .rateLimited)
        #expect(limited?.retryAfter == .seconds(30))
        clock.advance(by: .seconds(30))
        _ = try await admission.admit(.upgrade(Self.request(address: "192.0.2.2")), host: host).get()
    }

    @Test func idleAbuseEntriesAreSweptButBlocksStay() async throws {
        let admission = admission {
            $0.rateLimits.abuseWindow = .seconds(60)
            $0.rateLimits.authFailuresBeforeAlert = 100
        }
        _ = await admission.admit(.upgrade(Self.request("/ws/events?token=forged", address: "192.0.2.7")), host: Host())
        admission.block("192.0.2.8")
        #expect(admission.trackedAddressCount == 2)
        clock.advance(by: .seconds(61))
        admission.sweepAbuse()
        #expect(admission.trackedAddressCount == 1)
        #expect(admission.blockedFor("192.0.2.8") != nil)
    }
}

/// The divergences the one policy removed, seen through a hub: first-message `auth` takes the user's rate limit
/// and tells administrators about the concurrent-connection limit as an upgrade does; a refused refresh says why.
@Suite struct AdmissionThroughTheHubTests {
    let fixture = HubFixture()

    /// A session store that fails while `failing` is set.
    final class FlakySessionStore: SessionStore {
        let failing = Mutex(false)
        let sessions = InMemorySessionStore()
        var mode: SessionStoreMode { .revocationList }
        func isActive(_ sessionID: String) async throws(RealtimeError) -> Bool {
            if failing.withLock({ $0 }) { throw RealtimeError(.backendUnavailable, "down") }
            return try await sessions.isActive(sessionID)
        }
        func create(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
            try await sessions.create(sessionID, userID: userID, expiresAt: expiresAt)
        }
        func revoke(_ sessionID: String, retainUntil: Timestamp) async throws(RealtimeError) -> Bool {
            try await sessions.revoke(sessionID, retainUntil: retainUntil)
        }
        func revokeUser(_ userID: String, issuedBefore: Timestamp, retainUntil: Timestamp) async throws(RealtimeError) {
            try await sessions.revokeUser(userID, issuedBefore: issuedBefore, retainUntil: retainUntil)
        }
        func userRevokedBefore(_ userID: String) async throws(RealtimeError) -> Timestamp? {
            if failing.withLock({ $0 }) { throw RealtimeError(.backendUnavailable, "down") }
            return try await sessions.userRevokedBefore(userID)
        }
        func session(_ sessionID: String) async throws(RealtimeError) -> SessionRecord? {
            try await sessions.session(sessionID)
        }
        func sessions(ofUser userID: String, limit: Int) async throws(RealtimeError) -> [SessionRecord] {
            try await sessions.sessions(ofUser: userID, limit: limit)
        }
    }

    /// A connection admitted without a token, waiting for its `auth` message.
    func unauthenticated(_ hub: RealtimeHub) async throws -> TestClient {
        TestClient(try await hub.connect(try await hub.ticket()))
    }

    @Test func firstMessageAuthHonoursTheUserLimitAndTellsAdministrators() async throws {
        let hub = try fixture.hub {
            $0.firstMessageAuthentication = true
            $0.maxConnectionsPerUser = 1
        }
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        _ = try await admin.next(type: "connected")
        try await admin.subscribe(["session.*"])
        let first = try await unauthenticated(hub)
        await first.send(#"{"type":"auth","id":"auth-1","payload":{"token":"alice-token"}}"#)
        let connected = try await first.next(type: "connected")
        #expect(connected["payload"]?["userId"] == "alice")
        #expect(connected["id"] == "auth-1", "the reply echoes the auth message's id, as every reply does")
        let second = try await unauthenticated(hub)
        await second.send(#"{"type":"auth","payload":{"token":"alice-token-2"}}"#)
        let (code, reason) = try await second.nextClose()
        #expect(code == .policyViolation)
        #expect(reason == "connection limit per user reached")
        let event = try await admin.next(type: "event")
        #expect(event["payload"]?["type"] == "session.concurrent_limit")
        #expect(event["payload"]?["userId"] == "alice")
        #expect(await hub.stats().server.rejectionsByReason["too_many_connections"] == 1)
    }

    @Test func firstMessageAuthTakesTheUsersAttemptRateLimit() async throws {
        let hub = try fixture.hub {
            $0.firstMessageAuthentication = true
            $0.rateLimits.connectionsPerUser = RateLimitPolicy(name: "conn-user", limit: 1, period: .seconds(60))
        }
        let first = try await unauthenticated(hub)
        await first.send(#"{"type":"auth","payload":{"token":"alice-token"}}"#)
        _ = try await first.next(type: "connected")
        let second = try await unauthenticated(hub)
        await second.send(#"{"type":"auth","payload":{"token":"alice-token"}}"#)
        let (code, reason) = try await second.nextClose()
        #expect(code == .policyViolation)
        #expect(reason == "too many attempts; try again later")
        // The limit is the user's: another user authenticates.
        let bob = try await unauthenticated(hub)
        await bob.send(#"{"type":"auth","payload":{"token":"bob-token"}}"#)
        _ = try await bob.next(type: "connected")
    }

    /// Every refresh publishes `authentication.token.refresh` to the administrators' stream: a user refreshing in a
    /// loop pushed real events out of their history. Refreshes count against the user's attempt rate limit; the
    /// refused one gets `rate_limited` with a retry delay and the connection stays.
    @Test func refreshesCountAgainstTheUsersAttemptRateLimit() async throws {
        let hub = try fixture.hub(rateLimiter: InMemoryRateLimiter(clock: ManualClock())) {
            $0.rateLimits.connectionsPerUser = RateLimitPolicy(
                name: "conn-user",
                limit: 3,
                period: .seconds(60),
                burst: 3
            )
        }
        let client = try await hub.connectClient(token: "alice-token")
        _ = try await client.next(type: "connected")
        for id in 1...2 {
            await client.send(#"{"type":"refresh_token","id":\#(id),"payload":{"token":"alice-token-2"}}"#)
            #expect(try await client.next(type: "token_refreshed")["id"] == .int(Int64(id)))
        }
        await client.send(#"{"type":"refresh_token","id":3,"payload":{"token":"alice-token-2"}}"#)
        let refused = try await client.next(type: "error")
        #expect(refused["payload"]?["code"] == "rate_limited")
        #expect(refused["id"] == 3)
        #expect((refused["payload"]?["retryAfterMs"]?.intValue ?? 0) > 0)
        await client.send(#"{"type":"ping","id":"still"}"#)
        #expect(try await client.next(type: "pong")["id"] == "still")
    }

    @Test func aRefreshTheSessionStoreCannotCheckIsUnavailableNotInvalid() async throws {
        let sessions = FlakySessionStore()
        let hub = try RealtimeHub(
            configuration: .testing(),
            backends: .inMemory(tokenVerifier: fixture.tokens, sessionStore: sessions),
            logger: Logger(label: "admission-refresh")
        )
        let client = try await hub.connectClient(token: "alice-token")
        _ = try await client.next(type: "connected")
        sessions.failing.withLock { $0 = true }
        await client.send(#"{"type":"refresh_token","id":1,"payload":{"token":"alice-token-2"}}"#)
        let reply = try await client.next(type: "error")
        #expect(reply["payload"]?["code"] == "unavailable")
        #expect(reply["payload"]?["retryAfterMs"] == 2000)
        #expect(reply["id"] == 1)
        sessions.failing.withLock { $0 = false }
        await client.send(#"{"type":"refresh_token","id":2,"payload":{"token":"alice-token-2"}}"#)
        #expect(try await client.next(type: "token_refreshed")["id"] == 2)
    }
}
