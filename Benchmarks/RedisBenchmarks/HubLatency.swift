// Publish-to-deliver latency between two hubs through Redis, at a fixed event rate.
//
// Hub A publishes user-scoped events (`bench.tick` to user `u1`) at a fixed rate; hub B has one connection of
// `u1` subscribed to `bench.*`. A consumer task reads that connection's outbound frames, as a host's socket writer
// would, and stamps each frame when it comes out of the queue; the event carries its send time (taken right before
// `hubA.publish`) in `data.t`. Both times come from one monotonic clock of this process. The latency therefore
// covers: encoding and HMAC sealing on A, the PUBLISH round trip through redis-server, the subscriber's read,
// verification and decoding on B, routing and JSON encoding for the connection, and the hand-off to the consumer.
import Foundation
import Histogram
import Logging
import RealtimeCore
import RealtimeRedis
import Synchronization

struct HubLatencyResult {
    var rate: Int
    var seconds: Double
    var sent: Int
    var received: Int
    /// Events per second actually published (below `rate` if the publishers could not keep up).
    var achievedRate: Double
    /// How far the publishers fell behind their schedule at worst.
    var maximumLag: Duration
    /// Latencies in nanoseconds.
    var histogram: Histogram<UInt64>
    /// CPU time (user + system) per delivered event of this process (both hubs and the consumer) and of
    /// redis-server, during the measured part.
    var processCPUPerEvent: Duration
    var redisCPUPerEvent: Duration?
    /// `gap` notices hub B sent the connection (its bus subscription lost messages), warm-up included.
    var gaps: Int
    /// Hub B's bus subscription since it started: re-subscribes, canary stalls and refused messages (what explains
    /// a loss: a lost or forced pub/sub reconnect, or the bus's freshness and replay checks).
    var busResubscribes: Int
    var busCanaryStalls: Int
    var busRefused: Int
}

/// User + system CPU time of this process.
func processCPUTime() -> Duration {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let micros =
        Int64(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1_000_000
        + Int64(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec)
    return .microseconds(micros)
}

/// User + system CPU time of every server in `clients` (one client per redis-server, each a single node), summed;
/// nil if one of them did not answer.
func redisCPUTime(_ clients: [RedisClient]) async -> Duration? {
    var total = Duration.zero
    for client in clients {
        guard let time = await redisCPUTime(client) else { return nil }
        total += time
    }
    return total
}

/// User + system CPU time of redis-server (its main and I/O threads), from `INFO cpu`.
func redisCPUTime(_ client: RedisClient) async -> Duration? {
    guard let info = try? await client.send(RedisCommand("INFO", "cpu")).string else { return nil }
    var total = 0.0
    for line in info.split(whereSeparator: \.isNewline) {
        let parts = line.split(separator: ":")
        if parts.count == 2, parts[0] == "used_cpu_sys" || parts[0] == "used_cpu_user", let value = Double(parts[1]) {
            total += value
        }
    }
    return .microseconds(Int64(total * 1_000_000))
}

/// What the consumer of hub B's connection saw.
private final class Receiver: Sendable {
    private struct State {
        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1,
            highestTrackableValue: 60_000_000_000,
            numberOfSignificantValueDigits: .three
        )
        var received = 0
        var gaps = 0
        var subscribed = false
        var recording = false
    }

    private let state = Mutex(State())

    var subscribed: Bool { state.withLock { $0.subscribed } }
    var received: Int { state.withLock { $0.received } }
    var gaps: Int { state.withLock { $0.gaps } }

    func startRecording() { state.withLock { $0.recording = true } }

    func reset() {
        state.withLock { state in
            state.histogram.reset()
            state.received = 0
        }
    }

    var histogram: Histogram<UInt64> { state.withLock { $0.histogram } }

    /// Reads frames until the connection ends.
    func consume(_ connection: HubConnection, base: ContinuousClock.Instant) async {
        for await frame in connection.outbound {
            let arrived = ContinuousClock.now
            guard let text = frame.text else { continue }
            guard let message = try? JSONParser().parse(text) else { continue }
            if message["type"] == "subscribed" {
                state.withLock { $0.subscribed = true }
                continue
            }
            if message["type"] == "gap" {
                state.withLock { $0.gaps += 1 }
                continue
            }
            guard message["type"] == "event", let sent = message["payload"]?["data"]?["t"]?.intValue else { continue }
            let latency = (arrived - base) - .nanoseconds(sent)
            let nanoseconds = UInt64(
                max(1, latency.components.seconds * 1_000_000_000 + latency.components.attoseconds / 1_000_000_000)
            )
            state.withLock { state in
                state.received += 1
                if state.recording { _ = state.histogram.record(nanoseconds) }
            }
        }
    }
}

