import RealtimeCore
import RealtimeTesting
import Testing

/// "The registry never keeps a connection that is gone" (issue 12), on in-memory backends.
@Suite(.timeLimit(.minutes(1))) struct RegistryConsistencyTests {
    static func checks(_ adjust: (inout HubConfiguration) -> Void = { _ in }) throws -> RegistryConsistencyChecks {
        let fixture = HubFixture()
        let store = PausingConnectionStore(fixture.store)
        let hub = try fixture.hub(connectionStore: store) { configuration in
            RegistryConsistencyChecks.configure(&configuration)
            adjust(&configuration)
        }
        return RegistryConsistencyChecks(
            hub: hub,
            store: store,
            token: "alice-token",
            userID: "alice",
            adminToken: "admin-token"
        )
    }

    @Test func closesAtEveryStepOfTheUpgradeLeaveNoRecord() async throws {
        let checks = try Self.checks()
        try await checks.hub.running { try await checks.closesAtEveryStep(rounds: 3) }
    }

    @Test func theHeartbeatRemovesAStrayRecord() async throws {
        let checks = try Self.checks()
        try await checks.hub.running { try await checks.strayRecordIsRemovedByTheHeartbeat() }
    }

    @Test func reconciliationKeepsARegistrationInFlight() async throws {
        // The ticket outlives the heartbeats the test waits for; only the lifecycle protects the record.
        let checks = try Self.checks {
            $0.upgradeTicketTimeout = .seconds(30)
            $0.registryGrace = .zero
        }
        let (hub, store) = (checks.hub, checks.store)
        try await hub.running {
            let hold = store.holdNextRegister(at: .afterWrite)
            defer { hold.release() }
            async let decision = hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events?token=alice-token", remoteAddress: "127.0.0.1")
            )
            try await hold.arrived()
            // Two heartbeats later, at least one whole reconciliation ran while the write was held.
            try await store.waitForHeartbeats(store.heartbeats + 2)
            #expect(try await store.base.count(.user("alice")) == 1)
            hold.release()
            guard case .accept(let ticket) = await decision else {
                Issue.record("the upgrade was refused")
                return
            }
            let client = TestClient(try await hub.connect(ticket))
            _ = try await client.next(type: "connected")
            try await store.waitForHeartbeats(store.heartbeats + 2)
            #expect(try await store.base.count(.user("alice")) == 1)
            await client.close()
            #expect(try await store.base.count(.user("alice")) == 0)
        }
    }

    @Test func drainingRemovesAWriteStillInFlight() async throws {
        let checks = try Self.checks()
        let (hub, store) = (checks.hub, checks.store)
        // Held before the write: the record is written after the drain removed the server's records.
        let hold = store.holdNextRegister(at: .beforeWrite)
        defer { hold.release() }
        let decision = try await hub.running {
            let decision = Task {
                await hub.authorizeUpgrade(
                    UpgradeRequest(uri: "/ws/events?token=alice-token", remoteAddress: "127.0.0.1")
                )
            }
            try await hold.arrived()
            return decision
        }
        // The hub drained and removed its server while the write was held.
        hold.release()
        guard case .reject = await decision.value else {
            Issue.record("an upgrade accepted after the drain")
            return
        }
        #expect(try await store.base.count(.user("alice")) == 0)
        #expect(try await store.base.count(.total) == 0)
    }
}
