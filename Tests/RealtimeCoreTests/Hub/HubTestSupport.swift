import CoreMetrics
import Logging
import RealtimeCore
import RealtimeTesting
import Synchronization
import Testing

/// A hub (or several sharing one bus and store) on in-memory backends, with a token table.
struct HubFixture {
    let tokens: StaticTokenVerifier
    let store: InMemoryConnectionStore
    let bus: InMemoryEventBus
    let sessions: InMemorySessionStore
    let limiter: InMemoryRateLimiter<ContinuousClock>

    init(sessionMode: SessionStoreMode = .revocationList) {
        tokens = HubClusterScenarios.tokens()
        store = InMemoryConnectionStore()
        bus = InMemoryEventBus()
        sessions = InMemorySessionStore(mode: sessionMode)
        limiter = InMemoryRateLimiter()
    }

    static func configuration(_ adjust: (inout HubConfiguration) -> Void = { _ in }) -> HubConfiguration {
        HubConfiguration.testing(adjust)
    }

    /// - Parameters:
    ///   - connectionStore: the hub's store when not ``store`` itself (a wrapper around it).
    ///   - eventBus: the hub's bus when not ``bus`` itself (a wrapper around it).
    ///   - rateLimiter: the hub's rate limiter when not ``limiter`` (one on a manual clock).
    ///   - historyStore: a history store (none by default).
    func hub(
        metrics: (any MetricsFactory)? = nil,
        connectionStore: (any ConnectionStore)? = nil,
        eventBus: (any EventBus)? = nil,
        rateLimiter: (any RateLimiter)? = nil,
        historyStore: (any HistoryStore)? = nil,
        _ adjust: (inout HubConfiguration) -> Void = { _ in }
    ) throws -> RealtimeHub {
        var logger = Logger(label: "realtime-hub-test")
        logger.logLevel = .error
        return try RealtimeHub(
            configuration: Self.configuration(adjust),
            backends: .inMemory(
                tokenVerifier: tokens,
                connectionStore: connectionStore ?? store,
                eventBus: eventBus ?? bus,
                rateLimiter: rateLimiter ?? limiter,
                sessionStore: sessions,
                historyStore: historyStore
            ),
            logger: logger,
            metricsFactory: metrics ?? MetricsSystem.factory
        )
    }
}

extension RealtimeHub {
    /// An accepted `/ws/events` upgrade, not connected yet (`token` in the query; none for first-message
    /// authentication).
    func ticket(token: String? = nil) async throws -> UpgradeTicket {
        let uri = token.map { "/ws/events?token=\($0)" } ?? "/ws/events"
        guard case .accept(let ticket) = await authorizeUpgrade(UpgradeRequest(uri: uri, remoteAddress: "127.0.0.1"))
        else {
            Issue.record("upgrade refused for \(token ?? "no token")")
            throw CancellationError()
        }
        return ticket
    }

    /// An accepted and connected `/ws/events` connection whose frames nobody consumes unless the test does.
    func rawConnection(token: String) async throws -> HubConnection {
        try await connect(try await ticket(token: token))
    }
}

/// A store that is no ``InMemoryHistoryStore`` (so no bus records with it in one step: the bus appends, then
/// publishes), forwarding to one; with `beforeReading`, each read first awaits it (a test holding a recovery's read);
/// its appends or resets fail on demand (`failing`).
final class ForwardingHistoryStore: HistoryStore {
    enum Operation: Hashable { case append, reset }
    let inner: InMemoryHistoryStore
    let beforeReading: (@Sendable (HistoryReadLimit) async -> Void)?
    private let state = Mutex<(failing: Set<Operation>, resetAttempts: Int)>(([], 0))
    var failing: Set<Operation> {
        get { state.withLock { $0.failing } }
        set { state.withLock { $0.failing = newValue } }
    }

    init(inner: InMemoryHistoryStore, beforeReading: (@Sendable (HistoryReadLimit) async -> Void)? = nil) {
        self.inner = inner
        self.beforeReading = beforeReading
    }

    private func check(_ operation: Operation) throws(RealtimeError) {
        if failing.contains(operation) { throw RealtimeError(.backendUnavailable, "\(operation) failed (test)") }
    }

    func append(_ message: BusMessage) async throws(RealtimeError) -> StreamPosition {
        try check(.append)
        return try await inner.append(message)
    }
    func read(_ stream: HistoryStream, after position: StreamPosition, limit: HistoryReadLimit)
        async throws(RealtimeError) -> HistoryRead
    {
        await beforeReading?(limit)
        return try await inner.read(stream, after: position, limit: limit)
    }
    func position(of stream: HistoryStream) async throws(RealtimeError) -> StreamPosition {
        try await inner.position(of: stream)
    }
    func trim(_ stream: HistoryStream, maxEntries: Int?, maxAge: Duration?) async throws(RealtimeError) {
        try await inner.trim(stream, maxEntries: maxEntries, maxAge: maxAge)
    }
    func reset(_ stream: HistoryStream) async throws(RealtimeError) {
        state.withLock { $0.resetAttempts += 1 }
        try check(.reset)
        try await inner.reset(stream)
    }

    /// Waits (polling, with a hang guard) until `count` resets were attempted in all.
    func waitForResetAttempts(_ count: Int) async throws {
        guard try await eventually({ state.withLock { $0.resetAttempts } >= count }) else {
            throw TestTimeout(description: "fewer than \(count) reset attempts")
        }
    }
}
