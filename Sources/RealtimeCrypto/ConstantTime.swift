// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim

/// Comparison of secrets (MACs, digests) whose time does not depend on where the bytes differ.
package enum ConstantTime {
    /// Whether `a` and `b` hold the same bytes; the time depends on their length only. Buffers of different
    /// lengths are unequal (their length is not a secret).
    package static func equals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        guard a.count == b.count else { return false }
        return ccryptoshim_memcmp(a.baseAddress, b.baseAddress, a.count) == 0
    }
}

/// The calling thread's OpenSSL error queue.
///
/// Every call into libcrypto that fails leaves the queue empty (see `ccryptoshim.h`): a failure is reported by
/// the wrapper's return value, never by an entry that a later OpenSSL user on the same thread would mistake
/// for its own. Tests read this to check that discipline.
package enum OpenSSLErrorQueue {
    /// Whether the calling thread's queue holds no error.
    package static var isEmpty: Bool { ccryptoshim_error_queue_is_empty() == 1 }
}
