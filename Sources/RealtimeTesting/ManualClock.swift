public import RealtimeCore
import Synchronization

/// A clock that only moves when a test calls ``advance(by:)``.
///
/// It is both a monotonic `Clock` (for `InMemoryRateLimiter`) and a wall clock (``timestamp``, starting at
/// `start`) for the `now:` closures of the in-memory stores, so one call moves every backend of a test:
///
/// ```swift
/// let clock = ManualClock()
/// let store = InMemorySessionStore(now: clock.timestampSource)
/// let limiter = InMemoryRateLimiter(clock: clock)
/// clock.advance(by: .seconds(5))
/// ```
public final class ManualClock: Clock, Sendable {
    /// An instant of a ``ManualClock``: the time advanced since the clock was created.
    public struct Instant: InstantProtocol, Sendable, Hashable, Comparable {
        /// The time advanced since the clock was created.
        public var offset: Duration

        public init(offset: Duration) { self.offset = offset }

        public func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        public func duration(to other: Instant) -> Duration { other.offset - offset }
        public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        var id: UInt64
        var deadline: Instant
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextSleeper: UInt64 = 0
        var sleepers: [Sleeper] = []
    }

    private let state = Mutex(State())
    /// The wall-clock time at offset zero.
    public let start: Timestamp

    /// Creates a clock at offset zero whose wall-clock time is `start`.
    public init(start: Timestamp = Timestamp(millisecondsSinceEpoch: 1_800_000_000_000)) {
        self.start = start
    }

    public var now: Instant { state.withLock { $0.now } }
    public var minimumResolution: Duration { .nanoseconds(1) }

    /// The wall-clock time now.
    public var timestamp: Timestamp { start + now.offset }

    /// A closure reading ``timestamp``, for the `now:` parameter of the in-memory backends.
    public var timestampSource: @Sendable () -> Timestamp { { [self] in self.timestamp } }

    /// Moves the clock forward and wakes the sleepers whose deadline passed.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a clock cannot go back")
        let woken = state.withLock { state in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in woken { sleeper.continuation.resume() }
    }

    /// Suspends until ``advance(by:)`` moves the clock to `deadline`, or throws `CancellationError`.
    public func sleep(until deadline: Instant, tolerance: Duration? = nil) async throws {
        let id = state.withLock { state in
            state.nextSleeper += 1
            return state.nextSleeper
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let ready: Result<Void, any Error>? = state.withLock { state in
                    if Task.isCancelled { return .failure(CancellationError()) }
                    if deadline <= state.now { return .success(()) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    return nil
                }
                if let ready { continuation.resume(with: ready) }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }
}
