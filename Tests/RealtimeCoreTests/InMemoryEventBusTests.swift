import RealtimeCore
import RealtimeTesting
import Testing

@Suite(.timeLimit(.minutes(1))) struct InMemoryEventBusTests {
    let clock = ManualClock()

    func message(_ label: String, route: BusRoute = .everyone) -> BusMessage {
        BusMessage(origin: "srv_test", route: route, payload: .control(.disconnectUser(userID: "u", reason: label)))
    }

    @Test func overflowDropsAndReportsOneGap() async throws {
        let bus = InMemoryEventBus(bufferCapacity: 4, now: clock.timestampSource)
        let subscription = try bus.open(server: "srv_a")
        let start = clock.timestamp
        for index in 0..<10 {
            try await bus.publish(message("\(index)"))
            clock.advance(by: .milliseconds(10))
        }
        #expect(subscription.bufferedCount == 4)
        #expect(subscription.droppedCount == 6)
        #expect(bus.droppedCount == 6)
        #expect(bus.publishedCount == 10)

        var iterator = subscription.deliveries.makeAsyncIterator()
        for index in 0..<4 { #expect(await iterator.next() == .message(message("\(index)"))) }
        let gap = await iterator.next()
        #expect(gap == .gap(from: start + .milliseconds(40), to: start + .milliseconds(90)))
        try await bus.publish(message("after"))
        #expect(await iterator.next() == .message(message("after")))
        #expect(subscription.deliveredCount == 6)
        #expect(subscription.bufferedCount == 0)
        await subscription.close()
        #expect(await iterator.next() == nil)
    }

    @Test func gapPrecedesTheFirstMessageAfterRecovery() async throws {
        let bus = InMemoryEventBus(bufferCapacity: 3, now: clock.timestampSource)
        let subscription = try bus.open(server: "srv_a")
        var iterator = subscription.deliveries.makeAsyncIterator()
        for index in 0..<5 { try await bus.publish(message("\(index)")) }  // 0,1,2 buffered; 3,4 dropped
        #expect(await iterator.next() == .message(message("0")))
        // One slot free: not enough for gap + message, so "5" is dropped too and widens the gap.
        try await bus.publish(message("5"))
        #expect(await iterator.next() == .message(message("1")))
        // Two slots free now: the gap marker goes in ahead of "6".
        try await bus.publish(message("6"))
        #expect(await iterator.next() == .message(message("2")))
        guard case .gap = await iterator.next() else {
            Issue.record("expected a gap before message 6")
            return
        }
        #expect(await iterator.next() == .message(message("6")))
        #expect(subscription.droppedCount == 3)
        #expect(subscription.bufferedCount == 0)
    }

    @Test func memoryStaysBoundedForAConsumerThatNeverReads() async throws {
        let bus = InMemoryEventBus(bufferCapacity: 100)
        let subscription = try bus.open(server: "srv_a")
        for index in 0..<100_000 { try await bus.publish(message("\(index)")) }
        #expect(subscription.bufferedCount == 100)
        #expect(subscription.droppedCount == 99_900)
        await subscription.close()
        #expect(bus.subscriptionCount == 0)
    }

    @Test func waitingConsumerIsWokenByPublishAndByClose() async throws {
        let bus = InMemoryEventBus()
        let subscription = try bus.open(server: "srv_a")
        try await subscription.addInterest(.user("u1"))
        try await confirmation(expectedCount: 2) { received in
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await delivery in subscription.deliveries {
                        if case .message = delivery { received() }
                    }
                }
                // The consumer may or may not be waiting yet: both paths must deliver. Closing lets the
                // consumer drain what was buffered, then finishes the stream.
                try await bus.publish(message("one", route: .user("u1")))
                await Task.yield()
                try await bus.publish(message("two", route: .user("u1")))
                await subscription.close()
                try await group.waitForAll()
            }
        }
    }

    @Test func cancellingTheConsumerFinishesTheStream() async throws {
        let bus = InMemoryEventBus()
        let subscription = try bus.open(server: "srv_a")
        let consumer = Task {
            var count = 0
            for await _ in subscription.deliveries { count += 1 }
            return count
        }
        consumer.cancel()
        #expect(await consumer.value == 0)
    }

    @Test func interestAfterCloseIsRefusedAndRemovalIsHarmless() async throws {
        let bus = InMemoryEventBus()
        let subscription = try bus.open(server: "srv_a")
        await subscription.close()
        await subscription.close()
        await #expect(throws: RealtimeError.self) { try await subscription.addInterest(.admins) }
        try await subscription.removeInterest(.admins)
        try await bus.publish(message("nobody listens"))
        #expect(bus.subscriptionCount == 0)
    }

    @Test func removingMoreInterestThanAddedNeverGoesNegative() async throws {
        let bus = InMemoryEventBus()
        let subscription = try bus.open(server: "srv_a")
        var iterator = subscription.deliveries.makeAsyncIterator()
        try await subscription.removeInterest(.user("u1"))
        try await subscription.addInterest(.user("u1"))
        try await bus.publish(message("heard", route: .user("u1")))
        #expect(await iterator.next() == .message(message("heard", route: .user("u1"))))
    }
}
