import RealtimeCore
import Synchronization

/// What makes a sealed bus message unique and dated, inside its MAC: the sending bus instance (`sender`, a random
/// 64-bit boot id drawn when the bus is created, so a restarted server is a new sender), its per-sender sequence
/// number (from 1, one counter for every channel the sender publishes on) and the sender's wall-clock time.
///
/// Wire form, the first line of the sealed text (after the MAC, before the body):
/// `@1 <sender: 16 lower-case hex digits> <sequence: decimal> <sentAt: milliseconds since the epoch>\n`,
/// e.g. `@1 9f86d081884c7d65 42 1795940572123\n`. `@1` is the envelope's version.
struct BusStamp: Sendable, Hashable {
    var sender: UInt64
    var sequence: UInt64
    var sentAt: Timestamp

    static let prefix = Array("@1 ".utf8)
    /// The longest stamp line: prefix, 16 hex digits, two spaces, a sequence of up to 20 digits (`UInt64`), a time
    /// of up to 19 (`Int64`), the line feed.
    static let maximumLength = prefix.count + 16 + 1 + 20 + 1 + 19 + 1

    /// The stamp line.
    var bytes: [UInt8] {
        var out = Self.prefix
        out.reserveCapacity(Self.maximumLength)
        let digits = Array("0123456789abcdef".utf8)
        for shift in stride(from: 60, through: 0, by: -4) { out.append(digits[Int((sender >> UInt64(shift)) & 0xF)]) }
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: String(sequence).utf8)
        out.append(UInt8(ascii: " "))
        out.append(contentsOf: String(sentAt.millisecondsSinceEpoch).utf8)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// Parses the stamp line at the start of `text`; returns the stamp and the index after its line feed, or nil
    /// for anything but a well-formed version-1 stamp (no leading zeros, a sequence of at least 1).
    static func parse(_ text: ArraySlice<UInt8>) -> (stamp: BusStamp, end: Int)? {
        guard text.starts(with: prefix) else { return nil }
        var index = text.startIndex + prefix.count
        guard text.endIndex - index >= 17 else { return nil }
        var sender: UInt64 = 0
        for byte in text[index..<(index + 16)] {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): sender = sender << 4 | UInt64(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): sender = sender << 4 | UInt64(byte - UInt8(ascii: "a") + 10)
            default: return nil
            }
        }
        index += 16
        guard text[index] == UInt8(ascii: " ") else { return nil }
        index += 1
        guard let (sequence, afterSequence) = number(text, from: index, terminator: UInt8(ascii: " ")),
            sequence >= 1,
            let (millis, end) = number(text, from: afterSequence, terminator: UInt8(ascii: "\n")),
            millis <= UInt64(Int64.max)
        else { return nil }
        return (
            BusStamp(sender: sender, sequence: sequence, sentAt: Timestamp(millisecondsSinceEpoch: Int64(millis))), end
        )
    }

    /// A decimal number without leading zeros starting at `from` and ended by `terminator`; returns it and the
    /// index after the terminator.
    private static func number(
        _ text: ArraySlice<UInt8>,
        from: Int,
        terminator: UInt8
    ) -> (UInt64, Int)? {
        var value: UInt64 = 0
        var index = from
        while index < text.endIndex, text[index] != terminator {
            let byte = text[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9"), index - from < 20,
                !(index == from + 1 && text[from] == UInt8(ascii: "0"))
            else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
            index += 1
        }
        guard index > from, index < text.endIndex else { return nil }
        return (value, index + 1)
    }
}

/// The stamps a sealing bus hands out: its boot id and the next sequence number.
final class BusStamper: Sendable {
    let sender: UInt64
    private let lastSequence = Atomic<UInt64>(0)
    private let now: @Sendable () -> Timestamp

    init(sender: UInt64 = UInt64.random(in: 1...UInt64.max), now: @escaping @Sendable () -> Timestamp = { .now() }) {
        self.sender = sender
        self.now = now
    }

    /// A stamp with the next sequence number and the current time (or `sentAt`, for tests playing a stale sender).
    func next(sentAt: Timestamp? = nil) -> BusStamp {
        let sequence = lastSequence.add(1, ordering: .relaxed).newValue
        return BusStamp(sender: sender, sequence: sequence, sentAt: sentAt ?? now())
    }
}

