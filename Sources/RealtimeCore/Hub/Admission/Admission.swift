import Logging
import Synchronization

/// The hub's one admission policy. Every token that enters the hub — on a WebSocket upgrade, in a first-message
/// `auth`, on an HTTP API request, in an in-band `refresh_token` — goes through ``admit(_:host:)``, which runs the
/// steps of one fixed pipeline that the attempt's ``Path`` includes (``Path/steps``) and refuses with a typed
/// ``AdmissionRejection``. Paths differ only by their step set, never by code of their own.
///
/// The policy also owns the per-address abuse state (``AbuseTracker``): authentication failures (an alert to
/// administrators past a threshold), blocks for message-rate abuse and HTTP violations.
///
/// What it needs of the hub (draining, capacity, reservations, the cluster registry, publishing) it asks an
/// ``AdmissionHost``, so the policy can be driven without a hub in tests.
final class Admission: Sendable {
    let configuration: HubConfiguration
    let tokenVerifier: any TokenVerifier
    let sessionStore: any SessionStore
    let rateLimiter: any RateLimiter
    let counters: HubCounters
    let logger: Logger
    /// The monotonic clock of the abuse state (tests drive it from a manual clock).
    let now: @Sendable () -> ContinuousClock.Instant
    let abuse: Mutex<AbuseTracker>
    /// Open plain HTTP connections (not, or not yet, WebSockets) per address key
    /// (``HubConfiguration/HTTPLimits-swift.struct/maxConnectionsPerAddress``); an entry exists only while its
    /// address has one open, so the table is bounded by the open sockets.
    let openHTTPConnections = Mutex<[String: Int]>([:])

    init(
        configuration: HubConfiguration,
        backends: HubBackends,
        counters: HubCounters,
        logger: Logger,
        now: @escaping @Sendable () -> ContinuousClock.Instant = { .now }
    ) {
        self.configuration = configuration
        self.tokenVerifier = backends.tokenVerifier
        self.sessionStore = backends.sessionStore
        self.rateLimiter = backends.rateLimiter
        self.counters = counters
        self.logger = logger
        self.now = now
        self.abuse = Mutex(AbuseTracker(maxEntries: configuration.rateLimits.maxTrackedAddresses))
    }

    /// Runs the pipeline for `attempt`. A refusal is counted (`realtime_upgrade_rejections_total{reason}`) and
    /// logged; a connection this call reserved is given up again.
    func admit(_ attempt: Attempt, host: some AdmissionHost) async -> Result<Admitted, AdmissionRejection> {
        let result = await run(attempt, host: host)
        if case .failure(let rejection) = result {
            counters.rejected(rejection.code)
            logger.debug(
                "admission refused",
                metadata: [
                    "realtime.path": "\(attempt.path.rawValue)", "realtime.reason": "\(rejection.code)",
                    "realtime.remote":
                        "\(attempt.request?.remoteAddress ?? attempt.connection?.remoteAddress.description ?? "")",
                ]
            )
        }
        return result
    }

    private func run(_ attempt: Attempt, host: some AdmissionHost) async -> Result<Admitted, AdmissionRejection> {
        // The real clock, as activation reads it (not `now`, the abuse state's clock).
        let startedAt = ContinuousClock.now
        let steps = attempt.path.steps
        let request: Request
        switch await admitRequest(attempt, steps: steps, host: host) {
        case .success(let admitted): request = admitted
        case .failure(let rejection): return .failure(rejection)
        }
        let token: String?
        switch extractToken(attempt, steps: steps) {
        case .success(let found): token = found
        case .failure(let rejection): return .failure(rejection)
        }
        var identity: VerifiedIdentity?
        if let token {
            switch await authenticate(token, attempt, request: request, host: host) {
            case .success(let verified): identity = verified
            case .failure(let rejection): return .failure(rejection)
            }
        } else if !(steps.contains(.deferrableToken) && configuration.firstMessageAuthentication) {
            return .failure(.init(.missingToken))
        }
        return await claim(identity, request: request, attempt: attempt, startedAt: startedAt, host: host)
    }

    // MARK: The request: endpoint, draining, origin, address, capacity

    /// What the request steps found out.
    private struct Request {
        var endpoint: Endpoint?
        var address: IPAddress?
        var origin: String?
        /// The key of the abuse accounting: the address's rate-limit key, `unknown` without one.
        var addressKey: String { address?.rateLimitKey ?? "unknown" }
    }

