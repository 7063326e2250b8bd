// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto

/// An OpenSSL `EVP_PKEY` (RSA, EC or Ed25519; public, or a private key that also verifies).
///
/// Parsed once, then shared read-only by every verification; each operation makes its own short-lived
/// OpenSSL contexts, so no lock is needed.
final class EVPKey: @unchecked Sendable {
    // @unchecked Sendable: `pointer` is set in init and never reassigned; after init the key is only passed to
    // OpenSSL operations that take their own reference and their own context (`EVP_DigestVerifyInit`,
    // `EVP_DigestSignInit`, parameter getters). OpenSSL 3 guards the key's internal caches (provider export)
    // with the key's own lock, so concurrent operations on one EVP_PKEY are safe. The key is freed in deinit,
    // when no reference (hence no operation) remains.
    let pointer: OpaquePointer
    let kind: Kind
    let isPrivate: Bool
    /// The largest signature this key makes, in bytes (modulus length for RSA).
    let signatureSize: Int
    let bits: Int

    enum Kind: Equatable, Sendable {
        case rsa
        case rsaPSS
        case ecP256
        case ecP384
        case ecP521
        case ed25519
    }

    /// Takes ownership of `pointer` (freed on failure too).
    init(taking pointer: OpaquePointer) throws(JWTError) {
        self.pointer = pointer
        switch clibcrypto_pkey_kind(pointer) {
        case CLIBCRYPTO_KEY_RSA: kind = .rsa
        case CLIBCRYPTO_KEY_RSA_PSS: kind = .rsaPSS
        case CLIBCRYPTO_KEY_EC_P256: kind = .ecP256
        case CLIBCRYPTO_KEY_EC_P384: kind = .ecP384
        case CLIBCRYPTO_KEY_EC_P521: kind = .ecP521
        case CLIBCRYPTO_KEY_ED25519: kind = .ed25519
        default:
            clibcrypto_pkey_free(pointer)
            throw JWTError(.unsupportedKey, "key type is not RSA, EC P-256/P-384/P-521 or Ed25519")
        }
        isPrivate = clibcrypto_pkey_has_private(pointer) == 1
        signatureSize = Int(clibcrypto_pkey_size(pointer))
        bits = Int(clibcrypto_pkey_bits(pointer))
    }

    deinit { clibcrypto_pkey_free(pointer) }

    /// Reads a PEM key. Public: `PUBLIC KEY`, `RSA PUBLIC KEY`, `CERTIFICATE`; private: `PRIVATE KEY`,
    /// `RSA PRIVATE KEY`, `EC PRIVATE KEY`.
    static func pem(_ pem: String, isPrivate: Bool) throws(JWTError) -> EVPKey {
        var pem = pem
        let pointer = pem.withUTF8 { utf8 in
            clibcrypto_pem_read_key(utf8.baseAddress, Int32(clamping: utf8.count), isPrivate ? 1 : 0)
        }
        guard let pointer else {
            throw JWTError(.invalidKey, isPrivate ? "not a readable PEM private key" : "not a readable PEM public key")
        }
        let key = try EVPKey(taking: pointer)
        guard key.check() else { throw JWTError(.invalidKey, "key fails OpenSSL's consistency check") }
        return key
    }

    /// OpenSSL's consistency check (point on the curve, RSA pair matches, …).
    func check() -> Bool {
        clibcrypto_pkey_check(pointer, isPrivate ? 1 : 0) == 1
    }

    /// The JWS algorithms this kind of key can serve.
    var compatibleAlgorithms: AlgorithmSet {
        switch kind {
        case .rsa: return AlgorithmSet([.rs256, .rs384, .rs512, .ps256, .ps384, .ps512])
        case .rsaPSS: return AlgorithmSet([.ps256, .ps384, .ps512])
        case .ecP256: return AlgorithmSet([.es256])
        case .ecP384: return AlgorithmSet([.es384])
        case .ecP521: return AlgorithmSet([.es512])
        case .ed25519: return AlgorithmSet([.eddsa])
        }
    }

