// What history costs: publishing a user-scoped event with and without history, and the Redis memory of 10,000
// user streams.
//
// `compareHistoryCost`: the hub's publish of a user-scoped event is one `EventBus.publish([user, admins])` call.
// Without history, the Redis bus sends one `PUBLISH` (sealed with the cluster secret); with history,
// `publish(_:recordingIn:)` runs one Lua script that appends to the user's and the administrators' streams and
// publishes. Both run from 50 concurrent callers over 1,000 users for the same time, alternating, with a
// subscription hearing every user channel (an administrators' server, through its pattern) consumed by a task.
// The same comparison runs for the in-memory bus and store (with room for every stream, and with the default
// 64 MiB, which evicts on every append in this round robin). Reported: publishes per second, CPU per publish of
// this process and of redis-server, and the ratio of time per publish with/without history.
//
// `measureHistoryMemory`: appends N events (a 300-byte event payload each) to each of 10,000 user streams through
// `RedisHistoryStore.append`, and reports `used_memory` before and after and `MEMORY USAGE` of one stream's keys.
import Foundation
import RealtimeCore
import RealtimeRedis
import Synchronization

private let historySecret = benchmarkClusterSecret
private let users = 1_000

/// A user-scoped event whose payload object (what clients receive inside `event`) has `payloadBytes` bytes.
private func event(user: String, payloadBytes: Int) -> BusMessage {
    func message(pad: Int) -> BusMessage {
        let event = RealtimeEvent(
            id: "evt_0123456789abcdef",
            type: "security.login.anomaly",
            userID: user,
            timestamp: Timestamp(millisecondsSinceEpoch: 1_800_000_000_000),
            data: ["pad": .string(String(repeating: "x", count: pad))],
            scope: .user(user)
        )
        return BusMessage(origin: "srv-a", route: .user(user), payload: .event(event))
    }
    let body = RedisBusCodec.encode(message(pad: 0), alsoAdmins: false)
    let header = body.firstIndex(of: UInt8(ascii: "\n")).map { $0 + 1 } ?? 0
    return framed(message(pad: max(0, payloadBytes - (body.count - header))))
}

/// `message` carrying its encoded client frame, as the hub's messages do (it encodes each event once).
private func framed(_ message: BusMessage) -> BusMessage {
    var message = message
    let body = RedisBusCodec.encode(message, alsoAdmins: false)
    let header = (body.firstIndex(of: UInt8(ascii: "\n")) ?? 0) + 1
    message.eventFrame = #"{"type":"event","payload":"# + String(decoding: body[header...], as: UTF8.self) + "}"
    return message
}

private func pair(_ index: Int) -> [BusMessage] {
    let user = event(user: "user-\(index % users)", payloadBytes: 300)
    var admins = user
    admins.route = .admins
    return [user, admins]
}

/// Counts what a subscription hears, consuming it.
private final class Drain: Sendable {
    let heard = Atomic<Int>(0)
    func consume(_ subscription: any EventBusSubscription) -> Task<Void, Never> {
        Task {
            for await delivery in subscription.deliveries {
                if case .message = delivery { heard.add(1, ordering: .relaxed) }
            }
        }
    }
}

private struct Cost {
    var rate: Double
    var processCPU: Duration
    var redisCPU: Duration?

    /// CPU per publish of this process and redis-server together, in µs.
    var totalCPU: Double { (processCPU + (redisCPU ?? .zero)).seconds * 1e6 }
}

private func cost(
    _ client: RedisClient?,
    _ publish: @escaping @Sendable (Int) async throws -> Void
) async throws -> Cost {
    func redisCPU() async -> Duration? {
        guard let client else { return nil }
        return await redisCPUTime(client)
    }
    let (processBefore, redisBefore) = (processCPUTime(), await redisCPU())
    let (operations, elapsed) = try await measureCount { index in
        try await publish(index)
        return 1
    }
    let (processAfter, redisAfter) = (processCPUTime(), await redisCPU())
    let count = Double(max(1, operations))
    var redis: Duration?
    if let redisBefore, let redisAfter { redis = (redisAfter - redisBefore) / count }
    return Cost(
        rate: Double(operations) / elapsed.seconds,
        processCPU: (processAfter - processBefore) / count,
        redisCPU: redis
    )
}