private func nanoseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
}

/// Runs two hubs on `configuration`'s Redis (one node, or a cluster when it names cluster nodes) and measures
/// publish-to-deliver latency at `rate` events/s for `seconds`, after a one-second warm-up at the same rate.
/// Redis's CPU time is the sum over `redisServers` (each one node, e.g. every node of a cluster); without them it is
/// that of `configuration`'s one node.
///
/// `hub.publish` returns once Redis has answered (a user-scoped event is one PUBLISH per route: the user's and
/// the admins'), so one publishing task manages a few thousand events/s at most; the rate is split over
/// `rate / 250` tasks (at least 4), each on its own fixed schedule, as a server's many request handlers would.
func measureHubLatency(
    configuration: RedisConfiguration,
    rate: Int,
    seconds: Double,
    publishers: Int? = nil,
    redisServers: [RedisConfiguration]? = nil
) async throws -> HubLatencyResult {
    let publishers = publishers ?? max(4, rate / 250)
    var logger = Logger(label: "bench")
    logger.logLevel = .critical
    let prefix = "lat\(RandomID.hex(bytes: 3)):"
    let tokens = StaticTokenVerifier()
    tokens.add("bench-token", VerifiedIdentity(userID: "u1"))
    var clients: [RedisClient] = []
    func makeHub() throws -> RealtimeHub {
        let client = RedisClient(configuration: configuration, logger: logger)
        clients.append(client)
        var hubConfiguration = HubConfiguration()
        hubConfiguration.statsInterval = nil
        hubConfiguration.limits.outboundQueueFrames = 1_000_000
        hubConfiguration.limits.outboundQueueBytes = 1 << 30
        return try RealtimeHub(
            configuration: hubConfiguration,
            backends: try benchmarkRedisBackends(client: client, prefix: prefix, tokens: tokens),
            logger: logger
        )
    }
    // Direct clients of each redis-server, only for `INFO cpu` (a cluster client would route it to one node).
    let cpuClients = (redisServers ?? [configuration]).map { RedisClient(configuration: $0, logger: logger) }
    let hubA = try makeHub()
    let hubB = try makeHub()
    let base = ContinuousClock.now
    let receiver = Receiver()

    let result = try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await hubA.run() }
        group.addTask { try await hubB.run() }
        defer {
            hubA.shutdown()
            hubB.shutdown()
        }
        // Wait (bounded) for both bus subscriptions.
        let ready = ContinuousClock.now + .seconds(20)
        for hub in [hubA, hubB] {
            while await hub.healthCheck().components["hub"]?.details["subscribed"] != true {
                guard ContinuousClock.now < ready else { throw RealtimeError(.timeout, "hub did not subscribe") }
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        guard
            case .accept(let ticket) = await hubB.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events?token=bench-token", remoteAddress: "127.0.0.1")
            )
        else { throw RealtimeError(.internalError, "upgrade refused") }
        let connection = try await hubB.connect(ticket)
        group.addTask { await receiver.consume(connection, base: base) }
        await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["bench.*"]}}"#)
        while !receiver.subscribed {
            guard ContinuousClock.now < ready else { throw RealtimeError(.timeout, "no subscribed reply") }
            try await Task.sleep(for: .milliseconds(5))
        }

        /// Publishes at `rate` for `duration` from `publishers` tasks; returns (sent, elapsed, worst lag).
        func publish(for duration: Duration) async throws -> (Int, Duration, Duration) {
            let perPublisher = Int(Double(rate) * duration.seconds) / publishers
            let interval = Duration.nanoseconds(Int64(1e9 * Double(publishers) / Double(rate)))
            let start = ContinuousClock.now
            let lags = try await withThrowingTaskGroup(of: Duration.self) { senders in
                for index in 0..<publishers {
                    senders.addTask {
                        // Publishers start staggered across one interval, so the aggregate rate is even.
                        let offset = interval / publishers * index
                        var worst = Duration.zero
                        for sequence in 0..<perPublisher {
                            let due = start + offset + interval * sequence
                            let now = ContinuousClock.now
                            if now < due {
                                try await Task.sleep(until: due, tolerance: .microseconds(10))
                            } else {
                                worst = max(worst, now - due)
                            }
                            let sentAt = nanoseconds(ContinuousClock.now - base)
                            try await hubA.publish(
                                RealtimeEvent(
                                    type: "bench.tick",
                                    userID: "u1",
                                    data: ["t": .int(sentAt)],
                                    scope: .user("u1")
                                )
                            )
                        }
                        return worst
                    }
                }
                return try await senders.reduce(Duration.zero) { max($0, $1) }
            }
            return (perPublisher * publishers, ContinuousClock.now - start, lags)
        }

        func waitForDelivery(of count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(10)
            while receiver.received < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
        }

        // Warm-up (JIT-free, but connections, buffers and caches warm), not recorded.
        let (warm, _, _) = try await publish(for: .seconds(1))
        try await waitForDelivery(of: warm)
        receiver.reset()
        receiver.startRecording()
        let (cpuBefore, redisBefore) = (processCPUTime(), await redisCPUTime(cpuClients))
        let (sent, elapsed, lag) = try await publish(for: .milliseconds(Int64(seconds * 1000)))
        try await waitForDelivery(of: sent)
        let (cpuAfter, redisAfter) = (processCPUTime(), await redisCPUTime(cpuClients))
        let delivered = max(1, receiver.received)
        let bus = await hubB.healthCheck().components["eventBus"]?.details
        let subscription = bus?["subscriptions"]?.arrayValue?.first
        await connection.closed()
        return HubLatencyResult(
            rate: rate,
            seconds: seconds,
            sent: sent,
            received: receiver.received,
            achievedRate: Double(sent) / elapsed.seconds,
            maximumLag: lag,
            histogram: receiver.histogram,
            processCPUPerEvent: (cpuAfter - cpuBefore) / delivered,
            redisCPUPerEvent: redisBefore.flatMap { before in redisAfter.map { ($0 - before) / delivered } },
            gaps: receiver.gaps,
            busResubscribes: subscription?["resubscribes"]?.intValue.map { Int($0) } ?? -1,
            busCanaryStalls: subscription?["canaryStalls"]?.intValue.map { Int($0) } ?? -1,
            busRefused: bus?["refusedMessages"]?.intValue.map { Int($0) } ?? -1
        )
    }
    for client in clients + cpuClients { await client.shutdown() }
    return result
}

func reportHubLatency(_ result: HubLatencyResult) {
    let histogram = result.histogram
    func micros(_ percentile: Double) -> Double { Double(histogram.valueAtPercentile(percentile)) / 1000 }
    print(
        String(
            format:
                "hub A → Redis → hub B at %5d events/s for %.0f s: sent %d, delivered %d, achieved %.0f/s, worst publisher lag %.1f ms, gap notices %d; hub B's bus: %d re-subscribes, %d canary stalls, %d refused",
            result.rate,
            result.seconds,
            result.sent,
            result.received,
            result.achievedRate,
            result.maximumLag.seconds * 1000,
            result.gaps,
            result.busResubscribes,
            result.busCanaryStalls,
            result.busRefused
        )
    )
    print(
        String(
            format:
                "    p50 %.0f µs   p99 %.0f µs   p99.9 %.0f µs   max %.0f µs   CPU per event: hubs %.1f µs, redis %.1f µs",
            micros(50),
            micros(99),
            micros(99.9),
            Double(histogram.max) / 1000,
            result.processCPUPerEvent.seconds * 1e6,
            (result.redisCPUPerEvent?.seconds ?? .nan) * 1e6
        )
    )
}
