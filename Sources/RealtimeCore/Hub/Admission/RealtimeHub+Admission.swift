// The hub's doors: the public entry points of the admission policy (`Admission`) for the WebSocket upgrade and
// the HTTP API, the hosts' report of HTTP violations, and what the policy asks of the hub (`AdmissionHost`).

import Logging
import Synchronization

extension RealtimeHub {
    /// Decides whether to accept a WebSocket upgrade. Checks, in order: the path, draining, the origin policy,
    /// the client address (block, rate limit per address), the server-wide connection limit, the token
    /// (`Authorization: Bearer`, else `?token=`; none with first-message authentication), its session and, on the
    /// admin endpoint, its privilege; then reserves a server slot and claims the user's slot across the cluster
    /// (rate limit per user, concurrent-connection limit). See `Documentation/Architecture.md`, "Admission".
    public func authorizeUpgrade(_ request: UpgradeRequest) async -> UpgradeDecision {
        switch await admission.admit(.upgrade(request), host: self) {
        case .failure(let rejection):
            return .reject(rejection)
        case .success(let admitted):
            guard let core = admitted.connection else { return .reject(.init(.badRemoteAddress)) }
            if let recover = request.query(RecoverQuery.parameter) {
                // At most one byte past the limit is kept: enough to refuse it as too long.
                core.state.withLock { $0.recoverQuery = String(recover.prefix(RecoverQuery.maxBytes + 1)) }
            }
            return .accept(
                UpgradeTicket(
                    connectionID: core.id,
                    endpoint: core.endpoint,
                    identity: admitted.identity,
                    maxFrameBytes: configuration.limits.maxFrameBytes,
                    core: core,
                    userConnections: admitted.userConnections,
                    admissionStarted: admitted.startedAt
                )
            )
        }
    }

    /// Admits an HTTP API request through the admission policy's API path: the client address (trusted proxies,
    /// blocks from earlier abuse, ``HubConfiguration/RateLimits-swift.struct/apiRequestsPerIP``), the
    /// `Authorization: Bearer` token (size, signature and claims, token type), the session (revoked sessions,
    /// registry mode), and the accounting of authentication failures per address. No connection slot is claimed.
    /// Hosts call it for every request of their HTTP API; which identities may use which route stays with the host.
    ///
    /// - Parameters:
    ///   - request: the request's target, headers and socket peer (an empty peer skips the per-address checks:
    ///     for hosts that cannot tell it).
    ///   - verifier: the verifier for the API's tokens, if not the hub's own.
    /// - Returns: the verified identity, or the refusal to answer with (its ``AdmissionRejection/status``,
    ///   ``AdmissionRejection/code``, `Retry-After` for 429 and 503, ``AdmissionRejection/wwwAuthenticate``).
    public func authenticateRequest(
        _ request: UpgradeRequest,
        verifier: (any TokenVerifier)? = nil
    ) async -> Result<VerifiedIdentity, AdmissionRejection> {
        switch await admission.admit(.api(request, verifier: verifier), host: self) {
        case .failure(let rejection): return .failure(rejection)
        case .success(let admitted):
            guard let identity = admitted.identity else { return .failure(.init(.missingToken)) }
            return .success(identity)
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
        await admission.httpViolation(reason: reason, peer: peer, host: self)
    }

    /// Counts a plain HTTP connection of `peer` (from its accept until it closes or becomes a WebSocket) against
    /// ``HubConfiguration/HTTPLimits-swift.struct/maxConnectionsPerAddress``, so that one address cannot hold the
    /// server's file descriptors with idle or trickling sockets. Returns `false`, counting nothing, when the address
    /// has that many open already: the host answers `429 too_many_connections` and closes. Trusted proxies (whose
    /// clients cannot be told apart) are never refused. Synchronous and non-blocking: call it from the event loop
    /// when the connection becomes active, and ``httpConnectionEnded(peer:)`` exactly once for each admitted one.
    public func httpConnectionStarted(peer: String) -> Bool {
        admission.httpConnectionStarted(peer: peer)
    }

    /// Ends the count of a connection ``httpConnectionStarted(peer:)`` admitted.
    public func httpConnectionEnded(peer: String) {
        admission.httpConnectionEnded(peer: peer)
    }

    /// Test hook: addresses the abuse state holds.
    package var trackedAddressCount: Int { admission.trackedAddressCount }
}

extension RealtimeHub: AdmissionHost {
    /// Whether the hub's graceful shutdown has begun: from the start of its drain, it refuses new connections and
    /// closes the open ones.
    ///
    /// A host's HTTP layer reads it to answer every response from then on with `Connection: close` (and to close
    /// the connection after it): the host's own shutdown signal may come only after the hub's drain, which can take
    /// seconds, and a client kept alive meanwhile would send its next request into a socket about to close.
    public var isDraining: Bool { state.withLock { $0.draining } }

    var isFull: Bool { state.withLock { $0.occupancy >= configuration.maxConnections } }

    func reserve(_ connection: ConnectionCore) -> Bool {
        state.withLock { state in
            guard state.occupancy < configuration.maxConnections else { return false }
            state.reserved[connection.id] = .init(since: .now, core: connection)
            return true
        }
    }

    func claimUserSlot(_ connection: ConnectionCore, identity: VerifiedIdentity) async -> UserSlotClaim {
        connection.state.withLock {
            $0.identity = identity
            $0.authDeadline = nil
        }
        switch await register(
            connection,
            identity: identity,
            maxConnectionsPerUser: configuration.maxConnectionsPerUser
        )
        {
        case .registered(let count) where state.withLock({ $0.reserved[connection.id] != nil }):
            return .claimed(userConnections: count)
        case .registered:
            // The ticket expired while the registry was slow: no handshake for a connection already released (the
            // admission gives it up, which removes the record).
            return .unavailable
        case .closed:
            // Closed (ticket expiry, shutdown, the client left) while registering: no record is left.
            return .unavailable
        case .failed(let error):
            logger.error("connection store failed", metadata: ["realtime.error": "\(error)"])
            return .unavailable
        case .limitReached(let count):
            return .limitReached(userConnections: count)
        }
    }

    func publishAdmissionEvent(_ event: RealtimeEvent) async {
        await publishResolvedEvent(event)
    }
}
