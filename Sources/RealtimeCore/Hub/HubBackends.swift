/// The backends a hub is composed of.
public struct HubBackends: Sendable {
    public var tokenVerifier: any TokenVerifier
    public var connectionStore: any ConnectionStore
    public var eventBus: any EventBus
    public var rateLimiter: any RateLimiter
    public var sessionStore: any SessionStore
    /// The history kept for reconnecting clients; `nil` keeps none. Reported by ``RealtimeHub/healthCheck()``
    /// (component `historyStore`).
    public var historyStore: (any HistoryStore)?
    /// Where user notifications wait while their user has no connection (delivered once on the next one); `nil`
    /// keeps none. Its count is the stats' `notifications.queueLength`.
    public var offlineNotifications: (any OfflineNotificationStore)?

    public init(
        tokenVerifier: any TokenVerifier,
        connectionStore: any ConnectionStore,
        eventBus: any EventBus,
        rateLimiter: any RateLimiter,
        sessionStore: any SessionStore,
        historyStore: (any HistoryStore)? = nil,
        offlineNotifications: (any OfflineNotificationStore)? = nil
    ) {
        self.tokenVerifier = tokenVerifier
        self.connectionStore = connectionStore
        self.eventBus = eventBus
        self.rateLimiter = rateLimiter
        self.sessionStore = sessionStore
        self.historyStore = historyStore
        self.offlineNotifications = offlineNotifications
    }
}

extension HubBackends {
    /// In-memory backends for one process (development, tests). Pass the same `connectionStore` and `eventBus`
    /// to several hubs to make them behave like the servers of one cluster.
    public static func inMemory(
        tokenVerifier: any TokenVerifier,
        connectionStore: any ConnectionStore = InMemoryConnectionStore(),
        eventBus: any EventBus = InMemoryEventBus(),
        rateLimiter: any RateLimiter = InMemoryRateLimiter(),
        sessionStore: any SessionStore = InMemorySessionStore(),
        historyStore: (any HistoryStore)? = nil,
        offlineNotifications: (any OfflineNotificationStore)? = nil
    ) -> HubBackends {
        HubBackends(
            tokenVerifier: tokenVerifier,
            connectionStore: connectionStore,
            eventBus: eventBus,
            rateLimiter: rateLimiter,
            sessionStore: sessionStore,
            historyStore: historyStore,
            offlineNotifications: offlineNotifications
        )
    }
}
