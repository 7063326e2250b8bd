// Recovery on loopback Redis (issue 14):
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks recovery [rounds]
//
// Both measurements run on Redis, then again on the in-memory backends (an `InMemoryHistoryStore`, which keeps
// events as their frames and decodes them on read).
//
// 1. Replay: one client reconnects having missed 1,000 events of its user stream; measured from the `subscribe`
//    with `recover` until the client's consumer has read the `recovered` message (after the 1,000 events): the
//    history reads (Redis `XRANGE` pages through the read script), seal checks, decoding, filtering and queueing.
//    Goal: < 50 ms.
// 2. Storm: 1,000 clients (100 users × 10 connections) reconnect at once, each recovering 100 missed events,
//    while another connection receives live events published at a fixed rate; reports the storm's duration,
//    how many recoveries answered `recovered: true` with 100 events, and whether every live event arrived (no
//    live delivery dropped, no slow-consumer close).
import Foundation
import Logging
import RealtimeCore
import RealtimeRedis
import Synchronization

/// Counts what one connection's consumer reads, as a host's socket writer would hand frames on.
private final class RecoveryConsumer: Sendable {
    private struct State {
        var events = 0
        var recovered: Bool?
        var replayed = 0
        var closed = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    var snapshot: (events: Int, recovered: Bool?, replayed: Int, closed: Bool) {
        state.withLock { ($0.events, $0.recovered, $0.replayed, $0.closed) }
    }

