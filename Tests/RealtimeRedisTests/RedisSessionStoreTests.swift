import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(1))) struct RedisSessionStoreTests {
        @Test func conformsToTheSessionStoreContract() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                try await SessionStoreConformance.run(
                    makeStore: { mode in
                        RedisSessionStore(client: client, mode: mode, prefix: "t\(RandomID.hex(bytes: 4)):")
                    },
                    time: .realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))
                )
                await client.shutdown()
            }
        }

        @Test func revocationIsVisibleToEveryServerAtOnce() async throws {
            try await withRedis { configuration, _ in
                let (clientA, clientB) = (
                    RedisClient(configuration: configuration), RedisClient(configuration: configuration)
                )
                let prefix = "t\(RandomID.hex(bytes: 4)):"
                for mode in [SessionStoreMode.revocationList, .registry] {
                    let storeA = RedisSessionStore(client: clientA, mode: mode, prefix: prefix)
                    let storeB = RedisSessionStore(client: clientB, mode: mode, prefix: prefix)
                    let session = "sess-\(RandomID.hex(bytes: 4))"
                    try await storeA.create(session, userID: "u1", expiresAt: .now() + .seconds(60))
                    #expect(try await storeB.isActive(session))
                    #expect(try await storeB.revoke(session, retainUntil: .now() + .seconds(60)))
                    #expect(try await !storeA.isActive(session))
                    #expect(try await !storeB.isActive(session))
                }
                await clientA.shutdown()
                await clientB.shutdown()
            }
        }

        @Test func failsWithBackendUnavailableWhenRedisIsDown() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                let client = RedisClient(configuration: configuration)
                let store = RedisSessionStore(client: client)
                #expect(try await store.isActive("s"))
                server.stop()
                #expect(try await eventually { !client.isConnected })
                let error = await #expect(throws: RealtimeError.self) { try await store.isActive("s") }
                #expect(error?.code == .backendUnavailable)
                #expect(await store.healthCheck().status == .unhealthy)
                await client.shutdown()
            }
        }
    }
}
