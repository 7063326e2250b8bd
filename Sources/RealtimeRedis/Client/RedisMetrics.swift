import Metrics

/// The Redis backends' metrics (swift-metrics), created with the client so they bind to the metrics backend the
/// host bootstrapped before creating it.
///
/// - `realtime_redis_connections` (gauge): pooled command connections up.
/// - `realtime_redis_reconnects_total` (counter, `connection`: `pool` or `pubsub`): connections re-established.
/// - `realtime_redis_bus_refused_messages_total` (counter, `reason`: `invalid` — bad HMAC or stamp, malformed, wrong
///   channel —, `stale` — sent outside the freshness window —, or `replayed`): bus messages refused.
/// - `realtime_redis_bus_dropped_publishes_total`: publishes dropped because the outage queue was full.
/// - `realtime_redis_bus_dropped_deliveries_total`: deliveries dropped because a subscription's buffer was full.
/// - `realtime_redis_canary_round_trip` (timer): pub/sub canary round trips.
/// - `realtime_redis_ratelimit_fallback_decisions_total`: decisions taken by the local fallback limiter.
struct RedisMetrics: Sendable {
    let connections = Gauge(label: "realtime_redis_connections")
    let poolReconnects = Counter(label: "realtime_redis_reconnects_total", dimensions: [("connection", "pool")])
    let pubsubReconnects = Counter(label: "realtime_redis_reconnects_total", dimensions: [("connection", "pubsub")])
    let refusedInvalid = Counter(
        label: "realtime_redis_bus_refused_messages_total",
        dimensions: [("reason", "invalid")]
    )
    let refusedStale = Counter(label: "realtime_redis_bus_refused_messages_total", dimensions: [("reason", "stale")])
    let refusedReplayed = Counter(
        label: "realtime_redis_bus_refused_messages_total",
        dimensions: [("reason", "replayed")]
    )
    let droppedPublishes = Counter(label: "realtime_redis_bus_dropped_publishes_total")
    let droppedDeliveries = Counter(label: "realtime_redis_bus_dropped_deliveries_total")
    let canaryRoundTrip = Metrics.Timer(label: "realtime_redis_canary_round_trip")
    let fallbackDecisions = Counter(label: "realtime_redis_ratelimit_fallback_decisions_total")

    /// The refusal counter of `reason`.
    func refused(_ reason: RedisEventBus.Refusal) -> Counter {
        switch reason {
        case .invalid: refusedInvalid
        case .stale: refusedStale
        case .replayed: refusedReplayed
        }
    }
}
