import RealtimeCore
import Testing

@Suite struct HistoryConfigurationTests {
    @Test func defaultsSuitAHundredThousandUsers() throws {
        let history = HubConfiguration().history
        #expect(history.enabled)
        #expect(history.userStreams == HistoryLimits(maxEntries: 100, maxAge: .seconds(3600)))
        #expect(history.sharedStreams == HistoryLimits(maxEntries: 1000, maxAge: .seconds(600)))
        #expect(history.retention == .seconds(86_400))
        #expect(history.memoryLimitBytes == 64 * 1024 * 1024)
        #expect(history.limits(for: .user("u")) == history.userStreams)
        #expect(history.limits(for: .admins) == history.sharedStreams)
        #expect(history.limits(for: .everyone) == history.sharedStreams)
        try history.validate()
    }

    @Test func readsTheEnvironment() throws {
        let configuration = try HubConfiguration(environment: [
            "WEBSOCKET_HISTORY_SIZE": "50",
            "WEBSOCKET_HISTORY_TTL": "120000",
            "WEBSOCKET_HISTORY_SHARED_SIZE": "500",
            "WEBSOCKET_HISTORY_SHARED_TTL": "60000",
            "WEBSOCKET_HISTORY_RETENTION": "7200000",
            "WEBSOCKET_HISTORY_MAX_ENTRY_BYTES": "8192",
            "WEBSOCKET_HISTORY_MEMORY_LIMIT": "1048576",
        ])
        let history = configuration.history
        #expect(history.enabled)
        #expect(history.userStreams == HistoryLimits(maxEntries: 50, maxAge: .seconds(120)))
        #expect(history.sharedStreams == HistoryLimits(maxEntries: 500, maxAge: .seconds(60)))
        #expect(history.retention == .seconds(7200))
        #expect(history.maxEntryBytes == 8192)
        #expect(history.memoryLimitBytes == 1_048_576)
        try configuration.validate()
        #expect(try !HubConfiguration(environment: ["WEBSOCKET_HISTORY_ENABLED": "false"]).history.enabled)
    }

    @Test func inconsistentHistoryIsRefusedUnlessDisabled() throws {
        var configuration = try HubConfiguration(environment: ["WEBSOCKET_HISTORY_RETENTION": "1000"])
        let error = #expect(throws: RealtimeError.self) { try configuration.validate() }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("retention") == true)
        configuration.history.enabled = false
        try configuration.validate()
        configuration = HubConfiguration()
        configuration.history.maxEntryBytes = 32 << 20
        #expect(throws: RealtimeError.self) { try configuration.validate() }
    }
}
