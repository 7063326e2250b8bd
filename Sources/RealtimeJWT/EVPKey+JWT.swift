// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCrypto

extension EVPKey {
    /// Makes a key with `load`, reporting RealtimeCrypto's failures as `JWTError`s: a key OpenSSL refused is
    /// ``JWTError/Code/invalidKey`` with the message `refused`, a key of another type
    /// ``JWTError/Code/unsupportedKey``.
    static func loading(refused: String, _ load: () throws(LoadError) -> EVPKey) throws(JWTError) -> EVPKey {
        do throws(LoadError) {
            return try load()
        } catch {
            switch error {
            case .refused: throw JWTError(.invalidKey, refused)
            case .unsupportedType:
                throw JWTError(.unsupportedKey, "key type is not RSA, EC P-256/P-384/P-521 or Ed25519")
            }
        }
    }

    /// Reads a PEM key (see `EVPKey.pem(_:isPrivate:)`) that passes OpenSSL's consistency check.
    static func checkedPEM(_ pem: String, isPrivate: Bool) throws(JWTError) -> EVPKey {
        let refused = isPrivate ? "not a readable PEM private key" : "not a readable PEM public key"
        let key = try loading(refused: refused) { () throws(LoadError) in try .pem(pem, isPrivate: isPrivate) }
        guard key.check() else { throw JWTError(.invalidKey, "key fails OpenSSL's consistency check") }
        return key
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

    /// Verifies a JWS signature (for ECDSA: raw r || s of exactly the curve's length; the key's kind fixes the
    /// curve, and `JWTKey` binds a key only to algorithms of its kind).
    func verify(
        _ signature: UnsafeRawBufferPointer,
        for message: UnsafeRawBufferPointer,
        algorithm: JWTAlgorithm,
        template: VerifyContext?
    ) -> Bool {
        guard let scheme = algorithm.signatureScheme else { return false }
        return verify(signature, for: message, scheme: scheme, digest: algorithm.digest, template: template)
    }

    /// Signs `message` and returns the JWS signature (raw r || s for ECDSA).
    func sign(_ message: UnsafeRawBufferPointer, algorithm: JWTAlgorithm) throws(JWTError) -> [UInt8] {
        guard let scheme = algorithm.signatureScheme else {
            throw JWTError(.algorithmMismatch, "\(algorithm) is not a signature algorithm")
        }
        do throws(SigningError) {
            return try sign(message, scheme: scheme, digest: algorithm.digest)
        } catch {
            switch error {
            case .publicKey: throw JWTError(.cannotSign, "a public key cannot sign")
            case .failed: throw JWTError(.signingFailed, "OpenSSL could not sign with this key")
            case .unexpectedECDSASignature: throw JWTError(.signingFailed, "OpenSSL made an unexpected ECDSA signature")
            }
        }
    }
}
