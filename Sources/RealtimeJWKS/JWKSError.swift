// SPDX-License-Identifier: Apache-2.0

/// Why a JWK Set could not be fetched or was refused. The message names the URL's host and the check that failed,
/// never key material.
public struct JWKSError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable code.
    public enum Code: String, Sendable, Hashable {
        /// The configuration is unusable (not an `https` URL, an unreadable CA file, inconsistent bounds).
        case invalidConfiguration = "invalid_configuration"
        /// The server could not be reached, the TLS handshake failed (e.g. an untrusted certificate) or a timeout
        /// passed.
        case unreachable
        /// The server answered with a status other than 200.
        case httpStatus = "http_status"
        /// The response is not JSON (`Content-Type` other than `application/json` or `application/jwk-set+json`).
        case contentType = "content_type"
        /// The response is larger than ``JWKSKeyProvider/Configuration/maximumBytes``.
        case tooLarge = "too_large"
        /// The response is not a usable JWK Set: invalid UTF-8 or JSON, a malformed supported key, or no key this
        /// library can verify with.
        case invalidKeySet = "invalid_key_set"
        /// OpenID Connect discovery failed: no `jwks_uri`, or an `issuer` other than the configured one.
        case discovery
        /// The new keys were refused by the key store (a key that is also a refresh key).
        case refusedByStore = "refused_by_store"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The freshness a response allows: `Cache-Control`'s `max-age` (RFC 9111 §5.2.2.1), `no-store` and `no-cache`
/// (both mean: refetch as soon as the minimum allows).
enum CacheControl {
    /// The lifetime the header gives, `.zero` for `no-store`/`no-cache`, or nil when it says nothing usable.
    static func lifetime(_ header: String?) -> Duration? {
        guard let header else { return nil }
        var maxAge: Duration?
        for directive in header.split(separator: ",") {
            // `omittingEmptySubsequences: false`: a directive `=` or `` is two or one empty parts, never none.
            let parts = directive.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).map {
                $0.trimming(" \t\"")
            }
            switch parts.first?.lowercased() {
            case "no-store", "no-cache":
                return .zero
            case "max-age":
                // Delta-seconds: digits only; absurdly large values are the maximum anyway.
                guard parts.count == 2, !parts[1].isEmpty, parts[1].utf8.allSatisfy({ (48...57).contains($0) }) else {
                    continue
                }
                maxAge = .seconds(Int64(parts[1].prefix(12)) ?? 0)
            default:
                continue
            }
        }
        return maxAge
    }
}

extension Substring {
    func trimming(_ set: String) -> String {
        let characters = Set(set)
        return String(
            drop(while: { characters.contains($0) }).reversed().drop(while: { characters.contains($0) }).reversed()
        )
    }
}
