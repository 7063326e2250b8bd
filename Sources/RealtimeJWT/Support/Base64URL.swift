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

    /// 0...63 for alphabet characters, 0xFF otherwise.
    private static let decodeTable: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (index, character) in alphabet.enumerated() { table[Int(character)] = UInt8(index) }
        return table
    }()

    /// Decodes `text`, or returns `nil` if it is not canonical unpadded base64url.
    package static func decode(_ text: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let count = text.count
        if count % 4 == 1 { return nil }
        let outputCount = count / 4 * 3 + (count % 4 == 0 ? 0 : count % 4 - 1)
        return decodeTable.withUnsafeBufferPointer { table -> [UInt8]? in
            var valid = true
            let output = [UInt8](unsafeUninitializedCapacity: outputCount) { out, initialized in
                var inputIndex = 0
                var outputIndex = 0
                var bad: UInt8 = 0
                while inputIndex + 4 <= count {
                    let a = table[Int(text[inputIndex])]
                    let b = table[Int(text[inputIndex + 1])]
                    let c = table[Int(text[inputIndex + 2])]
                    let d = table[Int(text[inputIndex + 3])]
                    bad |= a | b | c | d
                    out[outputIndex] = a << 2 | b >> 4
                    out[outputIndex + 1] = b << 4 | c >> 2
                    out[outputIndex + 2] = c << 6 | d
                    inputIndex += 4
                    outputIndex += 3
                }
                switch count - inputIndex {
                case 2:
                    let a = table[Int(text[inputIndex])]
                    let b = table[Int(text[inputIndex + 1])]
                    bad |= a | b
                    if b & 0x0F != 0 { bad = 0xFF }
                    out[outputIndex] = a << 2 | b >> 4
                    outputIndex += 1
                case 3:
                    let a = table[Int(text[inputIndex])]
                    let b = table[Int(text[inputIndex + 1])]
                    let c = table[Int(text[inputIndex + 2])]
                    bad |= a | b | c
                    if c & 0x03 != 0 { bad = 0xFF }
                    out[outputIndex] = a << 2 | b >> 4
                    out[outputIndex + 1] = b << 4 | c >> 2
                    outputIndex += 2
                default:
                    break
                }
                // 0xFF marks an invalid character; valid values are below 64, so bit 7 is only set by 0xFF.
                valid = bad & 0x80 == 0
                initialized = outputIndex
            }
            return valid ? output : nil
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