    private func admitRequest(
        _ attempt: Attempt,
        steps: Steps,
        host: some AdmissionHost
    ) async -> Result<Request, AdmissionRejection> {
        let origins = attempt.request?.headerValues("Origin") ?? []
        var admitted = Request(
            endpoint: attempt.connection?.endpoint,
            address: attempt.connection?.remoteAddress,
            origin: attempt.connection?.origin ?? origins.first
        )
        if steps.contains(.endpoint) {
            switch attempt.request?.path {
            case configuration.eventsPath: admitted.endpoint = .events
            case configuration.adminPath: admitted.endpoint = .admin
            default: return .failure(.init(.notFound))
            }
        }
        if steps.contains(.serving) && host.isDraining {
            return .failure(.init(.shuttingDown, retryAfter: configuration.shutdown.reconnectDelay))
        }
        if steps.contains(.origin) {
            // Two origins are one too many: browsers send one, and which one a proxy in front checked is unknown.
            guard configuration.origin.allows(admitted.origin), origins.count <= 1 else {
                return .failure(.init(.originNotAllowed))
            }
        }
        if steps.contains(.address), let request = attempt.request,
            !(steps.contains(.unknownPeerAllowed) && request.remoteAddress.isEmpty)
        {
            switch await admitAddress(request, policy: attempt.path.addressRateLimit(configuration.rateLimits)) {
            case .success(let address): admitted.address = address
            case .failure(let rejection): return .failure(rejection)
            }
        }
        if steps.contains(.capacity) && host.isFull {
            return .failure(.init(.serverFull))
        }
        return .success(admitted)
    }

    /// The client address of a request, unless it is unusable, blocked for earlier abuse, or over `policy`.
    private func admitAddress(
        _ request: UpgradeRequest,
        policy: RateLimitPolicy
    ) async -> Result<IPAddress, AdmissionRejection> {
        guard let address = configuration.clientAddress.resolve(peer: request.remoteAddress, headers: request.headers)
        else {
            return .failure(.init(.badRemoteAddress))
        }
        let addressKey = address.rateLimitKey
        if let blocked = blockedFor(addressKey) {
            return .failure(.init(.addressBlocked, retryAfter: blocked))
        }
        if let refusal = await consumeRateLimit("ip:" + addressKey, policy) {
            return .failure(refusal)
        }
        return .success(address)
    }

    // MARK: The token

    /// The attempt's token: an in-band message's, else `Authorization: Bearer`, else the query (where the path
    /// takes them); `nil` when there is none.
    private func extractToken(_ attempt: Attempt, steps: Steps) -> Result<String?, AdmissionRejection> {
        if let token = attempt.messageToken { return .success(token) }
        guard let request = attempt.request else { return .success(nil) }
        if steps.contains(.bearerHeader) {
            let authorizations = request.headerValues("Authorization")
            if !authorizations.isEmpty {
                // Two credentials are one too many: which one a proxy in front read is anyone's guess.
                guard authorizations.count == 1, let token = Self.bearerToken(authorizations[0]) else {
                    return .failure(.init(.invalidAuthorization))
                }
                return .success(token)
            }
        }
        if steps.contains(.queryToken) {
            let queryTokens = request.queryItems.filter { $0.name == "token" }
            if !queryTokens.isEmpty {
                guard configuration.allowQueryToken else { return .failure(.init(.queryTokenDisabled)) }
                guard queryTokens.count == 1 else { return .failure(.init(.invalidAuthorization)) }
                return .success(queryTokens[0].value)
            }
        }
        return .success(nil)
    }

    /// The token of an `Authorization` header value `Bearer <token>` (scheme in any case); `nil` for any other
    /// scheme or an empty token. The one place the header is parsed.
    static func bearerToken(_ authorization: String) -> String? {
        let parts = authorization.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingSpaces()
        return token.isEmpty ? nil : token
    }

    // MARK: Verification, session, privilege

