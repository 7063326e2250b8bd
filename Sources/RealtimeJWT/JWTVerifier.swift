// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto
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
            // The three decoded parts together are shorter than the token: one scratch buffer holds them all.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count) { scratch in
                Result { () throws(TokenVerificationError) in
                    let (header, payload) = try authenticate(bytes, scratch: scratch, keys: keys)
                    return try validate(payload, header: header, at: now)
                }
            }
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
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count) { scratch in
                Result { () throws(TokenVerificationError) in
                    let (header, payload) = try authenticate(bytes, scratch: scratch, keys: keys)
                    return (header.object, Array(payload))
                }
            }
        }.get()
    }

    /// Parses the authenticated payload and runs the claim checks.
    private func validate(
        _ payload: UnsafeBufferPointer<UInt8>,
        header: Members,
        at now: Timestamp
    ) throws(TokenVerificationError) -> VerifiedIdentity {
        let members: [JSONMember]?
        do {
            members = try payloadParser.parseObjectMembers(payload)
        } catch {
            throw TokenVerificationError(
                .malformed,
                error.kind == .duplicateKey
                    ? "payload names a claim twice" : "payload is not valid JSON (\(error.kind.rawValue))"
            )
        }
        guard let members else {
            throw TokenVerificationError(.malformed, "payload is not a JSON object")
        }
        return try ClaimsValidator(configuration: configuration, now: now).validate(Members(members), header: header)
    }

    /// Checks form, header and signature; returns the header's members and the decoded payload (in `scratch`,
    /// which has room for the token's length).
    private func authenticate(
        _ bytes: UnsafeBufferPointer<UInt8>,
        scratch: UnsafeMutableBufferPointer<UInt8>,
        keys: JWTKeySet
    ) throws(TokenVerificationError) -> (header: Members, payload: UnsafeBufferPointer<UInt8>) {
        // Compact serialization: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
        guard let base = bytes.baseAddress else {
            throw TokenVerificationError(.malformed, "not three dot-separated parts")
        }
        let count = bytes.count
        let firstDot = Self.index(of: UInt8(ascii: "."), in: base, from: 0, to: count)
        let secondDot = firstDot < 0 ? -1 : Self.index(of: UInt8(ascii: "."), in: base, from: firstDot + 1, to: count)
        if secondDot > 0, Self.index(of: UInt8(ascii: "."), in: base, from: secondDot + 1, to: count) >= 0 {
            throw TokenVerificationError(.malformed, "more than three parts")
        }
        guard secondDot > 0 else { throw TokenVerificationError(.malformed, "not three dot-separated parts") }
        let headerText = UnsafeBufferPointer(rebasing: bytes[0..<firstDot])
        let payloadText = UnsafeBufferPointer(rebasing: bytes[(firstDot + 1)..<secondDot])
        let signatureText = UnsafeBufferPointer(rebasing: bytes[(secondDot + 1)...])
        guard !headerText.isEmpty, !payloadText.isEmpty else {
            throw TokenVerificationError(.malformed, "empty header or payload")
        }
        // Decoded lengths are at most 3/4 of the texts', so header, signature and payload fit one after another.
        let out = scratch.baseAddress!

        // Header.
        guard let headerCount = Base64URL.decodedCount(headerText.count), Base64URL.decode(headerText, into: out)
        else {
            throw TokenVerificationError(.malformed, "header is not unpadded base64url")
        }
        let headerMembers: [JSONMember]?
        do {
            headerMembers = try headerParser.parseObjectMembers(UnsafeBufferPointer(start: out, count: headerCount))
        } catch {
            throw TokenVerificationError(.malformed, "header is not valid JSON (\(error.kind.rawValue))")
        }
        guard let headerMembers else {
            throw TokenVerificationError(.malformed, "header is not a JSON object")
        }
        let header = Members(headerMembers)
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
        // The keys to try: those with the token's kid, or all; `JWTKey.verify` skips a key not bound to the
        // algorithm. No array is built for them.
        let withKID = kid.map { keys.keys(withKID: $0) }
        if let withKID, !withKID.contains(where: { keys.keys[$0].allowed.contains(algorithm) }) {
            throw TokenVerificationError(.unknownKey, "no key has this kid and is bound to \(algorithm)")
        }
        guard !signatureText.isEmpty else { throw TokenVerificationError(.badSignature, "empty signature") }
        let signatureStart = out + headerCount
        guard let signatureCount = Base64URL.decodedCount(signatureText.count),
            Base64URL.decode(signatureText, into: signatureStart)
        else {
            throw TokenVerificationError(.malformed, "signature is not unpadded base64url")
        }
        let signature = UnsafeRawBufferPointer(start: signatureStart, count: signatureCount)
        let signingInput = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<secondDot]))
        let verified =
            if let withKID {
                withKID.contains { keys.keys[$0].verify(signature, for: signingInput, algorithm: algorithm) }
            } else {
                keys.keys.contains { $0.verify(signature, for: signingInput, algorithm: algorithm) }
            }
        guard verified else { throw TokenVerificationError(.badSignature, "signature does not verify (\(algorithm))") }

        // Payload (authenticated from here on).
        let payloadStart = signatureStart + signatureCount
        guard let payloadCount = Base64URL.decodedCount(payloadText.count),
            Base64URL.decode(payloadText, into: payloadStart)
        else {
            throw TokenVerificationError(.malformed, "payload is not unpadded base64url")
        }
        return (header, UnsafeBufferPointer(start: payloadStart, count: payloadCount))
    }

    /// The index of the first `byte` in `base[from..<to]`, or -1.
    private static func index(of byte: UInt8, in base: UnsafePointer<UInt8>, from: Int, to: Int) -> Int {
        guard from < to, let found = memchr(base + from, Int32(byte), to - from) else { return -1 }
        return UnsafeRawPointer(found) - UnsafeRawPointer(base)
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
