// Measures the RealtimeRedis client next to `redis-benchmark`, against one redis-server on loopback, in one run.
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks [seconds-per-measurement]
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks hub-latency [seconds-per-rate]
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks pipelined [seconds-per-measurement] [rounds]
//
// Starts its own redis-server on a free port (or uses REDIS_URL), then for each workload runs our client with
// 50 concurrent callers and `redis-benchmark` with `-c 50`, and prints both rates and their ratio. `hub-latency`
// measures only publish-to-deliver latency between two hubs at 1,000 and 10,000 events/s (HubLatency.swift).
// `pipelined` repeats only the 16-command-pipeline comparisons (PING and SET), `rounds` times (default 5), and
// prints each round's ratios and their medians.
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks history [seconds-per-measurement] [rounds]
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks history-memory [events-per-stream ...]
//
// `history` compares publishing a user-scoped event without and with history (HistoryCost.swift), alternating,
// `rounds` times (default 5). `history-memory` fills 10,000 user streams with that many events of 300 bytes each
// (default 10 and 100) and reports Redis's memory.
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks recovery [rounds]
//
// `recovery` measures the replay of 1,000 missed events to one client (`rounds` times, default 9) and a reconnect
// storm of 1,000 clients each recovering 100 events with live deliveries meanwhile (RecoveryReplay.swift), on Redis
// and then on the in-memory backends.
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks cluster [seconds-per-measurement] [rounds]
//
// `cluster` compares our cluster client with `redis-benchmark --cluster` on a six-node Redis Cluster it starts
// (`rounds` times, default 5; ClusterThroughput.swift).
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release RedisBenchmarks latency-cluster [rate] [seconds] [rounds]
//
// `latency-cluster` measures the hub-to-hub latency of `hub-latency` at `rate` events/s (default 10,000) on one
// redis-server and on a six-node cluster with sharded and with classic pub/sub, alternating, `rounds` times
// (default 3), `seconds` per measurement (default 5), and prints the cluster/single-node ratios
// (ClusterLatency.swift).
import Foundation
import RealtimeCore
import RealtimeRedis

let mode = CommandLine.arguments.dropFirst().first
let hubLatencyOnly = mode == "hub-latency"
let pipelinedOnly = mode == "pipelined"
let historyOnly = mode == "history"
let historyMemoryOnly = mode == "history-memory"
let recoveryOnly = mode == "recovery"
let clusterOnly = mode == "cluster"
let clusterLatencyOnly = mode == "latency-cluster"
let numbers = CommandLine.arguments.dropFirst(
    hubLatencyOnly || pipelinedOnly || historyOnly || historyMemoryOnly || recoveryOnly || clusterOnly
        || clusterLatencyOnly ? 2 : 1
).compactMap(Double.init)
let seconds = numbers.first ?? (hubLatencyOnly ? 5 : 3)
let rounds = max(1, numbers.dropFirst().first.map { Int($0) } ?? 5)
let concurrency = 50

