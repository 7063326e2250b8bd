// SPDX-License-Identifier: Apache-2.0

internal import CCryptoShim

/// How a signature is made over a message (the digest is given separately).
package enum SignatureScheme: Equatable, Sendable {
    /// RSASSA-PKCS1-v1_5 (RFC 8017 §8.2).
    case rsaPKCS1v15
    /// RSASSA-PSS with MGF1 on the same digest and a salt as long as the digest (RFC 7518 §3.5).
    case rsaPSS
    /// ECDSA, signatures in the raw r ‖ s form of JWS.
    case ecdsa
    /// Ed25519 (PureEdDSA: no separate digest).
    case ed25519
}

/// The conversions between the JWS (IEEE P1363) form of an ECDSA signature, r ‖ s, and DER.
package enum ECDSASignatureForm {
    /// DER `SEQUENCE { INTEGER r, INTEGER s }` of `raw`, or `nil` if its length is not even or above 132.
    package static func der(fromRaw raw: [UInt8]) -> [UInt8]? {
        var der = [UInt8](repeating: 0, count: 160)
        let length = raw.withUnsafeBytes { raw in
            der.withUnsafeMutableBufferPointer { out in
                ccryptoshim_ecdsa_raw_to_der(raw.baseAddress, raw.count, out.baseAddress, out.count)
            }
        }
        guard length > 0 else { return nil }
        return Array(der.prefix(Int(length)))
    }

    /// r ‖ s of `half` bytes each, read by OpenSSL's `d2i_ECDSA_SIG`, or `nil`.
    package static func raw(fromDER der: [UInt8], half: Int) -> [UInt8]? {
        var raw = [UInt8](repeating: 0, count: 2 * half)
        let ok = der.withUnsafeBytes { der in
            raw.withUnsafeMutableBufferPointer { out in
                ccryptoshim_ecdsa_der_to_raw(der.baseAddress, der.count, out.baseAddress, Int32(half))
            }
        }
        return ok == 1 ? raw : nil
    }
}
