import Logging
import Metrics
import MetricsTestKit
import RealtimeCore
import RealtimeJWKSTestSupport
import RealtimeJWT
import RealtimeTesting
import ServiceLifecycle
import Testing

@testable import RealtimeJWKS

/// `JWKSKeyProvider` against a real HTTPS server on 127.0.0.1 with a certificate made for the test, on a manual
/// clock: nothing sleeps, and every time-dependent step is driven by advancing the clock and waiting for the request
/// it causes.
@Suite(.serialized, .timeLimit(.minutes(2))) struct JWKSKeyProviderTests {
    static func set(_ kids: [String]) throws -> String { try TestJWKS.set(kids) }

    static func token(_ kid: String) throws -> String { try TestJWKS.token(kid) }

    /// A running provider (on `clock`) for the server's `/jwks`, its verifier, and the task running it.
    struct Running {
        let provider: JWKSKeyProvider
        let verifier: JWTVerifier
        let task: Task<Void, any Error>

        func stop() async {
            task.cancel()
            _ = await task.result
        }

        /// Waits until the provider has made `count` fetch attempts (a hang guard, not a timing bound).
        func fetched(_ count: Int) async throws -> Bool {
            try await eventually { provider.fetchCount >= count }
        }
    }

    static func start(
        _ server: HTTPSTestServer,
        clock: ManualClock,
        path: String = "/jwks",
        configure: (inout JWKSKeyProvider.Configuration) -> Void = { _ in }
    ) throws -> Running {
        let certificates = try TestCertificates.shared.get()
        var configuration = JWKSKeyProvider.Configuration(source: .url(server.url(path)), caFile: certificates.caFile)
        configure(&configuration)
        let store = try JWTKeyStore()
        let provider = try JWKSKeyProvider(
            configuration: configuration,
            keyStore: store,
            logger: Logger(label: "jwks-test"),
            clock: clock
        )
        let verifier = JWTVerifier(keys: store, unknownKeyHandler: provider)
        return Running(provider: provider, verifier: verifier, task: Task { try await provider.run() })
    }

    static func withServer(_ body: (HTTPSTestServer) async throws -> Void) async throws {
        let server = try await HTTPSTestServer.start(certificates: try TestCertificates.shared.get())
        do {
            try await body(server)
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
    }

    static func reason(_ verifier: JWTVerifier, _ token: String) async -> TokenVerificationError.Reason? {
        await refusalReason(of: token, by: verifier)
    }

    @Test func fetchesTheSetAndVerifiesTokensOfItsKeys() async throws {
        try await Self.withServer { server in
            server.answer("/jwks", with: .body(try Self.set(["k1"]), contentType: "application/jwk-set+json"))
            let running = try Self.start(server, clock: ManualClock())
            #expect(try await running.fetched(1))
            #expect(try await running.verifier.verify(Self.token("k1")).userID == "alice")
            #expect(await Self.reason(running.verifier, try Self.token("forged")) == .unknownKey)
            let health = await running.verifier.healthCheck()
            #expect(health.status == .healthy)
            #expect(health.details["keys"] == .int(1))
            await running.stop()
        }
    }

    @Test func maxAgeIsHonouredWithinTheBoundsAndRefreshedBeforeExpiry() async throws {
        try await Self.withServer { server in
            let clock = ManualClock()
            // (Cache-Control, expected lifetime): honoured, clamped up to 60 s, down to 3600 s, default 300 s.
            let cases: [(String?, Duration)] = [
                ("public, max-age=120", .seconds(120)), ("max-age=5", .seconds(60)), ("max-age=86400", .seconds(3600)),
                ("no-store", .seconds(60)), (nil, .seconds(300)), ("max-age=\"600\", must-revalidate", .seconds(600)),
            ]
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: cases[0].0))
            let running = try Self.start(server, clock: clock)
            for (index, (_, lifetime)) in cases.enumerated() {
                #expect(try await running.fetched(index + 1))
                // Refreshed in the background at three quarters of the lifetime.
                let due = try #require(running.provider.nextRefresh)
                #expect(due == clock.now.offset + lifetime * 3 / 4, "case \(index)")
                guard index + 1 < cases.count else { break }
                server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: cases[index + 1].0))
                // Just before the refresh is due nothing is fetched; at the due time it is.
                clock.advance(by: lifetime * 3 / 4 - .seconds(1))
                #expect(running.provider.fetchCount == index + 1)
                clock.advance(by: .seconds(1))
            }
            #expect(server.requests("/jwks") == cases.count)
            await running.stop()
        }
    }

    @Test func rotatedKeysAreFetchedForAnUnknownKidAndRemovedKeysStopWorking() async throws {
        try await Self.withServer { server in
            let clock = ManualClock()
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: "max-age=3600"))
            let running = try Self.start(server, clock: clock)
            #expect(try await running.fetched(1))
            // The provider publishes k2 beside k1: the first k2 token fetches the set at once.
            server.answer("/jwks", with: .body(try Self.set(["k1", "k2"]), cacheControl: "max-age=3600"))
            #expect(try await running.verifier.verify(Self.token("k2")).userID == "alice")
            #expect(try await running.verifier.verify(Self.token("k1")).userID == "alice")
            #expect(server.requests("/jwks") == 2)
            // k1 is retired: once the set is refreshed, k1 tokens are refused.
            server.answer("/jwks", with: .body(try Self.set(["k2"]), cacheControl: "max-age=3600"))
            clock.advance(by: .seconds(2700))
            #expect(try await running.fetched(3))
            #expect(await Self.reason(running.verifier, try Self.token("k1")) == .unknownKey)
            #expect(try await running.verifier.verify(Self.token("k2")).userID == "alice")
            await running.stop()
        }
    }

    /// Fifth adversarial probe, HIGH: from the first timed refresh on, the loop's wait for unknown-`kid` requests
    /// returned at once (it iterated an `AsyncStream` in a task that was cancelled, which finishes the stream), so
    /// the loop spun on a core and allocated without bound. Each fetch and each wake-up begins exactly one wait.
    @Test func theRefreshLoopWaitsOncePerFetchAfterTimedRefreshesAndFailures() async throws {
        try await Self.withServer { server in
            let clock = ManualClock()
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: "max-age=120"))
            let running = try Self.start(server, clock: clock)
            #expect(try await running.fetched(1))
            #expect(try await eventually { running.provider.waitCount >= 1 })
            // Two timed refreshes (at 90 s of a 120 s lifetime), then a failure and its retry (5 s).
            clock.advance(by: .seconds(90))
            #expect(try await running.fetched(2))
            #expect(try await eventually { running.provider.waitCount >= 2 })
            server.answer("/jwks", with: .status(500))
            clock.advance(by: .seconds(90))
            #expect(try await running.fetched(3))
            #expect(try await eventually { running.provider.waitCount >= 3 })
            server.answer("/jwks", with: .body(try Self.set(["k1", "k2"]), cacheControl: "max-age=120"))
            clock.advance(by: .seconds(5))
            #expect(try await running.fetched(4))
            #expect(try await eventually { running.provider.waitCount >= 4 })
            // An unknown `kid` still wakes the loop after all that.
            server.answer("/jwks", with: .body(try Self.set(["k1", "k2", "k3"]), cacheControl: "max-age=120"))
            #expect(try await running.verifier.verify(Self.token("k3")).userID == "alice")
            #expect(try await eventually { running.provider.waitCount >= 5 })
            // Nothing is due and nothing asks: a loop that spins begins thousands of waits in this time, one that
            // sleeps none.
            try await Task.sleep(for: .milliseconds(200))
            #expect(running.provider.waitCount == 5)
            #expect(running.provider.fetchCount == 5)
            await running.stop()
        }
    }

    @Test func aFloodOfForgedKidsFetchesAtMostOncePerInterval() async throws {
        try await Self.withServer { server in
            let clock = ManualClock()
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: "max-age=3600"))
            let running = try Self.start(server, clock: clock)
            #expect(try await running.fetched(1))
            func flood(_ round: Int) async throws -> [TokenVerificationError.Reason?] {
                let tokens = try (0..<1_000).map { try Self.token("forged-\(round)-\($0)") }
                return await withTaskGroup(of: TokenVerificationError.Reason?.self) { group in
                    for token in tokens { group.addTask { await Self.reason(running.verifier, token) } }
                    return await group.reduce(into: []) { $0.append($1) }
                }
            }
            #expect(try await flood(1).allSatisfy { $0 == .unknownKey })
            #expect(server.requests("/jwks") == 2)
            // Within the interval: refused at once, no request at all.
            #expect(try await flood(2).allSatisfy { $0 == .unknownKey })
            #expect(server.requests("/jwks") == 2)
            #expect(running.provider.fetchCount == 2)
            // After the interval (60 s), one more.
            clock.advance(by: .seconds(60))
            #expect(try await flood(3).allSatisfy { $0 == .unknownKey })
            #expect(server.requests("/jwks") == 3)
            await running.stop()
        }
    }

    @Test func whenTheProviderIsDownTheLastGoodSetServesAndHealthSaysSo() async throws {
        try await Self.withServer { server in
            let clock = ManualClock()
            let metrics = TestMetrics()
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: "max-age=120"))
            let running = try withMetricsFactory(metrics) { try Self.start(server, clock: clock) }
            #expect(try await running.fetched(1))
            server.answer("/jwks", with: .status(503))
            clock.advance(by: .seconds(90))
            #expect(try await running.fetched(2))
            #expect(try await running.verifier.verify(Self.token("k1")).userID == "alice")
            var health = await running.verifier.healthCheck()
            #expect(health.status == .degraded)
            #expect(health.details["servingStale"] == .bool(true))
            #expect(health.details["lastError"]?.stringValue?.hasPrefix("http_status") == true)
            #expect(
                metrics.counterTotal(label: "realtime_jwks_fetches_total", dimensions: [("result", "failure")]) == 1
            )
            #expect(try metrics.expectGauge("realtime_jwks_serving_stale").lastValue == 1)
            // Retried after 5 s, then 10 s (backoff); the provider answers again: healthy.
            #expect(running.provider.nextRefresh == clock.now.offset + .seconds(5))
            clock.advance(by: .seconds(5))
            #expect(try await running.fetched(3))
            #expect(running.provider.nextRefresh == clock.now.offset + .seconds(10))
            server.answer("/jwks", with: .body(try Self.set(["k1"]), cacheControl: "max-age=120"))
            clock.advance(by: .seconds(10))
            #expect(try await running.fetched(4))
            health = await running.verifier.healthCheck()
            #expect(health.status == .healthy)
            #expect(try metrics.expectGauge("realtime_jwks_serving_stale").lastValue == 0)
            await running.stop()
        }
    }

    @Test func noSetYetIsUnhealthyAndAStoppedProviderFetchesNothing() async throws {
        try await Self.withServer { server in
            let running = try Self.start(server, clock: ManualClock())
            #expect(try await running.fetched(1))
            #expect(await running.verifier.healthCheck().status == .unhealthy)
            #expect(await Self.reason(running.verifier, try Self.token("k1")) == .unsupportedAlgorithm)
            await running.stop()
            let before = server.requests("/jwks")
            #expect(await running.provider.refreshForUnknownKey() == false)
            #expect(server.requests("/jwks") == before)
        }
    }

    @Test func openIDDiscoveryFindsTheSetAndChecksTheIssuer() async throws {
        try await Self.withServer { server in
            let certificates = try TestCertificates.shared.get()
            server.answer("/jwks", with: .body(try Self.set(["k1"])))
            let discovery = #"{"issuer":"\#(server.baseURL)","jwks_uri":"\#(server.url("/jwks"))"}"#
            server.answer("/.well-known/openid-configuration", with: .body(discovery))
            var configuration = JWKSKeyProvider.Configuration(
                source: .openIDIssuer(server.baseURL),
                caFile: certificates.caFile
            )
            let fetcher = try JWKSFetcher(configuration: configuration)
            #expect(try await fetcher.discoverJWKSURL(issuer: server.baseURL) == server.url("/jwks"))
            // A configuration that names another issuer is refused.
            server.answer("/x/.well-known/openid-configuration", with: .body(discovery))
            let mismatch = await #expect(throws: JWKSError.self) {
                try await fetcher.discoverJWKSURL(issuer: server.baseURL + "/x")
            }
            #expect(mismatch?.code == .discovery)
            await fetcher.shutdown()
            configuration.source = .openIDIssuer(server.baseURL)
            let store = try JWTKeyStore()
            let provider = try JWKSKeyProvider(
                configuration: configuration,
                keyStore: store,
                logger: Logger(label: "t")
            )
            let task = Task { try await provider.run() }
            #expect(try await eventually { provider.fetchCount >= 1 })
            #expect(store.keys.keys.map(\.kid) == ["k1"])
            task.cancel()
            _ = await task.result
        }
    }
}
