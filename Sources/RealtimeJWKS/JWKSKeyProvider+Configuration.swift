// SPDX-License-Identifier: Apache-2.0

public import RealtimeJWT

extension JWKSKeyProvider {
    /// Where the JWK Set is, how it is fetched and how long it is kept.
    public struct Configuration: Sendable, Hashable {
        /// Where the key set comes from.
        public enum Source: Sendable, Hashable {
            /// A JWK Set URL (`https` only).
            case url(String)
            /// OpenID Connect discovery: `<issuer>/.well-known/openid-configuration` names the set's `jwks_uri`; its
            /// `issuer` must be this one exactly. Discovery runs before the first fetch and again after a failure.
            case openIDIssuer(String)
        }

        public var source: Source
        /// A PEM file of CA certificates that replaces the system's trust roots (private PKI, tests). Certificates
        /// and host names are always verified.
        public var caFile: String?
        /// Time to establish the TCP connection. Default 5 s.
        public var connectTimeout: Duration
        /// Longest silence while reading the response. Default 10 s.
        public var readTimeout: Duration
        /// Deadline of one whole request. Default 15 s.
        public var requestTimeout: Duration
        /// The largest response accepted, checked while it streams in. Default and maximum 1 MiB.
        public var maximumBytes: Int
        /// Bounds of the cache lifetime that the response's `Cache-Control: max-age` asks for (`no-store` and
        /// `no-cache` mean the minimum). Defaults 1 min and 1 h.
        public var minimumLifetime: Duration
        public var maximumLifetime: Duration
        /// The lifetime when the response has no `Cache-Control` (then clamped too). Default 5 min.
        public var defaultLifetime: Duration
        /// A token with an unknown `kid` triggers a refetch at most once per this interval; other such tokens are
        /// refused at once, without waiting on the network, or join the fetch already running. Default 60 s.
        public var unknownKeyRefetchInterval: Duration
        /// The first retry after a failed fetch; each further failure doubles it, up to ``maximumRetryInterval``.
        /// The last good key set keeps serving meanwhile. Defaults 5 s and 5 min.
        public var retryInterval: Duration
        public var maximumRetryInterval: Duration
        /// The most usable keys a fetched set may hold; a set with more is refused (`invalid_key_set`). Identity
        /// providers publish a handful; the bound keeps the cost of a token without `kid`, which is checked against
        /// every key of its algorithm, small. Default 100, at most 1,000.
        public var maximumKeys: Int
        /// Algorithms of RSA keys without `alg` (see `JWTKeySet.init(jwks:rsaAlgorithms:publicKeysOnly:)`). Default RS256.
        public var rsaAlgorithms: Set<JWTAlgorithm>

        /// A configuration for `source` with the defaults above.
        public init(source: Source, caFile: String? = nil) {
            self.source = source
            self.caFile = caFile
            connectTimeout = .seconds(5)
            readTimeout = .seconds(10)
            requestTimeout = .seconds(15)
            maximumBytes = 1 << 20
            minimumLifetime = .seconds(60)
            maximumLifetime = .seconds(3600)
            defaultLifetime = .seconds(300)
            unknownKeyRefetchInterval = .seconds(60)
            retryInterval = .seconds(5)
            maximumRetryInterval = .seconds(300)
            maximumKeys = 100
            rsaAlgorithms = [.rs256]
        }

        /// Refuses what cannot work: a source that is not `https`, bounds out of order, non-positive durations, a
        /// size limit outside 1 byte … 1 MiB (the JWK Set parser's own bound), a key limit outside 1 … 1,000.
        public func validate() throws(JWKSError) {
            let location: String
            switch source {
            case .url(let url): location = url
            case .openIDIssuer(let issuer): location = issuer
            }
            guard location.lowercased().hasPrefix("https://"), location.count > "https://".count else {
                throw JWKSError(.invalidConfiguration, "the JWKS URL or issuer must be an https URL")
            }
            // `https://user:password@host/…`: the client would not send them, and they would show wherever the URL
            // is named.
            let authority = location.dropFirst("https://".count).prefix { $0 != "/" && $0 != "?" && $0 != "#" }
            guard !authority.contains("@") else {
                throw JWKSError(
                    .invalidConfiguration,
                    "the JWKS URL or issuer may not carry user information (user:password@); it would not be sent"
                )
            }
            let durations = [
                connectTimeout, readTimeout, requestTimeout, minimumLifetime, defaultLifetime,
                unknownKeyRefetchInterval, retryInterval,
            ]
            guard durations.allSatisfy({ $0 > .zero }) else {
                throw JWKSError(.invalidConfiguration, "timeouts, lifetimes and intervals must be positive")
            }
            guard minimumLifetime <= maximumLifetime, retryInterval <= maximumRetryInterval else {
                throw JWKSError(.invalidConfiguration, "a minimum exceeds its maximum")
            }
            guard (1...(1 << 20)).contains(maximumBytes) else {
                throw JWKSError(.invalidConfiguration, "maximumBytes must be from 1 to 1048576")
            }
            guard (1...1000).contains(maximumKeys) else {
                throw JWKSError(.invalidConfiguration, "maximumKeys must be from 1 to 1000")
            }
        }

        /// `lifetime` (from `Cache-Control`, or the default) within the bounds.
        func clamp(_ lifetime: Duration?) -> Duration {
            min(max(lifetime ?? defaultLifetime, minimumLifetime), maximumLifetime)
        }

        /// The wait before retry number `failures` (1 = the first).
        func retryDelay(afterFailures failures: Int) -> Duration {
            var delay = retryInterval
            for _ in 1..<max(1, min(failures, 32)) where delay < maximumRetryInterval { delay *= 2 }
            return min(delay, maximumRetryInterval)
        }
    }
}
