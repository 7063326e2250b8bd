// SPDX-License-Identifier: Apache-2.0

public import Logging
import Metrics
public import RealtimeCore
public import RealtimeJWT
public import ServiceLifecycle
import Synchronization

/// An identity provider's JWK Set, fetched over HTTPS into a `JWTKeyStore` and kept fresh: a `Service` for
/// swift-service-lifecycle and the `JWTUnknownKeyHandler` of the verifiers that use the store.
///
/// ```swift
/// let keys = try JWTKeyStore()
/// let jwks = try JWKSKeyProvider(
///     configuration: .init(source: .url("https://idp.example.com/.well-known/jwks.json")),
///     keyStore: keys,
///     logger: logger
/// )
/// let verifier = JWTVerifier(keys: keys, configuration: verifierConfiguration, unknownKeyHandler: jwks)
/// // ServiceGroup(services: [jwks, …]): run() fetches at once, then keeps the set fresh until shutdown.
/// ```
///
/// - **Cache**: a fetched set lives as long as the response's `Cache-Control: max-age` says, clamped to
///   ``Configuration/minimumLifetime`` … ``Configuration/maximumLifetime`` (``Configuration/defaultLifetime`` without
///   one), and is refetched in the background when three quarters of its lifetime have passed.
/// - **Unknown `kid`**: the verifier asks ``refreshForUnknownKey()``; a fetch starts at most once per
///   ``Configuration/unknownKeyRefetchInterval``. Callers within the interval join the fetch that is running, or are
///   answered `false` at once, so a flood of forged `kid`s costs at most one request per interval and no waiting on
///   the network beyond that request.
/// - **Provider down**: a failed fetch (unreachable, timeout, TLS, status, content type, size, invalid set) keeps the
///   last good set in the store and is retried with exponential backoff; ``healthCheck()`` reports `degraded` with
///   the reason (or `unhealthy` while no set was ever fetched), and `realtime_jwks_serving_stale` is 1.
/// - **Checks**: TLS with certificate and host name verification, no redirects, the configured timeouts (the whole
///   request, body included, within ``Configuration/requestTimeout``), at most ``Configuration/maximumBytes``
///   (refused while streaming), `application/json` or `application/jwk-set+json`, and the checks of
///   `JWTKeySet.init(jwks:rsaAlgorithms:publicKeysOnly:)` with `publicKeysOnly` (keys without consistent
///   `alg`/`use` refused; a symmetric or private key fails the set, since anyone can read it); a set without a
///   usable key, or with more than ``Configuration/maximumKeys``, is refused too.
///
/// Metrics: `realtime_jwks_fetches_total` (`result`: `success`, `failure`), `realtime_jwks_unknown_kid_total`
/// (`result`: `fetched`, `joined`, `rate_limited`), gauges `realtime_jwks_keys` and `realtime_jwks_serving_stale`.
public final class JWKSKeyProvider: Service, JWTUnknownKeyHandler, Sendable {
    public let configuration: Configuration
    /// Where fetched keys go.
    public let keyStore: JWTKeyStore
    private let logger: Logger
    private let now: @Sendable () -> Duration
    private let sleep: @Sendable (Duration) async throws -> Void
    private let state = Mutex(State())
    private let metrics: ProviderMetrics

    private struct State {
        var started = false
        var running = false
        var fetching = false
        var unknownKeyRequested = false
        /// The refresh loop, while it waits for an unknown-`kid` request (see `unknownKeyRequest()`).
        var loopWaiter: CheckedContinuation<Void, Never>?
        /// How many times the loop began to wait: once per fetch and per wake-up, never more (a test checks it).
        var waits = 0
        var lastUnknownKeyFetch: Duration?
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiterID: UInt64 = 0
        var jwksURL: String?
        var lastSuccess: (at: Duration, wall: Timestamp)?
        var expiresAt: Duration?
        var nextRefreshAt: Duration?
        var consecutiveFailures = 0
        var lastError: JWKSError?
        var fetches = 0
        var failures = 0
        var keyCount = 0
    }

    private struct ProviderMetrics {
        let success = Counter(label: "realtime_jwks_fetches_total", dimensions: [("result", "success")])
        let failure = Counter(label: "realtime_jwks_fetches_total", dimensions: [("result", "failure")])
        let unknownFetched = Counter(label: "realtime_jwks_unknown_kid_total", dimensions: [("result", "fetched")])
        let unknownJoined = Counter(label: "realtime_jwks_unknown_kid_total", dimensions: [("result", "joined")])
        let unknownLimited = Counter(label: "realtime_jwks_unknown_kid_total", dimensions: [("result", "rate_limited")])
        let keys = Gauge(label: "realtime_jwks_keys")
        let stale = Gauge(label: "realtime_jwks_serving_stale")
    }

