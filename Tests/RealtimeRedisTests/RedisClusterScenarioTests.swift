import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// The two-server scenarios every backend set shares (`HubClusterScenarios`), on Redis: each hub has its own
    /// Redis client and backends under one key prefix, as separate servers of one cluster would.
    @Suite(.timeLimit(.minutes(1))) struct RedisClusterScenarioTests {
        /// Runs `scenario` on a fresh cluster.
        func run(_ scenario: (HubClusterScenarios.Cluster) async throws -> Void) async throws {
            try await withRedis { configuration, _ in try await scenario(RedisHubCluster(configuration).scenarioCluster)
            }
        }

        @Test func eventsAndNotificationsCrossServersByScope() async throws {
            try await run(HubClusterScenarios.eventsAndNotificationsCrossServersByScope)
        }

        @Test func aUserEventPublishedElsewhereArrivesInOrder() async throws {
            try await run(HubClusterScenarios.aUserEventPublishedElsewhereArrivesInOrder)
        }

        @Test func eventsOfEachPublisherArriveInOrder() async throws {
            try await run(HubClusterScenarios.eventsOfEachPublisherArriveInOrder)
        }

        @Test func revokingASessionClosesItsConnectionsOnEveryServer() async throws {
            try await run(HubClusterScenarios.revokingASessionClosesItsConnectionsOnEveryServer)
        }

        @Test func revokingAUserRefusesItsEarlierTokensOnEveryServer() async throws {
            try await run(HubClusterScenarios.revokingAUserRefusesItsEarlierTokensOnEveryServer)
        }

        @Test func aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline() async throws {
            try await run(HubClusterScenarios.aServerThatStopsHeartbeatingIsPurgedAndItsUsersGoOffline)
        }

        @Test func listingConnectionsPagesThroughTheCluster() async throws {
            try await run(HubClusterScenarios.listingConnectionsPagesThroughTheCluster)
        }
    }
}
