// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto

/// A shared HMAC secret, prepared for one digest: OpenSSL's keyed context is built once and duplicated for
/// every message, so the secret is hashed into the pads only at load time.
final class HMACKey: @unchecked Sendable {
    // @unchecked Sendable: `context` is created in init, never reassigned and never mutated afterwards. Every
    // use goes through `clibcrypto_hmac_compute`/`clibcrypto_hmac_verify`, which only read it (they call
    // `EVP_MAC_CTX_dup(const EVP_MAC_CTX *)` and work on the copy), so concurrent use from many threads is
    // read-only sharing. deinit runs once no reference is left, so no other thread can be using it.
    private let context: OpaquePointer
    let outputLength: Int

    init?(secret: [UInt8], digest: MessageDigest, outputLength: Int) {
        guard !secret.isEmpty else { return nil }
        let context = secret.withUnsafeBytes { bytes in
            clibcrypto_hmac_ctx_new(digest.hmacName, bytes.baseAddress, bytes.count)
        }
        guard let context else { return nil }
        self.context = context
        self.outputLength = outputLength
    }

    deinit { clibcrypto_mac_ctx_free(context) }

    /// Whether `mac` is the HMAC of `message` (constant-time comparison).
    func verify(_ mac: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer) -> Bool {
        guard mac.count == outputLength else { return false }
        return clibcrypto_hmac_verify(context, message.baseAddress, message.count, mac.baseAddress, mac.count) == 1
    }

    /// The HMAC of `message`.
    func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        var length = 0
        let ok = out.withUnsafeMutableBufferPointer { buffer in
            clibcrypto_hmac_compute(context, message.baseAddress, message.count, buffer.baseAddress, 64, &length)
        }
        guard ok == 1, length == outputLength else { return nil }
        out.removeLast(64 - length)
        return out
    }
}