    /// A provider that fetches into `keyStore`; nothing is fetched before ``run()``.
    ///
    /// - Throws: ``JWKSError/Code/invalidConfiguration`` for a configuration ``Configuration/validate()`` refuses.
    public convenience init(configuration: Configuration, keyStore: JWTKeyStore, logger: Logger) throws(JWKSError) {
        try self.init(configuration: configuration, keyStore: keyStore, logger: logger, clock: ContinuousClock())
    }

    /// A provider on `clock` (tests use a manual clock).
    package init<C: Clock>(
        configuration: Configuration,
        keyStore: JWTKeyStore,
        logger: Logger,
        clock: C
    ) throws(JWKSError) where C.Duration == Duration {
        try configuration.validate()
        self.configuration = configuration
        self.keyStore = keyStore
        self.logger = logger
        let origin = clock.now
        now = { origin.duration(to: clock.now) }
        sleep = { offset in try await clock.sleep(until: origin.advanced(by: offset), tolerance: nil) }
        metrics = ProviderMetrics()
    }

    // MARK: Service

    /// Fetches the set at once, then refreshes it before it expires (or sooner, for an unknown `kid`) until
    /// graceful shutdown or cancellation. A failed fetch is logged and retried; it does not end `run()`.
    ///
    /// - Throws: ``JWKSError/Code/invalidConfiguration`` when the CA file cannot be read, or when `run()` was
    ///   called before.
    public func run() async throws {
        let alreadyStarted = state.withLock { state in
            defer { state.started = true }
            return state.started
        }
        guard !alreadyStarted else { throw JWKSError(.invalidConfiguration, "run() may be called once") }
        let fetcher = try JWKSFetcher(configuration: configuration)
        state.withLock { $0.running = true }
        await cancelWhenGracefulShutdown { await self.loop(fetcher) }
        let waiters = state.withLock { state in
            state.running = false
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(returning: false) }
        await fetcher.shutdown()
    }

    private func loop(_ fetcher: JWKSFetcher) async {
        var fetchNow = true
        while !Task.isCancelled {
            if fetchNow { await fetch(with: fetcher) }
            let deadline = state.withLock { $0.nextRefreshAt } ?? now()
            // Whichever comes first: the refresh is due, or a token with an unknown `kid` asks for a fetch.
            await withTaskGroup(of: Void.self) { group in
                group.addTask { try? await self.sleep(deadline) }
                group.addTask { await self.unknownKeyRequest() }
                await group.next()
                group.cancelAll()
            }
            fetchNow = now() >= deadline || state.withLock { $0.unknownKeyRequested }
        }
    }

