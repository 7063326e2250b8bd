// Admission: every way a request or a token enters the hub (upgrade, HTTP API) and the per-address abuse
// accounting it feeds.

import Logging
import Synchronization

extension RealtimeHub {
    // MARK: Upgrade

    /// Decides whether to accept a WebSocket upgrade. Checks, in order: the path, the origin policy, the
    /// client address's block and rate limit, the server-wide connection limit, the token (query or
    /// `Authorization: Bearer`), the session, admin privilege for the admin endpoint, the user's rate limit and
    /// the user's connection limit across the cluster.
    public func authorizeUpgrade(_ request: UpgradeRequest) async -> UpgradeDecision {
        switch await authorize(request) {
        case .success(let ticket): return .accept(ticket)
        case .failure(let rejection):
            counters.rejected(rejection.reason)
            logger.debug(
                "upgrade rejected",
                metadata: ["realtime.reason": "\(rejection.reason)", "realtime.remote": "\(request.remoteAddress)"]
            )
            return .reject(rejection)
        }
    }

    private func authorize(_ request: UpgradeRequest) async -> Result<UpgradeTicket, UpgradeRejection> {
        let endpoint: Endpoint
        switch request.path {
        case configuration.eventsPath: endpoint = .events
        case configuration.adminPath: endpoint = .admin
        default: return .failure(.init(status: 404, reason: "not_found", message: "no WebSocket endpoint here"))
        }
        if state.withLock({ $0.draining }) {
            return .failure(
                .init(
                    status: 503,
                    reason: "shutting_down",
                    message: "server is shutting down",
                    retryAfter: configuration.shutdown.reconnectDelay
                )
            )
        }
        let origin = request.header("Origin")
        guard configuration.origin.allows(origin) else {
            return .failure(.init(status: 403, reason: "origin_not_allowed", message: "origin not allowed"))
        }
        let address: IPAddress
        switch await admitAddress(request, policy: configuration.rateLimits.connectionsPerIP) {
        case .success(let admitted): address = admitted
        case .failure(let rejection): return .failure(rejection)
        }
        let addressKey = address.rateLimitKey
        let now = ContinuousClock.now
        if state.withLock({ $0.occupancy >= configuration.maxConnections }) {
            return .failure(
                .init(status: 503, reason: "server_full", message: "server is at capacity", retryAfter: .seconds(5))
            )
        }
        // The token: `Authorization: Bearer`, else the query (if allowed), else the first message (if allowed).
        var token: String?
        switch Self.bearerToken(request) {
        case .success(let bearer): token = bearer
        case .failure(let rejection): return .failure(rejection)
        }
        if token == nil, let queryToken = request.query("token") {
            guard configuration.allowQueryToken else {
                return .failure(
                    .init(
                        status: 400,
                        reason: "query_token_disabled",
                        message: "tokens in the URL are disabled here; use Authorization: Bearer"
                    )
                )
            }
            token = queryToken
        }
        var identity: VerifiedIdentity?
        if let token {
            switch await verifyForConnection(token, endpoint: endpoint, addressKey: addressKey) {
            case .success(let verified): identity = verified
            case .failure(let rejection): return .failure(rejection)
            }
        } else if !configuration.firstMessageAuthentication {
            return .failure(.init(status: 401, reason: "missing_token", message: "authentication required"))
        }
        // Per-user attempts and the cluster-wide per-user limit.
        let connectionID = ConnectionID.random()
        let core = ConnectionCore(
            id: connectionID,
            endpoint: endpoint,
            remoteAddress: address,
            origin: origin,
            identity: identity,
            limits: configuration.limits,
            now: now
        )
        let reserved = state.withLock { state -> Bool in
            guard state.occupancy < configuration.maxConnections else { return false }
            state.reserved[connectionID] = .init(since: now, core: core)
            return true
        }
        guard reserved else {
            return .failure(
                .init(status: 503, reason: "server_full", message: "server is at capacity", retryAfter: .seconds(5))
            )
        }
        var userConnections: Int?
        if let identity {
            switch await claimUserSlot(core, identity: identity) {
            case .success(let count) where state.withLock({ $0.reserved[connectionID] != nil }):
                userConnections = count
            case .success:
                // The ticket expired while the registry was slow: no handshake for a connection already released.
                abandon(core, .goingAway)
                return .failure(Self.registryUnavailable)
            case .failure(let rejection):
                // Releases the reservation, and the record if a failed write may have left one.
                abandon(core, .internalError)
                return .failure(rejection)
            }
        }
        return .success(
            UpgradeTicket(
                connectionID: connectionID,
                endpoint: endpoint,
                identity: identity,
                maxFrameBytes: configuration.limits.maxFrameBytes,
                core: core,
                userConnections: userConnections
            )
        )
    }

