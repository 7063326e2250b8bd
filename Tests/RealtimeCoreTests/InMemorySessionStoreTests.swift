import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct InMemorySessionStoreTests {
    let clock = ManualClock()

    @Test func expiredRevocationsAreSwept() async throws {
        let store = InMemorySessionStore(maxEntries: 10_000, now: clock.timestampSource)
        for round in 0..<10 {
            for index in 0..<5_000 {
                try await store.revoke("r\(round)-\(index)", retainUntil: clock.timestamp + .seconds(1))
            }
            #expect(store.entryCount <= 10_000)
            clock.advance(by: .seconds(1))
        }
        store.sweep()
        #expect(store.entryCount == 0)
    }

    @Test func expiredRegistrySessionsAreSwept() async throws {
        let store = InMemorySessionStore(mode: .registry, maxEntries: 3_000, now: clock.timestampSource)
        for round in 0..<10 {
            for index in 0..<2_000 {
                try await store.create("s\(round)-\(index)", userID: "u", expiresAt: clock.timestamp + .seconds(5))
            }
            clock.advance(by: .seconds(5))
        }
        #expect(store.entryCount <= 3_000)
    }

    @Test func refusesEntriesOverTheCap() async throws {
        let store = InMemorySessionStore(maxEntries: 2, now: clock.timestampSource)
        try await store.revoke("a", retainUntil: clock.timestamp + .seconds(60))
        try await store.revoke("b", retainUntil: clock.timestamp + .seconds(60))
        await #expect(throws: RealtimeError.self) {
            try await store.revoke("c", retainUntil: clock.timestamp + .seconds(60))
        }
        #expect(try await store.isActive("c"))
        // Extending an existing revocation needs no room.
        #expect(try await !store.revoke("a", retainUntil: clock.timestamp + .seconds(120)))
        clock.advance(by: .seconds(60))
        #expect(try await store.isActive("b"))
        #expect(try await !store.isActive("a"))
        try await store.revoke("c", retainUntil: clock.timestamp + .seconds(60))
        #expect(try await !store.isActive("c"))
    }

    @Test func revocationEndsExactlyAtRetainUntil() async throws {
        let store = InMemorySessionStore(now: clock.timestampSource)
        try await store.revoke("s", retainUntil: clock.timestamp + .seconds(10))
        clock.advance(by: .milliseconds(9_999))
        #expect(try await !store.isActive("s"))
        clock.advance(by: .milliseconds(1))
        #expect(try await store.isActive("s"))
    }

    @Test func registryIgnoresAlreadyExpiredCreation() async throws {
        let store = InMemorySessionStore(mode: .registry, now: clock.timestampSource)
        try await store.create("s", userID: "u", expiresAt: clock.timestamp)
        #expect(try await !store.isActive("s"))
        #expect(store.entryCount == 0)
    }

    @Test func expiredUserRevocationsAreSweptAndTheCapHolds() async throws {
        let store = InMemorySessionStore(maxEntries: 3_000, now: clock.timestampSource)
        for round in 0..<10 {
            for index in 0..<2_000 {
                let now = clock.timestamp
                try await store.revokeUser("u\(round)-\(index)", issuedBefore: now, retainUntil: now + .seconds(5))
            }
            #expect(store.userRevocationCount <= 3_000)
            clock.advance(by: .seconds(5))
        }
        store.sweep()
        #expect(store.userRevocationCount == 0)
    }

    @Test func refusesUserRevocationsOverTheCap() async throws {
        let store = InMemorySessionStore(maxEntries: 2, now: clock.timestampSource)
        let now = clock.timestamp
        try await store.revokeUser("a", issuedBefore: now, retainUntil: now + .seconds(60))
        try await store.revokeUser("b", issuedBefore: now, retainUntil: now + .seconds(60))
        let error = await #expect(throws: RealtimeError.self) {
            try await store.revokeUser("c", issuedBefore: now, retainUntil: now + .seconds(60))
        }
        #expect(error?.code == .limitExceeded)
        #expect(try await store.userRevokedBefore("c") == nil)
        // Raising an existing revocation needs no room.
        try await store.revokeUser("a", issuedBefore: now + .seconds(1), retainUntil: now + .seconds(120))
        #expect(try await store.userRevokedBefore("a") == now + .seconds(1))
        clock.advance(by: .seconds(60))
        try await store.revokeUser("c", issuedBefore: clock.timestamp, retainUntil: clock.timestamp + .seconds(60))
        #expect(try await store.userRevokedBefore("c") == clock.timestamp)
    }
}
