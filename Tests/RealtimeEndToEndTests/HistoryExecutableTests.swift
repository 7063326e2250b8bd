// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeRedisTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("realtime-server builds its history store from WEBSOCKET_HISTORY_*")
struct HistoryExecutableTests {
    /// Starts `realtime-server` with `environment`, reads `/ws/health`, stops it; returns the health's components.
    static func components(_ environment: [String: String]) async throws -> JSONValue? {
        let server = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--development", "--port", "0", "--log-level", "warning"],
            environment: environment
        )
        defer { server.stop() }
        let listening = try await server.line(containing: "listening on http://")
        let port = try #require(listening.split(separator: ":").last.flatMap { Int($0) })
        let health = try await TestSocket.request(port: port, "GET", "/ws/health")
        kill(server.process.processIdentifier, SIGTERM)
        _ = try await server.finish()
        return try health.json()["components"]
    }

    @Test("in memory: a history store by default, reported in health; none when disabled")
    func inMemory() async throws {
        let enabled = try await Self.components(["WEBSOCKET_HISTORY_MEMORY_LIMIT": "1048576"])
        #expect(enabled?["historyStore"]?["status"]?.stringValue == "healthy")
        #expect(enabled?["historyStore"]?["details"]?["memoryLimitBytes"]?.intValue == 1_048_576)
        let disabled = try await Self.components(["WEBSOCKET_HISTORY_ENABLED": "false"])
        #expect(disabled?["eventBus"] != nil)
        #expect(disabled?["historyStore"] == nil)
    }

    @Test(
        "on Redis: the Redis history store, reported in health",
        .enabled(if: RedisTestServer.enabled, "needs redis-server")
    )
    func onRedis() async throws {
        // A redis-server of its own: the process registers itself under the default key prefix.
        try await withRedis(ownServer: true) { _, server in
            let components = try await Self.components([
                "REDIS_URL": try #require(server).url,
                "REALTIME_CLUSTER_SECRET": "history-process-test-secret-0123456789",
            ])
            #expect(components?["historyStore"]?["status"]?.stringValue == "healthy")
            #expect(components?["historyStore"]?["details"]?["refusedEntries"]?.intValue == 0)
        }
    }

    @Test("an invalid history setting stops the server with the variable named")
    func invalidSetting() async throws {
        let binary = try ExecutableTests.executable("realtime-server")
        let refused = try await Child(
            binary,
            ["serve", "--development", "--port", "0"],
            environment: ["WEBSOCKET_HISTORY_TTL": "forever"]
        ).finish()
        #expect(refused.status != 0)
        #expect(refused.output.contains("WEBSOCKET_HISTORY_TTL"))
        let inconsistent = try await Child(
            binary,
            ["serve", "--development", "--port", "0"],
            environment: ["WEBSOCKET_HISTORY_RETENTION": "1000"]
        ).finish()
        #expect(inconsistent.status != 0)
        #expect(inconsistent.output.contains("retention"))
    }
}
