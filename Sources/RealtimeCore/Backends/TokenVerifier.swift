/// Why a token was refused.
///
/// The hub counts refusals by ``Reason`` in metrics and logs them, while the client only ever learns that
/// authentication failed.
public struct TokenVerificationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable, machine-readable refusal reason (`bad_signature`, `expired`, …).
    public struct Reason: Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not a token of the expected form (bad encoding, not JSON, wrong structure).
        public static let malformed = Reason("malformed")
        /// The token names an algorithm the verifier does not accept (including `none`).
        public static let unsupportedAlgorithm = Reason("unsupported_algorithm")
        /// No key fits the token's `kid` and algorithm.
        public static let unknownKey = Reason("unknown_key")
        /// The signature does not verify.
        public static let badSignature = Reason("bad_signature")
        /// The token has expired (`exp`).
        public static let expired = Reason("expired")
        /// The token expires later than the hub remembers a revocation
        /// (``HubConfiguration/revocationRetention`` from now), so a revocation could be forgotten while the token
        /// still works. Set by the hub's admission, for every verifier.
        public static let lifetimeTooLong = Reason("lifetime_too_long")
        /// The token is not valid yet (`nbf`).
        public static let notYetValid = Reason("not_yet_valid")
        /// The token claims to have been issued in the future (`iat`).
        public static let issuedInFuture = Reason("issued_in_future")
        /// `iss` is not the configured issuer.
        public static let wrongIssuer = Reason("wrong_issuer")
        /// `aud` does not contain the configured audience.
        public static let wrongAudience = Reason("wrong_audience")
        /// A required claim is missing.
        public static let missingClaim = Reason("missing_claim")
        /// A claim has the wrong type or an invalid value.
        public static let invalidClaim = Reason("invalid_claim")
        /// The token is meant for another purpose (e.g. a refresh token).
        public static let wrongTokenType = Reason("wrong_token_type")
        /// The token is larger than the configured limit.
        public static let tooLarge = Reason("too_large")
        /// The token or its session was revoked.
        public static let revoked = Reason("revoked")
        /// The token is not known (in-memory verifier).
        public static let unknownToken = Reason("unknown_token")
        /// The header lists a critical extension the verifier does not understand (`crit`).
        public static let unsupportedCritical = Reason("unsupported_critical")
    }

    public var reason: Reason
    /// Detail for logs. Never contains the token or key material.
    public var detail: String

    public init(_ reason: Reason, _ detail: String = "") {
        self.reason = reason
        self.detail = detail
    }

    public var description: String { detail.isEmpty ? reason.rawValue : "\(reason.rawValue): \(detail)" }
}

/// Turns a bearer token into a ``VerifiedIdentity``.
///
/// Implementations must be safe to call from many tasks at once and must not block the calling thread on
/// I/O. The core ships ``StaticTokenVerifier`` (a table of tokens, for tests and development); the
/// `RealtimeJWT` product verifies JSON Web Tokens with OpenSSL.
public protocol TokenVerifier: Sendable {
    /// Verifies `token` and returns who it speaks for, or throws why it was refused.
    func verify(_ token: String) async throws(TokenVerificationError) -> VerifiedIdentity

    /// The verifier's health, reported by ``RealtimeHub/healthCheck()`` as the `tokenVerifier` component (e.g. a
    /// verifier whose keys come from a remote key set that could not be refreshed). Default: healthy.
    func healthCheck() async -> ComponentHealth
}

extension TokenVerifier {
    public func healthCheck() async -> ComponentHealth { .healthy }
}
