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

    /// The recovery scenarios (`HubClusterScenarios+Recovery`) on Redis: each hub with its own client and a
    /// `RedisHistoryStore`, appending and publishing in one script.
    @Suite(.timeLimit(.minutes(1))) struct RedisRecoveryScenarioTests {
        func run(_ scenario: (HubClusterScenarios.Cluster) async throws -> Void) async throws {
            var history = HistoryConfiguration()
            history.userStreams.maxEntries = HubClusterScenarios.recoveryStreamEntries
            try await withRedis { configuration, _ in
                try await scenario(RedisHubCluster(configuration, history: history).scenarioCluster)
            }
        }

        @Test func aClientRecoversWhatItMissedOnAnotherServer() async throws {
            try await run(HubClusterScenarios.aClientRecoversWhatItMissedOnAnotherServer)
        }

        @Test func eventsPublishedDuringARecoveryAreDeliveredOnce() async throws {
            try await run(HubClusterScenarios.eventsPublishedDuringARecoveryAreDeliveredOnce)
        }

        @Test func forgedRecoveryRequestsGetErrorsAndNoData() async throws {
            try await run(HubClusterScenarios.forgedRecoveryRequestsGetErrorsAndNoData)
        }

        @Test func aClientThatMissedTooMuchIsToldToResynchronise() async throws {
            try await run(HubClusterScenarios.aClientThatMissedTooMuchIsToldToResynchronise)
        }

        @Test func adminAndBroadcastNotificationsAreRecoveredLikeEvents() async throws {
            try await run(HubClusterScenarios.adminAndBroadcastNotificationsAreRecoveredLikeEvents)
        }

        @Test func aClientRecoversFromTheUpgradeQuery() async throws {
            try await run(HubClusterScenarios.aClientRecoversFromTheUpgradeQuery)
        }

        @Test func aForgedRecoverQueryGetsAClearErrorAndNoData() async throws {
            try await run(HubClusterScenarios.aForgedRecoverQueryGetsAClearErrorAndNoData)
        }
    }

    /// The offline notification scenarios on Redis: each hub with its own client and a
    /// `RedisOfflineNotificationStore` on the same namespace.
    @Suite(.timeLimit(.minutes(1))) struct RedisOfflineNotificationScenarioTests {
        func run(_ scenario: (HubClusterScenarios.Cluster) async throws -> Void) async throws {
            try await withRedis { configuration, _ in
                try await scenario(
                    RedisHubCluster(configuration, offlineNotifications: OfflineNotificationLimits()).scenarioCluster
                )
            }
        }

        @Test func anOfflineUsersNotificationIsDeliveredOnceOnEitherServer() async throws {
            try await run(HubClusterScenarios.anOfflineUsersNotificationIsDeliveredOnceOnEitherServer)
        }

        @Test func anOfflineUserConnectingToBothServersAtOnceGetsEachNotificationOnce() async throws {
            try await run(HubClusterScenarios.anOfflineUserConnectingToBothServersAtOnceGetsEachNotificationOnce)
        }
    }
}
