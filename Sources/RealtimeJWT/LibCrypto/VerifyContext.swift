// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto

/// An OpenSSL verification context for one key and one algorithm, initialised once and copied for every
/// verification, so OpenSSL 3 does not fetch the signature algorithm and key manager again each time.
final class VerifyContext: @unchecked Sendable {
    // @unchecked Sendable: `context` is created in init, never reassigned and never used directly for an
    // operation: every verification copies it with `EVP_MD_CTX_copy_ex(out, const EVP_MD_CTX *in)` (through
    // `clibcrypto_verify_copy`), which only reads it and takes its own references, and verifies on the copy.
    // The key it references is kept alive by `key`. deinit runs when no verification can be using it.
    private let context: OpaquePointer
    private let key: EVPKey

    init?(key: EVPKey, algorithm: JWTAlgorithm) {
        let pss: Int32 = algorithm.family == .rsaPSS ? 1 : 0
        guard let context = clibcrypto_verify_ctx_new(key.pointer, algorithm.digest?.pointer, pss) else { return nil }
        self.context = context
        self.key = key
    }

    deinit { clibcrypto_md_ctx_free(context) }

    /// 1: verifies, 0: does not, -1: the copy failed (the caller then verifies without the template).
    func verify(_ signature: UnsafeRawPointer?, _ signatureLength: Int, message: UnsafeRawBufferPointer) -> Int32 {
        clibcrypto_verify_copy(context, message.baseAddress, message.count, signature, signatureLength)
    }
}
