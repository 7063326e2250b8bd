internal import CLibCrypto
import RealtimeCore

/// Seals bus payloads with an HMAC-SHA256 under the cluster secret and checks them.
///
/// Wire form of a Redis bus payload: 64 lower-case hex digits of `HMAC-SHA256(secret, channel + "\n" + body)`
/// followed by the body. The channel is part of the MAC, so a sealed message cannot be replayed onto another
/// route's channel.
struct BusSigner: Sendable {
    private let secret: [UInt8]

    init(secret: [UInt8]) { self.secret = secret }

    static let macHexLength = 64

    private func mac(channel: some Collection<UInt8>, body: some Collection<UInt8>) -> [UInt8] {
        var input = [UInt8]()
        input.reserveCapacity(channel.count + 1 + body.count)
        input.append(contentsOf: channel)
        input.append(UInt8(ascii: "\n"))
        input.append(contentsOf: body)
        var out = [UInt8](repeating: 0, count: 32)
        let ok = secret.withUnsafeBytes { key in
            input.withUnsafeBytes { data in
                out.withUnsafeMutableBufferPointer { out in
                    clibcrypto_hmac_sha256(
                        key.baseAddress,
                        Int32(key.count),
                        data.baseAddress,
                        data.count,
                        out.baseAddress
                    )
                }
            }
        }
        precondition(ok == 1, "HMAC-SHA256 failed")
        return out
    }

    /// `hex(mac) + body`.
    func seal(channel: String, body: [UInt8]) -> [UInt8] {
        let digest = mac(channel: channel.utf8, body: body)
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(Self.macHexLength + body.count)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
        out.append(contentsOf: body)
        return out
    }

    /// The body if `payload`'s MAC is valid for `channel`, else nil (compared in constant time).
    func open(channel: [UInt8], payload: [UInt8]) -> ArraySlice<UInt8>? {
        guard payload.count >= Self.macHexLength else { return nil }
        var received = [UInt8](repeating: 0, count: 32)
        for index in 0..<32 {
            guard let high = Self.hexValue(payload[2 * index]), let low = Self.hexValue(payload[2 * index + 1]) else {
                return nil
            }
            received[index] = high << 4 | low
        }
        let body = payload[Self.macHexLength...]
        let expected = mac(channel: channel, body: body)
        let equal = expected.withUnsafeBytes { a in
            received.withUnsafeBytes { b in clibcrypto_memcmp(a.baseAddress, b.baseAddress, 32) }
        }
        return equal == 0 ? body : nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