/// Refuses stale and replayed bus messages: one per subscription, fed every authentic message in the order the
/// subscription reads them.
///
/// - **Stale**: the stamp's time is more than `window` away from the receiver's clock, in either direction (the
///   window therefore also absorbs the clock skew between servers).
/// - **Replayed**: per sender and lane, the highest sequence seen and a bitmap of the `reorderWindow` sequences
///   below it. A sequence already marked, or `reorderWindow` or more below the highest, is refused. One sender's
///   sequence is shared by all its channels and its pool of Redis connections, so a receiver sees gaps (channels it
///   does not hear) and some reordering (two connections); both are accepted within the bitmap.
/// - **Lanes**: a subscription with interest in a user's route and in the admins route hears a user-channel
///   message twice, once on the channel and once through the pattern of user channels; each lane keeps its own
///   bitmap, so both genuine copies pass and a replay is refused on each.
///
/// Memory: `reorderWindow / 8` bytes per active sender and lane, at most `maximumSenders` of them (only holders of
/// the cluster secret create senders). A sender silent for twice the window is forgotten: every message it sent
/// before is stale by then, so forgetting it reopens nothing. Beyond `maximumSenders`, the least recently heard is
/// forgotten first (replays of its messages younger than the window would then pass once each).
struct BusReplayGuard: Sendable {
    enum Verdict: Sendable, Equatable { case fresh, stale, replayed }

    struct Limits: Sendable, Hashable {
        var window: Duration
        var reorderWindow: Int
        var maximumSenders: Int
    }

    private struct Key: Hashable {
        var sender: UInt64
        var viaPattern: Bool
    }

    private struct Window {
        var highest: UInt64
        var bits: [UInt64]
        var lastHeard: Timestamp
    }

    let limits: Limits
    private var windows: [Key: Window] = [:]
    private var lastSweep: Timestamp?

    init(limits: Limits) {
        var limits = limits
        limits.reorderWindow = max(64, (limits.reorderWindow + 63) / 64 * 64)
        limits.maximumSenders = max(1, limits.maximumSenders)
        self.limits = limits
    }

    /// How many sender lanes are remembered.
    var senderCount: Int { windows.count }

    /// Judges `stamp`, heard at `now`, and remembers it when it is fresh.
    mutating func admit(_ stamp: BusStamp, viaPattern: Bool, now: Timestamp) -> Verdict {
        let windowMs = limits.window.milliseconds
        let age = now.millisecondsSinceEpoch &- stamp.sentAt.millisecondsSinceEpoch
        guard age <= windowMs, age >= -windowMs else { return .stale }
        sweep(now: now)
        let key = Key(sender: stamp.sender, viaPattern: viaPattern)
        let width = UInt64(limits.reorderWindow)
        guard var window = windows.removeValue(forKey: key) else {
            makeRoom()
            var window = Window(
                highest: stamp.sequence,
                bits: Array(repeating: 0, count: limits.reorderWindow / 64),
                lastHeard: now
            )
            Self.mark(stamp.sequence, in: &window)
            windows[key] = window
            return .fresh
        }
        defer { windows[key] = window }
        if stamp.sequence > window.highest {
            if stamp.sequence - window.highest >= width {
                for index in window.bits.indices { window.bits[index] = 0 }
            } else {
                // The sequences skipped (heard on channels this subscription does not hear, or still on their
                // way): whole words at once where aligned (the width is a multiple of 64, so a sequence's bit in
                // its word is its value modulo 64).
                var cleared = window.highest + 1
                while cleared < stamp.sequence {
                    if cleared % 64 == 0, stamp.sequence - cleared >= 64 {
                        window.bits[Self.position(cleared, window).word] = 0
                        cleared += 64
                    } else {
                        Self.clear(cleared, in: &window)
                        cleared += 1
                    }
                }
            }
            window.highest = stamp.sequence
            Self.mark(stamp.sequence, in: &window)
            window.lastHeard = now
            return .fresh
        }
        guard window.highest - stamp.sequence < width, !Self.isMarked(stamp.sequence, in: window) else {
            return .replayed
        }
        Self.mark(stamp.sequence, in: &window)
        window.lastHeard = now
        return .fresh
    }

    private static func position(_ sequence: UInt64, _ window: Window) -> (word: Int, bit: UInt64) {
        let slot = Int(sequence % UInt64(window.bits.count * 64))
        return (slot / 64, UInt64(1) << UInt64(slot % 64))
    }

    private static func mark(_ sequence: UInt64, in window: inout Window) {
        let (word, bit) = position(sequence, window)
        window.bits[word] |= bit
    }

    private static func clear(_ sequence: UInt64, in window: inout Window) {
        let (word, bit) = position(sequence, window)
        window.bits[word] &= ~bit
    }

    private static func isMarked(_ sequence: UInt64, in window: Window) -> Bool {
        let (word, bit) = position(sequence, window)
        return window.bits[word] & bit != 0
    }

    /// Forgets senders silent for twice the window, at most once per window.
    private mutating func sweep(now: Timestamp) {
        if let lastSweep, now - lastSweep < limits.window { return }
        lastSweep = now
        let idle = limits.window * 2
        windows = windows.filter { now - $0.value.lastHeard <= idle }
    }

    /// Forgets the least recently heard sender when the table is full.
    private mutating func makeRoom() {
        guard windows.count >= limits.maximumSenders,
            let oldest = windows.min(by: { $0.value.lastHeard < $1.value.lastHeard })?.key
        else { return }
        windows.removeValue(forKey: oldest)
    }
}