func freePort() -> Int {
    // Let the kernel pick: bind port 0, read it back, release it.
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

func run(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// `redis-benchmark -q` prints lines such as `PING_MBULK: 123456.79 requests per second, p50=0.191 msec`.
func redisBenchmark(port: Int, requests: Int, pipeline: Int, _ extra: [String]) throws -> [String: Double] {
    let output = try run(
        "/usr/bin/redis-benchmark",
        [
            "-h", "127.0.0.1", "-p", String(port), "-q", "-c", String(concurrency), "-P", String(pipeline),
            "-n", String(requests),
        ] + extra
    )
    var rates: [String: Double] = [:]
    for line in output.split(whereSeparator: { $0 == "\n" || $0 == "\r" }) {
        guard let marker = line.range(of: " requests per second") else { continue }
        let head = line[..<marker.lowerBound]
        guard let colon = head.lastIndex(of: ":"),
            let rate = Double(head[head.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        else { continue }
        let name = head[..<colon].split(separator: " ").first.map(String.init) ?? ""
        rates[name] = rate
    }
    return rates
}

/// Runs `operation` from `concurrency` tasks for `seconds` and returns completed operations per second.
func measure(_ operation: @escaping @Sendable (Int) async throws -> Int) async throws -> Double {
    let (operations, elapsed) = try await measureCount(operation)
    return Double(operations) / elapsed.seconds
}

/// Runs `operation` from `concurrency` tasks for `seconds` and returns the operations completed and the time taken.
func measureCount(
    _ operation: @escaping @Sendable (Int) async throws -> Int
) async throws -> (operations: Int, elapsed: Duration) {
    let start = ContinuousClock.now
    let deadline = start + .milliseconds(Int64(seconds * 1000))
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for worker in 0..<concurrency {
            group.addTask {
                var done = 0
                var iteration = 0
                while ContinuousClock.now < deadline {
                    done += try await operation(worker &* 1_000_003 &+ iteration)
                    iteration += 1
                }
                return done
            }
        }
        return try await group.reduce(0, +)
    }
    return (total, ContinuousClock.now - start)
}

/// The median of `ratios`, as a percentage (`n/a` for none).
func medianPercent(_ ratios: [Double]) -> String {
    guard !ratios.isEmpty else { return "n/a" }
    let sorted = ratios.sorted()
    let middle = sorted.count / 2
    let value = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    return String(format: "%.1f %%", value * 100)
}

/// Prints a comparison line and returns the ratio (ours / theirs), if there is a reference.
@discardableResult
func report(_ name: String, ours: Double, theirs: Double?) -> Double? {
    let theirsText = theirs.map { String(format: "%10.0f", $0) } ?? "       n/a"
    let ratio = theirs.map { String(format: "%5.1f %%", ours / $0 * 100) } ?? "n/a"
    let padded = name.padding(toLength: 32, withPad: " ", startingAt: 0)
    print(padded + String(format: " ours %10.0f/s   redis-benchmark %@/s   ratio %@", ours, theirsText, ratio))
    return theirs.map { ours / $0 }
}

if clusterOnly {
    try await compareClusterThroughput(seconds: seconds, rounds: rounds)
    exit(0)
}

if clusterLatencyOnly {
    // Arguments: rate, seconds per measurement, rounds.
    try await compareClusterLatency(
        rate: max(1, numbers.first.map { Int($0) } ?? 10_000),
        seconds: max(1, numbers.dropFirst().first ?? 5),
        rounds: max(1, numbers.dropFirst(2).first.map { Int($0) } ?? 3)
    )
    exit(0)
}

var server: Process?
let configuration: RedisConfiguration
if let url = ProcessInfo.processInfo.environment["REDIS_URL"] {
    configuration = try RedisConfiguration(url: url)
} else {
    let port = freePort()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/redis-server")
    process.arguments = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    server = process
    configuration = RedisConfiguration(port: port)
    try await Task.sleep(for: .milliseconds(300))
}
defer {
    if let server {
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
}

// Publish-to-deliver latency between two hubs ("servers") through Redis at fixed rates.
func hubLatencies() async throws {
    print("hub-to-hub latency through redis-server 127.0.0.1:\(configuration.port), \(seconds) s per rate")
    for rate in [1_000, 10_000] {
        reportHubLatency(try await measureHubLatency(configuration: configuration, rate: rate, seconds: seconds))
    }
}

if recoveryOnly {
    let recoveryRounds = numbers.first.map { Int($0) } ?? 9
    for inMemory in [false, true] {
        try await measureRecovery(configuration: configuration, rounds: recoveryRounds, inMemory: inMemory)
    }
    if let server {
        // `exit` skips the `defer` above.
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
    exit(0)
}

if historyOnly || historyMemoryOnly {
    if historyOnly {
        try await compareHistoryCost(configuration: configuration, seconds: seconds, rounds: rounds)
    } else {
        let counts = numbers.isEmpty ? [10, 100] : numbers.map { Int($0) }
        try await measureHistoryMemory(configuration: configuration, eventsPerStream: counts)
        try measureInMemoryHistoryEstimate()
    }
    if let server {
        // `exit` skips the `defer` above.
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
    exit(0)
}

if hubLatencyOnly {
    try await hubLatencies()
    if let server {
        // `exit` skips the `defer` above.
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
    exit(0)
}

let client = RedisClient(configuration: configuration)
_ = try await client.send(RedisCommand("PING"))
print(
    "redis-server 127.0.0.1:\(configuration.port), \(concurrency) concurrent clients, pool of \(configuration.poolSize) connections, \(seconds) s per measurement"
)

/// PING and SET with `depth`-command pipelines (one `send` per iteration for depth 1), ours and redis-benchmark's;
/// returns the two ratios.
func comparePing(andSetAt depth: Int) async throws -> (ping: Double?, set: Double?) {
    let requests = depth == 1 ? 200_000 : 2_000_000
    let theirs = try redisBenchmark(port: configuration.port, requests: requests, pipeline: depth, ["-t", "ping,set"])
    let ping = try await measure { _ in
        if depth == 1 {
            _ = try await client.send(RedisCommand("PING"))
            return 1
        }
        return try await client.pipeline(Array(repeating: RedisCommand("PING"), count: depth)).count
    }
    let pingRatio = report("PING (MBULK) -P \(depth)", ours: ping, theirs: theirs["PING_MBULK"])
    let set = try await measure { _ in
        let command = RedisCommand("SET", "key:__rand_int__", "xxx")
        if depth == 1 {
            _ = try await client.send(command)
            return 1
        }
        return try await client.pipeline(Array(repeating: command, count: depth)).count
    }
    let setRatio = report("SET -P \(depth)", ours: set, theirs: theirs["SET"])
    return (pingRatio, setRatio)
}

if pipelinedOnly {
    var ping: [Double] = []
    var set: [Double] = []
    for round in 1...rounds {
        print("round \(round) of \(rounds)")
        let ratios = try await comparePing(andSetAt: 16)
        if let ratio = ratios.ping { ping.append(ratio) }
        if let ratio = ratios.set { set.append(ratio) }
    }
    print(
        "median over \(rounds) rounds: PING -P 16 \(medianPercent(ping)), SET -P 16 \(medianPercent(set)) of "
            + "redis-benchmark"
    )
    await client.shutdown()
    if let server {
        // `exit` skips the `defer` above.
        kill(server.processIdentifier, SIGTERM)
        server.waitUntilExit()
    }
    exit(0)
}

for depth in [1, 16] {
    _ = try await comparePing(andSetAt: depth)
}

// Rate-limit decisions: our limiter (EVALSHA of the GCRA script per decision) vs redis-benchmark calling
// EVALSHA on the same script with the same arguments.
let limiter = RedisRateLimiter(client: client, prefix: "bench:")
let policy = RateLimitPolicy(name: "bench", limit: 1_000_000, period: .seconds(1))
_ = try await limiter.consume("warmup", policy: policy)
let sha = try await client.send(RedisCommand("SCRIPT", "LOAD", RedisRateLimiter.scriptSource)).string ?? ""
let decisions = try await measure { index in
    _ = try await limiter.consume("k\(index % 1000)", policy: policy)
    return 1
}
let interval = String(max(1, policy.emissionInterval.milliseconds * 1000))
let evalsha = try redisBenchmark(
    port: configuration.port,
    requests: 200_000,
    pipeline: 1,
    ["-r", "1000", "EVALSHA", sha, "1", "bench:rl:5:bench:k__rand_int__", interval, String(policy.burst), "1"]
)
report("rate-limit decisions (EVALSHA)", ours: decisions, theirs: evalsha["EVALSHA"])

// Publish-to-deliver latency between two buses ("servers") on loopback.
let secret = benchmarkClusterSecret
let publisherClient = RedisClient(configuration: configuration)
let busA = try RedisEventBus(client: publisherClient, clusterSecret: secret, prefix: "bench:")
let busB = try RedisEventBus(client: client, clusterSecret: secret, prefix: "bench:")
let subscription = try await busB.subscribe(server: "srv-b")
try await subscription.addInterest(.user("u1"))
let base = ContinuousClock.now
let count = 5_000
async let received: [Duration] = {
    var latencies: [Duration] = []
    for await delivery in subscription.deliveries {
        guard case .message(let message) = delivery, case .event(let event) = message.payload,
            let sent = event.data["t"]?.intValue
        else { continue }
        latencies.append((ContinuousClock.now - base) - .nanoseconds(sent))
        if latencies.count == count { break }
    }
    return latencies
}()
for _ in 0..<count {
    let sent = (ContinuousClock.now - base)
    let nanos = sent.components.seconds * 1_000_000_000 + sent.components.attoseconds / 1_000_000_000
    let event = RealtimeEvent(type: "bench.tick", userID: "u1", data: ["t": .int(nanos)], scope: .user("u1"))
    try await busA.publish(BusMessage(origin: "srv-a", route: .user("u1"), payload: .event(event)))
}
let latencies = await received.sorted()
func percentile(_ p: Double) -> Double {
    latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))].seconds * 1e6
}
print(
    String(
        format: "publish-to-deliver latency over %d events: p50 %.0f µs, p99 %.0f µs",
        latencies.count,
        percentile(0.5),
        percentile(0.99)
    )
)
await subscription.close()
await publisherClient.shutdown()
await client.shutdown()

try await hubLatencies()
