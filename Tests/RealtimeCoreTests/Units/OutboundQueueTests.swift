import Synchronization
import Testing

@testable import RealtimeCore

/// `OutboundQueue` on its own: bounds, close and terminate, the ready handler. No hub, no socket.
@Suite struct OutboundQueueTests {
    final class Calls: Sendable {
        private let count = Mutex(0)
        func record() { count.withLock { $0 += 1 } }
        var value: Int { count.withLock { $0 } }
    }

    /// Every frame `drain` hands over, and what it left behind.
    func drained(_ queue: OutboundQueue, maxFrames: Int = .max) -> ([OutboundFrame], OutboundDrainResult) {
        var frames: [OutboundFrame] = []
        let result = queue.drain(maxFrames: maxFrames) { frames.append($0) }
        return (frames, result)
    }

    @Test func theFrameBoundRefusesTheFrameThatDoesNotFitAndForceIgnoresIt() {
        let queue = OutboundQueue(maxFrames: 2, maxBytes: 1000)
        #expect(queue.enqueue(.text("a")) == .queued)
        #expect(queue.enqueue(.text("b")) == .queued)
        #expect(queue.enqueue(.text("c")) == .overflow)
        #expect(queue.enqueue(.ping) == .overflow)
        #expect(queue.depth == (2, 2))
        // A reply to the client's own request is queued past the bound.
        #expect(queue.enqueue(.text("reply"), force: true) == .queued)
        #expect(queue.depth == (3, 7))
        #expect(drained(queue).0 == [.text("a"), .text("b"), .text("reply")])
        #expect(queue.depth == (0, 0))
    }

    @Test func theByteBoundCountsUTF8PayloadBytesAndAcceptsAnExactFit() {
        let queue = OutboundQueue(maxFrames: 100, maxBytes: 10)
        #expect(queue.enqueue(.text("12345")) == .queued)
        #expect(queue.enqueue(.text("123456")) == .overflow)
        #expect(queue.enqueue(.text("1234é")) == .overflow)  // 6 bytes of UTF-8
        #expect(queue.depth == (1, 5))
        #expect(queue.enqueue(.text("12345")) == .queued)  // exactly 10
        #expect(queue.enqueue(.ping) == .queued)  // a ping has no payload
        #expect(queue.enqueue(.text("x")) == .overflow)
        #expect(queue.depth == (3, 10))
        // Draining frees the bytes again.
        #expect(drained(queue, maxFrames: 1) == ([.text("12345")], .more))
        #expect(queue.enqueue(.text("abcde")) == .queued)
    }

    @Test func closeDropsTheBacklogOnceAndRefusesLaterFrames() {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        _ = queue.enqueue(.text("a"))
        _ = queue.enqueue(.text("b"))
        #expect(queue.close(.slowConsumer, reason: "slow"))
        #expect(!queue.close(.goingAway, reason: "again"))
        #expect(queue.isClosed)
        #expect(!queue.isTerminated)
        #expect(queue.enqueue(.text("late")) == .closed)
        #expect(queue.enqueue(.text("forced"), force: true) == .closed)
        // The close frame counts like any frame (its reason's bytes), and draining it leaves nothing counted.
        #expect(queue.depth == (1, 4))
        #expect(drained(queue) == ([.close(.slowConsumer, reason: "slow")], .finished))
        #expect(queue.depth == (0, 0))
        #expect(drained(queue) == ([], .finished))
    }

    @Test func aFlushingCloseFollowsTheBacklog() async {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        _ = queue.enqueue(.text("a"))
        #expect(queue.close(.goingAway, reason: "bye", flush: true))
        #expect(await queue.next() == .text("a"))
        #expect(await queue.next() == .close(.goingAway, reason: "bye"))
        #expect(await queue.next() == nil)
    }

    @Test func terminateDropsEverythingAndEndsAWaitingConsumer() async {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        _ = queue.enqueue(.text("a"))
        queue.terminate()
        #expect(queue.isTerminated)
        #expect(queue.isClosed)
        #expect(queue.depth == (0, 0))
        #expect(queue.enqueue(.text("b")) == .closed)
        #expect(!queue.close(.normal, reason: ""))
        #expect(await queue.next() == nil)

        // A consumer already waiting is resumed with the end of the sequence.
        let waiting = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        let consumer = Task { await waiting.next() }
        await Task.yield()
        waiting.terminate()
        #expect(await consumer.value == nil)
    }

    @Test func aWaitingConsumerGetsTheNextFrame() async {
        let queue = OutboundQueue(maxFrames: 1, maxBytes: 1000)
        let consumer = Task { await queue.next() }
        await Task.yield()
        #expect(queue.enqueue(.text("first")) == .queued)
        #expect(await consumer.value == .text("first"))
        #expect(queue.depth == (0, 0))
    }

