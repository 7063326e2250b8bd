import Synchronization
import Testing

@testable import RealtimeCore

/// `OutboundWakeCoalescer` and its `WakeBatch` on their own: one scheduled job per batch of wake-ups, the wake-ups
/// in order, and a new job for a wake-up after the job took its batch. The scheduler is a list the test runs.
@Suite struct OutboundWakeCoalescerTests {
    /// Jobs the coalescer scheduled, run when the test says so.
    final class ManualScheduler: Sendable {
        private let jobs = Mutex<[@Sendable () -> Void]>([])
        var pending: Int { jobs.withLock { $0.count } }
        func schedule(_ job: @escaping @Sendable () -> Void) { jobs.withLock { $0.append(job) } }
        /// Runs the jobs scheduled so far (not the ones they schedule).
        func runPending() {
            let batch = jobs.withLock { jobs in
                defer { jobs = [] }
                return jobs
            }
            for job in batch { job() }
        }
    }

    final class Log: Sendable {
        private let entries = Mutex<[String]>([])
        func append(_ entry: String) { entries.withLock { $0.append(entry) } }
        var value: [String] { entries.withLock { $0 } }
    }

    @Test func theWakeUpsOfOneBatchShareOneJobAndRunInOrder() {
        let scheduler = ManualScheduler()
        let coalescer = OutboundWakeCoalescer { scheduler.schedule($0) }
        let log = Log()
        for name in ["a", "b", "c"] { coalescer.wake { log.append(name) } }
        #expect(scheduler.pending == 1)
        #expect(log.value.isEmpty)
        scheduler.runPending()
        #expect(log.value == ["a", "b", "c"])
        #expect(scheduler.pending == 0)
    }

    @Test func aWakeUpAfterTheJobTookItsBatchSchedulesTheNextJob() {
        let scheduler = ManualScheduler()
        let coalescer = OutboundWakeCoalescer { scheduler.schedule($0) }
        let log = Log()
        // A wake-up from inside the job (a connection that queued more while it drained) joins the next batch.
        coalescer.wake {
            log.append("first")
            coalescer.wake { log.append("from inside") }
        }
        scheduler.runPending()
        #expect(log.value == ["first"])
        #expect(scheduler.pending == 1)
        coalescer.wake { log.append("later") }
        #expect(scheduler.pending == 1)
        scheduler.runPending()
        #expect(log.value == ["first", "from inside", "later"])
    }

    @Test func wakeUpsThroughAQueueAreCoalescedAndNotRunInline() {
        let scheduler = ManualScheduler()
        let coalescer = OutboundWakeCoalescer { scheduler.schedule($0) }
        let log = Log()
        let queues = (0..<3).map { _ in OutboundQueue(maxFrames: 10, maxBytes: 1000) }
        for (index, queue) in queues.enumerated() {
            queue.onReady(coalescer: coalescer) { log.append("q\(index)") }
        }
        // Empty queues: nothing to wake yet.
        #expect(scheduler.pending == 0)
        for queue in queues { #expect(queue.enqueue(.text("x")) == .queued) }
        #expect(log.value.isEmpty)
        #expect(scheduler.pending == 1)
        // A queue already woken (not drained yet) is not woken twice.
        #expect(queues[0].enqueue(.text("y")) == .queued)
        scheduler.runPending()
        #expect(log.value == ["q0", "q1", "q2"])
    }

    @Test func theBatchSaysWhoSchedulesTheJob() {
        var batch = WakeBatch()
        #expect(batch.add({}) == true)
        #expect(batch.add({}) == false)
        #expect(batch.jobScheduled)
        #expect(batch.take().count == 2)
        #expect(!batch.jobScheduled)
        #expect(batch.handlers.isEmpty)
        #expect(batch.add({}) == true)
    }
}
