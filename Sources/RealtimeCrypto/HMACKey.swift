// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim

/// A shared HMAC secret, prepared for one digest: OpenSSL's keyed context is built once and duplicated for
/// every message, so the secret is hashed into the pads only at load time (instead of a one-shot `HMAC()` that
/// fetches the digest and keys a new context every time).
package final class HMACKey: @unchecked Sendable {
    // @unchecked Sendable: `context` is created in init, never reassigned and never mutated afterwards. Every
    // use goes through `ccryptoshim_hmac_compute`/`ccryptoshim_hmac_verify`, which only read it (they call
    // `EVP_MAC_CTX_dup(const EVP_MAC_CTX *)` and work on the copy), so concurrent use from many threads is
    // read-only sharing. deinit runs once no reference is left, so no other thread can be using it.
    private let context: OpaquePointer

    /// The length of a MAC, in bytes (the digest's length).
    package let outputLength: Int

    /// `nil` if `secret` is empty or OpenSSL refuses it.
    package init?(secret: [UInt8], digest: MessageDigest) {
        guard !secret.isEmpty else { return nil }
        let context = secret.withUnsafeBytes { bytes in
            ccryptoshim_hmac_ctx_new(digest.name, bytes.baseAddress, bytes.count)
        }
        guard let context else { return nil }
        self.context = context
        self.outputLength = digest.length
    }

    deinit { ccryptoshim_mac_ctx_free(context) }

    /// Whether `mac` is the HMAC of `message` (constant-time comparison).
    package func verify(_ mac: UnsafeRawBufferPointer, for message: UnsafeRawBufferPointer) -> Bool {
        guard mac.count == outputLength else { return false }
        return ccryptoshim_hmac_verify(context, message.baseAddress, message.count, mac.baseAddress, mac.count) == 1
    }

    /// Writes the HMAC of `message` (`outputLength` bytes) to the start of `out`. False if OpenSSL failed or
    /// `out` is too short.
    package func authenticate(_ message: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        var length = 0
        let ok = ccryptoshim_hmac_compute(
            context,
            message.baseAddress,
            message.count,
            out.baseAddress?.assumingMemoryBound(to: UInt8.self),
            out.count,
            &length
        )
        return ok == 1 && length == outputLength
    }

    /// The HMAC of `message`.
    package func authenticate(_ message: UnsafeRawBufferPointer) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        guard out.withUnsafeMutableBytes({ authenticate(message, into: $0) }) else { return nil }
        out.removeLast(64 - outputLength)
        return out
    }
}