    @Test func theReadyHandlerFiresOncePerDrainThatFoundTheQueueEmpty() {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        let calls = Calls()
        queue.onReady { calls.record() }
        #expect(calls.value == 0)  // nothing queued yet: armed, not called
        _ = queue.enqueue(.text("a"))
        #expect(calls.value == 1)
        _ = queue.enqueue(.text("b"))
        #expect(calls.value == 1)  // not re-armed until a drain finds the queue empty
        #expect(drained(queue, maxFrames: 1) == ([.text("a")], .more))
        _ = queue.enqueue(.text("c"))
        #expect(calls.value == 1)
        #expect(drained(queue) == ([.text("b"), .text("c")], .idle))
        _ = queue.enqueue(.text("d"))
        #expect(calls.value == 2)
        #expect(drained(queue) == ([.text("d")], .idle))
        // A close wakes the consumer too, and the drain after it finishes.
        queue.close(.normal, reason: "done")
        #expect(calls.value == 3)
        #expect(drained(queue) == ([.close(.normal, reason: "done")], .finished))
    }

    @Test func aReadyHandlerInstalledOnAQueueWithFramesIsCalledAtOnce() {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        _ = queue.enqueue(.text("a"))
        let calls = Calls()
        queue.onReady { calls.record() }
        #expect(calls.value == 1)

        let closed = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        closed.close(.normal, reason: "")
        let closedCalls = Calls()
        closed.onReady { closedCalls.record() }
        #expect(closedCalls.value == 1)
    }

    @Test func terminateWakesAnArmedConsumerOnceAndForgetsItsHandler() {
        let queue = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        let calls = Calls()
        queue.onReady { calls.record() }
        queue.terminate()
        #expect(calls.value == 1)
        #expect(drained(queue) == ([], .finished))
        #expect(queue.enqueue(.text("a")) == .closed)
        #expect(calls.value == 1)
    }

    @Test func aFanOutEnqueueReportsTheConsumerToWakeInsteadOfWakingIt() {
        let queue = OutboundQueue(maxFrames: 2, maxBytes: 1000)
        let calls = Calls()
        queue.onReady { calls.record() }
        #expect(calls.value == 0)
        // The consumer waits for frames: the first frame asks the caller to wake it, later ones do not.
        #expect(queue.enqueueDeferringWake(.text("a")) == .queuedConsumerToWake)
        #expect(calls.value == 0)
        #expect(queue.enqueueDeferringWake(.text("b")) == .queued)
        #expect(queue.enqueueDeferringWake(.text("c")) == .overflow)
        queue.wakeConsumer()
        #expect(calls.value == 1)
        #expect(drained(queue) == ([.text("a"), .text("b")], .idle))
        #expect(queue.enqueueDeferringWake(.text("d")) == .queuedConsumerToWake)
        queue.close(.normal, reason: "bye")
        #expect(queue.enqueueDeferringWake(.text("e")) == .closed)
    }
    /// The batch drain (one lock per pass) takes the frames the per-frame drain hands over, reports the same result
    /// and re-arms the ready handler the same way, step for step.
    @Test(arguments: [1, 2, 3, 64])
    func theBatchDrainMatchesThePerFrameDrain(maxFrames: Int) {
        let perFrame = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        let batch = OutboundQueue(maxFrames: 10, maxBytes: 1000)
        let perFrameCalls = Calls()
        let batchCalls = Calls()
        perFrame.onReady { perFrameCalls.record() }
        batch.onReady { batchCalls.record() }
        var taken: [OutboundFrame] = [.text("already there")]
        var perFrameTaken: [OutboundFrame] = []
        func step(_ enqueue: [OutboundFrame], close: Bool = false) {
            for frame in enqueue {
                #expect(perFrame.enqueue(frame) == batch.enqueue(frame))
            }
            if close {
                #expect(perFrame.close(.normal, reason: "bye", flush: true))
                #expect(batch.close(.normal, reason: "bye", flush: true))
            }
            while true {
                let (frames, expected) = drained(perFrame, maxFrames: maxFrames)
                perFrameTaken += frames
                let result = batch.drain(maxFrames: maxFrames, into: &taken)
                #expect(result == expected)
                #expect(batch.depth == perFrame.depth)
                #expect(batchCalls.value == perFrameCalls.value)
                if result != .more { break }
            }
        }
        step([.text("a")])
        step([.text("b"), .ping, .text("c"), .text("d")])
        step([])
        step([.text("e"), .text("f")], close: true)
        #expect(taken == [.text("already there")] + perFrameTaken)
        #expect(perFrameTaken.last == .close(.normal, reason: "bye"))
        #expect(batch.depth == (0, 0))
        #expect(batch.drain(maxFrames: maxFrames, into: &taken) == .finished)
    }

    @Test func theBatchDrainFreesTheBoundsOfWhatItTook() {
        let queue = OutboundQueue(maxFrames: 2, maxBytes: 1000)
        _ = queue.enqueue(.text("abc"))
        _ = queue.enqueue(.text("de"))
        #expect(queue.enqueue(.text("f")) == .overflow)
        var taken: [OutboundFrame] = []
        #expect(queue.drain(maxFrames: 1, into: &taken) == .more)
        #expect(queue.depth == (1, 2))
        #expect(queue.enqueue(.text("f")) == .queued)
        #expect(queue.drain(maxFrames: 0, into: &taken) == .more)
        #expect(queue.drain(maxFrames: .max, into: &taken) == .idle)
        #expect(taken == [.text("abc"), .text("de"), .text("f")])
        #expect(queue.depth == (0, 0))
    }
}
