/// Why the hub refused to admit a WebSocket upgrade, a first-message `auth`, an HTTP API request or an in-band
/// `refresh_token`. Every refusal of the admission policy is one of the ``Reason`` cases, and each reason decides
/// in one place what the client sees on every path: the HTTP ``status``, the error ``code`` of the JSON body (also
/// the `reason` label of `realtime_upgrade_rejections_total` and the key of ``HubStats/Server/rejectionsByReason``),
/// the WebSocket close code of a connection refused after the upgrade, and the `error` code of an in-band reply.
/// `Documentation/Protocol.md` lists them.
public struct AdmissionRejection: Error, Sendable, Hashable, CustomStringConvertible {
    /// The stable reasons of a refusal. The raw value is the error code clients receive.
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        /// No WebSocket endpoint at the upgrade's path. 404.
        case notFound = "not_found"
        /// The server is draining. 503.
        case shuttingDown = "shutting_down"
        /// The `Origin` header is not allowed by ``HubConfiguration/origin``, or there are two. 403.
        case originNotAllowed = "origin_not_allowed"
        /// The client address cannot be read. 400.
        case badRemoteAddress = "bad_remote_address"
        /// The address is blocked for earlier abuse. 429.
        case addressBlocked = "address_blocked"
        /// Too many attempts from the address, or upgrades of the user. 429.
        case rateLimited = "rate_limited"
        /// The server holds ``HubConfiguration/maxConnections``. 503.
        case serverFull = "server_full"
        /// `Authorization` is not `Bearer <token>`, or the request carries two credentials (two `Authorization`
        /// headers, two `token` query parameters). 401.
        case invalidAuthorization = "invalid_authorization"
        /// A token in the URL while ``HubConfiguration/allowQueryToken`` is off. 400.
        case queryTokenDisabled = "query_token_disabled"
        /// No token at all. 401.
        case missingToken = "missing_token"
        /// The verifier refused the token (too large, bad signature, expired…: the verifier's reason is only
        /// logged and counted). 401.
        case invalidToken = "invalid_token"
        /// A genuine token of the wrong kind, such as a refresh token. 401.
        case wrongTokenType = "wrong_token_type"
        /// The token's session was revoked (revocation-list mode). 401.
        case sessionRevoked = "session_revoked"
        /// Registry mode: the session is unknown, expired or revoked. 401.
        case sessionInactive = "session_inactive"
        /// Registry mode: the token names no session. 401.
        case sessionRequired = "session_required"
        /// A token without administrator privilege on the admin endpoint. 403.
        case adminRequired = "admin_required"
        /// The user holds ``HubConfiguration/maxConnectionsPerUser`` connections across the cluster. 429.
        case tooManyConnections = "too_many_connections"
        /// A backend (session store, connection store) failed. 503.
        case backendUnavailable = "backend_unavailable"

        /// The error code clients receive, and the metric label: the raw value.
        public var code: String { rawValue }

        /// The HTTP status of a refused request.
        public var status: Int {
            switch self {
            case .queryTokenDisabled, .badRemoteAddress: 400
            case .invalidAuthorization, .missingToken, .invalidToken, .wrongTokenType, .sessionRevoked,
                .sessionInactive, .sessionRequired:
                401
            case .originNotAllowed, .adminRequired: 403
            case .notFound: 404
            case .rateLimited, .addressBlocked, .tooManyConnections: 429
            case .serverFull, .shuttingDown, .backendUnavailable: 503
            }
        }

        /// The close code of a connection refused after its upgrade (first-message authentication): 4001 for a
        /// refused credential, 1008 for a limit, 1011 when a backend failed, 1001 when the server cannot take it.
        public var closeCode: CloseCode {
            switch self {
            case .rateLimited, .addressBlocked, .tooManyConnections: .policyViolation
            case .backendUnavailable: .internalError
            case .serverFull, .shuttingDown: .goingAway
            case .notFound, .originNotAllowed, .badRemoteAddress, .queryTokenDisabled, .invalidAuthorization,
                .missingToken, .invalidToken, .wrongTokenType, .sessionRevoked, .sessionInactive, .sessionRequired,
                .adminRequired:
                .authenticationFailed
            }
        }

