import RealtimeCore
internal import RealtimeCrypto

/// Seals bus payloads with an HMAC-SHA256 under the cluster secret and checks them.
///
/// Wire form of a Redis bus payload: 64 lower-case hex digits of `HMAC-SHA256(secret, channel + "\n" + body)`
/// followed by the body. The channel is part of the MAC, so a sealed message cannot be replayed onto another
/// route's channel.
///
/// OpenSSL's keyed HMAC context is prepared once (the secret hashed into the inner and outer pads) and duplicated
/// per message, instead of a one-shot `HMAC()` that fetches the digest and keys a new context every time.
struct BusSigner: Sendable {
    /// The keyed HMAC-SHA256 context.
    private let key: HMACKey
    /// Equal for two signers exactly when they hold the same secret (the sealed form of a fixed text), so two
    /// components can check that they share a secret without comparing it.
    private(set) var fingerprint: [UInt8] = []

    init(secret: [UInt8]) {
        guard let key = HMACKey(secret: secret, digest: .sha256) else {
            fatalError("OpenSSL could not prepare an HMAC-SHA256 context")
        }
        self.key = key
        fingerprint = seal(channel: "fingerprint", body: [])
    }

    static let macHexLength = 64
    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Writes the 32-byte MAC of `channel + "\n" + body` to `out`.
    private func mac(
        channel: UnsafeRawBufferPointer,
        body: UnsafeRawBufferPointer,
        into out: UnsafeMutableRawBufferPointer
    ) {
        let count = channel.count + 1 + body.count
        let ok = withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { input in
            input.copyMemory(from: channel)
            input[channel.count] = UInt8(ascii: "\n")
            UnsafeMutableRawBufferPointer(rebasing: input[(channel.count + 1)...]).copyMemory(from: body)
            return key.authenticate(UnsafeRawBufferPointer(input), into: out)
        }
        precondition(ok, "HMAC-SHA256 failed")
    }

    /// `hex(mac) + body`.
    func seal(channel: String, body: [UInt8]) -> [UInt8] {
        var channel = channel
        return channel.withUTF8 { channelBytes in
            body.withUnsafeBytes { bodyBytes in
                [UInt8](unsafeUninitializedCapacity: Self.macHexLength + bodyBytes.count) { out, count in
                    withUnsafeTemporaryAllocation(byteCount: 32, alignment: 1) { digest in
                        mac(channel: UnsafeRawBufferPointer(channelBytes), body: bodyBytes, into: digest)
                        let digits = Self.hexDigits.utf8Start
                        for index in 0..<32 {
                            out[2 * index] = digits[Int(digest[index] >> 4)]
                            out[2 * index + 1] = digits[Int(digest[index] & 0xF)]
                        }
                    }
                    if let source = bodyBytes.baseAddress, let target = out.baseAddress {
                        UnsafeMutableRawPointer(target + Self.macHexLength).copyMemory(
                            from: source,
                            byteCount: bodyBytes.count
                        )
                    }
                    count = Self.macHexLength + bodyBytes.count
                }
            }
        }
    }

    /// The body if `payload`'s MAC is valid for `channel`, else nil (compared in constant time).
    func open(channel: [UInt8], payload: [UInt8]) -> ArraySlice<UInt8>? {
        guard payload.count >= Self.macHexLength else { return nil }
        let valid = payload.withUnsafeBytes { payloadBytes in
            channel.withUnsafeBytes { channelBytes in
                withUnsafeTemporaryAllocation(byteCount: 64, alignment: 1) { scratch -> Bool in
                    let received = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<32])
                    for index in 0..<32 {
                        guard let high = Self.hexValue(payloadBytes[2 * index]),
                            let low = Self.hexValue(payloadBytes[2 * index + 1])
                        else { return false }
                        received[index] = high << 4 | low
                    }
                    let expected = UnsafeMutableRawBufferPointer(rebasing: scratch[32..<64])
                    mac(
                        channel: channelBytes,
                        body: UnsafeRawBufferPointer(rebasing: payloadBytes[Self.macHexLength...]),
                        into: expected
                    )
                    return ConstantTime.equals(UnsafeRawBufferPointer(received), UnsafeRawBufferPointer(expected))
                }
            }
        }
        return valid ? payload[Self.macHexLength...] : nil
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}
