import CoreMetrics
import Synchronization

/// Counters behind ``RealtimeHub/stats()`` and the swift-metrics instruments the hub reports.
final class HubCounters: Sendable {
    let eventsPublished = Atomic<Int>(0)
    let eventsDelivered = Atomic<Int>(0)
    let eventsDropped = Atomic<Int>(0)
    let notificationsSent = Atomic<Int>(0)
    let messagesReceived = Atomic<Int>(0)
    let connectionsOpened = Atomic<Int>(0)
    let connectionsClosed = Atomic<Int>(0)
    let slowConsumerCloses = Atomic<Int>(0)
    let rateLimitedMessages = Atomic<Int>(0)
    let protocolErrors = Atomic<Int>(0)
    let busMessagesReceived = Atomic<Int>(0)
    let busPublishFailures = Atomic<Int>(0)
    let gaps = Atomic<Int>(0)
    let historyFailures = Atomic<Int>(0)
    let historyResets = Atomic<Int>(0)
    let historyResetsLost = Atomic<Int>(0)
    let recoveries = Atomic<Int>(0)
    let recoveriesFailed = Atomic<Int>(0)
    let eventsReplayed = Atomic<Int>(0)
    let offlineKept = Atomic<Int>(0)
    let offlineTooLarge = Atomic<Int>(0)
    let offlineStoreFailures = Atomic<Int>(0)
    let offlineDisplaced = Atomic<Int>(0)
    private let rejections = Mutex<[String: Int]>([:])
    private let authFailures = Mutex<[String: Int]>([:])

    // swift-metrics instruments.
    let connectionsGauge: Gauge
    let adminConnectionsGauge: Gauge
    let publishedCounter: Counter
    let deliveredCounter: Counter
    let droppedCounter: Counter
    let receivedCounter: Counter
    let deliveryLatency: CoreMetrics.Timer
    private let labeledCounters = Mutex<[String: Counter]>([:])
    private let factory: any MetricsFactory

    init(factory: any MetricsFactory) {
        self.factory = factory
        connectionsGauge = Gauge(label: "realtime_connections", dimensions: [("endpoint", "all")], factory: factory)
        adminConnectionsGauge = Gauge(
            label: "realtime_connections",
            dimensions: [("endpoint", "admin")],
            factory: factory
        )
        publishedCounter = Counter(label: "realtime_events_published_total", factory: factory)
        deliveredCounter = Counter(label: "realtime_events_delivered_total", factory: factory)
        droppedCounter = Counter(label: "realtime_events_dropped_total", factory: factory)
        receivedCounter = Counter(label: "realtime_messages_received_total", factory: factory)
        deliveryLatency = CoreMetrics.Timer(
            label: "realtime_delivery_latency_seconds",
            dimensions: [],
            factory: factory
        )
    }

    /// Adds `amount` to the counter `label` (with `dimension`, when given), made on first use.
    func increment(_ label: String, _ dimension: (String, String)?, by amount: Int = 1) {
        let key = dimension.map { label + "|" + $0.0 + "=" + $0.1 } ?? label
        let counter = labeledCounters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: dimension.map { [$0] } ?? [], factory: factory)
            counters[key] = counter
            return counter
        }
        counter.increment(by: amount)
    }

    func rejected(_ reason: String) {
        rejections.withLock { $0[reason, default: 0] += 1 }
        increment("realtime_upgrade_rejections_total", ("reason", reason))
    }

    func authFailed(_ reason: String) {
        authFailures.withLock { $0[reason, default: 0] += 1 }
        increment("realtime_auth_failures_total", ("reason", reason))
    }

    /// What became of a notification to a user with no connection anywhere.
    enum OfflineOutcome {
        case kept(displaced: Int)
        case tooLarge
        case storeFailed
    }

    func offline(_ outcome: OfflineOutcome) {
        switch outcome {
        case .kept(let displaced):
            offlineKept.add(1, ordering: .relaxed)
            increment("realtime_offline_notifications_kept_total", nil)
            guard displaced > 0 else { return }
            offlineDisplaced.add(displaced, ordering: .relaxed)
            increment("realtime_offline_notifications_dropped_total", ("reason", "displaced"), by: displaced)
        case .tooLarge:
            offlineTooLarge.add(1, ordering: .relaxed)
            increment("realtime_offline_notifications_dropped_total", ("reason", "too_large"))
        case .storeFailed:
            offlineStoreFailures.add(1, ordering: .relaxed)
            increment("realtime_offline_notifications_dropped_total", ("reason", "store_failed"))
        }
    }

    var rejectionsByReason: [String: Int] { rejections.withLock { $0 } }
    var authFailuresByReason: [String: Int] { authFailures.withLock { $0 } }
}