        /// The `error` code of an in-band reply (a refused `refresh_token`, or `auth` with a token of the wrong
        /// kind). Reasons that say nothing more to a client than that its token was refused are `token_invalid`.
        public var protocolErrorCode: ProtocolErrorCode {
            switch self {
            case .wrongTokenType: .wrongTokenType
            case .sessionRevoked: .sessionRevoked
            case .sessionInactive: .sessionInactive
            case .rateLimited, .addressBlocked, .tooManyConnections: .rateLimited
            case .backendUnavailable, .serverFull, .shuttingDown: .unavailable
            case .notFound, .originNotAllowed, .badRemoteAddress, .queryTokenDisabled, .invalidAuthorization,
                .missingToken, .invalidToken, .sessionRequired, .adminRequired:
                .tokenInvalid
            }
        }

        /// A message safe to show the client: no token, no verifier detail.
        public var message: String {
            switch self {
            case .notFound: "no WebSocket endpoint here"
            case .shuttingDown: "server is shutting down"
            case .originNotAllowed: "origin not allowed"
            case .badRemoteAddress: "unusable client address"
            case .addressBlocked: "too many violations"
            case .rateLimited: "too many attempts; try again later"
            case .serverFull: "server is at capacity"
            case .invalidAuthorization: "expected Authorization: Bearer <token>"
            case .queryTokenDisabled: "tokens in the URL are disabled here; use Authorization: Bearer"
            case .missingToken: "authentication required: send Authorization: Bearer <token>"
            case .invalidToken: "authentication failed"
            case .wrongTokenType: "this kind of token (e.g. a refresh token) cannot be used here"
            case .sessionRevoked: "the session was revoked"
            case .sessionInactive: "session is not active"
            case .sessionRequired: "token names no session"
            case .adminRequired: "administrator privilege required"
            case .tooManyConnections: "connection limit per user reached"
            case .backendUnavailable: "try again later"
            }
        }

        /// When to try again, for reasons whose wait does not depend on a limiter or a block.
        var defaultRetryAfter: Duration? {
            switch self {
            case .serverFull, .tooManyConnections: .seconds(5)
            case .backendUnavailable: .seconds(2)
            default: nil
            }
        }
    }

    /// Why the hub refused.
    public var reason: Reason
    /// For 429 and 503: when to try again (sent as `Retry-After` and `retryAfterMs`).
    public var retryAfter: Duration?

    /// A refusal; `retryAfter` defaults to the reason's fixed wait, if it has one.
    public init(_ reason: Reason, retryAfter: Duration? = nil) {
        self.reason = reason
        self.retryAfter = retryAfter ?? reason.defaultRetryAfter
    }

    /// The HTTP status (400, 401, 403, 404, 429, 503).
    public var status: Int { reason.status }
    /// The stable machine-readable code (`invalid_token`, `rate_limited`, …), also counted in metrics.
    public var code: String { reason.code }
    /// A human-readable message safe to show the client.
    public var message: String { reason.message }

    public var description: String { "\(status) \(code)" }

    /// `{"error":{"code":…,"message":…}}` for the response body, with `retryAfterMs` when set.
    public var jsonBody: String {
        var error: JSONObject = ["code": .string(code), "message": .string(message)]
        if let retryAfter { error["retryAfterMs"] = .int(retryAfter.milliseconds) }
        return JSONWriter.string(["error": .object(error)])
    }

    /// `Retry-After` in whole seconds (rounded up), if any.
    public var retryAfterSeconds: Int? {
        retryAfter.map { Int(($0.milliseconds + 999) / 1000) }
    }

    /// The `WWW-Authenticate` header of a 401 (RFC 6750): the bare challenge when no token was sent,
    /// `error="invalid_token"` when one was refused; `nil` for other statuses.
    public var wwwAuthenticate: String? {
        guard status == 401 else { return nil }
        return reason == .missingToken
            ? #"Bearer realm="realtime""# : #"Bearer realm="realtime", error="invalid_token""#
    }
}
