// `cluster`: commands/s through our cluster client next to `redis-benchmark --cluster`, on one local six-node Redis
// Cluster (three primaries, three replicas, started by the tests' fixture), in the same run, `rounds` times.
//
//     REALTIMEHUB_BENCHMARKS=1 swift build -c release --product RedisBenchmarks
//     .build/release/RedisBenchmarks cluster [seconds-per-measurement] [rounds]
//
// Like for like: `redis-benchmark --cluster -c 50 -P 16` spreads its 50 connections over the primaries and gives
// each one keys of a hash tag its node serves, so every 16-command pipeline goes to one node; our 50 callers do the
// same (caller i uses a tag served by primary i mod 3) through `client.pipeline`, which routes by slot. The third
// figure, random keys, has no reference: each pipeline is split over the three primaries and sent as three.
import Foundation
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport

func compareClusterThroughput(seconds: Double, rounds: Int) async throws {
    let cluster = try await RedisTestCluster.start()
    defer { cluster.stop() }
    var configuration = cluster.configuration
    // As on one node (main.swift): 4 pipelined connections, here to each primary.
    configuration.poolSize = 4
    configuration.commandTimeout = .seconds(10)
    configuration.clusterRefreshInterval = .seconds(5)
    let client = RedisClient(configuration: configuration)
    try await client.checkReady()

    // A hash tag served by each primary.
    var tags: [Int: String] = [:]
    for index in 0..<1000 where tags.count < 3 {
        let tag = "{t\(index)}"
        let port = try await cluster.primary(serving: tag).port
        if tags[port] == nil { tags[port] = tag }
    }
    let perPrimary = tags.sorted { $0.key < $1.key }.map(\.value)
    print(
        "Redis Cluster of 6 nodes (3 primaries + 3 replicas) on 127.0.0.1, \(concurrency) concurrent callers, "
            + "pool of \(configuration.poolSize) connections per primary, \(seconds) s per measurement"
    )

    var setRatios: [Double] = []
    var getRatios: [Double] = []
    for round in 1...rounds {
        print("round \(round) of \(rounds)")
        let theirs = try redisBenchmark(
            port: cluster.nodes[0].port,
            requests: 2_000_000,
            pipeline: 16,
            ["--cluster", "-t", "set,get"]
        )
        for name in ["SET", "GET"] {
            let ours = try await measure { worker in
                let key = "key:\(perPrimary[(worker / 1_000_003) % perPrimary.count]):__rand_int__"
                let command = name == "SET" ? RedisCommand("SET", key, "xxx") : RedisCommand("GET", key)
                return try await client.pipeline(Array(repeating: command, count: 16)).count
            }
            let ratio = report("\(name) -P 16, one node per pipeline", ours: ours, theirs: theirs[name])
            if let ratio { name == "SET" ? setRatios.append(ratio) : getRatios.append(ratio) }
        }
        let spread = try await measure { worker in
            let commands = (0..<16).map { RedisCommand("SET", "key:\(worker &+ $0 &* 7919)", "xxx") }
            return try await client.pipeline(commands).count
        }
        report("SET -P 16, random keys (3 nodes)", ours: spread, theirs: nil)
    }
    print(
        "median over \(rounds) rounds: SET -P 16 \(medianPercent(setRatios)), GET -P 16 \(medianPercent(getRatios)) "
            + "of redis-benchmark --cluster (goal >= 70 %)"
    )
    await client.shutdown()
}
