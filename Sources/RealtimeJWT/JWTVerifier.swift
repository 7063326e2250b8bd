// SPDX-License-Identifier: Apache-2.0

public import RealtimeCore
internal import Synchronization

/// Verifies JSON Web Tokens (RFC 7519, JWS compact serialization) with OpenSSL's libcrypto and maps their
/// claims to a ``VerifiedIdentity``.
///
/// Verification is strict: three base64url parts without padding, JSON object header and payload without
/// duplicate members, an `alg` that a key of the ``JWTKeySet`` is bound to (never `none`), a signature of
/// exactly the algorithm's form, no unknown `crit` parameter, then `exp`, `nbf`, `iat`, `iss`, `aud`, the token
/// type and the required claims. The payload is parsed only after the signature has been verified. Every
/// refusal is a ``TokenVerificationError`` with a ``TokenVerificationError/Reason``; its detail never contains
/// the token, a claim value or key material.
///
/// The verifier is safe to share between tasks. Its keys can be replaced at run time (``replaceKeys(_:)``)
/// without pausing verification: each verification takes the current key set under a lock held only to copy
/// one reference, and verifications in flight finish with the set they started with.
///
/// ```swift
/// let verifier = JWTVerifier(
///     keys: JWTKeySet([try .hmac(secret: jwtSecret)]),
///     configuration: .init(issuer: "auth-service", tokenType: .claim("typ", equals: "access"))
/// )
/// let identity = try await verifier.verify(token)
/// ```
public final class JWTVerifier: TokenVerifier {
    /// What is checked and how claims are mapped.
    public let configuration: Configuration
    private let keyStore: Mutex<JWTKeySet>
    private let headerParser: JSONParser
    private let payloadParser: JSONParser

    /// A verifier with `keys` and `configuration`.
    public init(keys: JWTKeySet, configuration: Configuration = Configuration()) {
        self.configuration = configuration
        self.keyStore = Mutex(keys)
        let maxBytes = max(configuration.maxTokenBytes, 0)
        self.headerParser = JSONParser(limits: .init(maxBytes: maxBytes, maxDepth: 8, rejectDuplicateKeys: true))
        self.payloadParser = JSONParser(limits: .init(maxBytes: maxBytes, maxDepth: 32, rejectDuplicateKeys: true))
    }

    /// The current key set.
    public var keys: JWTKeySet { keyStore.withLock { $0 } }

    /// Replaces the key set (key rotation). Verifications already running finish with the previous set.
    public func replaceKeys(_ keys: JWTKeySet) {
        keyStore.withLock { $0 = keys }
    }

    /// Verifies `token` at the current time.
    ///
    /// - Throws: ``TokenVerificationError`` with the reason of the refusal.
    public func verify(_ token: String) async throws(TokenVerificationError) -> VerifiedIdentity {
        try verify(token, at: .now())
    }

    /// Verifies `token` as if the time were `now` (for tools and tests; time checks use ``Configuration/leeway``).
    ///
    /// - Throws: ``TokenVerificationError`` with the reason of the refusal.
    public func verify(_ token: String, at now: Timestamp) throws(TokenVerificationError) -> VerifiedIdentity {
        guard token.utf8.count <= configuration.maxTokenBytes else {
            throw TokenVerificationError(.tooLarge, "token exceeds \(configuration.maxTokenBytes) bytes")
        }
        let keys = keyStore.withLock { $0 }
        var token = token
        return try token.withUTF8 { bytes in
            Result { () throws(TokenVerificationError) in try verify(bytes, at: now, keys: keys) }
        }.get()
    }

    /// Checks the token's form, header and signature, and returns the header and the decoded (authenticated)
    /// payload bytes without interpreting them: the JWS layer alone, for tests with non-JSON payloads (RFC 7515
    /// Appendix A.4, RFC 8037 Appendix A.4).
    package func verifySignature(_ token: String) throws(TokenVerificationError) -> (
        header: JSONObject, payload: [UInt8]
    ) {
        guard token.utf8.count <= configuration.maxTokenBytes else {
            throw TokenVerificationError(.tooLarge, "token exceeds \(configuration.maxTokenBytes) bytes")
        }
        let keys = keyStore.withLock { $0 }
        var token = token
        return try token.withUTF8 { bytes in
            Result { () throws(TokenVerificationError) in try authenticate(bytes, keys: keys) }
        }.get()
    }

    private func verify(
        _ bytes: UnsafeBufferPointer<UInt8>,
        at now: Timestamp,
        keys: JWTKeySet
    ) throws(TokenVerificationError) -> VerifiedIdentity {
        let (header, payloadBytes) = try authenticate(bytes, keys: keys)
        let payloadValue: JSONValue
        do {
            payloadValue = try payloadParser.parse(payloadBytes)
        } catch {
            throw TokenVerificationError(
                .malformed,
                error.kind == .duplicateKey
                    ? "payload names a claim twice" : "payload is not valid JSON (\(error.kind.rawValue))"
            )
        }
        guard let claims = payloadValue.objectValue else {
            throw TokenVerificationError(.malformed, "payload is not a JSON object")
        }
        return try ClaimsValidator(configuration: configuration, now: now).validate(claims, header: header)
    }