private func describe(_ name: String, _ cost: Cost) -> String {
    let redis = cost.redisCPU.map { String(format: "%6.2f µs", $0.seconds * 1e6) } ?? "   n/a"
    return name.padding(toLength: 34, withPad: " ", startingAt: 0)
        + String(
            format: "%9.0f publishes/s   this process %6.2f µs/publish   redis-server %@/publish",
            cost.rate,
            cost.processCPU.seconds * 1e6,
            redis
        )
}

private func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/// Publishing a user-scoped event without and with history, on Redis and in memory, alternating `rounds` times.
func compareHistoryCost(configuration: RedisConfiguration, seconds: Double, rounds: Int) async throws {
    print(
        "publish of a user-scoped event (300-byte payload, 1,000 users), without and with history; \(concurrency) "
            + "concurrent callers, \(seconds) s per measurement, \(rounds) rounds"
    )
    let client = RedisClient(configuration: configuration)
    let subscriberClient = RedisClient(configuration: configuration)
    _ = try await client.send(RedisCommand("PING"))
    let prefix = "bench-history:"
    let bus = try RedisEventBus(client: client, clusterSecret: historySecret, prefix: prefix)
    let store = try RedisHistoryStore(client: client, clusterSecret: historySecret, prefix: prefix)
    let listener = try RedisEventBus(client: subscriberClient, clusterSecret: historySecret, prefix: prefix)
    let subscription = try await listener.subscribe(server: "srv-listener")
    try await subscription.addInterest(.admins)
    let drain = Drain()
    let draining = drain.consume(subscription)

    let memoryBus = InMemoryEventBus()
    // 1,000 full user streams take ≈ 110 MB by the store's estimate: with the default 64 MiB the store evicts on
    // every append (the least recently used stream is the next one used, round robin); both are measured.
    let evictingStore = try InMemoryHistoryStore()
    var roomy = HistoryConfiguration()
    roomy.memoryLimitBytes = 1 << 30
    let memoryStore = try InMemoryHistoryStore(configuration: roomy)
    let memorySubscription = try await memoryBus.subscribe(server: "srv-listener")
    try await memorySubscription.addInterest(.admins)
    let memoryDraining = drain.consume(memorySubscription)

    let messages = (0..<users).map(pair)
    // Warm-up: scripts loaded, streams created.
    for index in 0..<users { _ = try await bus.publish(messages[index], recordingIn: store) }

    var redisRatios: [Double] = []
    var memoryRatios: [Double] = []
    // CPU per publish (this process plus redis-server) with/without history: steadier than the rates on a shared
    // machine, where the rates follow what else runs.
    var redisCPURatios: [Double] = []
    var memoryCPURatios: [Double] = []
    for round in 1...rounds {
        print("round \(round) of \(rounds)")
        let plain = try await cost(client) { index in try await bus.publish(messages[index % users]) }
        let recorded = try await cost(client) { index in
            _ = try await bus.publish(messages[index % users], recordingIn: store)
        }
        print(describe("  Redis, without history", plain))
        print(describe("  Redis, with history", recorded))
        redisRatios.append(plain.rate / recorded.rate)
        redisCPURatios.append(recorded.totalCPU / plain.totalCPU)
        let memoryPlain = try await cost(nil) { index in try await memoryBus.publish(messages[index % users]) }
        let memoryRecorded = try await cost(nil) { index in
            _ = try await memoryBus.publish(messages[index % users], recordingIn: memoryStore)
        }
        let memoryEvicting = try await cost(nil) { index in
            _ = try await memoryBus.publish(messages[index % users], recordingIn: evictingStore)
        }
        print(describe("  in memory, without history", memoryPlain))
        print(describe("  in memory, with history", memoryRecorded))
        print(describe("  in memory, with history, evicting", memoryEvicting))
        memoryRatios.append(memoryPlain.rate / memoryRecorded.rate)
        memoryCPURatios.append(memoryRecorded.totalCPU / memoryPlain.totalCPU)
        print(
            String(
                format: "  time per publish with/without history: Redis %.2f×, in memory %.2f×; "
                    + "CPU per publish: Redis %.2f×, in memory %.2f×",
                redisRatios.last ?? .nan,
                memoryRatios.last ?? .nan,
                redisCPURatios.last ?? .nan,
                memoryCPURatios.last ?? .nan
            )
        )
    }
    print(
        String(
            format: "median over %d rounds, time per publish with/without history: Redis %.2f×, in memory %.2f× "
                + "(goal ≤ 1.3×); messages heard by the listeners: %d",
            rounds,
            median(redisRatios),
            median(memoryRatios),
            drain.heard.load(ordering: .relaxed)
        )
    )
    print(
        String(
            format: "median over %d rounds, CPU per publish (this process + redis-server) with/without history: "
                + "Redis %.2f×, in memory %.2f×",
            rounds,
            median(redisCPURatios),
            median(memoryCPURatios)
        )
    )
    await subscription.close()
    await memorySubscription.close()
    await draining.value
    await memoryDraining.value
    await client.shutdown()
    await subscriberClient.shutdown()
}

