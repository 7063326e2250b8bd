import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// "The registry never keeps a connection that is gone" (issue 12), on Redis: the checks of
    /// `RegistryConsistencyTests` (RealtimeCoreTests) against a real redis-server.
    @Suite(.timeLimit(.minutes(1))) struct RegistryConsistencyOnRedisTests {
        static func withChecks(_ body: (RegistryConsistencyChecks) async throws -> Void) async throws {
            try await withRedis { configuration, _ in
                let cluster = RedisHubCluster(configuration)
                var pausing: PausingConnectionStore?
                let hub = try cluster.hub(
                    RegistryConsistencyChecks.configure,
                    wrapStore: { store in
                        let wrapped = PausingConnectionStore(store)
                        pausing = wrapped
                        return wrapped
                    }
                )
                let checks = RegistryConsistencyChecks(
                    hub: hub,
                    store: try #require(pausing),
                    token: "alice-token",
                    userID: "alice",
                    adminToken: "admin-token"
                )
                do {
                    try await hub.running { try await body(checks) }
                    await cluster.shutdown()
                } catch {
                    await cluster.shutdown()
                    throw error
                }
            }
        }

        @Test func closesAtEveryStepOfTheUpgradeLeaveNoRecord() async throws {
            try await Self.withChecks { try await $0.closesAtEveryStep(rounds: 3) }
        }

        @Test func theHeartbeatRemovesAStrayRecord() async throws {
            try await Self.withChecks { try await $0.strayRecordIsRemovedByTheHeartbeat() }
        }
    }
}
