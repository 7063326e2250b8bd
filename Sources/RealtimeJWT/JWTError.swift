// SPDX-License-Identifier: Apache-2.0

/// Why a key could not be loaded or a token could not be signed.
///
/// Refusals of tokens are `TokenVerificationError`s (RealtimeCore); this error is for the host's own
/// mistakes: an unreadable PEM, a JWK of the wrong shape, an algorithm that does not fit its key.
/// ``message`` never contains key material.
public struct JWTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A stable category of ``JWTError``.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Backing: String {
            case invalidKey = "invalid_key"
            case unsupportedKey = "unsupported_key"
            case algorithmMismatch = "algorithm_mismatch"
            case invalidJWK = "invalid_jwk"
            case cannotSign = "cannot_sign"
            case signingFailed = "signing_failed"
        }

        let backing: Backing

        /// The key material is unreadable or inconsistent (bad PEM, point not on the curve, empty secret…).
        public static let invalidKey = Code(backing: .invalidKey)
        /// The key is of a type or size this library does not use (DSA, X25519, RSA under 2048 bits…).
        public static let unsupportedKey = Code(backing: .unsupportedKey)
        /// The algorithm does not fit the key (e.g. `HS256` for an RSA key, `ES384` for a P-256 key).
        public static let algorithmMismatch = Code(backing: .algorithmMismatch)
        /// A JWK or JWK Set is not of the shape RFC 7517/7518 describe.
        public static let invalidJWK = Code(backing: .invalidJWK)
        /// The key cannot sign (a public key).
        public static let cannotSign = Code(backing: .cannotSign)
        /// OpenSSL failed to sign.
        public static let signingFailed = Code(backing: .signingFailed)

        public var description: String { backing.rawValue }
    }

    /// What went wrong.
    public var code: Code
    /// A sentence for logs (never key material).
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
