// `latency-cluster`: the hub-to-hub publish-to-deliver latency of `hub-latency` (HubLatency.swift), in one run, on
// one redis-server and on a local six-node Redis Cluster (three primaries, three replicas) with sharded pub/sub
// (`RedisConfiguration.clusterShardedPubSub`) and with classic pub/sub, alternating, `rounds` times.
//
//     REALTIMEHUB_BENCHMARKS=1 swift build -c release --product RedisBenchmarks
//     .build/release/RedisBenchmarks latency-cluster [rate] [seconds-per-measurement] [rounds]
//
// Defaults: 10,000 events/s, 5 s (after the 1 s warm-up of each measurement), 3 rounds. Every server is started
// and stopped (by PID) by the tests' fixture, on loopback. Each round measures every setup once, in an order that
// rotates from round to round, so load that drifts during the run touches all of them; the ratios compare the
// cluster's figures with the single node's of the same round.
import Foundation
import Histogram
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport

private struct LatencySetup {
    var name: String
    var configuration: RedisConfiguration
    /// Every redis-server of the setup, one node each (for `INFO cpu`).
    var servers: [RedisConfiguration]
    var results: [HubLatencyResult] = []
}

private func median(_ values: [Double]) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

private func micros(_ result: HubLatencyResult, _ percentile: Double) -> Double {
    Double(result.histogram.valueAtPercentile(percentile)) / 1000
}

/// `cluster_stats_messages_publish_received` of each node (`CLUSTER INFO`): the `PUBLISH`es it got over the cluster
/// bus from the node a client published on.
private func clusterBusPublishes(_ cluster: RedisTestCluster) async -> [Int] {
    var counts: [Int] = []
    for node in cluster.nodes {
        let info = (try? await cluster.send(RedisCommand("CLUSTER", "INFO"), to: node).string) ?? ""
        let line = info.split(whereSeparator: \.isNewline).first {
            $0.hasPrefix("cluster_stats_messages_publish_received:")
        }
        counts.append(line.flatMap { Int($0.split(separator: ":").last ?? "") } ?? 0)
    }
    return counts
}

func compareClusterLatency(rate: Int, seconds: Double, rounds: Int) async throws {
    let single = try await RedisTestServer.start()
    defer { single.stop() }
    // Redis's default node timeout (15 s), as in production, not the fixture's 1 s (made for fast failover tests,
    // under which a node of a loaded machine may drop a cluster-bus link it thinks is stalled).
    let cluster = try await RedisTestCluster.start(nodeTimeout: .seconds(15))
    defer { cluster.stop() }

    // Like `hub-latency`: the client's defaults (pool of 4 connections; on a cluster, 4 per primary).
    let singleConfiguration = RedisConfiguration(port: single.port)
    var classic = RedisConfiguration(port: cluster.nodes[0].port)
    classic.clusterNodes = cluster.configuration.clusterNodes
    classic.clusterShardedPubSub = false
    var sharded = classic
    sharded.clusterShardedPubSub = true
    let nodes = cluster.nodes.map { RedisConfiguration(port: $0.port, poolSize: 1) }
    var setups = [
        LatencySetup(name: "single node", configuration: singleConfiguration, servers: [singleConfiguration]),
        LatencySetup(name: "cluster, sharded pub/sub", configuration: sharded, servers: nodes),
        LatencySetup(name: "cluster, classic pub/sub", configuration: classic, servers: nodes),
    ]
    print(
        "hub A → Redis → hub B at \(rate) events/s, \(seconds) s per measurement (after 1 s warm-up), \(rounds) rounds: "
            + "redis-server 127.0.0.1:\(single.port) and a 6-node cluster (3 primaries + 3 replicas) on "
            + cluster.nodes.map { "127.0.0.1:\($0.port)" }.joined(separator: ",")
    )
    for round in 0..<rounds {
        print("round \(round + 1) of \(rounds)")
        for step in 0..<setups.count {
            let index = (round + step) % setups.count
            print("  \(setups[index].name):")
            let busBefore = await clusterBusPublishes(cluster)
            let result = try await measureHubLatency(
                configuration: setups[index].configuration,
                rate: rate,
                seconds: seconds,
                redisServers: setups[index].servers
            )
            reportHubLatency(result)
            if index == 2 {
                // Classic pub/sub crosses the cluster bus: did every node get every PUBLISH (warm-up included)?
                let busAfter = await clusterBusPublishes(cluster)
                let received = zip(busAfter, busBefore).map { $0 - $1 }
                print("    PUBLISH received over the cluster bus, per node: \(received)")
            }
            setups[index].results.append(result)
        }
    }

    print("")
    print("medians over \(rounds) rounds [min–max]; CPU per delivered event; lost = sent − delivered, all rounds")
    print(
        "setup                      achieved/s    p50 µs    p99 µs  p99.9 µs   CPU process   CPU redis(all)   lost"
    )
    for setup in setups {
        let results = setup.results
        func column(_ values: [Double]) -> String { String(format: "%9.0f", median(values)) }
        let p99 = results.map { micros($0, 99) }
        print(
            setup.name.padding(toLength: 25, withPad: " ", startingAt: 0)
                + String(format: " %10.0f", median(results.map(\.achievedRate)))
                + " " + column(results.map { micros($0, 50) })
                + " " + column(p99)
                + " " + column(results.map { micros($0, 99.9) })
                + String(format: " %10.1f µs", median(results.map { $0.processCPUPerEvent.seconds * 1e6 }))
                + String(format: " %13.1f µs", median(results.map { ($0.redisCPUPerEvent?.seconds ?? .nan) * 1e6 }))
                + String(format: " %6d", results.reduce(0) { $0 + max(0, $1.sent - $1.received) })
                + String(format: "   p99 [%.0f–%.0f]", p99.min() ?? .nan, p99.max() ?? .nan)
        )
        let short = results.filter { $0.achievedRate < Double(rate) * 0.99 }
        if !short.isEmpty {
            print(
                "    below the target rate in \(short.count) of \(results.count) rounds: "
                    + short.map { String(format: "%.0f/s", $0.achievedRate) }.joined(separator: ", ")
            )
        }
    }

    print("")
    print("ratios to the single node of the same round (medians over \(rounds) rounds, per-round values in brackets):")
    let reference = setups[0].results
    for setup in setups.dropFirst() {
        func ratios(_ value: (HubLatencyResult) -> Double) -> String {
            let values = zip(setup.results, reference).map { value($0) / value($1) }
            return String(format: "%.2fx", median(values)) + " ["
                + values.map { String(format: "%.2f", $0) }.joined(separator: ", ") + "]"
        }
        print("  \(setup.name):")
        print("    p50 \(ratios { micros($0, 50) })   p99 \(ratios { micros($0, 99) })")
        print("    p99.9 \(ratios { micros($0, 99.9) })   CPU process \(ratios { $0.processCPUPerEvent.seconds })")
        print("    CPU redis (all nodes) \(ratios { $0.redisCPUPerEvent?.seconds ?? .nan })")
    }
}
