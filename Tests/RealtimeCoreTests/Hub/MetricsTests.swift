import MetricsTestKit
import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct MetricsTests {
    let fixture = HubFixture()

    @Test func theHubReportsItsInstruments() async throws {
        let metrics = TestMetrics()
        let hub = try fixture.hub(metrics: metrics)
        let alice = try await hub.connectClient(token: "alice-token")
        try await alice.subscribe(["security.*"])
        _ = await hub.rejection(uri: "/ws/events?token=forged")
        _ = await hub.rejection(uri: "/ws/admin?token=alice-token")
        try await hub.publishSecurityEvent(.securityHighRiskDetected, userID: "alice")
        try await hub.publishSecurityEvent(.securityHighRiskDetected, userID: "nobody-here")

        // Two security events and the presence.user.online event of Alice's connection.
        #expect(try metrics.expectCounter("realtime_events_published_total").totalValue == 3)
        #expect(try metrics.expectCounter("realtime_events_delivered_total").totalValue == 1)
        #expect(try metrics.expectCounter("realtime_messages_received_total").totalValue == 1)
        #expect(
            try metrics.expectCounter("realtime_upgrade_rejections_total", [("reason", "invalid_token")]).totalValue
                == 1
        )
        #expect(
            try metrics.expectCounter("realtime_upgrade_rejections_total", [("reason", "admin_required")]).totalValue
                == 1
        )
        #expect(
            try metrics.expectCounter("realtime_auth_failures_total", [("reason", "unknown_token")]).totalValue == 1
        )
        #expect(try metrics.expectGauge("realtime_connections", [("endpoint", "all")]).lastValue == 1)
        await alice.close()
        #expect(try metrics.expectGauge("realtime_connections", [("endpoint", "all")]).lastValue == 0)
    }
}
