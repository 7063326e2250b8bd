import DequeModule
import MallocInterposerSwift
import RealtimeCore
import Synchronization

// Release-mode harness for the hub's hot paths. Run (allocation counts need the interposer preloaded):
//
//     REALTIMEHUB_BENCHMARKS=1 swift build -c release --product HubBenchmarks
//     LD_PRELOAD=.build/release/libMallocInterposerSwift.so .build/release/HubBenchmarks
//
// Rates are per CPU-second of the measuring thread (= per core). Every figure is the median of repeated rounds,
// printed next to a reference measured in the same run: appending
// the same number of shared strings to Mutex-protected deques (the floor any fan-out into per-connection queues pays).
#if canImport(Glibc)
    import Glibc
#endif

let connections = 10_000
let rounds = 7

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// CPU time of the calling thread: rates per CPU-second are rates per core, and do not count time the shared
/// machine gave to other processes. The measured bodies never suspend, so they stay on one thread.
func threadCPUSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

func measure(_ body: () throws -> Int) rethrows -> (perSecond: Double, mallocs: Int, units: Int) {
    var rates: [Double] = []
    var mallocs = 0
    var units = 0
    for round in 0..<rounds {
        if round == rounds - 1 { MallocInterposerSwift.hook() }
        let start = threadCPUSeconds()
        let count = try body()
        let elapsed = threadCPUSeconds() - start
        if round == rounds - 1 {
            MallocInterposerSwift.unhook()
            mallocs = Int(MallocInterposerSwift.getStatistics().mallocCount)
            units = count
        }
        rates.append(Double(count) / elapsed)
    }
    return (median(rates), mallocs, units)
}

MallocInterposerSwift.initialize()

// Reference: N appends of one shared String into N Mutex<Deque> (no matching, no routing).
final class Queue: Sendable {
    let deque = Mutex(Deque<String>(minimumCapacity: 64))
}
let referenceQueues = (0..<connections).map { _ in Queue() }
let sharedText = String(repeating: "x", count: 200)
let reference = measure {
    var total = 0
    for _ in 0..<10 {
        for queue in referenceQueues { queue.deque.withLock { $0.append(sharedText) } }
        total += connections
        for queue in referenceQueues { queue.deque.withLock { $0.removeAll(keepingCapacity: true) } }
    }
    return total
}

