// SPDX-License-Identifier: Apache-2.0

internal import CLibCrypto

/// A message digest fetched from OpenSSL's default provider once per process.
///
/// Fetching explicitly (instead of passing `EVP_sha256()`) spares OpenSSL 3 an implicit fetch on every
/// signature operation.
final class MessageDigest: @unchecked Sendable {
    // @unchecked Sendable: `pointer` is set once in init and never reassigned. A fetched EVP_MD is immutable
    // and reference-counted atomically by OpenSSL, which documents fetched algorithm objects as safe to share
    // between threads. The instances live in static lets for the process lifetime.
    let pointer: OpaquePointer

    /// The digest's output length in bytes.
    let length: Int

    private init(_ name: String, length: Int) {
        self.length = length
        guard let pointer = clibcrypto_md_fetch(name) else {
            fatalError("OpenSSL's default provider has no \(name) digest")
        }
        self.pointer = pointer
    }

    deinit { clibcrypto_md_free(pointer) }

    static let sha256 = MessageDigest("SHA256", length: 32)
    static let sha384 = MessageDigest("SHA384", length: 48)
    static let sha512 = MessageDigest("SHA512", length: 64)

    /// The name OpenSSL's HMAC takes for this digest.
    var hmacName: String {
        if self === MessageDigest.sha256 { return "SHA256" }
        if self === MessageDigest.sha384 { return "SHA384" }
        return "SHA512"
    }
}
