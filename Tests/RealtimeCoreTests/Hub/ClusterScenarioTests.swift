import RealtimeCore
import RealtimeTesting
import Testing

/// The two-server scenarios every backend set shares (`HubClusterScenarios`), on in-memory backends: hubs sharing
/// one store, bus, rate limiter and session store.
@Suite struct InMemoryClusterScenarioTests {
    static func cluster(
        history: (any HistoryStore)? = nil,
        offlineNotifications: (any OfflineNotificationStore)? = nil
    ) -> HubClusterScenarios.Cluster {
        let fixture = HubFixture()
        return HubClusterScenarios.Cluster(
            makeBackends: { tokens in
                .inMemory(
                    tokenVerifier: tokens,
                    connectionStore: fixture.store,
                    eventBus: fixture.bus,
                    rateLimiter: fixture.limiter,
                    sessionStore: fixture.sessions,
                    historyStore: history,
                    offlineNotifications: offlineNotifications
                )
            },
            registry: fixture.store
        )
    }

    @Test func eventsAndNotificationsCrossServersByScope() async throws {
        try await HubClusterScenarios.eventsAndNotificationsCrossServersByScope(Self.cluster())
    }

    @Test func aUserEventPublishedElsewhereArrivesInOrder() async throws {
        try await HubClusterScenarios.aUserEventPublishedElsewhereArrivesInOrder(Self.cluster())
    }

    @Test func eventsOfEachPublisherArriveInOrder() async throws {
        try await HubClusterScenarios.eventsOfEachPublisherArriveInOrder(Self.cluster())
    }

    @Test func revokingASessionClosesItsConnectionsOnEveryServer() async throws {
        try await HubClusterScenarios.revokingASessionClosesItsConnectionsOnEveryServer(Self.cluster())
    }

    @Test func revokingAUserRefusesItsEarlierTokensOnEveryServer() async throws {
        try await HubClusterScenarios.revokingAUserRefusesItsEarlierTokensOnEveryServer(Self.cluster())
    }

    @Test func aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline() async throws {
        try await HubClusterScenarios.aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline(Self.cluster())
    }

    @Test func listingConnectionsPagesThroughTheCluster() async throws {
        try await HubClusterScenarios.listingConnectionsPagesThroughTheCluster(Self.cluster())
    }
}

/// The recovery scenarios on in-memory backends: hubs sharing one store, bus and history store.
@Suite struct InMemoryRecoveryScenarioTests {
    static func cluster() throws -> HubClusterScenarios.Cluster {
        var configuration = HistoryConfiguration()
        configuration.userStreams.maxEntries = HubClusterScenarios.recoveryStreamEntries
        return InMemoryClusterScenarioTests.cluster(history: try InMemoryHistoryStore(configuration: configuration))
    }

    @Test func aClientRecoversWhatItMissedOnAnotherServer() async throws {
        try await HubClusterScenarios.aClientRecoversWhatItMissedOnAnotherServer(Self.cluster())
    }

    @Test func eventsPublishedDuringARecoveryAreDeliveredOnce() async throws {
        try await HubClusterScenarios.eventsPublishedDuringARecoveryAreDeliveredOnce(Self.cluster())
    }

    @Test func forgedRecoveryRequestsGetErrorsAndNoData() async throws {
        try await HubClusterScenarios.forgedRecoveryRequestsGetErrorsAndNoData(Self.cluster())
    }

    @Test func aClientThatMissedTooMuchIsToldToResynchronise() async throws {
        try await HubClusterScenarios.aClientThatMissedTooMuchIsToldToResynchronise(Self.cluster())
    }

    @Test func adminAndBroadcastNotificationsAreRecoveredLikeEvents() async throws {
        try await HubClusterScenarios.adminAndBroadcastNotificationsAreRecoveredLikeEvents(Self.cluster())
    }

    @Test func aClientRecoversFromTheUpgradeQuery() async throws {
        try await HubClusterScenarios.aClientRecoversFromTheUpgradeQuery(Self.cluster())
    }

    @Test func aForgedRecoverQueryGetsAClearErrorAndNoData() async throws {
        try await HubClusterScenarios.aForgedRecoverQueryGetsAClearErrorAndNoData(Self.cluster())
    }
}

/// The offline notification scenarios on in-memory backends: hubs sharing one store, bus and offline queue.
@Suite struct InMemoryOfflineNotificationScenarioTests {
    static func cluster() throws -> HubClusterScenarios.Cluster {
        InMemoryClusterScenarioTests.cluster(offlineNotifications: try InMemoryOfflineNotificationStore())
    }

    @Test func anOfflineUsersNotificationIsDeliveredOnceOnEitherServer() async throws {
        try await HubClusterScenarios.anOfflineUsersNotificationIsDeliveredOnceOnEitherServer(Self.cluster())
    }

    @Test func anOfflineUserConnectingToBothServersAtOnceGetsEachNotificationOnce() async throws {
        try await HubClusterScenarios.anOfflineUserConnectingToBothServersAtOnceGetsEachNotificationOnce(
            Self.cluster()
        )
    }
}