// The hub: 10,000 users on /ws/events subscribed to authentication.* and system.*, plus 100 admins watching "*".
let verifier = StaticTokenVerifier()
var configuration = HubConfiguration()
configuration.maxConnections = connections + 1_000
configuration.maxConnectionsPerUser = nil
configuration.limits.outboundQueueFrames = 4_096
configuration.rateLimits.connectionsPerIP = RateLimitPolicy(name: "ip", limit: 1_000_000, period: .seconds(1))
configuration.rateLimits.connectionsPerUser = RateLimitPolicy(name: "user", limit: 1_000_000, period: .seconds(1))
configuration.rateLimits.messagesPerConnection = RateLimitPolicy(name: "msg", limit: 1_000_000, period: .seconds(1))
let hub = try RealtimeHub(configuration: configuration, backends: .inMemory(tokenVerifier: verifier))
var users: [String] = []
for index in 0..<connections {
    let user = "user-\(index)"
    users.append(user)
    verifier.add("t\(index)", VerifiedIdentity(userID: user))
    guard
        case .accept(let ticket) = await hub.authorizeUpgrade(
            UpgradeRequest(uri: "/ws/events?token=t\(index)", remoteAddress: "127.0.0.1")
        )
    else { fatalError("upgrade refused") }
    let connection = try await hub.connect(ticket)
    await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["authentication.*","system.*"]}}"#)
}
for index in 0..<100 {
    verifier.add("a\(index)", VerifiedIdentity(userID: "admin-\(index)", isAdmin: true))
    guard
        case .accept(let ticket) = await hub.authorizeUpgrade(
            UpgradeRequest(uri: "/ws/admin?token=a\(index)", remoteAddress: "127.0.0.1")
        )
    else { fatalError("upgrade refused") }
    let connection = try await hub.connect(ticket)
    await connection.receive(text: #"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
}
_ = hub.discardQueuedFramesForBenchmark()

let data: JSONObject = ["ip": "192.0.2.1", "userAgent": "Mozilla/5.0", "riskScore": 85]
let broadcast = try measure {
    var total = 0
    for _ in 0..<10 {
        total += hub.deliverLocallyForBenchmark(
            RealtimeEvent(type: .systemMaintenanceScheduled, data: data, scope: .everyone)
        )
    }
    _ = hub.discardQueuedFramesForBenchmark()
    return total
}
let userScoped = try measure {
    var total = 0
    for index in 0..<2_000 {
        total += hub.deliverLocallyForBenchmark(
            RealtimeEvent(type: .authenticationLoginSuccess, userID: users[index * 5], data: data)
        )
    }
    _ = hub.discardQueuedFramesForBenchmark()
    return total
}
let events = (0..<2_000).map { RealtimeEvent(type: .securityHighRiskDetected, userID: users[$0], data: data) }
let encoding = measure {
    var bytes = 0
    for event in events { bytes &+= RealtimeHub.encodeForBenchmark(event).utf8.count }
    return bytes > 0 ? events.count : 0
}

// In-memory rate limiting with 100,000 live keys (issue 6). Reference: the floor of any keyed limiter, one
// lookup-and-store of an Int64 per key in a Mutex-protected [String: Int64] of the same 100,000 keys.
let limiterKeys = (0..<100_000).map { "203.0.113.\($0 / 256).\($0 % 256)" }
let keyedReference = Mutex([String: Int64](minimumCapacity: limiterKeys.count))
keyedReference.withLock { table in for key in limiterKeys { table[key] = 0 } }
let limiterReference = measure {
    for key in limiterKeys { keyedReference.withLock { $0[key, default: 0] &+= 1 } }
    return limiterKeys.count
}
let limiter = InMemoryRateLimiter()
// One unit earned every 3.6 s and a huge burst: every key stays live (its TAT in the future) and allowed.
let limiterPolicy = RateLimitPolicy(name: "benchmark", limit: 1000, period: .seconds(3600), burst: 1_000_000)
for key in limiterKeys { _ = try limiter.decide(key, cost: 1, policy: limiterPolicy) }
let limiterDecisions = try measure {
    var allowed = 0
    for key in limiterKeys where try limiter.decide(key, cost: 1, policy: limiterPolicy).allowed { allowed += 1 }
    guard allowed == limiterKeys.count, limiter.keyCount == limiterKeys.count else {
        fatalError("the benchmark's keys must all be live and allowed")
    }
    return allowed
}

func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
func fixed(_ value: Double, _ decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    if decimals == 0 { return String(Int64(rounded)) }
    var text = String(rounded)
    if let dot = text.firstIndex(of: ".") {
        let have = text.distance(from: dot, to: text.endIndex) - 1
        if have < decimals { text += String(repeating: "0", count: decimals - have) }
    }
    return text
}

func line(
    _ name: String,
    _ result: (perSecond: Double, mallocs: Int, units: Int),
    unit: String,
    against base: (perSecond: Double, mallocs: Int, units: Int) = reference
) {
    let ratio = result.perSecond / base.perSecond
    let perUnit = result.units > 0 ? Double(result.mallocs) / Double(result.units) : 0
    print(
        pad(name, 44) + pad(fixed(result.perSecond, 0) + " \(unit)/s", 26) + "ratio to reference " + fixed(ratio, 2)
            + "  mallocs/\(unit) " + fixed(perUnit, 4)
    )
}
print("connections: \(connections) users + 100 admins; median of \(rounds) rounds; rates per CPU-second")
line("reference: Mutex<Deque> appends", reference, unit: "append")
line("broadcast (everyone, system.*)", broadcast, unit: "delivery")
line("user-scoped (1 user + 100 admin watchers)", userScoped, unit: "delivery")
line("event JSON encoding", encoding, unit: "event")
print("rate limiting: 100,000 live keys, every decision allowed")
line("reference: Mutex<[String: Int64]> update", limiterReference, unit: "update", against: limiterReference)
line("InMemoryRateLimiter.decide", limiterDecisions, unit: "decision", against: limiterReference)
