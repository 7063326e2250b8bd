import RealtimeCore
import Testing

@testable import RealtimeRedis

/// The freshness stamp of sealed bus messages and the replay guard, without Redis (see `RedisBusFreshnessTests`
/// for the same against a real Redis).
@Suite struct BusFreshnessTests {
    static let now = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)
    static let limits = BusReplayGuard.Limits(window: .seconds(30), reorderWindow: 128, maximumSenders: 4)

    static func stamp(_ sequence: UInt64, sender: UInt64 = 0xA1, at time: Timestamp = now) -> BusStamp {
        BusStamp(sender: sender, sequence: sequence, sentAt: time)
    }

    @Test func stampLineRoundTripsAndIsStrict() throws {
        let stamp = BusStamp(sender: 0x9f86_d081_884c_7d65, sequence: 42, sentAt: Self.now)
        let line = stamp.bytes
        #expect(String(decoding: line, as: UTF8.self) == "@1 9f86d081884c7d65 42 1800000000000\n")
        let parsed = try #require(BusStamp.parse(ArraySlice(line + Array("[2,…".utf8))))
        #expect(parsed.stamp == stamp)
        #expect(parsed.end == line.count)
        let extreme = BusStamp(sender: .max, sequence: .max, sentAt: Timestamp(millisecondsSinceEpoch: .max))
        #expect(BusStamp.parse(ArraySlice(extreme.bytes))?.stamp == extreme)
        #expect(extreme.bytes.count == BusStamp.maximumLength)
        for bad in [
            "@2 9f86d081884c7d65 42 1800000000000\n",  // another version
            "@1 9F86D081884C7D65 42 1800000000000\n",  // upper-case hex
            "@1 9f86d081884c7d6 42 1800000000000\n",  // 15 hex digits
            "@1 9f86d081884c7d65 042 1800000000000\n",  // leading zero
            "@1 9f86d081884c7d65 0 1800000000000\n",  // sequence 0
            "@1 9f86d081884c7d65 42 1800000000000",  // no line feed
            "@1 9f86d081884c7d65 42  1800000000000\n",  // two spaces
            "@1 9f86d081884c7d65 42 -1\n",  // a sign
            "@1 9f86d081884c7d65 18446744073709551616 1\n",  // sequence overflows
            "@1 9f86d081884c7d65 1 9223372036854775808\n",  // time beyond Int64
            "[2,\"srv\",\"everyone\",\"control\"]\n{}",  // a body without a stamp (an earlier version)
        ] {
            #expect(BusStamp.parse(ArraySlice(bad.utf8)) == nil, "\(bad)")
        }
    }

    @Test func signerSealsTheStampInsideTheMAC() throws {
        let signer = BusSigner(secret: Array("cluster-secret-for-tests-0123456789".utf8))
        let channel = "rthub:bus:everyone"
        let body = Array("[2,\"srv\",\"everyone\",\"control\"]\n{}".utf8)
        let first = signer.seal(channel: channel, body: body)
        let second = signer.seal(channel: channel, body: body)
        let opened = try #require(signer.open(channel: Array(channel.utf8), payload: first))
        #expect(Array(opened.body) == body)
        let stamp = try #require(opened.stamp)
        #expect(stamp.sender == signer.stamper.sender)
        #expect(signer.open(channel: Array(channel.utf8), payload: second)?.stamp?.sequence == stamp.sequence + 1)
        // Re-dating or re-numbering the stamp breaks the MAC.
        var redated = stamp
        redated.sentAt = Self.now
        var renumbered = stamp
        renumbered.sequence += 7
        for forged in [redated, renumbered] {
            let payload = Array(first[..<BusSigner.macHexLength]) + forged.bytes + body
            #expect(signer.open(channel: Array(channel.utf8), payload: payload) == nil)
        }
    }

    @Test func refusesReplaysAndAcceptsReorderingWithinTheWindow() {
        var guardian = BusReplayGuard(limits: Self.limits)
        #expect(guardian.admit(Self.stamp(10), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(10), viaPattern: false, now: Self.now) == .replayed)
        // Gaps (channels not heard) and reordering (two connections of the sender) are legitimate.
        #expect(guardian.admit(Self.stamp(15), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(12), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(11), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(12), viaPattern: false, now: Self.now) == .replayed)
        #expect(guardian.admit(Self.stamp(15), viaPattern: false, now: Self.now) == .replayed)
        // The same message heard through the pattern of user channels is a second, genuine copy: once.
        #expect(guardian.admit(Self.stamp(15), viaPattern: true, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(15), viaPattern: true, now: Self.now) == .replayed)
        // A big jump clears the bitmap; what falls below the reorder window is refused, what is within accepted once.
        #expect(guardian.admit(Self.stamp(1_000), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(1_000 - 128), viaPattern: false, now: Self.now) == .replayed)
        #expect(guardian.admit(Self.stamp(1_000 - 127), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(1_000 - 127), viaPattern: false, now: Self.now) == .replayed)
        // Slots reused by the circular bitmap were cleared when the highest sequence moved past them.
        for sequence in UInt64(1_001)...1_300 {
            #expect(guardian.admit(Self.stamp(sequence), viaPattern: false, now: Self.now) == .fresh)
        }
        for sequence in UInt64(1_173)...1_300 {
            #expect(guardian.admit(Self.stamp(sequence), viaPattern: false, now: Self.now) == .replayed)
        }
        // Another sender has its own sequence.
        #expect(guardian.admit(Self.stamp(10, sender: 0xB2), viaPattern: false, now: Self.now) == .fresh)
    }

    @Test func refusesStaleAndFutureMessagesAtTheWindowsEdge() {
        var guardian = BusReplayGuard(limits: Self.limits)
        #expect(guardian.admit(Self.stamp(1, at: Self.now - .seconds(30)), viaPattern: false, now: Self.now) == .fresh)
        #expect(guardian.admit(Self.stamp(2, at: Self.now + .seconds(30)), viaPattern: false, now: Self.now) == .fresh)
        let late = Self.stamp(3, at: Self.now - .milliseconds(30_001))
        #expect(guardian.admit(late, viaPattern: false, now: Self.now) == .stale)
        let early = Self.stamp(4, at: Self.now + .milliseconds(30_001))
        #expect(guardian.admit(early, viaPattern: false, now: Self.now) == .stale)
        // A stale message does not move the sender's window: the sequences stay available to fresh messages.
        #expect(guardian.admit(Self.stamp(3), viaPattern: false, now: Self.now) == .fresh)
    }

    @Test func memoryIsBoundedAndIdleSendersAreForgotten() {
        var guardian = BusReplayGuard(limits: Self.limits)
        for sender in UInt64(1)...10 {
            #expect(guardian.admit(Self.stamp(1, sender: sender), viaPattern: false, now: Self.now) == .fresh)
            #expect(guardian.senderCount <= Self.limits.maximumSenders)
        }
        #expect(guardian.senderCount == 4)
        // Silent for more than twice the window: forgotten, and every message it sent before is stale by then.
        let later = Self.now + .seconds(61)
        #expect(guardian.admit(Self.stamp(1, sender: 99, at: later), viaPattern: false, now: later) == .fresh)
        #expect(guardian.senderCount == 1)
        #expect(guardian.admit(Self.stamp(1, sender: 10), viaPattern: false, now: later) == .stale)
    }
}
