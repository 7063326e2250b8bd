import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

/// The push-style outbound consumer (`onOutboundReady` + `drainOutbound`) that event-loop hosts use instead of a
/// writer task per connection.
@Suite("Push-style outbound consumer")
struct PushConsumerTests {
    let fixture = HubFixture()

    /// Counts wake-ups.
    final class WakeUps: Sendable {
        private let state = Mutex(0)
        var count: Int { state.withLock { $0 } }
        func fire() { state.withLock { $0 += 1 } }
    }

    /// Drains everything queued, returning the frames and what the drain reported.
    func drainAll(_ connection: HubConnection, maxFrames: Int = .max) -> ([OutboundFrame], OutboundDrainResult) {
        var frames: [OutboundFrame] = []
        let result = connection.drainOutbound(maxFrames: maxFrames) { frames.append($0) }
        return (frames, result)
    }

    static func type(of frame: OutboundFrame) -> String? {
        guard let text = frame.text else { return nil }
        return (try? JSONParser().parse(text))?["type"]?.stringValue
    }

    @Test func wakesOncePerDrainAndHandsFramesInOrder() async throws {
        let hub = try fixture.hub()
        let connection = try await hub.rawConnection(token: "alice-token")
        let wakeUps = WakeUps()
        // `connected` is already queued: the handler fires right away.
        connection.onOutboundReady { wakeUps.fire() }
        #expect(wakeUps.count == 1)
        let (first, firstResult) = drainAll(connection)
        #expect(first.map(Self.type(of:)) == ["connected"])
        #expect(firstResult == .idle)

        await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["authentication.*"]}}"#)
        for _ in 0..<5 {
            try await hub.publishAuthenticationEvent(.authenticationLoginFailure, userID: "alice")
        }
        // Six frames arrived, but the consumer was woken once: it had not drained since.
        #expect(wakeUps.count == 2)
        let (partial, partialResult) = drainAll(connection, maxFrames: 4)
        #expect(partial.map(Self.type(of:)) == ["subscribed", "event", "event", "event"])
        #expect(partialResult == .more)
        // `.more` does not re-arm: nothing new arrived, no wake-up.
        #expect(wakeUps.count == 2)
        let (rest, restResult) = drainAll(connection)
        #expect(rest.map(Self.type(of:)) == ["event", "event"])
        #expect(restResult == .idle)
        try await hub.publishAuthenticationEvent(.authenticationLoginFailure, userID: "alice")
        #expect(wakeUps.count == 3)
        await connection.closed()
    }

    @Test func aCloseFromTheHubIsTheLastFrameAndFinishesTheDrain() async throws {
        let hub = try fixture.hub()
        let connection = try await hub.rawConnection(token: "alice-token")
        let wakeUps = WakeUps()
        connection.onOutboundReady { wakeUps.fire() }
        _ = drainAll(connection)
        try await hub.disconnect(userID: "alice", reason: "bye")
        #expect(wakeUps.count == 2)
        let (frames, result) = drainAll(connection)
        #expect(frames == [.close(.disconnected, reason: "bye")])
        #expect(result == .finished)
        // Finished stays finished, and no more wake-ups follow.
        try await hub.publishAuthenticationEvent(.authenticationLoginFailure, userID: "alice")
        #expect(drainAll(connection).1 == .finished)
        #expect(wakeUps.count == 2)
        await connection.closed(code: .disconnected)
    }

    @Test func theSocketClosingWakesTheConsumerToFinish() async throws {
        let hub = try fixture.hub()
        let connection = try await hub.rawConnection(token: "alice-token")
        let wakeUps = WakeUps()
        connection.onOutboundReady { wakeUps.fire() }
        _ = drainAll(connection)
        await connection.closed(code: CloseCode(1006))
        #expect(wakeUps.count == 2)
        #expect(drainAll(connection) == ([], .finished))
        #expect(await hub.stats().server.connections == 0)
    }

    @Test func theReadyHandlerIsReleasedOnceTheSocketIsClosed() async throws {
        final class HostConnection: Sendable {}
        let hub = try fixture.hub()
        let connection = try await hub.rawConnection(token: "alice-token")
        weak var released: HostConnection?
        do {
            // A host's handler typically captures the host's per-connection object, which holds the connection.
            let host = HostConnection()
            released = host
            connection.onOutboundReady { _ = host }
        }
        #expect(released != nil)
        await connection.closed(code: .normal)
        #expect(released == nil, "the hub still holds the host's handler after the close")
    }

    @Test func concurrentPublishersLoseNoWakeUp() async throws {
        let hub = try fixture.hub { $0.limits.outboundQueueFrames = 100_000 }
        let connection = try await hub.rawConnection(token: "alice-token")
        await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["authentication.*"]}}"#)
        let wakeUps = WakeUps()
        connection.onOutboundReady { wakeUps.fire() }
        let publishers = 8
        let perPublisher = 300
        let total = publishers * perPublisher
        try await withThrowingTaskGroup(of: Void.self) { group in
            for publisher in 0..<publishers {
                group.addTask {
                    for sequence in 0..<perPublisher {
                        try await hub.publishAuthenticationEvent(
                            .authenticationLoginSuccess,
                            userID: "alice",
                            data: ["p": .int(Int64(publisher)), "n": .int(Int64(sequence))]
                        )
                        if sequence % 16 == 0 { await Task.yield() }
                    }
                }
            }
            // The consumer: drain at each wake-up, like an event loop would, until every event arrived. A lost
            // wake-up would leave frames queued with nobody draining: the bounded wait then ends the loop early.
            group.addTask {
                var next = [Int](repeating: 0, count: publishers)
                var received = 0
                var seen = 0
                let deadline = ContinuousClock.now + .seconds(30)
                while received < total && ContinuousClock.now < deadline {
                    while wakeUps.count == seen && ContinuousClock.now < deadline {
                        try await Task.sleep(for: .milliseconds(1))
                    }
                    seen = wakeUps.count
                    let (frames, _) = drainAll(connection)
                    for frame in frames {
                        guard let text = frame.text, let json = try? JSONParser().parse(text),
                            json["type"]?.stringValue == "event",
                            let data = json["payload"]?["data"],
                            let publisher = data["p"]?.intValue.map(Int.init),
                            let sequence = data["n"]?.intValue.map(Int.init)
                        else { continue }
                        #expect(sequence == next[publisher], "publisher \(publisher) out of order")
                        next[publisher] = sequence + 1
                        received += 1
                    }
                }
                #expect(received == total, "a wake-up was lost: \(received) of \(total) events drained")
            }
            try await group.waitForAll()
        }
        await connection.closed()
    }
}