    /// Verifies a token (size, signature and claims), checks its session and, on the admin endpoint, its
    /// privilege. Refused credentials count as authentication failures of `addressKey`.
    private func authenticate(
        _ token: String,
        _ attempt: Attempt,
        request: Request,
        host: some AdmissionHost
    ) async -> Result<VerifiedIdentity, AdmissionRejection> {
        let steps = attempt.path.steps
        let addressKey = request.addressKey
        let identity: VerifiedIdentity
        if token.utf8.count > configuration.limits.maxTokenBytes {
            await authenticationFailed(
                reason: TokenVerificationError.Reason.tooLarge.rawValue,
                addressKey: addressKey,
                host: host
            )
            return .failure(.init(.invalidToken))
        }
        do throws(TokenVerificationError) {
            identity = try await (attempt.verifier ?? tokenVerifier).verify(token)
            // Whatever the verifier: ids that two users could share (see `IdentifierPolicy`) never get in.
            if let problem = Self.identifierProblem(identity) { throw TokenVerificationError(.invalidClaim, problem) }
            // A verifier may accept a token shortly past its expiry (a JWT verifier's leeway for clock skew), but the
            // hub closes a connection when its token expires: admitting one would close it within a heartbeat
            // (fuzz: exp 10 s ago was admitted, then closed with 4002). Refused here, on every path, instead.
            if let expiresAt = identity.expiresAt, expiresAt <= Timestamp.now() {
                throw TokenVerificationError(
                    .expired,
                    "the token expired at \(expiresAt.iso8601) by this server's clock"
                )
            }
            // A revocation is remembered for `revocationRetention`; a token living longer would work again once its
            // user's or session's revocation is forgotten (fuzz: a 30-year token outlived a user revocation by 24 h).
            if let expiresAt = identity.expiresAt, expiresAt > Timestamp.now() + configuration.revocationRetention {
                throw TokenVerificationError(
                    .lifetimeTooLong,
                    "the token expires at \(expiresAt.iso8601), later than the revocation retention "
                        + "(\(configuration.revocationRetention)) from now: a revocation would be forgotten before "
                        + "it expires; issue shorter-lived tokens or raise the retention (WEBSOCKET_REVOCATION_RETENTION)"
                )
            }
        } catch {
            await authenticationFailed(reason: error.reason.rawValue, addressKey: addressKey, host: host)
            logger.info(
                "token refused",
                metadata: [
                    "realtime.reason": "\(error.reason)", "realtime.detail": "\(error.detail)",
                    "realtime.remote": "\(addressKey)",
                ]
            )
            // The one reason told to the client: a genuine token of the wrong kind, such as a refresh token.
            return .failure(.init(error.reason == .wrongTokenType ? .wrongTokenType : .invalidToken))
        }
        if steps.contains(.session), let refusal = await checkSession(identity, path: attempt.path) {
            if refusal != .backendUnavailable {
                await authenticationFailed(reason: refusal.rawValue, addressKey: addressKey, host: host)
            }
            return .failure(.init(refusal))
        }
        if steps.contains(.privilege) && request.endpoint == .admin && !identity.isAdmin {
            return .failure(.init(.adminRequired))
        }
        return .success(identity)
    }

    /// Why the identity's user or session id cannot be used (``IdentifierPolicy``), or `nil`.
    static func identifierProblem(_ identity: VerifiedIdentity) -> String? {
        if let problem = IdentifierPolicy.problem(with: identity.userID) { return "the user id \(problem)" }
        if let sessionID = identity.sessionID, let problem = IdentifierPolicy.problem(with: sessionID) {
            return "the session id \(problem)"
        }
        return nil
    }

    /// Why the identity's session may not be used, or `nil` when it may: the session check of the store's mode,
    /// and the user-wide revocation (a token of a revoked user issued before the revocation, or without `iat`, is
    /// refused as `session_revoked`). Both are asked at once. The hub asks it again for its live connections after a
    /// gap in the bus (`RealtimeHub.revalidateSessions()`).
    func checkSession(_ identity: VerifiedIdentity, path: Path) async -> AdmissionRejection.Reason? {
        async let userRevocation = userRevokedBefore(identity.userID)
        let session = await checkSessionID(identity, path: path)
        switch await userRevocation {
        case .failure:
            return .backendUnavailable
        case .success(let before?) where Self.isRevoked(issuedAt: identity.issuedAt, before: before):
            return session == .backendUnavailable ? .backendUnavailable : .sessionRevoked
        case .success:
            return session
        }
    }

    /// Whether a token issued at `issuedAt` falls under a user revocation of the tokens issued before `before`.
    /// A token that does not say when it was issued is refused.
    static func isRevoked(issuedAt: Timestamp?, before: Timestamp) -> Bool {
        guard let issuedAt else { return true }
        return issuedAt < before
    }

    private func userRevokedBefore(_ userID: String) async -> Result<Timestamp?, RealtimeError> {
        do {
            return .success(try await sessionStore.userRevokedBefore(userID))
        } catch {
            logger.error("session store failed", metadata: ["realtime.error": "\(error)"])
            return .failure(error)
        }
    }

