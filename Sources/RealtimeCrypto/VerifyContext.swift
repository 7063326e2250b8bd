// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim
internal import Synchronization

/// OpenSSL verification contexts for one key, scheme and digest, initialised once, so OpenSSL 3 does not fetch
/// the signature algorithm and key manager again for each verification (pass it to `EVPKey.verify`).
///
/// For RSA and ECDSA a verification takes a digest verifier (`ccryptoshim_digest_verifier`: an `EVP_PKEY_verify`
/// context and an `EVP_MD_CTX`) from a small pool of duplicates of a prepared template, hashes the signing input
/// and verifies the digest with it alone, and gives it back: contexts are reused across verifications instead of
/// being allocated and freed each time. For RSA PKCS#1 v1.5 the template has no signature digest: the verifier
/// compares the whole recovered encoding with the DigestInfo of the digest itself, as OpenSSL's `RSA_verify`
/// would, without its per-call buffers. Ed25519 (which has no pre-hashed form) copies a prepared `EVP_MD_CTX`
/// per verification.
package final class VerifyContext: @unchecked Sendable {
    // @unchecked Sendable: `context` and `template` are created in init, never reassigned and never used
    // directly for an operation: `context` is only copied (`EVP_MD_CTX_copy_ex(out, const EVP_MD_CTX *in)`
    // through `ccryptoshim_verify_copy`) and `template` only duplicated (`ccryptoshim_digest_verifier_dup(const
    // ...)`, `EVP_PKEY_CTX_dup(const ...)`), which read them and take their own references. The duplicates in
    // `idle` are owned by the pool: a verification removes one under the lock, uses it alone, and puts it back
    // under the lock, so no duplicate is ever used by two threads at once. The key they reference is kept alive
    // by `key`. deinit runs when no verification can be using any of them.
    private let context: OpaquePointer
    /// Hashes with the digest given to init, one of `MessageDigest`'s process-lifetime instances.
    private let template: OpaquePointer?
    /// Idle duplicates of `template`, as bit patterns (at most `poolLimit`).
    private let idle = Mutex<[Int]>([])
    private let key: EVPKey

    private static let poolLimit = 16

    /// `nil` if OpenSSL cannot prepare a context for this key with `scheme` and `digest` (`nil` for Ed25519).
    package init?(key: EVPKey, scheme: SignatureScheme, digest: MessageDigest?) {
        let pss: Int32 = scheme == .rsaPSS ? 1 : 0
        guard let context = ccryptoshim_verify_ctx_new(key.pointer, digest?.pointer, pss) else { return nil }
        self.context = context
        self.key = key
        let digestScheme: Int32? =
            switch scheme {
            case .rsaPKCS1v15: 0
            case .rsaPSS: 1
            case .ecdsa: 2
            case .ed25519: nil
            }
        template = digestScheme.flatMap { digestScheme in
            digest.flatMap { ccryptoshim_digest_verifier_new(key.pointer, $0.pointer, digestScheme) }
        }
    }

    deinit {
        for bits in idle.withLock({ $0 }) {
            ccryptoshim_digest_verifier_free(OpaquePointer(bitPattern: bits))
        }
        ccryptoshim_digest_verifier_free(template)
        ccryptoshim_md_ctx_free(context)
    }

    /// 1: verifies, 0: does not, -1: no context could be made (the caller then verifies without the template).
    func verify(_ signature: UnsafeRawPointer?, _ signatureLength: Int, message: UnsafeRawBufferPointer) -> Int32 {
        guard let template else {
            return ccryptoshim_verify_copy(context, message.baseAddress, message.count, signature, signatureLength)
        }
        let reused = idle.withLock { $0.popLast() }.flatMap { OpaquePointer(bitPattern: $0) }
        guard let verifier = reused ?? ccryptoshim_digest_verifier_dup(template) else {
            return ccryptoshim_verify_copy(context, message.baseAddress, message.count, signature, signatureLength)
        }
        let result = ccryptoshim_digest_verifier_verify(
            verifier,
            message.baseAddress,
            message.count,
            signature,
            signatureLength
        )
        let bits = Int(bitPattern: verifier)
        let kept = idle.withLock { idle in
            guard idle.count < Self.poolLimit else { return false }
            idle.append(bits)
            return true
        }
        if !kept { ccryptoshim_digest_verifier_free(verifier) }
        return result
    }
}