    /// Admits an HTTP API request with the checks of a WebSocket upgrade: the client address (trusted
    /// proxies, blocks from earlier abuse), the API rate limit per address
    /// (``HubConfiguration/RateLimits-swift.struct/apiRequestsPerIP``), the `Authorization: Bearer` token
    /// (size, signature and claims, token type), the session (revoked sessions, registry mode), and the
    /// accounting of authentication failures per address. Hosts call it for every request of their HTTP API;
    /// authorization (which identities may use which route) stays with the host.
    ///
    /// - Parameters:
    ///   - request: the request's target, headers and socket peer (an empty peer skips the per-address checks:
    ///     for hosts that cannot tell it).
    ///   - verifier: the verifier for the API's tokens, if not the hub's own.
    /// - Returns: the verified identity, or the refusal to answer with (its ``UpgradeRejection/status``,
    ///   ``UpgradeRejection/reason`` as the error code, `Retry-After` for 429 and 503).
    public func authenticateRequest(
        _ request: UpgradeRequest,
        verifier: (any TokenVerifier)? = nil
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        let result = await admitRequest(request, verifier: verifier ?? backends.tokenVerifier)
        if case .failure(let rejection) = result {
            counters.rejected(rejection.reason)
            logger.debug(
                "API request refused",
                metadata: ["realtime.reason": "\(rejection.reason)", "realtime.remote": "\(request.remoteAddress)"]
            )
        }
        return result
    }

    private func admitRequest(
        _ request: UpgradeRequest,
        verifier: any TokenVerifier
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        var addressKey = "unknown"
        if !request.remoteAddress.isEmpty {
            switch await admitAddress(request, policy: configuration.rateLimits.apiRequestsPerIP) {
            case .success(let admitted): addressKey = admitted.rateLimitKey
            case .failure(let rejection): return .failure(rejection)
            }
        }
        switch Self.bearerToken(request) {
        case .success(let token?):
            return await verifyForConnection(token, endpoint: nil, addressKey: addressKey, verifier: verifier)
        case .success(nil):
            return .failure(.init(status: 401, reason: "missing_token", message: "send Authorization: Bearer <token>"))
        case .failure(let rejection):
            return .failure(rejection)
        }
    }

    /// The client address of a request, unless it is unusable, blocked for earlier abuse, or over `policy`.
    private func admitAddress(
        _ request: UpgradeRequest,
        policy: RateLimitPolicy
    ) async -> Result<IPAddress, UpgradeRejection> {
        guard let address = configuration.clientAddress.resolve(peer: request.remoteAddress, headers: request.headers)
        else {
            return .failure(.init(status: 400, reason: "bad_remote_address", message: "unusable client address"))
        }
        let addressKey = address.rateLimitKey
        if let blocked = state.withLock({ $0.abuse.blockedFor(addressKey, now: .now) }) {
            return .failure(
                .init(status: 429, reason: "address_blocked", message: "too many violations", retryAfter: blocked)
            )
        }
        if let refusal = await consumeRateLimit("ip:" + addressKey, policy) {
            return .failure(refusal)
        }
        return .success(address)
    }

    /// The token of an `Authorization: Bearer` header: `nil` without the header, a refusal for any other scheme
    /// or an empty token.
    static func bearerToken(_ request: UpgradeRequest) -> Result<String?, UpgradeRejection> {
        guard let authorization = request.header("Authorization") else { return .success(nil) }
        let parts = authorization.split(separator: " ", maxSplits: 1)
        let token = parts.count == 2 ? parts[1].trimmingSpaces() : ""
        guard parts.count == 2, parts[0].lowercased() == "bearer", !token.isEmpty else {
            return .failure(
                .init(status: 401, reason: "invalid_authorization", message: "expected Authorization: Bearer <token>")
            )
        }
        return .success(token)
    }

