// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto
internal import Synchronization

/// OpenSSL verification contexts for one key and one algorithm, initialised once, so OpenSSL 3 does not fetch
/// the signature algorithm and key manager again for each verification.
///
/// For RSA and ECDSA the signing input is hashed with the algorithm's digest and the digest verified with
/// `EVP_PKEY_verify` on a context taken from a small pool of duplicates of a prepared template: a context is
/// reused across verifications instead of being duplicated and freed each time. Ed25519 (which has no
/// pre-hashed form) copies a prepared `EVP_MD_CTX` per verification.
final class VerifyContext: @unchecked Sendable {
    // @unchecked Sendable: `context` and `prehashed` are created in init, never reassigned and never used
    // directly for an operation: `context` is only copied (`EVP_MD_CTX_copy_ex(out, const EVP_MD_CTX *in)`
    // through `clibcrypto_verify_copy`) and `prehashed` only duplicated (`EVP_PKEY_CTX_dup(const ...)`), which
    // read them and take their own references. The duplicates in `idle` are owned by the pool: a verification
    // removes one under the lock, uses it alone, and puts it back under the lock, so no context is ever used by
    // two threads at once. The key they reference is kept alive by `key`. deinit runs when no verification can
    // be using any of them.
    private let context: OpaquePointer
    private let prehashed: OpaquePointer?
    private let digest: MessageDigest?
    /// Idle duplicates of `prehashed`, as bit patterns (at most `poolLimit`).
    private let idle = Mutex<[Int]>([])
    private let key: EVPKey

    private static let poolLimit = 16

    init?(key: EVPKey, algorithm: JWTAlgorithm) {
        let pss: Int32 = algorithm.family == .rsaPSS ? 1 : 0
        guard let context = clibcrypto_verify_ctx_new(key.pointer, algorithm.digest?.pointer, pss) else { return nil }
        self.context = context
        self.key = key
        switch algorithm.family {
        case .rsa, .rsaPSS, .ecdsa:
            digest = algorithm.digest
            prehashed = algorithm.digest.flatMap {
                clibcrypto_prehashed_verify_ctx_new(key.pointer, $0.pointer, pss)
            }
        case .hmac, .eddsa:
            digest = nil
            prehashed = nil
        }
    }

    deinit {
        for bits in idle.withLock({ $0 }) { clibcrypto_pkey_ctx_free(OpaquePointer(bitPattern: bits)) }
        clibcrypto_pkey_ctx_free(prehashed)
        clibcrypto_md_ctx_free(context)
    }

    /// 1: verifies, 0: does not, -1: no context could be made (the caller then verifies without the template).
    func verify(_ signature: UnsafeRawPointer?, _ signatureLength: Int, message: UnsafeRawBufferPointer) -> Int32 {
        guard let prehashed, let digest else {
            return clibcrypto_verify_copy(context, message.baseAddress, message.count, signature, signatureLength)
        }
        let reused = idle.withLock { $0.popLast() }.flatMap { OpaquePointer(bitPattern: $0) }
        guard let pooled = reused ?? clibcrypto_pkey_ctx_dup(prehashed) else {
            return clibcrypto_verify_copy(context, message.baseAddress, message.count, signature, signatureLength)
        }
        let result = clibcrypto_verify_prehashed(
            pooled,
            digest.pointer,
            message.baseAddress,
            message.count,
            signature,
            signatureLength
        )
        let bits = Int(bitPattern: pooled)
        let kept = idle.withLock { idle in
            guard idle.count < Self.poolLimit else { return false }
            idle.append(bits)
            return true
        }
        if !kept { clibcrypto_pkey_ctx_free(pooled) }
        return result
    }
}
