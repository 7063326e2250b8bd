// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim

/// A message digest fetched from OpenSSL's default provider once per process.
///
/// Fetching explicitly (instead of passing `EVP_sha256()`) spares OpenSSL 3 an implicit fetch on every
/// signature operation.
package final class MessageDigest: @unchecked Sendable {
    // @unchecked Sendable: `pointer` is set once in init and never reassigned. A fetched EVP_MD is immutable
    // and reference-counted atomically by OpenSSL, which documents fetched algorithm objects as safe to share
    // between threads. The instances live in static lets for the process lifetime.
    let pointer: OpaquePointer

    /// OpenSSL's name of the digest, also the name its HMAC takes.
    let name: String

    /// The digest's output length in bytes.
    package let length: Int

    private init(_ name: String, length: Int) {
        self.name = name
        self.length = length
        guard let pointer = ccryptoshim_md_fetch(name) else {
            fatalError("OpenSSL's default provider has no \(name) digest")
        }
        self.pointer = pointer
    }

    deinit { ccryptoshim_md_free(pointer) }

    package static let sha256 = MessageDigest("SHA256", length: 32)
    package static let sha384 = MessageDigest("SHA384", length: 48)
    package static let sha512 = MessageDigest("SHA512", length: 64)
}
