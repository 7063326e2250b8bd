// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCrypto

/// A key bound to the algorithms it may verify (and, for a secret or private key, sign) with.
///
/// A key never serves an algorithm outside its set, which is what defeats algorithm confusion: an RSA or EC
/// public key cannot be used as an HMAC secret, and an `HS256` key does not verify `HS512` tokens unless
/// asked to. Keys are parsed once, when created, and then shared read-only by every verification.
///
/// ```swift
/// let shared = try JWTKey.hmac(secret: environment["JWT_SECRET"]!, algorithms: [.hs256])
/// let rsa = try JWTKey.publicKey(pem: pem, algorithm: .rs256, kid: "2026-01")
/// let fromJWK = try JWTKey.jwk(#"{"kty":"OKP","crv":"Ed25519","x":"…","kid":"ed1"}"#)
/// ```
public struct JWTKey: Sendable {
    enum Material: Sendable {
        case hmac(HMACKeys)
        case asymmetric(EVPKey, VerifyContexts)
    }

    /// A prepared verification context per allowed algorithm (indexed by the algorithm's raw value).
    struct VerifyContexts: Sendable {
        var contexts: [VerifyContext?]

        init(key: EVPKey, algorithms: Set<JWTAlgorithm>) {
            contexts = Array(repeating: nil, count: JWTAlgorithm.allCases.count)
            for algorithm in algorithms {
                contexts[Int(algorithm.backing.rawValue)] = algorithm.signatureScheme.flatMap { scheme in
                    VerifyContext(key: key, scheme: scheme, digest: algorithm.digest)
                }
            }
        }

        func context(for algorithm: JWTAlgorithm) -> VerifyContext? { contexts[Int(algorithm.backing.rawValue)] }
    }

    /// One prepared OpenSSL HMAC context per allowed digest.
    struct HMACKeys: Sendable {
        var sha256: HMACKey?
        var sha384: HMACKey?
        var sha512: HMACKey?

        func key(for algorithm: JWTAlgorithm) -> HMACKey? {
            switch algorithm {
            case .hs256: return sha256
            case .hs384: return sha384
            case .hs512: return sha512
            default: return nil
            }
        }
    }

    let material: Material
    let allowed: AlgorithmSet

    /// The key identifier matched against a token's `kid` header, if any.
    public let kid: String?

    /// The algorithms this key may verify and sign with.
    public var algorithms: Set<JWTAlgorithm> { allowed.algorithms }

    /// Whether the key can sign: a shared secret or a private key.
    public var canSign: Bool {
        switch material {
        case .hmac: return true
        case .asymmetric(let key, _): return key.isPrivate
        }
    }

    /// Whether this is a shared HMAC secret.
    public var isHMAC: Bool {
        if case .hmac = material { return true }
        return false
    }

    private init(material: Material, allowed: AlgorithmSet, kid: String?) {
        self.material = material
        self.allowed = allowed
        self.kid = kid
    }

    // MARK: HMAC

    /// A shared secret for HMAC (`HS256`, `HS384`, `HS512`).
    ///
    /// RFC 7518 §3.2 asks for a secret at least as long as the hash (32 bytes for `HS256`); shorter secrets
    /// are accepted because deployed configurations use them, but they are weak: prefer 32 random bytes.
    ///
    /// - Parameters:
    ///   - secret: The secret's bytes (the UTF-8 of a configured string, as most issuers use it).
    ///   - algorithms: The HMAC algorithms the secret serves; only `HS*` algorithms are allowed.
    ///   - kid: The key identifier, if tokens name it.
    /// - Throws: ``JWTError/Code/invalidKey`` for an empty secret, ``JWTError/Code/algorithmMismatch`` for a
    ///   non-HMAC algorithm or an empty set.
    public static func hmac(
        secret: some Collection<UInt8>,
        algorithms: Set<JWTAlgorithm> = [.hs256],
        kid: String? = nil
    ) throws(JWTError) -> JWTKey {
        let secret = Array(secret)
        guard !secret.isEmpty else { throw JWTError(.invalidKey, "the HMAC secret is empty") }
        guard !algorithms.isEmpty, algorithms.allSatisfy(\.isHMAC) else {
            throw JWTError(.algorithmMismatch, "an HMAC secret serves only HS256, HS384 and HS512")
        }
        var keys = HMACKeys()
        for algorithm in algorithms {
            guard let digest = algorithm.digest,
                let key = HMACKey(secret: secret, digest: digest)
            else { throw JWTError(.invalidKey, "OpenSSL refused the HMAC secret") }
            switch algorithm {
            case .hs256: keys.sha256 = key
            case .hs384: keys.sha384 = key
            default: keys.sha512 = key
            }
        }
        return JWTKey(material: .hmac(keys), allowed: AlgorithmSet(algorithms), kid: kid)
    }

    /// A shared secret for HMAC given as a string (its UTF-8 bytes), e.g. the `JWT_SECRET` setting.
    ///
    /// See ``hmac(secret:algorithms:kid:)-(Collection<UInt8>,_,_)`` for the rules.
    public static func hmac(
        secret: String,
        algorithms: Set<JWTAlgorithm> = [.hs256],
        kid: String? = nil
    ) throws(JWTError) -> JWTKey {
        try hmac(secret: Array(secret.utf8), algorithms: algorithms, kid: kid)
    }