/// `used_memory` of redis-server, from `INFO memory`.
private func usedMemory(_ client: RedisClient) async throws -> Int {
    let info = try await client.send(RedisCommand("INFO", "memory")).string ?? ""
    for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix("used_memory:") {
        return Int(line.dropFirst("used_memory:".count)) ?? 0
    }
    return 0
}

/// Fills 10,000 user streams with `eventsPerStream` events each (for every count given) and reports the memory.
func measureHistoryMemory(configuration: RedisConfiguration, eventsPerStream counts: [Int]) async throws {
    let client = RedisClient(configuration: configuration)
    let streams = 10_000
    for events in counts {
        _ = try await client.send(RedisCommand("FLUSHALL"))
        let prefix = "bench-memory:"
        var history = HistoryConfiguration()
        history.userStreams.maxEntries = max(1, events)
        let store = try RedisHistoryStore(
            client: client,
            clusterSecret: historySecret,
            prefix: prefix,
            configuration: history
        )
        let messages = (0..<streams).map { event(user: "user-\($0)", payloadBytes: 300) }
        let entryBytes = 64 + RedisBusCodec.encode(messages[0], alsoAdmins: false).count
        let before = try await usedMemory(client)
        let total = streams * events
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask {
                    for index in stride(from: worker, to: total, by: concurrency) {
                        _ = try await store.append(messages[index % streams])
                    }
                }
            }
            try await group.waitForAll()
        }
        let after = try await usedMemory(client)
        let keys = store.keys(of: .user("user-0"))
        let entriesUsage = try await client.send(RedisCommand("MEMORY", "USAGE", keys.entries, "SAMPLES", "0")).int
        let metaUsage = try await client.send(RedisCommand("MEMORY", "USAGE", keys.meta, "SAMPLES", "0")).int
        let length = try await client.send(RedisCommand("XLEN", keys.entries)).int
        print(
            "10,000 user streams × \(events) events (entry \(entryBytes) bytes: 300-byte event payload + header + "
                + "64-byte seal): used_memory +\(after - before) bytes = \((after - before) / streams) bytes per user; "
                + "MEMORY USAGE of one stream: entries \(entriesUsage ?? -1) bytes (XLEN \(length ?? -1)), "
                + "meta \(metaUsage ?? -1) bytes"
        )
    }
    await client.shutdown()
}

/// Resident memory of this process, from `/proc/self/statm`.
private func residentBytes() -> Int {
    let text = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? ""
    let pages = text.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The in-memory store's estimate against the memory it really takes: 10,000 user streams × 10 events, each a
/// distinct message carrying its encoded frame, as the hub's messages do.
func measureInMemoryHistoryEstimate() throws {
    var configuration = HistoryConfiguration()
    configuration.memoryLimitBytes = 1 << 30
    let store = try InMemoryHistoryStore(configuration: configuration)
    let streams = 10_000
    let events = 10
    let before = residentBytes()
    for index in 0..<(streams * events) {
        let template = event(user: "user-\(index % streams)", payloadBytes: 300)
        guard case .event(var realtimeEvent) = template.payload else { continue }
        realtimeEvent.id = "evt_\(index)"
        realtimeEvent.data["pad"] = .string(String(repeating: "y", count: 200) + String(index))
        _ = try store.record(framed(BusMessage(origin: "srv-a", route: template.route, payload: .event(realtimeEvent))))
    }
    let after = residentBytes()
    let stats = store.statistics
    print(
        "in memory, \(streams) user streams × \(events) events: estimate \(stats.bytes) bytes, resident memory "
            + "+\(after - before) bytes (\(stats.entries) entries)"
    )
}
