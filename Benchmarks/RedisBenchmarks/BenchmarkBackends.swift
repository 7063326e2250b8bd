import RealtimeCore
import RealtimeRedis

/// The cluster secret every benchmark hub shares.
let benchmarkClusterSecret = Array("benchmark-cluster-secret-0123456789".utf8)

/// Every Redis backend on `client` under `prefix`, as one server of a cluster: what the benchmarks' hubs run on.
func benchmarkRedisBackends(
    client: RedisClient,
    prefix: String,
    tokens: StaticTokenVerifier,
    historyStore: (any HistoryStore)? = nil
) throws -> HubBackends {
    HubBackends(
        tokenVerifier: tokens,
        connectionStore: RedisConnectionStore(client: client, prefix: prefix),
        eventBus: try RedisEventBus(client: client, clusterSecret: benchmarkClusterSecret, prefix: prefix),
        rateLimiter: RedisRateLimiter(client: client, prefix: prefix),
        sessionStore: RedisSessionStore(client: client, prefix: prefix),
        historyStore: historyStore
    )
}
