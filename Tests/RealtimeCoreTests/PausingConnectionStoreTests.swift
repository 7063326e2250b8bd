import RealtimeCore
import RealtimeTesting
import Testing

/// The test store's waits end with an error instead of hanging the run when what they wait for never comes (a
/// CI run once hung for good behind a wait that nothing could cancel).
@Suite struct PausingConnectionStoreTests {
    static let record = ConnectionRecord(
        id: .random(),
        serverID: "srv_test",
        userID: "alice",
        sessionID: nil,
        isAdmin: false,
        remoteAddress: "127.0.0.1",
        origin: nil,
        connectedAt: .now()
    )

    @Test func aHeldCallArrivesAndGoesOnWhenReleased() async throws {
        let store = PausingConnectionStore(InMemoryConnectionStore())
        let hold = store.holdNextRegister(at: .afterWrite)
        async let registration = store.register(Self.record, maxConnectionsPerUser: nil)
        try await hold.arrived()
        #expect(try await store.base.count(.user("alice")) == 1)
        hold.release()
        _ = try await registration
    }

    @Test func aHoldNobodyReachesFailsTheWaitAndIsReleased() async throws {
        let store = PausingConnectionStore(InMemoryConnectionStore())
        let hold = store.holdNextRegister(at: .beforeWrite)
        await #expect(throws: TestTimeout.self) { try await hold.arrived(timeout: .milliseconds(50)) }
        // Released by the failed wait: a call that reaches it now is not held.
        _ = try await store.register(Self.record, maxConnectionsPerUser: nil)
        #expect(try await store.base.count(.user("alice")) == 1)
    }

    @Test func cancellingTheWaitEndsIt() async throws {
        let store = PausingConnectionStore(InMemoryConnectionStore())
        let hold = store.holdNextRegister(at: .beforeWrite)
        let heartbeats = Task { try await store.waitForHeartbeats(1, timeout: .seconds(3_600)) }
        let arrival = Task { try await hold.arrived(timeout: .seconds(3_600)) }
        heartbeats.cancel()
        arrival.cancel()
        await #expect(throws: CancellationError.self) { try await heartbeats.value }
        await #expect(throws: CancellationError.self) { try await arrival.value }
    }
}
