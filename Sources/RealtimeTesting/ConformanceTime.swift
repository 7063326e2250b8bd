import Logging
public import RealtimeCore
import Synchronization

/// How a conformance suite reads and moves time for the backend under test.
///
/// In-memory backends use a ``ManualClock`` (``manual(_:ttl:)``): time moves instantly and exactly. Backends on a
/// real server (Redis) use ``realTime(ttl:tolerance:)``: the suite sleeps for short TTLs and compares
/// durations within `tolerance`.
public struct ConformanceTime: Sendable {
    /// The wall-clock time as the backend sees it (used to compute `expiresAt`/`retainUntil` values).
    public var now: @Sendable () -> Timestamp
    /// Lets `duration` pass for the backend.
    public var advance: @Sendable (Duration) async throws -> Void
    /// The short lifetime the suite gives servers, sessions and revocations that it lets expire.
    public var ttl: Duration
    /// How far a measured duration (`retryAfter`, `resetAfter`) may be from its exact value.
    public var tolerance: Duration
    /// Set by a real-time `advance` that overshot its duration by more than `tolerance` (the machine stalled).
    let stalls: StallRecorder?

    public init(
        now: @escaping @Sendable () -> Timestamp,
        advance: @escaping @Sendable (Duration) async throws -> Void,
        ttl: Duration,
        tolerance: Duration
    ) {
        self.now = now
        self.advance = advance
        self.ttl = ttl
        self.tolerance = tolerance
        self.stalls = nil
    }

    init(
        now: @escaping @Sendable () -> Timestamp,
        advance: @escaping @Sendable (Duration) async throws -> Void,
        ttl: Duration,
        tolerance: Duration,
        stalls: StallRecorder
    ) {
        self.now = now
        self.advance = advance
        self.ttl = ttl
        self.tolerance = tolerance
        self.stalls = stalls
    }

    /// Whether a wait overshot since the last call (and resets it). A check that only holds if no more than the
    /// waited time passed (an upper bound: "still revoked", "exactly one unit refilled") is meaningless after a
    /// stall; such checks accept a stall and say so, instead of failing on a busy machine. Manual time never
    /// stalls, so every check stays exact there.
    public func stalledSinceLastCheck(_ check: String) -> Bool {
        guard let stalls, stalls.take() else { return false }
        Logger(label: "realtime-testing").notice(
            "the machine stalled past the waited time; not checking an upper bound",
            metadata: ["realtime.check": "\(check)"]
        )
        return true
    }

    /// Time from a ``ManualClock``: exact, no waiting.
    public static func manual(_ clock: ManualClock, ttl: Duration = .seconds(30)) -> ConformanceTime {
        ConformanceTime(
            now: clock.timestampSource,
            advance: { clock.advance(by: $0) },
            ttl: ttl,
            tolerance: .zero
        )
    }

    /// Real time: `advance` sleeps. Keep `ttl` short (the suite waits a few multiples of it).
    public static func realTime(ttl: Duration = .seconds(1), tolerance: Duration = .milliseconds(250))
        -> ConformanceTime
    {
        let stalls = StallRecorder()
        return ConformanceTime(
            now: { Timestamp.now() },
            advance: { duration in
                let start = ContinuousClock.now
                try await Task.sleep(for: duration)
                if ContinuousClock.now - start > duration + tolerance { stalls.mark() }
            },
            ttl: ttl,
            tolerance: tolerance,
            stalls: stalls
        )
    }
}

/// Remembers that a real-time wait overshot.
final class StallRecorder: Sendable {
    private let stalled = Mutex(false)
    func mark() { stalled.withLock { $0 = true } }
    func take() -> Bool {
        stalled.withLock { value in
            defer { value = false }
            return value
        }
    }
}

/// A short random suffix, so suites sharing one backend server (Redis) never see each other's ids.
func uniqueName(_ prefix: String) -> String { "\(prefix)-\(RandomID.hex(bytes: 6))" }