    private func authenticate(
        _ bytes: UnsafeBufferPointer<UInt8>,
        keys: JWTKeySet
    ) throws(TokenVerificationError) -> (header: JSONObject, payload: [UInt8]) {
        // Compact serialization: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
        var firstDot = -1
        var secondDot = -1
        for index in 0..<bytes.count where bytes[index] == UInt8(ascii: ".") {
            if firstDot < 0 {
                firstDot = index
            } else if secondDot < 0 {
                secondDot = index
            } else {
                throw TokenVerificationError(.malformed, "more than three parts")
            }
        }
        guard secondDot > 0 else { throw TokenVerificationError(.malformed, "not three dot-separated parts") }
        let headerText = UnsafeBufferPointer(rebasing: bytes[0..<firstDot])
        let payloadText = UnsafeBufferPointer(rebasing: bytes[(firstDot + 1)..<secondDot])
        let signatureText = UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)...])
        guard !headerText.isEmpty, !payloadText.isEmpty else {
            throw TokenVerificationError(.malformed, "empty header or payload")
        }

        // Header.
        guard let headerBytes = Base64URL.decode(headerText) else {
            throw TokenVerificationError(.malformed, "header is not unpadded base64url")
        }
        let headerValue: JSONValue
        do {
            headerValue = try headerParser.parse(headerBytes)
        } catch {
            throw TokenVerificationError(.malformed, "header is not valid JSON (\(error.kind.rawValue))")
        }
        guard let header = headerValue.objectValue else {
            throw TokenVerificationError(.malformed, "header is not a JSON object")
        }
        guard let algValue = header["alg"] else { throw TokenVerificationError(.malformed, "header has no alg") }
        guard let algName = algValue.stringValue else {
            throw TokenVerificationError(.malformed, "header alg is not a string")
        }
        guard let algorithm = JWTAlgorithm(name: algName) else {
            throw TokenVerificationError(
                .unsupportedAlgorithm,
                algName.lowercased() == "none" ? "unsecured tokens (alg none) are refused" : "alg is not supported"
            )
        }
        if let crit = header["crit"] { try checkCritical(crit) }
        var kid: String?
        if let kidValue = header["kid"] {
            guard let string = kidValue.stringValue else {
                throw TokenVerificationError(.malformed, "header kid is not a string")
            }
            kid = string
        }

        // Key and signature.
        guard keys.algorithms.contains(algorithm) else {
            throw TokenVerificationError(.unsupportedAlgorithm, "no key is bound to \(algorithm)")
        }
        var candidates: [Int]
        if let kid {
            candidates = keys.keys(withKID: kid)
            candidates.removeAll { !keys.keys[$0].allowed.contains(algorithm) }
            guard !candidates.isEmpty else {
                throw TokenVerificationError(.unknownKey, "no key has this kid and is bound to \(algorithm)")
            }
        } else {
            candidates = keys.keys.indices.filter { keys.keys[$0].allowed.contains(algorithm) }
        }
        guard !signatureText.isEmpty else { throw TokenVerificationError(.badSignature, "empty signature") }
        guard let signature = Base64URL.decode(signatureText) else {
            throw TokenVerificationError(.malformed, "signature is not unpadded base64url")
        }
        let signingInput = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<secondDot]))
        let verified = signature.withUnsafeBytes { signature in
            candidates.contains { keys.keys[$0].verify(signature, for: signingInput, algorithm: algorithm) }
        }
        guard verified else { throw TokenVerificationError(.badSignature, "signature does not verify (\(algorithm))") }

        // Payload (authenticated from here on).
        guard let payloadBytes = Base64URL.decode(payloadText) else {
            throw TokenVerificationError(.malformed, "payload is not unpadded base64url")
        }
        return (header, payloadBytes)
    }

    /// Refuses a `crit` header that is malformed or lists a parameter the host does not understand.
    private func checkCritical(_ crit: JSONValue) throws(TokenVerificationError) {
        guard let names = crit.arrayValue, !names.isEmpty else {
            throw TokenVerificationError(.malformed, "crit is not a non-empty array")
        }
        var seen = Set<String>()
        for value in names {
            guard let name = value.stringValue, seen.insert(name).inserted else {
                throw TokenVerificationError(.malformed, "crit lists a non-string or a name twice")
            }
            // RFC 7515 §4.1.11: names defined by the JWS/JWA specifications must not be listed.
            guard !Self.registeredHeaders.contains(name) else {
                throw TokenVerificationError(.malformed, "crit lists a registered header parameter")
            }
        }
        guard seen.isSubset(of: configuration.understoodCriticalHeaders) else {
            throw TokenVerificationError(
                .unsupportedCritical,
                "crit lists a parameter this verifier does not understand"
            )
        }
    }

    private static let registeredHeaders: Set<String> = [
        "alg", "jku", "jwk", "kid", "x5u", "x5c", "x5t", "x5t#S256", "typ", "cty", "crit", "enc", "zip",
    ]
}
