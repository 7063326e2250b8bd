import Synchronization

/// Coalesces the outbound wake-ups of every connection one writer thread serves (an event loop) into one
/// scheduled job per batch.
///
/// A fan-out that queues an event for a thousand idle connections wakes each of them. Without a coalescer every
/// wake-up is its own scheduled task (`eventLoop.execute` per connection, each an allocation and possibly a
/// syscall to wake the thread); with one, the first wake-up after the writer thread went idle schedules a single
/// job, later ones only join its list, and the job wakes every connection on it, in order. Events that arrive
/// while the job is pending (a burst, or a batch from the bus) join the same job, so their frames go out in the
/// same writes.
///
/// A host creates one per writer thread and registers each connection's wake-up with
/// ``HubConnection/onOutboundReady(coalescedBy:_:)``. The wake-ups run inside the job, on the writer thread, so
/// they may drain and write directly.
public final class OutboundWakeCoalescer: Sendable {
    private struct State: ~Copyable {
        var pending = WakeBatch()
    }

    private let state = Mutex(State())
    private let schedule: @Sendable (_ job: @escaping @Sendable () -> Void) -> Void

    /// Creates a coalescer.
    ///
    /// - Parameter schedule: Runs `job` on the writer thread soon, never inline (for an event loop:
    ///   `{ eventLoop.execute($0) }`). It is called at most once per batch, outside every lock.
    public init(schedule: @escaping @Sendable (_ job: @escaping @Sendable () -> Void) -> Void) {
        self.schedule = schedule
    }

    /// Adds a wake-up to the pending batch, scheduling the batch's job if it is the first.
    func wake(_ handler: @escaping @Sendable () -> Void) {
        let scheduleJob = state.withLock { $0.pending.add(handler) }
        if scheduleJob { schedule { self.runPendingBatch() } }
    }

    /// The job: takes the batch (later wake-ups start the next one) and runs its wake-ups in order.
    private func runPendingBatch() {
        let handlers = state.withLock { $0.pending.take() }
        for handler in handlers { handler() }
    }
}

/// The pending wake-ups of an ``OutboundWakeCoalescer``: which of them schedules the job, and what the job takes.
struct WakeBatch {
    private(set) var handlers: [@Sendable () -> Void] = []
    /// A job is scheduled and has not taken the batch yet.
    private(set) var jobScheduled = false

    /// Adds a wake-up; returns whether the caller must schedule the job (the first wake-up of a batch).
    mutating func add(_ handler: @escaping @Sendable () -> Void) -> Bool {
        handlers.append(handler)
        if jobScheduled { return false }
        jobScheduled = true
        return true
    }

    /// The job runs: hands over the batch. A wake-up added after this schedules a new job.
    mutating func take() -> [@Sendable () -> Void] {
        jobScheduled = false
        defer { handlers = [] }
        return handlers
    }
}