    func consume(_ connection: HubConnection) async {
        for await frame in connection.outbound {
            // Events arrive as shared encoded frames (`.encodedText`), control messages as `.text`: both have text.
            guard let text = frame.text else {
                // A host answers pings with pongs (the client's); without, the hub closes idle connections.
                if case .ping = frame { connection.receivedPong() }
                if case .close = frame { state.withLock { $0.closed = true } }
                continue
            }
            if text.hasPrefix(#"{"type":"event""#) {
                state.withLock { $0.events += 1 }
            } else if let message = try? JSONParser().parse(text), message["type"]?.stringValue == "recovered" {
                // Parsed, not matched by prefix: a control message's members come in no fixed order.
                let waiters = state.withLock { state in
                    state.recovered = message["payload"]?["recovered"]?.boolValue
                    state.replayed = Int(message["payload"]?["replayed"]?.intValue ?? -1)
                    defer { state.waiters = [] }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume() }
            }
        }
        let waiters = state.withLock { state in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the `recovered` message (or the end of the connection) was read.
    func waitForRecovered() async {
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.recovered != nil || state.closed { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}

private func makeRecoveryHub(
    _ configuration: RedisConfiguration,
    prefix: String,
    tokens: StaticTokenVerifier,
    inMemory: Bool
) throws -> (RealtimeHub, RedisClient?, any HistoryStore) {
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    var history = HistoryConfiguration()
    history.userStreams.maxEntries = 2000
    var hubConfiguration = HubConfiguration()
    hubConfiguration.statsInterval = nil
    hubConfiguration.history = history
    hubConfiguration.maxConnectionsPerUser = nil
    hubConfiguration.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 100_000, period: .seconds(1))
    hubConfiguration.rateLimits.connectionsPerUser = RateLimitPolicy(
        name: "conn-user",
        limit: 100_000,
        period: .seconds(1)
    )
    if inMemory {
        let store = try InMemoryHistoryStore(configuration: history)
        let hub = try RealtimeHub(
            configuration: hubConfiguration,
            backends: .inMemory(tokenVerifier: tokens, historyStore: store),
            logger: logger
        )
        return (hub, nil, store)
    }
    let client = RedisClient(configuration: configuration, logger: logger)
    let store = try RedisHistoryStore(
        client: client,
        clusterSecret: benchmarkClusterSecret,
        prefix: prefix,
        configuration: history
    )
    let hub = try RealtimeHub(
        configuration: hubConfiguration,
        backends: try benchmarkRedisBackends(client: client, prefix: prefix, tokens: tokens, historyStore: store),
        logger: logger
    )
    return (hub, client, store)
}

private func connect(_ hub: RealtimeHub, token: String) async throws -> HubConnection {
    guard
        case .accept(let ticket) = await hub.authorizeUpgrade(
            UpgradeRequest(uri: "/ws/events?token=\(token)", remoteAddress: "127.0.0.1")
        )
    else { throw RealtimeError(.internalError, "upgrade refused") }
    return try await hub.connect(ticket)
}

private func recoverMessage(_ stream: String, _ position: StreamPosition) -> String {
    #"{"type":"subscribe","payload":{"eventTypes":["bench.*"],"recover":{"\#(stream)":{"epoch":"\#(position.epoch)","offset":\#(position.offset)}}}}"#
}

private func milliseconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
}

func measureRecovery(configuration: RedisConfiguration, rounds: Int, inMemory: Bool = false) async throws {
    let backend = inMemory ? "in memory" : "Redis"
    let tokens = StaticTokenVerifier()
    tokens.add("replay-token", VerifiedIdentity(userID: "replay"))
    tokens.add("live-token", VerifiedIdentity(userID: "live"))
    for user in 0..<100 { tokens.add("storm-\(user)", VerifiedIdentity(userID: "storm-\(user)")) }
    let (hub, client, store) = try makeRecoveryHub(
        configuration,
        prefix: "rec\(RandomID.hex(bytes: 3)):",
        tokens: tokens,
        inMemory: inMemory
    )
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await hub.run() }
        defer { hub.shutdown() }
        while await hub.healthCheck().components["hub"]?.details["subscribed"] != true {
            try await Task.sleep(for: .milliseconds(5))
        }

        // 1. Replay of 1,000 missed events to one client.
        let start = try await store.position(of: .user("replay"))
        for index in 0..<1000 {
            try await hub.publish(
                RealtimeEvent(type: "bench.replay", userID: "replay", data: ["i": .int(Int64(index))])
            )
        }
        var times: [Double] = []
        for _ in 0..<max(1, rounds) {
            let connection = try await connect(hub, token: "replay-token")
            let consumer = RecoveryConsumer()
            let reading = Task { await consumer.consume(connection) }
            let began = ContinuousClock.now
            await connection.receive(text: recoverMessage("user:replay", start))
            await consumer.waitForRecovered()
            let elapsed = ContinuousClock.now - began
            let seen = consumer.snapshot
            guard seen.recovered == true, seen.replayed == 1000, seen.events == 1000 else {
                FileHandle.standardError.write(Data("replay round failed: \(seen)\n".utf8))
                throw RealtimeError(.internalError, "replay did not deliver 1,000 events")
            }
            times.append(milliseconds(elapsed))
            await connection.closed()
            await reading.value
        }
        let sorted = times.sorted()
        print(
            String(
                format:
                    "%@: replay of 1,000 missed events, %d rounds: median %.1f ms, min %.1f ms, max %.1f ms (goal < 50 ms)",
                backend,
                sorted.count,
                sorted[sorted.count / 2],
                sorted[0],
                sorted[sorted.count - 1]
            )
        )

        // 2. Reconnect storm: 1,000 clients × 100 missed events, with live deliveries meanwhile.
        var starts: [String: StreamPosition] = [:]
        for user in 0..<100 { starts["storm-\(user)"] = try await store.position(of: .user("storm-\(user)")) }
        for round in 0..<100 {
            for user in 0..<100 {
                try await hub.publish(
                    RealtimeEvent(type: "bench.storm", userID: "storm-\(user)", data: ["i": .int(Int64(round))])
                )
            }
        }
        let live = try await connect(hub, token: "live-token")
        let liveConsumer = RecoveryConsumer()
        let liveReading = Task { await liveConsumer.consume(live) }
        await live.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["bench.*"]}}"#)
        var connections: [(HubConnection, RecoveryConsumer, Task<Void, Never>)] = []
        for index in 0..<1000 {
            let user = "storm-\(index % 100)"
            let connection = try await connect(hub, token: user)
            let consumer = RecoveryConsumer()
            connections.append((connection, consumer, Task { await consumer.consume(connection) }))
        }
        let liveSent = Atomic<Int>(0)
        let stormDone = Atomic<Bool>(false)
        let began = ContinuousClock.now
        // Live events at 2,000/s for the storm's duration (bounded: at most 30 s).
        let publisher = Task {
            var next = ContinuousClock.now
            while !stormDone.load(ordering: .relaxed), ContinuousClock.now - began < .seconds(30) {
                next += .milliseconds(5)
                for _ in 0..<10 {
                    try? await hub.publish(RealtimeEvent(type: "bench.live", userID: "live"))
                    liveSent.add(1, ordering: .relaxed)
                }
                try? await Task.sleep(until: next, clock: .continuous)
            }
        }
        await withTaskGroup(of: Void.self) { storm in
            for (index, (connection, consumer, _)) in connections.enumerated() {
                let user = "storm-\(index % 100)"
                let message = recoverMessage("user:\(user)", starts[user] ?? StreamPosition(epoch: "?", offset: 0))
                storm.addTask {
                    await connection.receive(text: message)
                    await consumer.waitForRecovered()
                }
            }
        }
        let duration = ContinuousClock.now - began
        stormDone.store(true, ordering: .relaxed)
        await publisher.value
        // Everything published live has been queued for the live connection once the publisher returned.
        let sent = liveSent.load(ordering: .relaxed)
        let deadline = ContinuousClock.now + .seconds(10)
        while liveConsumer.snapshot.events < sent, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let recoveredAll = connections.filter { $0.1.snapshot.recovered == true && $0.1.snapshot.replayed == 100 }
        var outcomes: [String: Int] = [:]
        for (_, consumer, _) in connections {
            let seen = consumer.snapshot
            outcomes[
                "recovered=\(seen.recovered.map { "\($0)" } ?? "nil") replayed=\(seen.replayed) events=\(seen.events) closed=\(seen.closed)",
                default: 0
            ] += 1
        }
        print("storm outcomes: \(outcomes)")
        let after = await hub.stats()
        print(
            String(
                format:
                    "%@: reconnect storm: 1,000 clients × 100 missed events in %.0f ms; %d recovered all 100; live: %d sent, %d received; slow-consumer closes %d, dropped %d",
                backend,
                milliseconds(duration),
                recoveredAll.count,
                sent,
                liveConsumer.snapshot.events,
                after.server.slowConsumerCloses,
                after.server.eventsDropped
            )
        )
        for (connection, _, task) in connections {
            await connection.closed()
            await task.value
        }
        await live.closed()
        await liveReading.value
        group.cancelAll()
    }
    await client?.shutdown()
}
