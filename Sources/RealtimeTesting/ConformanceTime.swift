public import RealtimeCore

/// How a conformance suite reads and moves time for the backend under test.
///
/// In-memory backends use a ``ManualClock`` (``manual(_:)``): time moves instantly and exactly. Backends on a
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
        ConformanceTime(
            now: { Timestamp.now() },
            advance: { try await Task.sleep(for: $0) },
            ttl: ttl,
            tolerance: tolerance
        )
    }
}

/// A short random suffix, so suites sharing one backend server (Redis) never see each other's ids.
func uniqueName(_ prefix: String) -> String { "\(prefix)-\(RandomID.hex(bytes: 6))" }
