import RealtimeCore
import RealtimeTesting
import Testing

/// The two-server scenarios every backend set shares (`HubClusterScenarios`), on in-memory backends: hubs sharing
/// one store, bus, rate limiter and session store.
@Suite struct InMemoryClusterScenarioTests {
    static func cluster() -> HubClusterScenarios.Cluster {
        let fixture = HubFixture()
        return HubClusterScenarios.Cluster(
            makeBackends: { tokens in
                .inMemory(
                    tokenVerifier: tokens,
                    connectionStore: fixture.store,
                    eventBus: fixture.bus,
                    rateLimiter: fixture.limiter,
                    sessionStore: fixture.sessions
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