    /// Verifies a JWS signature (for ECDSA: raw r || s of exactly the algorithm's length).
    func verify(
        _ signature: UnsafeRawBufferPointer,
        for message: UnsafeRawBufferPointer,
        algorithm: JWTAlgorithm,
        template: VerifyContext? = nil
    ) -> Bool {
        switch algorithm.family {
        case .hmac:
            return false
        case .rsa, .rsaPSS:
            guard signature.count == signatureSize else { return false }
            if let result = template?.verify(signature.baseAddress, signature.count, message: message), result >= 0 {
                return result == 1
            }
            return clibcrypto_verify(
                pointer,
                algorithm.digest?.pointer,
                algorithm.family == .rsaPSS ? 1 : 0,
                message.baseAddress,
                message.count,
                signature.baseAddress,
                signature.count
            ) == 1
        case .eddsa:
            guard signature.count == 64 else { return false }
            if let result = template?.verify(signature.baseAddress, signature.count, message: message), result >= 0 {
                return result == 1
            }
            return clibcrypto_verify(
                pointer,
                nil,
                0,
                message.baseAddress,
                message.count,
                signature.baseAddress,
                signature.count
            ) == 1
        case .ecdsa:
            // Only the raw form of exactly the right length; a DER signature in a token is refused.
            guard signature.count == 2 * algorithm.ecdsaCoordinateLength else { return false }
            // DER of two INTEGERs of at most 67 bytes each fits in 150 bytes.
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 160) { der in
                let derLength = clibcrypto_ecdsa_raw_to_der(
                    signature.baseAddress,
                    signature.count,
                    der.baseAddress,
                    160
                )
                guard derLength > 0 else { return false }
                if let result = template?.verify(der.baseAddress, Int(derLength), message: message), result >= 0 {
                    return result == 1
                }
                return clibcrypto_verify(
                    pointer,
                    algorithm.digest?.pointer,
                    0,
                    message.baseAddress,
                    message.count,
                    der.baseAddress,
                    Int(derLength)
                ) == 1
            }
        }
    }

    /// Signs `message` and returns the JWS signature (raw r || s for ECDSA).
    func sign(_ message: UnsafeRawBufferPointer, algorithm: JWTAlgorithm) throws(JWTError) -> [UInt8] {
        guard isPrivate else { throw JWTError(.cannotSign, "a public key cannot sign") }
        let capacity = max(signatureSize, 64) + 16
        var signature = [UInt8](repeating: 0, count: capacity)
        var length = capacity
        let pss: Int32 = algorithm.family == .rsaPSS ? 1 : 0
        let ok = signature.withUnsafeMutableBufferPointer { out in
            clibcrypto_sign(
                pointer,
                algorithm.digest?.pointer,
                pss,
                message.baseAddress,
                message.count,
                out.baseAddress,
                &length
            )
        }
        guard ok == 1 else { throw JWTError(.signingFailed, "OpenSSL could not sign with this key") }
        signature.removeLast(capacity - length)
        guard algorithm.family == .ecdsa else { return signature }
        let half = algorithm.ecdsaCoordinateLength
        var raw = [UInt8](repeating: 0, count: 2 * half)
        let converted = raw.withUnsafeMutableBufferPointer { out in
            signature.withUnsafeBytes { der in
                clibcrypto_ecdsa_der_to_raw(der.baseAddress, der.count, out.baseAddress, Int32(half))
            }
        }
        guard converted == 1 else { throw JWTError(.signingFailed, "OpenSSL made an unexpected ECDSA signature") }
        return raw
    }
}

/// The conversions between the JWS form of an ECDSA signature (r ‖ s) and DER, for tests.
package enum ECDSASignatureForm {
    /// DER `SEQUENCE { INTEGER r, INTEGER s }` of `raw`, or `nil` if its length is not even or above 132.
    package static func der(fromRaw raw: [UInt8]) -> [UInt8]? {
        var der = [UInt8](repeating: 0, count: 160)
        let length = raw.withUnsafeBytes { raw in
            der.withUnsafeMutableBufferPointer { out in
                clibcrypto_ecdsa_raw_to_der(raw.baseAddress, raw.count, out.baseAddress, out.count)
            }
        }
        guard length > 0 else { return nil }
        return Array(der.prefix(Int(length)))
    }

    /// r ‖ s of `half` bytes each, read by OpenSSL's `d2i_ECDSA_SIG`, or `nil`.
    package static func raw(fromDER der: [UInt8], half: Int) -> [UInt8]? {
        var raw = [UInt8](repeating: 0, count: 2 * half)
        let ok = der.withUnsafeBytes { der in
            raw.withUnsafeMutableBufferPointer { out in
                clibcrypto_ecdsa_der_to_raw(der.baseAddress, der.count, out.baseAddress, Int32(half))
            }
        }
        return ok == 1 ? raw : nil
    }
}
