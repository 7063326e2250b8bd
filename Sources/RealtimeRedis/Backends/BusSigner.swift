import RealtimeCore
internal import RealtimeCrypto

/// Seals bus payloads with an HMAC-SHA256 under the cluster secret, stamped for freshness, and checks them.
///
/// Wire form of a Redis bus payload: 64 lower-case hex digits of `HMAC-SHA256(secret, channel + "\n" + stamp + body)`,
/// then the stamp line (`BusStamp`: `@1 <sender> <sequence> <sentAt>\n`), then the body. The channel is part of the
/// MAC, so a sealed message cannot be replayed onto another route's channel; the stamp is, so it cannot be
/// re-dated or re-numbered, and `BusReplayGuard` refuses a sealed message replayed on its own channel.
///
/// OpenSSL's keyed HMAC context is prepared once (the secret hashed into the inner and outer pads) and duplicated
/// per message, instead of a one-shot `HMAC()` that fetches the digest and keys a new context every time.
struct BusSigner: Sendable {
    /// The keyed HMAC-SHA256 context.
    private let key: HMACKey
    /// This bus instance's sender id and sequence.
    let stamper: BusStamper
    /// Equal for two signers exactly when they hold the same secret (the MAC of a fixed text, unstamped), so two
    /// components can check that they share a secret without comparing it.
    private(set) var fingerprint: [UInt8] = []

    init(secret: [UInt8], stamper: BusStamper = BusStamper()) {
        guard let key = HMACKey(secret: secret, digest: .sha256) else {
            fatalError("OpenSSL could not prepare an HMAC-SHA256 context")
        }
        self.key = key
        self.stamper = stamper
        var fingerprint = [UInt8](repeating: 0, count: 32)
        var channel = "fingerprint"
        channel.withUTF8 { channelBytes in
            fingerprint.withUnsafeMutableBytes { out in
                mac(
                    channel: UnsafeRawBufferPointer(channelBytes),
                    text: UnsafeRawBufferPointer(start: nil, count: 0),
                    into: out
                )
            }
        }
        self.fingerprint = fingerprint
    }

    /// What ``open(channel:payload:)`` found in an authentic payload: its stamp (nil when it has none, e.g. from a
    /// server of an earlier version) and its body.
    struct Opened {
        var stamp: BusStamp?
        var body: ArraySlice<UInt8>
    }

    static let macHexLength = 64
    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Writes the 32-byte MAC of `channel + "\n" + text` to `out`.
    private func mac(
        channel: UnsafeRawBufferPointer,
        text: UnsafeRawBufferPointer,
        into out: UnsafeMutableRawBufferPointer
    ) {
        let count = channel.count + 1 + text.count
        let ok = withUnsafeTemporaryAllocation(byteCount: count, alignment: 1) { input in
            input.copyMemory(from: channel)
            input[channel.count] = UInt8(ascii: "\n")
            UnsafeMutableRawBufferPointer(rebasing: input[(channel.count + 1)...]).copyMemory(from: text)
            return key.authenticate(UnsafeRawBufferPointer(input), into: out)
        }
        precondition(ok, "HMAC-SHA256 failed")
    }

    /// `hex(mac) + stamp + body`, stamped with this sender's next sequence number and the current time (`sentAt`
    /// replaces the time, for tests that play a stale sender).
    func seal(channel: String, body: [UInt8], sentAt: Timestamp? = nil) -> [UInt8] {
        let stamp = stamper.next(sentAt: sentAt).bytes
        var channel = channel
        return channel.withUTF8 { channelBytes in
            [UInt8](unsafeUninitializedCapacity: Self.macHexLength + stamp.count + body.count) { out, count in
                let text = UnsafeMutableRawBufferPointer(
                    rebasing: UnsafeMutableRawBufferPointer(out)[Self.macHexLength...]
                )
                stamp.withUnsafeBytes { text.copyMemory(from: $0) }
                body.withUnsafeBytes {
                    UnsafeMutableRawBufferPointer(rebasing: text[stamp.count...]).copyMemory(from: $0)
                }
                withUnsafeTemporaryAllocation(byteCount: 32, alignment: 1) { digest in
                    mac(channel: UnsafeRawBufferPointer(channelBytes), text: UnsafeRawBufferPointer(text), into: digest)
                    let digits = Self.hexDigits.utf8Start
                    for index in 0..<32 {
                        out[2 * index] = digits[Int(digest[index] >> 4)]
                        out[2 * index + 1] = digits[Int(digest[index] & 0xF)]
                    }
                }
                count = Self.macHexLength + stamp.count + body.count
            }
        }
    }

    /// The stamp and body if `payload`'s MAC is valid for `channel`, else nil (compared in constant time).
    func open(channel: [UInt8], payload: [UInt8]) -> Opened? {
        guard let text = authenticated(channel: channel, payload: payload) else { return nil }
        guard let (stamp, end) = BusStamp.parse(text) else { return Opened(stamp: nil, body: text) }
        return Opened(stamp: stamp, body: text[end...])
    }

    /// The body of `payload` without checking its MAC (after the stamp, when it has one), or nil when it is too
    /// short: for a reader that must look inside to learn which channel the payload was sealed for, and then opens
    /// it with ``open(channel:payload:)`` before it trusts anything it read.
    static func unverifiedBody(_ payload: [UInt8]) -> ArraySlice<UInt8>? {
        guard payload.count >= macHexLength else { return nil }
        let text = payload[macHexLength...]
        guard let (_, end) = BusStamp.parse(text) else { return text }
        return text[end...]
    }

    /// The text after the MAC if the MAC is valid for `channel`.
    private func authenticated(channel: [UInt8], payload: [UInt8]) -> ArraySlice<UInt8>? {
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
                        text: UnsafeRawBufferPointer(rebasing: payloadBytes[Self.macHexLength...]),
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
