// SPDX-License-Identifier: Apache-2.0

public import RealtimeCore

/// Makes compact JWS tokens (JWTs) with a secret or private ``JWTKey``, for host services, development
/// tokens and tests.
///
/// ```swift
/// let signer = try JWTSigner(key: .hmac(secret: jwtSecret))
/// let token = try signer.sign(["sub": "user-1", "sid": "s-1", "exp": .int(Timestamp.now().secondsSinceEpoch + 900)])
/// ```
public struct JWTSigner: Sendable {
    /// The signing key.
    public let key: JWTKey
    /// The algorithm written in `alg` and used to sign.
    public let algorithm: JWTAlgorithm

    /// A signer with `key`, which must be a secret or a private key.
    ///
    /// - Parameters:
    ///   - key: The key; its `kid`, if any, is written in every token's header.
    ///   - algorithm: The algorithm to sign with; `nil` takes the key's algorithm when it is bound to exactly one.
    /// - Throws: ``JWTError/Code/cannotSign`` for a public key, ``JWTError/Code/algorithmMismatch`` when the
    ///   algorithm is not one the key is bound to or cannot be chosen.
    public init(key: JWTKey, algorithm: JWTAlgorithm? = nil) throws(JWTError) {
        guard key.canSign else { throw JWTError(.cannotSign, "a public key cannot sign") }
        if let algorithm {
            guard key.allowed.contains(algorithm) else {
                throw JWTError(.algorithmMismatch, "the key is not bound to \(algorithm)")
            }
            self.algorithm = algorithm
        } else {
            let algorithms = key.algorithms
            guard algorithms.count == 1, let only = algorithms.first else {
                throw JWTError(.algorithmMismatch, "the key serves several algorithms; name one")
            }
            self.algorithm = only
        }
        self.key = key
    }

    /// Signs `claims` and returns the compact token.
    ///
    /// The header is `{"alg":…,"typ":"JWT"}` plus `kid` when the key has one, plus `header` (which may add
    /// parameters such as `cty`, but cannot change `alg` or `kid`).
    ///
    /// - Throws: ``JWTError/Code/signingFailed`` if OpenSSL fails.
    public func sign(_ claims: JSONObject, header: JSONObject = [:]) throws(JWTError) -> String {
        var headerObject = header
        headerObject["alg"] = .string(algorithm.name)
        if headerObject["typ"] == nil { headerObject["typ"] = "JWT" }
        headerObject["kid"] = key.kid.map(JSONValue.string)
        return try sign(
            rawHeader: JSONWriter.bytes(.object(headerObject)),
            rawPayload: JSONWriter.bytes(.object(claims))
        )
    }

    /// Signs an arbitrary payload with an arbitrary header, both given as bytes, without checking them.
    ///
    /// Used by tests to build tokens no well-behaved issuer makes (duplicate claims, a non-object payload).
    package func sign(rawHeader: [UInt8], rawPayload: [UInt8]) throws(JWTError) -> String {
        var token: [UInt8] = []
        token.reserveCapacity((rawHeader.count + rawPayload.count) * 4 / 3 + 200)
        rawHeader.withUnsafeBytes { Base64URL.encode($0, into: &token) }
        token.append(UInt8(ascii: "."))
        rawPayload.withUnsafeBytes { Base64URL.encode($0, into: &token) }
        let signature = try token.withUnsafeBytes { input in
            Result { () throws(JWTError) in try key.sign(input, algorithm: algorithm) }
        }.get()
        token.append(UInt8(ascii: "."))
        signature.withUnsafeBytes { Base64URL.encode($0, into: &token) }
        return String(decoding: token, as: UTF8.self)
    }
}
