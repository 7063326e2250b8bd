// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCore

extension JWTVerifier {
    /// What a ``JWTVerifier`` checks beyond the signature, and how claims become a `VerifiedIdentity`.
    ///
    /// ```swift
    /// var configuration = JWTVerifier.Configuration(issuer: "https://auth.example.com", audiences: ["realtime"])
    /// configuration.tokenType = .claim("token_use", equals: "access")
    /// configuration.claims.admin = .arrayContains("roles", "admin")
    /// ```
    public struct Configuration: Sendable {
        /// The issuer tokens must name in `iss`; `nil` accepts any (or no) issuer.
        public var issuer: String?
        /// Audiences this service answers to. When not empty, a token's `aud` (a string or an array of strings)
        /// must contain one of them. When empty, a token that has an `aud` claim is refused
        /// (RFC 7519 §4.1.3: a recipient that does not identify itself with the audience must reject it).
        public var audiences: Set<String>
        /// Allowed clock skew for `exp`, `nbf` and `iat`. Default 30 seconds.
        public var leeway: Duration
        /// Claims that must be present (any value but `null`). Default `["exp"]`: tokens that never expire are
        /// refused.
        public var requiredClaims: Set<String>
        /// The token's purpose, if it must be stated (e.g. `token_use` = `access`); `nil` checks nothing.
        public var tokenType: TokenType?
        /// The markers that make a token a refresh token, refused with
        /// `TokenVerificationError.Reason.wrongTokenType` whatever ``tokenType`` says. Default
        /// ``RefreshTokenMarkers/standard``; `nil` refuses no token for saying it is a refresh token.
        public var refreshTokenMarkers: RefreshTokenMarkers?
        /// The largest token accepted, in bytes (UTF-8), checked before anything else. Default 8192.
        public var maxTokenBytes: Int
        /// How claims map to the hub's identity.
        public var claims: ClaimsMapping
        /// Header parameters the host understands when a token lists them in `crit` (RFC 7515 §4.1.11).
        /// Default empty: any token with a `crit` header is refused.
        public var understoodCriticalHeaders: Set<String>

        /// A configuration; every parameter has the default of its property.
        public init(
            issuer: String? = nil,
            audiences: Set<String> = [],
            leeway: Duration = .seconds(30),
            requiredClaims: Set<String> = ["exp"],
            tokenType: TokenType? = nil,
            refreshTokenMarkers: RefreshTokenMarkers? = .standard,
            maxTokenBytes: Int = 8192,
            claims: ClaimsMapping = ClaimsMapping(),
            understoodCriticalHeaders: Set<String> = []
        ) {
            self.issuer = issuer
            self.audiences = audiences
            self.leeway = leeway
            self.requiredClaims = requiredClaims
            self.tokenType = tokenType
            self.refreshTokenMarkers = refreshTokenMarkers
            self.maxTokenBytes = maxTokenBytes
            self.claims = claims
            self.understoodCriticalHeaders = understoodCriticalHeaders
        }
    }

    /// The purpose a token must state, so that a refresh or ID token is not accepted as a connection
    /// credential.
    public struct TokenType: Sendable, Hashable {
        /// Where the value is read.
        public enum Location: Sendable, Hashable {
            /// A claim of the payload (e.g. `token_use`, `typ`).
            case payload
            /// A header parameter (e.g. `typ` = `at+jwt`, RFC 9068).
            case header
        }

        /// The claim or header parameter's name.
        public var name: String
        /// The value it must have (compared exactly).
        public var expected: String
        /// Where it is read.
        public var location: Location

        /// Requires `name` = `expected` in the payload, e.g. `.claim("typ", equals: "access")`.
        public static func claim(_ name: String, equals expected: String) -> TokenType {
            TokenType(name: name, expected: expected, location: .payload)
        }

        /// Requires the header parameter `name` = `expected`, e.g. `.header("typ", equals: "at+jwt")`.
        public static func header(_ name: String, equals expected: String) -> TokenType {
            TokenType(name: name, expected: expected, location: .header)
        }
    }

    /// What marks a token as a refresh token, which is never a connection credential.
    ///
    /// A token is refused (`TokenVerificationError.Reason.wrongTokenType`) when one of ``claims`` in its
    /// payload, or one of ``headerParameters`` in its header, is a string (or an array of strings holding one)
    /// equal to one of ``values``. Both sides are compared ignoring ASCII case, after trimming spaces, dropping
    /// media-type parameters (`; …`) and an `application/` prefix (RFC 7515 §4.1.9), so `Refresh`,
    /// `refresh+jwt` and `application/refresh+jwt` are the same marker. A marker of another JSON type (a
    /// number, an object) is not a refresh marker. The check runs only on authenticated tokens, after the
    /// signature.
    ///
    /// ```swift
    /// configuration.refreshTokenMarkers = .init(claims: ["token_use"], values: ["refresh", "offline"])
    /// ```
    public struct RefreshTokenMarkers: Sendable, Hashable {
        /// The payload claims read. Standard: `typ`, `token_use`, `type`.
        public let claims: [String]
        /// The header parameters read. Standard: `typ`.
        public let headerParameters: [String]
        /// The values that mean "refresh token", normalized (lowercased, without an `application/` prefix).
        public let values: Set<String>
        /// The UTF-8 length of the shortest value: normalizing never lengthens a value, so a shorter one (an
        /// access marker such as `JWT` or `access`) is passed over without being normalized.
        private let shortestValue: Int