    /// In registry mode a connection's token must name a registered session; an API request's token that names
    /// none is a service's (the auth service that creates the sessions has none of its own), so it is checked by
    /// everything but a session. A token that names a session is checked on every path.
    private func checkSessionID(_ identity: VerifiedIdentity, path: Path) async -> AdmissionRejection.Reason? {
        guard let sessionID = identity.sessionID else {
            return sessionStore.mode == .registry && path != .api ? .sessionRequired : nil
        }
        do {
            // In registry mode the session must also be the token's user's: one user's session id never admits
            // another user (fuzz: bob's token naming alice's session was admitted, on every path).
            if try await sessionStore.isActive(sessionID, userID: identity.userID) { return nil }
            // In revocation-list mode an inactive session is a revoked one; a registry cannot tell a revoked
            // session from an unknown, expired or other user's one.
            return sessionStore.mode == .revocationList ? .sessionRevoked : .sessionInactive
        } catch {
            logger.error("session store failed", metadata: ["realtime.error": "\(error)"])
            return .backendUnavailable
        }
    }

    // MARK: The connection: reservation, user rate limit, user slot

    private func claim(
        _ identity: VerifiedIdentity?,
        request: Request,
        attempt: Attempt,
        startedAt: ContinuousClock.Instant,
        host: some AdmissionHost
    ) async -> Result<Admitted, AdmissionRejection> {
        let steps = attempt.path.steps
        var connection = attempt.connection
        var reservedHere: ConnectionCore?
        if steps.contains(.reservation) {
            guard let endpoint = request.endpoint, let address = request.address else {
                return .failure(.init(.badRemoteAddress))
            }
            let reserved = ConnectionCore(
                id: .random(),
                endpoint: endpoint,
                remoteAddress: address,
                origin: request.origin,
                identity: identity,
                limits: configuration.limits,
                now: now()
            )
            guard host.reserve(reserved) else { return .failure(.init(.serverFull)) }
            connection = reserved
            reservedHere = reserved
        }
        var admitted = Admitted(identity: identity, connection: connection, startedAt: startedAt)
        guard let identity, let connection else { return .success(admitted) }
        var refusal: AdmissionRejection?
        if steps.contains(.userRateLimit) {
            refusal = await consumeRateLimit("user:" + identity.userID, configuration.rateLimits.connectionsPerUser)
        }
        if refusal == nil && steps.contains(.userSlot) {
            switch await claimUserSlot(connection, identity: identity, host: host) {
            case .success(let count): admitted.userConnections = count
            case .failure(let rejection): refusal = rejection
            }
        }
        if let refusal {
            // Releases the reservation, and the record if a failed write may have left one.
            if let reservedHere { host.abandon(reservedHere, refusal.reason.closeCode) }
            return .failure(refusal)
        }
        return .success(admitted)
    }

    private func claimUserSlot(
        _ connection: ConnectionCore,
        identity: VerifiedIdentity,
        host: some AdmissionHost
    ) async -> Result<Int, AdmissionRejection> {
        switch await host.claimUserSlot(connection, identity: identity) {
        case .claimed(let count):
            return .success(count)
        case .unavailable:
            return .failure(.init(.backendUnavailable))
        case .limitReached(let count):
            await host.publishAdmissionEvent(
                RealtimeEvent(
                    type: .sessionConcurrentLimit,
                    userID: identity.userID,
                    sessionID: identity.sessionID,
                    data: [
                        "connections": .int(Int64(count)),
                        "limit": .int(Int64(configuration.maxConnectionsPerUser ?? 0)),
                        "serverId": .string(configuration.serverID.rawValue),
                    ]
                )
            )
            return .failure(.init(.tooManyConnections))
        }
    }

    /// Spends one unit of a shared rate limit; `nil` when allowed. Fails open (with a log) if the limiter is
    /// unreachable: availability over strictness, and the Redis limiter falls back to a local one itself.
    private func consumeRateLimit(_ key: String, _ policy: RateLimitPolicy) async -> AdmissionRejection? {
        do {
            let decision = try await rateLimiter.consume(key, cost: 1, policy: policy)
            if decision.allowed { return nil }
            counters.increment("realtime_rate_limited_total", ("policy", policy.name))
            return AdmissionRejection(.rateLimited, retryAfter: decision.retryAfter)
        } catch {
            logger.warning("rate limiter failed; allowing", metadata: ["realtime.error": "\(error)"])
            return nil
        }
    }
}
