// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim

/// An OpenSSL `EVP_PKEY` (RSA, EC or Ed25519; public, or a private key that also verifies).
///
/// Parsed once, then shared read-only by every verification; each operation makes its own short-lived
/// OpenSSL contexts, so no lock is needed.
package final class EVPKey: @unchecked Sendable {
    // @unchecked Sendable: `pointer` is set in init and never reassigned; after init the key is only passed to
    // OpenSSL operations that take their own reference and their own context (`EVP_DigestVerifyInit`,
    // `EVP_DigestSignInit`, parameter getters). OpenSSL 3 guards the key's internal caches (provider export)
    // with the key's own lock, so concurrent operations on one EVP_PKEY are safe. The key is freed in deinit,
    // when no reference (hence no operation) remains.
    let pointer: OpaquePointer
    package let kind: Kind
    package let isPrivate: Bool
    /// The largest signature this key makes, in bytes (modulus length for RSA).
    package let signatureSize: Int
    package let bits: Int

    package enum Kind: Equatable, Sendable {
        case rsa
        case rsaPSS
        case ecP256
        case ecP384
        case ecP521
        case ed25519
    }

    /// Why a key could not be made.
    package enum LoadError: Error, Equatable, Sendable {
        /// OpenSSL could not read or build the key from the input.
        case refused
        /// The key is not RSA, EC P-256/P-384/P-521 or Ed25519.
        case unsupportedType
    }

    /// Takes ownership of `pointer` (freed on failure too).
    private init(taking pointer: OpaquePointer) throws(LoadError) {
        self.pointer = pointer
        switch ccryptoshim_pkey_kind(pointer) {
        case CCRYPTOSHIM_KEY_RSA: kind = .rsa
        case CCRYPTOSHIM_KEY_RSA_PSS: kind = .rsaPSS
        case CCRYPTOSHIM_KEY_EC_P256: kind = .ecP256
        case CCRYPTOSHIM_KEY_EC_P384: kind = .ecP384
        case CCRYPTOSHIM_KEY_EC_P521: kind = .ecP521
        case CCRYPTOSHIM_KEY_ED25519: kind = .ed25519
        default:
            ccryptoshim_pkey_free(pointer)
            throw .unsupportedType
        }
        isPrivate = ccryptoshim_pkey_has_private(pointer) == 1
        signatureSize = Int(ccryptoshim_pkey_size(pointer))
        bits = Int(ccryptoshim_pkey_bits(pointer))
    }

    deinit { ccryptoshim_pkey_free(pointer) }

    private static func taking(_ pointer: OpaquePointer?) throws(LoadError) -> EVPKey {
        guard let pointer else { throw .refused }
        return try EVPKey(taking: pointer)
    }

    /// Reads the first PEM block of `pem`. Public: `PUBLIC KEY`, `RSA PUBLIC KEY`, `CERTIFICATE` (its key, the
    /// certificate unchecked); private: `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`. Encrypted PEM is
    /// refused.
    package static func pem(_ pem: String, isPrivate: Bool) throws(LoadError) -> EVPKey {
        var pem = pem
        return try taking(
            pem.withUTF8 { utf8 in
                ccryptoshim_pem_read_key(utf8.baseAddress, Int32(clamping: utf8.count), isPrivate ? 1 : 0)
            }
        )
    }

    /// An RSA key from its big-endian components in JWK order: n, e (public key) or n, e, d, p, q, dp, dq, qi
    /// (private key).
    package static func rsa(components: [[UInt8]]) throws(LoadError) -> EVPKey {
        let lengths = components.map(\.count)
        let buffer = components.flatMap { $0 }
        return try taking(
            buffer.withUnsafeBytes { bytes in
                lengths.withUnsafeBufferPointer { lengths in
                    ccryptoshim_rsa_from_components(bytes.baseAddress, lengths.baseAddress, Int32(lengths.count))
                }
            }
        )
    }

    /// An EC key on `group` ("P-256", "P-384", "P-521") from the uncompressed point `point` (0x04 ‖ x ‖ y)
    /// and, for a private key, the big-endian scalar `privateScalar` (empty for a public key).
    package static func ec(group: String, point: [UInt8], privateScalar: [UInt8]) throws(LoadError) -> EVPKey {
        try taking(
            point.withUnsafeBytes { point in
                privateScalar.withUnsafeBytes { scalar in
                    ccryptoshim_ec_from_components(
                        group,
                        point.baseAddress,
                        point.count,
                        scalar.baseAddress,
                        scalar.count
                    )
                }
            }
        )
    }

    /// An Ed25519 key from its 32-byte raw public or private form.
    package static func ed25519(raw: [UInt8], isPrivate: Bool) throws(LoadError) -> EVPKey {
        try taking(raw.withUnsafeBytes { ccryptoshim_ed25519_from_raw($0.baseAddress, $0.count, isPrivate ? 1 : 0) })
    }

    /// OpenSSL's consistency check (point on the curve, RSA pair matches, …).
    package func check() -> Bool {
        ccryptoshim_pkey_check(pointer, isPrivate ? 1 : 0) == 1
    }

    /// The raw 32-byte public key of an Ed25519 key, `nil` for other keys.
    package func ed25519PublicKey() -> [UInt8]? {
        var raw = [UInt8](repeating: 0, count: 32)
        var length = 32
        let ok = raw.withUnsafeMutableBufferPointer {
            ccryptoshim_ed25519_public_raw(pointer, $0.baseAddress, &length)
        }
        return ok == 1 && length == 32 ? raw : nil
    }

    /// The length of one ECDSA coordinate (r or s) of this key's curve, in bytes; 0 for other keys.
    package var ecdsaCoordinateLength: Int {
        switch kind {
        case .ecP256: return 32
        case .ecP384: return 48
        case .ecP521: return 66
        case .rsa, .rsaPSS, .ed25519: return 0
        }
    }

    /// Verifies `signature` over `message` with `scheme` and `digest` (`nil` for Ed25519). An ECDSA signature is
    /// the raw r ‖ s of JWS (RFC 7518 §3.4) for this key's curve; a DER signature is refused. `template`, a
    /// context prepared for this key, scheme and digest, saves OpenSSL's set-up per verification.
    package func verify(
        _ signature: UnsafeRawBufferPointer,
        for message: UnsafeRawBufferPointer,
        scheme: SignatureScheme,
        digest: MessageDigest?,
        template: VerifyContext? = nil
    ) -> Bool {
        switch scheme {
        case .rsaPKCS1v15, .rsaPSS:
            guard signature.count == signatureSize else { return false }
            if let result = template?.verify(signature.baseAddress, signature.count, message: message), result >= 0 {
                return result == 1
            }
            return ccryptoshim_verify(
                pointer,
                digest?.pointer,
                scheme == .rsaPSS ? 1 : 0,
                message.baseAddress,
                message.count,
                signature.baseAddress,
                signature.count
            ) == 1
        case .ed25519:
            guard signature.count == 64 else { return false }
            if let result = template?.verify(signature.baseAddress, signature.count, message: message), result >= 0 {
                return result == 1
            }
            return ccryptoshim_verify(
                pointer,
                nil,
                0,
                message.baseAddress,
                message.count,
                signature.baseAddress,
                signature.count
            ) == 1
        case .ecdsa:
            // Only the raw form of exactly the right length; a DER signature is refused.
            guard ecdsaCoordinateLength > 0, signature.count == 2 * ecdsaCoordinateLength else { return false }
            // DER of two INTEGERs of at most 67 bytes each fits in 150 bytes.
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 160) { der in
                let derLength = ccryptoshim_ecdsa_raw_to_der(
                    signature.baseAddress,
                    signature.count,
                    der.baseAddress,
                    160
                )
                guard derLength > 0 else { return false }
                if let result = template?.verify(der.baseAddress, Int(derLength), message: message), result >= 0 {
                    return result == 1
                }
                return ccryptoshim_verify(
                    pointer,
                    digest?.pointer,
                    0,
                    message.baseAddress,
                    message.count,
                    der.baseAddress,
                    Int(derLength)
                ) == 1
            }
        }
    }

    /// Why a signature could not be made.
    package enum SigningError: Error, Equatable, Sendable {
        /// The key holds no private part.
        case publicKey
        /// OpenSSL could not sign.
        case failed
        /// OpenSSL's ECDSA signature could not be read as r and s of this key's curve.
        case unexpectedECDSASignature
    }

    /// Signs `message` with `scheme` and `digest` (`nil` for Ed25519). An ECDSA signature comes out as the raw
    /// r ‖ s of JWS for this key's curve.
    package func sign(
        _ message: UnsafeRawBufferPointer,
        scheme: SignatureScheme,
        digest: MessageDigest?
    ) throws(SigningError) -> [UInt8] {
        guard isPrivate else { throw .publicKey }
        let capacity = max(signatureSize, 64) + 16
        var signature = [UInt8](repeating: 0, count: capacity)
        var length = capacity
        let ok = signature.withUnsafeMutableBufferPointer { out in
            ccryptoshim_sign(
                pointer,
                digest?.pointer,
                scheme == .rsaPSS ? 1 : 0,
                message.baseAddress,
                message.count,
                out.baseAddress,
                &length
            )
        }
        guard ok == 1 else { throw .failed }
        signature.removeLast(capacity - length)
        guard scheme == .ecdsa else { return signature }
        guard ecdsaCoordinateLength > 0,
            let raw = ECDSASignatureForm.raw(fromDER: signature, half: ecdsaCoordinateLength)
        else { throw .unexpectedECDSASignature }
        return raw
    }
}
