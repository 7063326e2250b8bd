/// What an admission attempt is: the steps of the one pipeline, the paths a token enters by (each a set of those
/// steps), the attempt itself and what an admitted one holds. The pipeline that runs them is ``Admission``.
extension Admission {
    /// The steps of the pipeline, in the order they run. A path's ``Path/steps`` names the ones it takes.
    struct Steps: OptionSet, Sendable, Hashable {
        let rawValue: UInt16

        /// The request's path names an endpoint (`not_found`).
        static let endpoint = Steps(rawValue: 1 << 0)
        /// The server is not draining (`shutting_down`).
        static let serving = Steps(rawValue: 1 << 1)
        /// The `Origin` header passes ``HubConfiguration/origin`` (`origin_not_allowed`).
        static let origin = Steps(rawValue: 1 << 2)
        /// The client address: resolved through trusted proxies (`bad_remote_address`), not blocked
        /// (`address_blocked`), within the path's per-address rate limit (`rate_limited`).
        static let address = Steps(rawValue: 1 << 3)
        /// With ``address``: a request whose host cannot tell its peer skips the address checks.
        static let unknownPeerAllowed = Steps(rawValue: 1 << 4)
        /// Room for one more connection on this server (`server_full`), before the token is verified.
        static let capacity = Steps(rawValue: 1 << 5)
        /// The token may come in `Authorization: Bearer` (`invalid_authorization` if malformed).
        static let bearerHeader = Steps(rawValue: 1 << 6)
        /// The token may come in `?token=` (`query_token_disabled` unless ``HubConfiguration/allowQueryToken``).
        static let queryToken = Steps(rawValue: 1 << 7)
        /// No token is no refusal when ``HubConfiguration/firstMessageAuthentication`` is on: the connection is
        /// admitted without an identity and authenticates with its first message.
        static let deferrableToken = Steps(rawValue: 1 << 8)
        /// The token's session is active and its user's tokens of its `iat` are not revoked (`session_revoked`,
        /// `session_inactive`, `session_required`, `backend_unavailable`).
        static let session = Steps(rawValue: 1 << 9)
        /// Administrator privilege on the admin endpoint (`admin_required`).
        static let privilege = Steps(rawValue: 1 << 10)
        /// A server slot reserved for the new connection (`server_full`).
        static let reservation = Steps(rawValue: 1 << 11)
        /// The per-user attempt rate limit, ``HubConfiguration/RateLimits-swift.struct/connectionsPerUser``
        /// (`rate_limited`).
        static let userRateLimit = Steps(rawValue: 1 << 12)
        /// The user's connection slot in the cluster registry under ``HubConfiguration/maxConnectionsPerUser``
        /// (`too_many_connections`, with `session.concurrent_limit` to administrators; `backend_unavailable`).
        static let userSlot = Steps(rawValue: 1 << 13)
    }

    /// The ways a token enters the hub. Verification (size, signature, claims) and the accounting of its failures
    /// belong to every path.
    enum Path: String, Sendable, Hashable, CaseIterable {
        /// A WebSocket upgrade request.
        case upgrade
        /// The `auth` message of a connection admitted without a token.
        case firstMessage = "first_message"
        /// An HTTP API request: no connection, so no reservation, user rate limit or slot.
        case api
        /// An in-band `refresh_token`: the connection already holds its slot; the user's attempt rate limit applies.
        case refresh

        var steps: Steps {
            switch self {
            case .upgrade:
                [
                    .endpoint, .serving, .origin, .address, .capacity, .bearerHeader, .queryToken, .deferrableToken,
                    .session, .privilege, .reservation, .userRateLimit, .userSlot,
                ]
            case .firstMessage: [.session, .privilege, .userRateLimit, .userSlot]
            case .api: [.address, .unknownPeerAllowed, .bearerHeader, .session]
            // The per-user attempt rate limit too: every refresh publishes `authentication.token.refresh` to the
            // `admins` stream, and an unlimited flood of them pushed real events out of the administrators' history
            // (fuzz: 1,187 entries in 8 s from one user's ten connections).
            case .refresh: [.session, .privilege, .userRateLimit]
            }
        }

        /// The per-address rate limit of the ``Steps/address`` step.
        func addressRateLimit(_ limits: HubConfiguration.RateLimits) -> RateLimitPolicy {
            self == .api ? limits.apiRequestsPerIP : limits.connectionsPerIP
        }
    }

    /// One attempt to enter: an HTTP request (upgrade, API) or an in-band message on a connection.
    struct Attempt: Sendable {
        let path: Path
        let request: UpgradeRequest?
        let messageToken: String?
        let connection: ConnectionCore?
        /// The verifier, when not the hub's own (the API may have its own).
        let verifier: (any TokenVerifier)?

        static func upgrade(_ request: UpgradeRequest) -> Attempt {
            Attempt(path: .upgrade, request: request, messageToken: nil, connection: nil, verifier: nil)
        }

        static func api(_ request: UpgradeRequest, verifier: (any TokenVerifier)?) -> Attempt {
            Attempt(path: .api, request: request, messageToken: nil, connection: nil, verifier: verifier)
        }

        static func firstMessage(token: String, on connection: ConnectionCore) -> Attempt {
            Attempt(path: .firstMessage, request: nil, messageToken: token, connection: connection, verifier: nil)
        }

        static func refresh(token: String, on connection: ConnectionCore) -> Attempt {
            Attempt(path: .refresh, request: nil, messageToken: token, connection: connection, verifier: nil)
        }
    }

    /// What an admitted attempt holds.
    struct Admitted: Sendable {
        /// `nil` only for an upgrade whose token is deferred to the first message.
        var identity: VerifiedIdentity?
        /// The connection: reserved by an upgrade, or the one the message came on.
        var connection: ConnectionCore?
        /// The user's connections in the cluster after the slot claim.
        var userConnections: Int?
        /// When the admission started (before it read the session store): activation refuses the connection if
        /// its session's connections were closed on this server after that (``RecentRevocations``).
        var startedAt: ContinuousClock.Instant
    }
}