    /// Verifies a token for a connection (or, with no `endpoint`, an API request): size, signature and claims,
    /// session, admin privilege for the admin endpoint.
    func verifyForConnection(
        _ token: String,
        endpoint: Endpoint?,
        addressKey: String,
        verifier: (any TokenVerifier)? = nil
    ) async -> Result<VerifiedIdentity, UpgradeRejection> {
        let identity: VerifiedIdentity
        if token.utf8.count > configuration.limits.maxTokenBytes {
            await authenticationFailed(reason: TokenVerificationError.Reason.tooLarge.rawValue, addressKey: addressKey)
            return .failure(.init(status: 401, reason: "invalid_token", message: "authentication failed"))
        }
        do {
            identity = try await (verifier ?? backends.tokenVerifier).verify(token)
        } catch {
            await authenticationFailed(reason: error.reason.rawValue, addressKey: addressKey)
            logger.info(
                "token refused",
                metadata: ["realtime.reason": "\(error.reason)", "realtime.remote": "\(addressKey)"]
            )
            // The one reason told to the client: a genuine token of the wrong kind, such as a refresh token.
            guard error.reason != .wrongTokenType else {
                return .failure(
                    .init(
                        status: 401,
                        reason: "wrong_token_type",
                        message: "this kind of token (e.g. a refresh token) cannot be used here"
                    )
                )
            }
            return .failure(.init(status: 401, reason: "invalid_token", message: "authentication failed"))
        }
        if let sessionID = identity.sessionID {
            do {
                guard try await backends.sessionStore.isActive(sessionID) else {
                    // In revocation-list mode an inactive session is a revoked one; a registry cannot tell a
                    // revoked session from an unknown or expired one.
                    let rejection: UpgradeRejection =
                        backends.sessionStore.mode == .revocationList
                        ? .init(status: 401, reason: "session_revoked", message: "the session was revoked")
                        : .init(status: 401, reason: "session_inactive", message: "session is not active")
                    await authenticationFailed(reason: rejection.reason, addressKey: addressKey)
                    return .failure(rejection)
                }
            } catch {
                logger.error("session store failed", metadata: ["realtime.error": "\(error)"])
                return .failure(
                    .init(
                        status: 503,
                        reason: "backend_unavailable",
                        message: "try again later",
                        retryAfter: .seconds(2)
                    )
                )
            }
        } else if backends.sessionStore.mode == .registry {
            await authenticationFailed(reason: "session_required", addressKey: addressKey)
            return .failure(.init(status: 401, reason: "session_required", message: "token names no session"))
        }
        if endpoint == .admin && !identity.isAdmin {
            return .failure(.init(status: 403, reason: "admin_required", message: "administrator privilege required"))
        }
        return .success(identity)
    }

    private func claimUserSlot(_ core: ConnectionCore, identity: VerifiedIdentity) async -> Result<
        Int, UpgradeRejection
    > {
        if let refusal = await consumeRateLimit("user:" + identity.userID, configuration.rateLimits.connectionsPerUser)
        {
            return .failure(refusal)
        }
        switch await register(core, identity: identity, maxConnectionsPerUser: configuration.maxConnectionsPerUser) {
        case .registered(let count):
            return .success(count)
        case .closed:
            // The ticket expired (or the server began draining) while the registry was slow.
            return .failure(Self.registryUnavailable)
        case .failed(let error):
            logger.error("connection store failed", metadata: ["realtime.error": "\(error)"])
            return .failure(Self.registryUnavailable)
        case .limitReached(let count):
            await publishInternal(
                RealtimeEvent(
                    type: .sessionConcurrentLimit,
                    userID: identity.userID,
                    sessionID: identity.sessionID,
                    data: [
                        "connections": .int(Int64(count)),
                        "limit": .int(Int64(configuration.maxConnectionsPerUser ?? 0)),
                        "serverId": .string(serverID.rawValue),
                    ]
                )
            )
            return .failure(
                .init(
                    status: 429,
                    reason: "too_many_connections",
                    message: "connection limit per user reached",
                    retryAfter: .seconds(5)
                )
            )
        }
    }