        /// Markers read from `claims` and `headerParameters`; `values` are normalized as tokens' values are.
        public init(claims: [String], headerParameters: [String] = [], values: Set<String>) {
            self.claims = claims
            self.headerParameters = headerParameters
            self.values = Set(values.map { Self.normalize($0) })
            self.shortestValue = self.values.map(\.utf8.count).min() ?? .max
        }

        /// `typ`, `token_use` and `type` claims and the `typ` header saying `refresh`, `refresh_token`,
        /// `refresh-token` or `refresh+jwt` (any case, `application/` prefix or not).
        public static let standard = RefreshTokenMarkers(
            claims: ["typ", "token_use", "type"],
            headerParameters: ["typ"],
            values: ["refresh", "refresh_token", "refresh-token", "refresh+jwt"]
        )

        /// Whether `value`, a claim or header parameter's value, is a refresh marker.
        func isRefresh(_ value: JSONValue) -> Bool {
            if let string = value.stringValue { return isRefresh(string) }
            guard let array = value.arrayValue else { return false }
            return array.contains { $0.stringValue.map(isRefresh) ?? false }
        }

        private func isRefresh(_ string: String) -> Bool {
            string.utf8.count >= shortestValue && values.contains(Self.normalize(string))
        }

        /// ASCII-lowercased, trimmed, without media-type parameters or an `application/` prefix; never longer.
        static func normalize(_ value: String) -> String {
            let lowered = String(
                decoding: value.utf8.map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 },
                as: UTF8.self
            )
            var text = Substring(lowered)
            if let semicolon = text.firstIndex(of: ";") { text = text[..<semicolon] }
            while text.first == " " || text.first == "\t" { text.removeFirst() }
            while text.last == " " || text.last == "\t" { text.removeLast() }
            let prefix = "application/"
            return String(text.hasPrefix(prefix) ? text.dropFirst(prefix.count) : text)
        }
    }

    /// How a token's claims become a `VerifiedIdentity`.
    public struct ClaimsMapping: Sendable, Hashable {
        /// The claim holding the user id, a non-empty string. Default `sub`.
        public var userIDClaim: String
        /// The claim holding the session id, a string, if any. Default `sid`; `nil` maps none.
        public var sessionIDClaim: String?
        /// The claim listing roles (an array of strings, or one string), if any. Default `roles`.
        public var rolesClaim: String?
        /// What makes a token an administrator's. Default ``AdminRule/never``.
        public var admin: AdminRule

        /// A mapping; every parameter has the default of its property.
        public init(
            userIDClaim: String = "sub",
            sessionIDClaim: String? = "sid",
            rolesClaim: String? = "roles",
            admin: AdminRule = .never
        ) {
            self.userIDClaim = userIDClaim
            self.sessionIDClaim = sessionIDClaim
            self.rolesClaim = rolesClaim
            self.admin = admin
        }
    }

    /// The rule deciding `VerifiedIdentity.isAdmin`.
    ///
    /// A claim the rule names that is present with the wrong JSON type makes the token invalid
    /// (`TokenVerificationError.Reason.invalidClaim`), so a typo on the issuer's side is noticed instead of
    /// silently demoting (or promoting) someone.
    public struct AdminRule: Sendable, Hashable {
        indirect enum Backing: Hashable {
            case never
            case claimEquals(String, String)
            case arrayContains(String, String)
            case scopeContains(String, String)
            case booleanClaim(String)
            case anyOf([Backing])
        }

        let backing: Backing

        /// Nobody is an administrator.
        public static let never = AdminRule(backing: .never)

        /// The string claim `claim` equals `value`, e.g. `.claimEquals("role", "admin")`.
        public static func claimEquals(_ claim: String, _ value: String) -> AdminRule {
            AdminRule(backing: .claimEquals(claim, value))
        }

        /// The array-of-strings claim `claim` contains `value`, e.g. `.arrayContains("roles", "admin")`.
        public static func arrayContains(_ claim: String, _ value: String) -> AdminRule {
            AdminRule(backing: .arrayContains(claim, value))
        }

        /// The space-separated scope string (OAuth 2.0 `scope`; an array of strings, as `scp`, is accepted too)
        /// contains `scope`, e.g. `.scopeContains("realtime:admin")`.
        public static func scopeContains(_ scope: String, claim: String = "scope") -> AdminRule {
            AdminRule(backing: .scopeContains(claim, scope))
        }

        /// The boolean claim `claim` is `true`, e.g. `.booleanClaim("is_admin")`.
        public static func booleanClaim(_ claim: String) -> AdminRule {
            AdminRule(backing: .booleanClaim(claim))
        }

        /// Any of `rules` holds.
        public static func anyOf(_ rules: [AdminRule]) -> AdminRule {
            AdminRule(backing: .anyOf(rules.map(\.backing)))
        }
    }
}