    // MARK: PEM

    /// A public key from PEM: `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) or `CERTIFICATE`
    /// (its subject key; the certificate itself is not validated).
    ///
    /// - Parameters:
    ///   - pem: The PEM text; the first PEM block is used.
    ///   - algorithm: The one algorithm the key serves, e.g. ``JWTAlgorithm/rs256``.
    ///   - kid: The key identifier, if tokens name it.
    /// - Throws: ``JWTError`` if the PEM is unreadable, the key is of an unsupported type or size (RSA keys
    ///   need at least 2048 bits), or the algorithm does not fit the key.
    public static func publicKey(pem: String, algorithm: JWTAlgorithm, kid: String? = nil) throws(JWTError) -> JWTKey {
        try publicKey(pem: pem, algorithms: [algorithm], kid: kid)
    }

    /// A public key from PEM serving several algorithms (e.g. an RSA key for `RS256` and `PS256`).
    public static func publicKey(
        pem: String,
        algorithms: Set<JWTAlgorithm>,
        kid: String? = nil
    ) throws(JWTError) -> JWTKey {
        try make(EVPKey.checkedPEM(pem, isPrivate: false), algorithms: algorithms, kid: kid)
    }

    /// A private key from PEM: `PRIVATE KEY` (PKCS#8, unencrypted), `RSA PRIVATE KEY` (PKCS#1) or
    /// `EC PRIVATE KEY` (SEC 1). It signs with, and verifies, the given algorithm.
    public static func privateKey(pem: String, algorithm: JWTAlgorithm, kid: String? = nil) throws(JWTError) -> JWTKey {
        try privateKey(pem: pem, algorithms: [algorithm], kid: kid)
    }

    /// A private key from PEM serving several algorithms.
    public static func privateKey(
        pem: String,
        algorithms: Set<JWTAlgorithm>,
        kid: String? = nil
    ) throws(JWTError) -> JWTKey {
        try make(EVPKey.checkedPEM(pem, isPrivate: true), algorithms: algorithms, kid: kid)
    }

    static func make(_ key: EVPKey, algorithms: Set<JWTAlgorithm>, kid: String?) throws(JWTError) -> JWTKey {
        guard !algorithms.isEmpty else { throw JWTError(.algorithmMismatch, "no algorithm given for the key") }
        let compatible = key.compatibleAlgorithms
        for algorithm in algorithms where !compatible.contains(algorithm) {
            throw JWTError(.algorithmMismatch, "\(algorithm) does not fit a key of type \(key.kind)")
        }
        if key.kind == .rsa || key.kind == .rsaPSS, key.bits < 2048 {
            throw JWTError(
                .unsupportedKey,
                "RSA keys need at least 2048 bits (RFC 7518 §3.3); this one has \(key.bits)"
            )
        }
        let contexts = VerifyContexts(key: key, algorithms: algorithms)
        return JWTKey(material: .asymmetric(key, contexts), allowed: AlgorithmSet(algorithms), kid: kid)
    }

    // MARK: Operations

    /// Verifies `signature` (already base64url-decoded) over the JWS signing input `message`.
    func verify(
        _ signature: UnsafeRawBufferPointer,
        for message: UnsafeRawBufferPointer,
        algorithm: JWTAlgorithm
    ) -> Bool {
        guard allowed.contains(algorithm) else { return false }
        switch material {
        case .hmac(let keys):
            guard let key = keys.key(for: algorithm) else { return false }
            return key.verify(signature, for: message)
        case .asymmetric(let key, let contexts):
            return key.verify(signature, for: message, algorithm: algorithm, template: contexts.context(for: algorithm))
        }
    }

    /// Whether this key and `other` are the same HMAC secret for an algorithm both serve: their MACs of a
    /// fixed message are equal (compared in constant time). Asymmetric keys are never reported.
    func sharesSecret(with other: JWTKey) -> Bool {
        guard case .hmac(let mine) = material, case .hmac(let theirs) = other.material else { return false }
        let probe = Array("RealtimeJWT key comparison".utf8)
        return [JWTAlgorithm.hs256, .hs384, .hs512].contains { algorithm in
            guard let a = mine.key(for: algorithm), let b = theirs.key(for: algorithm) else { return false }
            return probe.withUnsafeBytes { message in
                guard let mac = a.authenticate(message) else { return false }
                return mac.withUnsafeBytes { b.verify($0, for: message) }
            }
        }
    }

    /// Signs the JWS signing input `message`.
    func sign(_ message: UnsafeRawBufferPointer, algorithm: JWTAlgorithm) throws(JWTError) -> [UInt8] {
        guard allowed.contains(algorithm) else {
            throw JWTError(.algorithmMismatch, "the key is not bound to \(algorithm)")
        }
        switch material {
        case .hmac(let keys):
            guard let key = keys.key(for: algorithm), let mac = key.authenticate(message) else {
                throw JWTError(.signingFailed, "OpenSSL could not compute the HMAC")
            }
            return mac
        case .asymmetric(let key, _):
            return try key.sign(message, algorithm: algorithm)
        }
    }
}
