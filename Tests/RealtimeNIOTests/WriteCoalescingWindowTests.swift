// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import RealtimeNIO

/// When an event loop's next write job runs: at once on a quiet loop; a window after the last job ended while the
/// loop is writing a burst (asked for less than a window after it, or while it runs). The rule on its own, then on
/// an `EmbeddedEventLoop` whose manual clock is also the window's.
@Suite struct WriteCoalescingWindowTests {
    typealias State = WriteCoalescingWindow.State<String>

    static let window: Int64 = 1_000_000

    static func describe(_ schedule: State.Schedule) -> String {
        switch schedule {
        case .runNow(let job): "now \(job)"
        case .runAfter(let nanoseconds, let job): "after \(nanoseconds) \(job)"
        case .deferred: "deferred"
        }
    }

    /// A state whose first job ran from 5.0 to 5.2 ms of uptime.
    static func afterAJob() -> State {
        var state = State(windowNanoseconds: Self.window)
        #expect(Self.describe(state.schedule("first", now: 5_000_000)) == "now first")
        state.started()
        #expect(state.ended(now: 5_200_000) == nil)
        return state
    }

    @Test func aQuietLoopRunsTheJobAtOnce() {
        var state = Self.afterAJob()
        // Exactly a window after the last job ended, and any time later: at once.
        #expect(Self.describe(state.schedule("second", now: 6_200_000)) == "now second")
        #expect(Self.describe(state.schedule("third", now: 60_000_000)) == "now third")
    }

    @Test func aJobAskedForSoonAfterTheLastOneStartsAWindowAfterItEnded() {
        var state = Self.afterAJob()
        #expect(Self.describe(state.schedule("second", now: 5_200_000)) == "after 1000000 second")
        #expect(Self.describe(state.schedule("second", now: 5_700_000)) == "after 500000 second")
        #expect(Self.describe(state.schedule("second", now: 6_199_999)) == "after 1 second")
    }

    @Test func aJobAskedForWhileOneRunsIsHandedBackWhenItEnds() {
        var state = State(windowNanoseconds: Self.window)
        _ = state.schedule("first", now: 5_000_000)
        state.started()
        #expect(Self.describe(state.schedule("second", now: 5_100_000)) == "deferred")
        #expect(state.running)
        #expect(state.ended(now: 7_000_000) == "second")
        // Handed back once.
        state.started()
        #expect(state.ended(now: 7_100_000) == nil)
        #expect(state.lastEnd == 7_100_000)
    }

    @Test func aZeroWindowAlwaysRunsAtOnce() {
        var state = State(windowNanoseconds: 0)
        state.started()
        #expect(Self.describe(state.schedule("during", now: 1)) == "now during")
        #expect(state.ended(now: 2) == nil)
        #expect(Self.describe(state.schedule("after", now: 2)) == "now after")
    }

    /// Jobs that ran, in order.
    final class Ran: Sendable {
        private let names = Mutex<[String]>([])
        func record(_ name: String) { names.withLock { $0.append(name) } }
        var value: [String] { names.withLock { $0 } }
    }

    @Test func onAnEventLoopWithAManualClock() throws {
        let loop = EmbeddedEventLoop()
        defer { try? loop.syncShutdownGracefully() }
        let coalescing = WriteCoalescingWindow(window: .milliseconds(1)) { loop.now.uptimeNanoseconds }
        let ran = Ran()
        coalescing.schedule({ ran.record("first") }, on: loop)
        loop.run()
        #expect(ran.value == ["first"])
        // Right after it: a window later.
        coalescing.schedule({ ran.record("second") }, on: loop)
        loop.run()
        loop.advanceTime(by: .microseconds(999))
        #expect(ran.value == ["first"])
        loop.advanceTime(by: .microseconds(1))
        #expect(ran.value == ["first", "second"])
        // Asked for while a job runs: a window after that job, not right after it.
        loop.advanceTime(by: .seconds(1))
        coalescing.schedule(
            {
                ran.record("third")
                coalescing.schedule({ ran.record("fourth") }, on: loop)
            },
            on: loop
        )
        loop.run()
        #expect(ran.value == ["first", "second", "third"])
        loop.advanceTime(by: .microseconds(999))
        #expect(ran.value == ["first", "second", "third"])
        loop.advanceTime(by: .microseconds(1))
        #expect(ran.value == ["first", "second", "third", "fourth"])
        // Quiet for a window: at once again.
        loop.advanceTime(by: .milliseconds(1))
        coalescing.schedule({ ran.record("fifth") }, on: loop)
        loop.run()
        #expect(ran.value == ["first", "second", "third", "fourth", "fifth"])
    }
}