    /// Returns once a fetch for an unknown `kid` is requested (at once if one is pending), or when cancelled.
    ///
    /// A continuation in the state rather than an `AsyncStream`: cancelling the task that iterates an `AsyncStream`
    /// finishes the stream for good, and every later wait on it would return at once (the refresh loop then spun
    /// without sleeping from its first timed refresh on, taking a core and allocating without bound).
    private func unknownKeyRequest() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let waitsNow = state.withLock { state in
                    state.waits += 1
                    // Cancelled before the handler below could see the continuation: it finds none to resume.
                    guard !state.unknownKeyRequested, !Task.isCancelled else { return true }
                    state.loopWaiter = continuation
                    return false
                }
                if waitsNow { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state in
                defer { state.loopWaiter = nil }
                return state.loopWaiter
            }?.resume()
        }
    }

    /// One fetch (with discovery first when needed); installs the set or keeps the last good one, schedules the
    /// next fetch, and answers the callers waiting for it.
    private func fetch(with fetcher: JWKSFetcher) async {
        let knownURL = state.withLock { state in
            state.fetching = true
            state.unknownKeyRequested = false
            return state.jwksURL
        }
        let outcome: Result<(url: String, keys: JWTKeySet, lifetime: Duration?), JWKSError>
        do throws(JWKSError) {
            let url: String
            switch configuration.source {
            case .url(let configured): url = configured
            case .openIDIssuer(let issuer):
                if let knownURL { url = knownURL } else { url = try await fetcher.discoverJWKSURL(issuer: issuer) }
            }
            let (keys, lifetime) = try await fetcher.keySet(url)
            do {
                try keyStore.replaceKeys(keys)
            } catch {
                throw JWKSError(.refusedByStore, error.message)
            }
            outcome = .success((url, keys, lifetime))
        } catch {
            outcome = .failure(error)
        }
        let at = now()
        let (waiters, failures) = state.withLock { state in
            state.fetching = false
            state.fetches += 1
            switch outcome {
            case .success(let fetched):
                let lifetime = configuration.clamp(fetched.lifetime)
                state.jwksURL = fetched.url
                state.lastSuccess = (at, .now())
                state.expiresAt = at + lifetime
                state.nextRefreshAt = at + lifetime * 3 / 4
                state.consecutiveFailures = 0
                state.lastError = nil
                state.keyCount = fetched.keys.keys.count
            case .failure(let error):
                state.failures += 1
                state.consecutiveFailures += 1
                state.lastError = error
                state.nextRefreshAt = at + configuration.retryDelay(afterFailures: state.consecutiveFailures)
                // Discover again next time: the issuer may have moved its key set.
                if case .openIDIssuer = configuration.source { state.jwksURL = nil }
            }
            defer { state.waiters = [:] }
            return (Array(state.waiters.values), state.consecutiveFailures)
        }
        switch outcome {
        case .success(let fetched):
            metrics.success.increment()
            metrics.keys.record(fetched.keys.keys.count)
            metrics.stale.record(0)
            logger.debug(
                "fetched the JWK Set",
                metadata: ["host": "\(JWKSFetcher.host(of: fetched.url))", "keys": "\(fetched.keys.keys.count)"]
            )
        case .failure(let error):
            metrics.failure.increment()
            metrics.stale.record(1)
            logger.error(
                "JWK Set fetch failed; the last good key set stays in use",
                metadata: ["error": "\(error)", "consecutiveFailures": "\(failures)"]
            )
        }
        let installed = (try? outcome.get()) != nil
        for waiter in waiters { waiter.resume(returning: installed) }
    }

    // MARK: JWTUnknownKeyHandler

    /// Asked by the verifier for a token whose `kid` names no current key: starts a fetch if none ran for an
    /// unknown `kid` within ``Configuration/unknownKeyRefetchInterval`` and waits for it, joins a fetch that is
    /// already running, or returns `false` at once (rate-limited, or the service is not running).
    public func refreshForUnknownKey() async -> Bool {
        let id = state.withLock { state in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                enum Decision { case refused, limited, joined, started(loop: CheckedContinuation<Void, Never>?) }
                let at = now()
                let decision = state.withLock { state -> Decision in
                    guard state.running, !Task.isCancelled else { return .refused }
                    let joined = state.fetching || state.unknownKeyRequested
                    if !joined {
                        if let last = state.lastUnknownKeyFetch, at - last < configuration.unknownKeyRefetchInterval {
                            return .limited
                        }
                        state.lastUnknownKeyFetch = at
                        state.unknownKeyRequested = true
                    }
                    state.waiters[id] = continuation
                    guard !joined else { return .joined }
                    defer { state.loopWaiter = nil }
                    return .started(loop: state.loopWaiter)
                }
                switch decision {
                case .refused: continuation.resume(returning: false)
                case .limited:
                    metrics.unknownLimited.increment()
                    continuation.resume(returning: false)
                case .joined: metrics.unknownJoined.increment()
                case .started(let loop):
                    metrics.unknownFetched.increment()
                    // The loop is waiting: wake it. (Busy fetching or about to wait, it sees the request itself.)
                    loop?.resume()
                }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: false)
        }
    }

    // MARK: Health

    /// `healthy` while the last fetch succeeded and the set is within its lifetime; `degraded` while the last good
    /// set is served past a failed fetch or its lifetime; `unhealthy` while no set was ever fetched.
    public func healthCheck() async -> ComponentHealth {
        let at = now()
        let state = state.withLock { state in
            (state.lastSuccess, state.expiresAt, state.lastError, state.fetches, state.failures, state.keyCount)
        }
        let (lastSuccess, expiresAt, lastError, fetches, failures, keyCount) = state
        var details: JSONObject = [
            "source": .string(sourceHost),
            "keys": .int(Int64(keyCount)),
            "fetches": .int(Int64(fetches)),
            "failures": .int(Int64(failures)),
        ]
        if let lastSuccess {
            details["lastFetched"] = .string(lastSuccess.wall.iso8601)
            details["ageSeconds"] = .int((at - lastSuccess.at).components.seconds)
        }
        if let lastError { details["lastError"] = .string(lastError.description) }
        guard lastSuccess != nil else { return ComponentHealth(status: .unhealthy, details: details) }
        let expired = expiresAt.map { at >= $0 } ?? false
        details["servingStale"] = .bool(lastError != nil || expired)
        return ComponentHealth(status: lastError != nil || expired ? .degraded : .healthy, details: details)
    }

    private var sourceHost: String {
        switch configuration.source {
        case .url(let url): return JWKSFetcher.host(of: url)
        case .openIDIssuer(let issuer): return JWKSFetcher.host(of: issuer)
        }
    }

    /// When the next fetch is due, as time since the provider was created (for tests on a manual clock).
    package var nextRefresh: Duration? { state.withLock { $0.nextRefreshAt } }

    /// Fetch attempts so far.
    package var fetchCount: Int { state.withLock { $0.fetches } }

    /// How many times the refresh loop began to wait (one more after each fetch or wake-up).
    package var waitCount: Int { state.withLock { $0.waits } }
}