    /// The upgrade's registration failed, or outlived its ticket.
    private static let registryUnavailable = UpgradeRejection(
        status: 503,
        reason: "backend_unavailable",
        message: "try again later",
        retryAfter: .seconds(2)
    )

    /// Spends one unit of a shared rate limit; `nil` when allowed. Fails open (with a log) if the limiter is
    /// unreachable: availability over strictness, and the Redis limiter falls back to a local one itself.
    private func consumeRateLimit(_ key: String, _ policy: RateLimitPolicy) async -> UpgradeRejection? {
        do {
            let decision = try await backends.rateLimiter.consume(key, cost: 1, policy: policy)
            if decision.allowed { return nil }
            counters.increment("realtime_rate_limited_total", ("policy", policy.name))
            return UpgradeRejection(
                status: 429,
                reason: "rate_limited",
                message: "too many connection attempts",
                retryAfter: decision.retryAfter
            )
        } catch {
            logger.warning("rate limiter failed; allowing", metadata: ["realtime.error": "\(error)"])
            return nil
        }
    }

    /// Counts an authentication failure and publishes `security.suspicious.activity` when one address fails
    /// too often.
    func authenticationFailed(reason: String, addressKey: String) async {
        counters.authFailed(reason)
        let window = configuration.rateLimits.abuseWindow
        let count = state.withLock { $0.abuse.recordAuthFailure(addressKey, window: window, now: .now) }
        if count == configuration.rateLimits.authFailuresBeforeAlert {
            await publishInternal(
                RealtimeEvent(
                    type: .securitySuspiciousActivity,
                    data: [
                        "reason": "repeated_authentication_failures",
                        "address": .string(addressKey),
                        "failures": .int(Int64(count)),
                        "windowSeconds": .int(window.milliseconds / 1000),
                        "serverId": .string(serverID.rawValue),
                    ],
                    scope: .admins
                )
            )
        }
    }

    /// Records an HTTP-level violation that a host detected before the request reached the hub (see
    /// ``HubConfiguration/HTTPLimits``): the counter `realtime_http_violations_total{reason}` and, unless `peer`
    /// is a trusted proxy (whose clients cannot be told apart), the address's violation count. At
    /// ``HubConfiguration/RateLimits-swift.struct/violationsBeforeBlock`` violations within the abuse window the
    /// address is blocked for ``HubConfiguration/RateLimits-swift.struct/blockDuration`` (upgrades and API
    /// requests get `429 address_blocked`) and administrators get `security.suspicious.activity`.
    ///
    /// - Parameters:
    ///   - reason: a stable, metric-safe reason such as `request_line_too_long`, `header_too_large`,
    ///     `header_timeout` or `malformed_request`.
    ///   - peer: the socket peer's IP address.
    public func reportHTTPViolation(reason: String, peer: String) async {
        counters.increment("realtime_http_violations_total", ("reason", reason))
        guard let address = IPAddress(peer), !configuration.clientAddress.isTrusted(address) else { return }
        let key = address.rateLimitKey
        let limits = configuration.rateLimits
        let now = ContinuousClock.now
        let count = state.withLock { state -> Int in
            let count = state.abuse.recordHTTPViolation(key, window: limits.abuseWindow, now: now)
            if count == limits.violationsBeforeBlock { state.abuse.block(key, for: limits.blockDuration, now: now) }
            return count
        }
        guard count == limits.violationsBeforeBlock else { return }
        logger.notice(
            "address blocked for repeated HTTP violations",
            metadata: ["realtime.remote": "\(key)", "realtime.reason": "\(reason)"]
        )
        await publishInternal(
            RealtimeEvent(
                type: .securitySuspiciousActivity,
                data: [
                    "reason": "repeated_http_violations",
                    "lastViolation": .string(reason),
                    "address": .string(key),
                    "violations": .int(Int64(count)),
                    "blockedForSeconds": .int(limits.blockDuration.milliseconds / 1000),
                    "serverId": .string(serverID.rawValue),
                ],
                scope: .admins
            )
        )
    }
}
