// SPDX-License-Identifier: Apache-2.0

public import RealtimeCore

#if canImport(Glibc)
    internal import Glibc
#elseif canImport(Musl)
    internal import Musl
#else
    internal import Darwin
#endif

/// Verifies JSON Web Tokens (RFC 7519, JWS compact serialization) with OpenSSL's libcrypto and maps their
/// claims to a `VerifiedIdentity`.
///
/// Verification is strict: three base64url parts without padding, JSON object header and payload without
/// duplicate members, an `alg` that a key of the ``JWTKeySet`` is bound to (never `none`), a signature of
/// exactly the algorithm's form, no unknown `crit` parameter, then `exp`, `nbf`, `iat`, `iss`, `aud`, the token
/// type and the required claims. The payload is parsed only after the signature has been verified. Every
/// refusal is a `TokenVerificationError` with a `TokenVerificationError.Reason`; its detail never contains
/// the token, a claim value or key material.
///
/// Refresh keys (``refreshKeys``, e.g. the key of `JWT_REFRESH_SECRET`) never accept a token: they are tried
/// only on a token the access keys refuse for its key or signature, and a token whose signature verifies
/// under one is refused with `TokenVerificationError.Reason.wrongTokenType` instead, so a refresh token
/// that states no type is still recognised. A token that fails both is refused exactly as without refresh keys.
///
/// The verifier is safe to share between tasks. Its keys live in a ``JWTKeyStore`` (``keyStore``) and can be
/// replaced there at run time without pausing verification: each verification takes the current key sets under a
/// lock held only to copy one reference, and verifications in flight finish with the sets they started with. With
/// an ``JWTUnknownKeyHandler`` (e.g. `JWKSKeyProvider`), a token whose `kid` names no current key makes the
/// verifier ask it for new keys (rate-limited by the handler) and check the token once more.
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
    /// The keys: replace them here (``JWTKeyStore/replaceKeys(_:)``) to rotate.
    public let keyStore: JWTKeyStore
    /// Asked for new keys when a token names an unknown `kid`.
    private let unknownKeyHandler: (any JWTUnknownKeyHandler)?
    private let headerParser: JSONParser
    private let payloadParser: JSONParser

    /// A verifier with `keys` and `configuration`.
    public convenience init(keys: JWTKeySet, configuration: Configuration = Configuration()) {
        // No refresh keys: nothing to check.
        self.init(keys: JWTKeyStore(ring: .init(access: keys, refresh: .empty)), configuration: configuration)
    }

    /// A verifier with access `keys` and `refreshKeys`, which recognise refresh tokens and never accept one.
    ///
    /// - Throws: ``JWTError/Code/invalidKey`` when a refresh key is also an access key (the same HMAC secret
    ///   for a common algorithm), which would make every refresh token an access token.
    public convenience init(
        keys: JWTKeySet,
        refreshKeys: JWTKeySet,
        configuration: Configuration = Configuration()
    ) throws(JWTError) {
        self.init(keys: try JWTKeyStore(keys: keys, refreshKeys: refreshKeys), configuration: configuration)
    }

    /// A verifier of the keys in `store`, which may change at run time (a host's key reload, a JWKS provider).
    ///
    /// - Parameter unknownKeyHandler: asked for new keys when a token's `kid` names no key of the store (or names
    ///   one for an algorithm no key serves); when it reports new keys, the token is checked once more.
    public init(
        keys store: JWTKeyStore,
        configuration: Configuration = Configuration(),
        unknownKeyHandler: (any JWTUnknownKeyHandler)? = nil
    ) {
        self.configuration = configuration
        self.keyStore = store
        self.unknownKeyHandler = unknownKeyHandler
        let maxBytes = max(configuration.maxTokenBytes, 0)
        self.headerParser = JSONParser(limits: .init(maxBytes: maxBytes, maxDepth: 8, rejectDuplicateKeys: true))
        self.payloadParser = JSONParser(limits: .init(maxBytes: maxBytes, maxDepth: 32, rejectDuplicateKeys: true))
    }

    /// The current key set (``keyStore``'s).
    public var keys: JWTKeySet { keyStore.keys }

    /// The current refresh keys (empty unless configured).
    public var refreshKeys: JWTKeySet { keyStore.refreshKeys }

    /// Verifies `token` at the current time. A token whose `kid` names no current key is checked once more if the
    /// ``JWTUnknownKeyHandler`` reports new keys.
    ///
    /// - Throws: `TokenVerificationError` with the reason of the refusal.
    public func verify(_ token: String) async throws(TokenVerificationError) -> VerifiedIdentity {
        var keyMissing = false
        let refusal: TokenVerificationError
        do throws(TokenVerificationError) {
            return try verify(token, at: .now(), keyMissing: &keyMissing)
        } catch {
            refusal = error
        }
        guard keyMissing, refusal.reason == .unknownKey || refusal.reason == .unsupportedAlgorithm,
            let unknownKeyHandler, await unknownKeyHandler.refreshForUnknownKey()
        else { throw refusal }
        return try verify(token, at: .now(), keyMissing: &keyMissing)
    }

    /// The health of the ``JWTUnknownKeyHandler`` (e.g. a JWKS provider that serves its last good set because
    /// the identity provider is down), or healthy without one.
    public func healthCheck() async -> ComponentHealth {
        await unknownKeyHandler?.healthCheck() ?? .healthy
    }

    /// Verifies `token` as if the time were `now` (for tools and tests; time checks use ``Configuration/leeway``),
    /// with the keys the store has now (the ``JWTUnknownKeyHandler`` is not asked).
    ///
    /// - Throws: `TokenVerificationError` with the reason of the refusal.
    public func verify(_ token: String, at now: Timestamp) throws(TokenVerificationError) -> VerifiedIdentity {
        var keyMissing = false
        return try verify(token, at: now, keyMissing: &keyMissing)
    }

    /// Verifies `token`; `keyMissing` is set when it was refused because it names a `kid` that no current access
    /// key has for its (supported) algorithm.
    private func verify(
        _ token: String,
        at now: Timestamp,
        keyMissing: inout Bool
    ) throws(TokenVerificationError) -> VerifiedIdentity {
        guard token.utf8.count <= configuration.maxTokenBytes else {
            throw TokenVerificationError(.tooLarge, "token exceeds \(configuration.maxTokenBytes) bytes")
        }
        let keys = keyStore.current
        var token = token
        var missing = false
        defer { keyMissing = missing }
        return try token.withUTF8 { bytes in
            // The three decoded parts together are shorter than the token: one scratch buffer holds them all.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count) { scratch in
                Result { () throws(TokenVerificationError) in
                    let (header, payload) = try authenticate(bytes, scratch: scratch, keys: keys, keyMissing: &missing)
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
        let keys = keyStore.current
        var token = token
        var missing = false
        return try token.withUTF8 { bytes in
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bytes.count) { scratch in
                Result { () throws(TokenVerificationError) in
                    let (header, payload) = try authenticate(bytes, scratch: scratch, keys: keys, keyMissing: &missing)
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
    /// which has room for the token's length). Sets `keyMissing` when the token names a `kid` that no access key
    /// has for its algorithm.
    private func authenticate(
        _ bytes: UnsafeBufferPointer<UInt8>,
        scratch: UnsafeMutableBufferPointer<UInt8>,
        keys: JWTKeyStore.Ring,
        keyMissing: inout Bool
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

        // Key and signature. A refusal for the access keys is held back while a refresh key might verify the
        // token; when none does, the token is refused exactly as without refresh keys. Refresh keys are tried
        // whatever the token's kid (they never accept, so this only widens what is recognised).
        let accessRefusal = Self.keyRefusal(keys.access, algorithm: algorithm, kid: kid)
        keyMissing = accessRefusal != nil && kid != nil
        let mayBeRefresh = keys.refresh.algorithms.contains(algorithm)
        if let accessRefusal, !mayBeRefresh { throw accessRefusal }
        guard !signatureText.isEmpty else {
            throw accessRefusal ?? TokenVerificationError(.badSignature, "empty signature")
        }
        let signatureStart = out + headerCount
        guard let signatureCount = Base64URL.decodedCount(signatureText.count),
            Base64URL.decode(signatureText, into: signatureStart)
        else {
            throw accessRefusal ?? TokenVerificationError(.malformed, "signature is not unpadded base64url")
        }
        let signature = UnsafeRawBufferPointer(start: signatureStart, count: signatureCount)
        let signingInput = UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: bytes[0..<secondDot]))
        let verified =
            accessRefusal == nil
            && Self.verifies(keys.access, signature, for: signingInput, algorithm: algorithm, kid: kid)
        if !verified {
            // Never accepts: a token that verifies under a refresh key is refused, with its own reason.
            if mayBeRefresh, Self.verifies(keys.refresh, signature, for: signingInput, algorithm: algorithm, kid: nil) {
                throw TokenVerificationError(.wrongTokenType, "signed with a refresh key")
            }
            throw accessRefusal ?? TokenVerificationError(.badSignature, "signature does not verify (\(algorithm))")
        }

        // Payload (authenticated from here on).
        let payloadStart = signatureStart + signatureCount
        guard let payloadCount = Base64URL.decodedCount(payloadText.count),
            Base64URL.decode(payloadText, into: payloadStart)
        else {
            throw TokenVerificationError(.malformed, "payload is not unpadded base64url")
        }
        return (header, UnsafeBufferPointer(start: payloadStart, count: payloadCount))
    }

    /// Why no key of `keys` can verify a token of `algorithm` and `kid`, or `nil` when some key may.
    private static func keyRefusal(
        _ keys: JWTKeySet,
        algorithm: JWTAlgorithm,
        kid: String?
    ) -> TokenVerificationError? {
        guard keys.algorithms.contains(algorithm) else {
            return TokenVerificationError(.unsupportedAlgorithm, "no key is bound to \(algorithm)")
        }
        if let kid, !keys.keys(withKID: kid).contains(where: { keys.keys[$0].allowed.contains(algorithm) }) {
            return TokenVerificationError(.unknownKey, "no key has this kid and is bound to \(algorithm)")
        }
        return nil
    }

    /// Whether a key of `keys` verifies `signature`: those with the token's kid, or all; `JWTKey.verify` skips
    /// a key not bound to the algorithm. No array is built for them.
    private static func verifies(
        _ keys: JWTKeySet,
        _ signature: UnsafeRawBufferPointer,
        for signingInput: UnsafeRawBufferPointer,
        algorithm: JWTAlgorithm,
        kid: String?
    ) -> Bool {
        if let kid {
            return keys.keys(withKID: kid).contains {
                keys.keys[$0].verify(signature, for: signingInput, algorithm: algorithm)
            }
        }
        return keys.keys.contains { $0.verify(signature, for: signingInput, algorithm: algorithm) }
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
