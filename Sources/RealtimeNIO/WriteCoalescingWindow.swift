// SPDX-License-Identifier: Apache-2.0

import NIOCore
import Synchronization

/// When an event loop's next write job runs: at once when the loop is quiet, a short window after the last job
/// when the loop is writing a burst.
///
/// Each write job drains every connection of the loop a fan-out woke (`OutboundWakeCoalescer`): one NIO write and
/// one flush, so one `write` syscall, per connection. In a burst the jobs follow each other closely and each finds
/// about as many new frames per connection as publishes completed since the last one, so most of the per-write
/// cost — NIO's pipeline and pending-write bookkeeping, the syscall and the loopback receive work charged to it —
/// is paid for one or two frames. Here a job asked for while the previous one runs, or less than `window` after it
/// ended, starts `window` after that end: the loop serves its other sockets (the publishers' requests) meanwhile,
/// and the wake-ups of that time join the job — more frames per write, the same bytes, fewer writes. A loop that
/// has not written for `window` (an event now and then, a paced publisher) runs the job at once, so a quiet server's
/// latency does not change; a busy one's grows by at most `window` per job.
///
/// The rule is a value (`State`, one per loop) behind a lock taken once per job: the job runs on the loop, the
/// wake-up that asks for it on whichever thread published.
final class WriteCoalescingWindow: Sendable {
    typealias Job = @Sendable () -> Void

    /// The rule: whether a job runs now, after a delay or after the running one, on uptime nanoseconds.
    struct State<DeferredJob> {
        /// What the wake-up asking for a job does.
        enum Schedule {
            /// `eventLoop.execute`: the loop has not written for a window.
            case runNow(DeferredJob)
            /// Schedule the job this many nanoseconds from now: the loop's last job ended less than a window ago.
            case runAfter(nanoseconds: Int64, DeferredJob)
            /// A job is running: this one starts a window after it ended (``ended(now:)`` hands it back).
            case deferred
        }

        let window: Int64
        private(set) var running = false
        /// When the last job ended (`nil` before the first).
        private(set) var lastEnd: UInt64?
        private var waiting: DeferredJob?

        init(windowNanoseconds: Int64) {
            self.window = windowNanoseconds
        }

        /// A job is asked for at `now`.
        mutating func schedule(_ job: DeferredJob, now: UInt64) -> Schedule {
            guard window > 0 else { return .runNow(job) }
            if running {
                waiting = job
                return .deferred
            }
            guard let lastEnd, now < lastEnd &+ UInt64(window) else { return .runNow(job) }
            return .runAfter(nanoseconds: Int64(lastEnd &+ UInt64(window) - now), job)
        }

        /// A job starts on the loop.
        mutating func started() {
            running = true
        }

        /// The job ended at `now`; returns the job asked for meanwhile, to run a window from now.
        mutating func ended(now: UInt64) -> DeferredJob? {
            running = false
            lastEnd = now
            defer { waiting = nil }
            return waiting
        }
    }

    private let state: Mutex<State<Job>>
    /// Uptime nanoseconds now (tests pass a manual clock).
    private let clock: @Sendable () -> UInt64

    /// - Parameters:
    ///   - window: The longest a job waits after the previous one; zero turns coalescing off.
    ///   - clock: Uptime nanoseconds now.
    init(window: TimeAmount, clock: @escaping @Sendable () -> UInt64 = { NIODeadline.now().uptimeNanoseconds }) {
        self.state = Mutex(State(windowNanoseconds: window.nanoseconds))
        self.clock = clock
    }

    /// Asks for `job` to run on `eventLoop`: now, after a delay, or a window after the job that is running.
    func schedule(_ job: @escaping Job, on eventLoop: any EventLoop) {
        let now = clock()
        switch state.withLock({ $0.schedule(job, now: now) }) {
        case .runNow(let job):
            eventLoop.execute { self.run(job, on: eventLoop) }
        case .runAfter(let nanoseconds, let job):
            eventLoop.scheduleTask(in: .nanoseconds(nanoseconds)) { self.run(job, on: eventLoop) }
        case .deferred:
            break
        }
    }

    /// Runs a job on the loop, then schedules the one asked for meanwhile a window later.
    private func run(_ job: Job, on eventLoop: any EventLoop) {
        state.withLock { $0.started() }
        job()
        let now = clock()
        guard let next = state.withLock({ $0.ended(now: now) }) else { return }
        let window = state.withLock { $0.window }
        eventLoop.scheduleTask(in: .nanoseconds(window)) { self.run(next, on: eventLoop) }
    }
}
