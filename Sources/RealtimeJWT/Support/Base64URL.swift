// SPDX-License-Identifier: Apache-2.0

/// Strict base64url (RFC 4648 §5) without padding, as JWS compact serialization requires (RFC 7515 §2).
///
/// The decoder refuses padding, whitespace, any character outside the URL-safe alphabet, a length that no
/// encoding has (4n + 1) and non-canonical encodings (unused low bits that are not zero), so every byte
/// string has exactly one accepted text.
package enum Base64URL {
    private static let alphabet: [UInt8] = Array(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8
    )

    /// Four tables of 256 entries, one per position in a group of four characters: the character's 6 bits
    /// already shifted to their place in the group's 24 bits, or `invalid` for a character outside the alphabet.
    /// A group then decodes with four loads and three ORs.
    private static let decodeTables: [UInt32] = {
        var tables = [UInt32](repeating: invalid, count: 4 * 256)
        for position in 0..<4 {
            for (index, character) in alphabet.enumerated() {
                tables[position * 256 + Int(character)] = UInt32(index) << (18 - 6 * position)
            }
        }
        return tables
    }()

    private static let invalid: UInt32 = 0x8000_0000

    /// The number of bytes `count` characters decode to, or `nil` for a length no encoding has (4n + 1).
    static func decodedCount(_ count: Int) -> Int? {
        if count % 4 == 1 { return nil }
        return count / 4 * 3 + (count % 4 == 0 ? 0 : count % 4 - 1)
    }

    /// Decodes `text`, or returns `nil` if it is not canonical unpadded base64url.
    package static func decode(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        guard let outputCount = decodedCount(text.count) else { return nil }
        var valid = true
        let output = [UInt8](unsafeUninitializedCapacity: outputCount) { out, initialized in
            valid = decode(text, into: out.baseAddress!)
            initialized = valid ? outputCount : 0
        }
        return valid ? output : nil
    }

    /// Decodes `text` into `out`, which has room for at least `decodedCount(text.count)` bytes. Returns whether
    /// `text` is canonical unpadded base64url (the caller checked its length with ``decodedCount(_:)``); on
    /// `false` the contents of `out` are unspecified.
    static func decode(_ text: UnsafeBufferPointer<UInt8>, into out: UnsafeMutablePointer<UInt8>) -> Bool {
        let count = text.count
        guard count % 4 != 1 else { return false }
        guard count > 0 else { return true }
        return decodeTables.withUnsafeBufferPointer { tables -> Bool in
            let t0 = tables.baseAddress!
            let t1 = t0 + 256
            let t2 = t0 + 512
            let t3 = t0 + 768
            var input = text.baseAddress!
            var output = out
            var bad: UInt32 = 0
            var remaining = count
            while remaining >= 4 {
                let group = t0[Int(input[0])] | t1[Int(input[1])] | t2[Int(input[2])] | t3[Int(input[3])]
                bad |= group
                output[0] = UInt8(truncatingIfNeeded: group >> 16)
                output[1] = UInt8(truncatingIfNeeded: group >> 8)
                output[2] = UInt8(truncatingIfNeeded: group)
                input += 4
                output += 3
                remaining -= 4
            }
            switch remaining {
            case 2:
                let group = t0[Int(input[0])] | t1[Int(input[1])]
                bad |= group
                if group >> 12 & 0x0F != 0 { bad |= invalid }  // unused low bits of the second character
                output[0] = UInt8(truncatingIfNeeded: group >> 16)
            case 3:
                let group = t0[Int(input[0])] | t1[Int(input[1])] | t2[Int(input[2])]
                bad |= group
                if group >> 6 & 0x03 != 0 { bad |= invalid }  // unused low bits of the third character
                output[0] = UInt8(truncatingIfNeeded: group >> 16)
                output[1] = UInt8(truncatingIfNeeded: group >> 8)
            default:
                break
            }
            // Valid groups use only the low 24 bits; `invalid` is bit 31.
            return bad & invalid == 0
        }
    }

    /// Decodes a string (convenience for key material).
    package static func decode(_ text: String) -> [UInt8]? {
        var text = text
        return text.withUTF8 { decode($0) }
    }

    /// Encodes `bytes` without padding, appending to `output`.
    static func encode(_ bytes: UnsafeRawBufferPointer, into output: inout [UInt8]) {
        let count = bytes.count
        output.reserveCapacity(output.count + (count * 4 + 2) / 3)
        alphabet.withUnsafeBufferPointer { alphabet in
            var index = 0
            while index + 3 <= count {
                let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
                output.append(alphabet[Int(value >> 18 & 0x3F)])
                output.append(alphabet[Int(value >> 12 & 0x3F)])
                output.append(alphabet[Int(value >> 6 & 0x3F)])
                output.append(alphabet[Int(value & 0x3F)])
                index += 3
            }
            switch count - index {
            case 1:
                let value = UInt32(bytes[index]) << 16
                output.append(alphabet[Int(value >> 18 & 0x3F)])
                output.append(alphabet[Int(value >> 12 & 0x3F)])
            case 2:
                let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8
                output.append(alphabet[Int(value >> 18 & 0x3F)])
                output.append(alphabet[Int(value >> 12 & 0x3F)])
                output.append(alphabet[Int(value >> 6 & 0x3F)])
            default:
                break
            }
        }
    }

    /// Encodes `bytes` without padding.
    package static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        bytes.withUnsafeBytes { encode($0, into: &output) }
        return String(decoding: output, as: UTF8.self)
    }
}
