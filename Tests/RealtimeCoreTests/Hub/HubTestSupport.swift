import Logging
import RealtimeCore
import Synchronization
import Testing

/// A wait that did not end. Waits in these tests are hang guards, not timing requirements: they are generous
/// because CI runs every suite in parallel on two cores.
struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// A client driving a `HubConnection` the way a host would: a pump task writes outbound frames into a buffer
/// the test reads from.
final class TestClient: Sendable {
    final class Buffer: Sendable {
        let frames = Mutex<[OutboundFrame]>([])
    }

    let connection: HubConnection
    private let buffer = Buffer()
    private let cursor = Mutex(0)
    private let pump: Task<Void, Never>

    init(_ connection: HubConnection) {
        self.connection = connection
        let buffer = self.buffer
        pump = Task {
            for await frame in connection.outbound {
                buffer.frames.withLock { $0.append(frame) }
            }
        }
    }

    deinit { pump.cancel() }

    var id: ConnectionID { connection.id }

    func send(_ text: String) async { await connection.receive(text: text) }

    /// Waits for the next frame that is not a ping.
    func nextFrame(timeout: Duration = .seconds(20)) async throws -> OutboundFrame {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let frame: OutboundFrame? = cursor.withLock { cursor in
                buffer.frames.withLock { frames in
                    while cursor < frames.count {
                        let frame = frames[cursor]
                        cursor += 1
                        if frame != .ping { return frame }
                    }
                    return nil
                }
            }
            if let frame { return frame }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw TestTimeout(description: "no frame within \(timeout)")
    }

    /// The next text message, parsed.
    func next(timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let frame = try await nextFrame(timeout: timeout)
        guard case .text(let text) = frame else { throw TestTimeout(description: "expected text, got \(frame)") }
        return try JSONParser().parse(text)
    }

    /// The next message of a type, skipping others.
    func next(type: String, timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TestTimeout(description: "no \(type) message within \(timeout)") }
            let message = try await next(timeout: remaining)
            if message["type"]?.stringValue == type { return message }
        }
    }

    /// Waits for the close frame, skipping other frames.
    func nextClose(timeout: Duration = .seconds(20)) async throws -> (CloseCode, String) {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TestTimeout(description: "no close within \(timeout)") }
            if case .close(let code, let reason) = try await nextFrame(timeout: remaining) { return (code, reason) }
        }
    }

    /// Sends a ping with an id and collects every message up to its pong: what the hub queued before.
    func drainUntilPong() async throws -> [JSONValue] {
        let marker = "sync-" + RandomID.hex(bytes: 4)
        await send(#"{"type":"ping","id":"\#(marker)"}"#)
        var messages: [JSONValue] = []
        while true {
            let message = try await next()
            if message["type"]?.stringValue == "pong" && message["id"]?.stringValue == marker { return messages }
            messages.append(message)
        }
    }

    /// All frames received so far, including pings.
    var allFrames: [OutboundFrame] { buffer.frames.withLock { $0 } }

    func close() async { await connection.closed() }
}

/// A hub (or several sharing one bus and store) on in-memory backends, with a token table.
struct HubFixture {
    let tokens: StaticTokenVerifier
    let store: InMemoryConnectionStore
    let bus: InMemoryEventBus
    let sessions: InMemorySessionStore
    let limiter: InMemoryRateLimiter<ContinuousClock>

    init(sessionMode: SessionStoreMode = .revocationList) {
        tokens = StaticTokenVerifier()
        store = InMemoryConnectionStore()
        bus = InMemoryEventBus()
        sessions = InMemorySessionStore(mode: sessionMode)
        limiter = InMemoryRateLimiter()
        tokens.add("alice-token", VerifiedIdentity(userID: "alice", sessionID: "s-alice"))
        tokens.add("alice-token-2", VerifiedIdentity(userID: "alice", sessionID: "s-alice"))
        tokens.add("alice-other-session", VerifiedIdentity(userID: "alice", sessionID: "s-alice-2"))
        tokens.add("bob-token", VerifiedIdentity(userID: "bob", sessionID: "s-bob"))
        tokens.add(
            "admin-token",
            VerifiedIdentity(userID: "root", sessionID: "s-root", isAdmin: true, roles: ["admin"])
        )
    }

    static func configuration(_ adjust: (inout HubConfiguration) -> Void = { _ in }) -> HubConfiguration {
        var configuration = HubConfiguration()
        configuration.statsInterval = nil
        configuration.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 10_000, period: .seconds(1))
        configuration.rateLimits.connectionsPerUser = RateLimitPolicy(
            name: "conn-user",
            limit: 10_000,
            period: .seconds(1)
        )
        adjust(&configuration)
        return configuration
    }

    func hub(_ adjust: (inout HubConfiguration) -> Void = { _ in }) throws -> RealtimeHub {
        var logger = Logger(label: "realtime-hub-test")
        logger.logLevel = .error
        return try RealtimeHub(
            configuration: Self.configuration(adjust),
            backends: .inMemory(
                tokenVerifier: tokens,
                connectionStore: store,
                eventBus: bus,
                rateLimiter: limiter,
                sessionStore: sessions
            ),
            logger: logger
        )
    }
}

extension RealtimeHub {
    /// Upgrades and connects; fails the test on rejection.
    func connectClient(
        token: String?,
        path: String = "/ws/events",
        address: String = "127.0.0.1",
        headers: [(name: String, value: String)] = [],
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> TestClient {
        let uri = token.map { "\(path)?token=\($0)" } ?? path
        switch await authorizeUpgrade(UpgradeRequest(uri: uri, headers: headers, remoteAddress: address)) {
        case .reject(let rejection):
            Issue.record("upgrade rejected: \(rejection)", sourceLocation: sourceLocation)
            throw rejection
        case .accept(let ticket):
            return TestClient(try await connect(ticket))
        }
    }

    /// Upgrades expecting a rejection.
    func rejection(
        uri: String,
        headers: [(name: String, value: String)] = [],
        address: String = "127.0.0.1"
    ) async -> UpgradeRejection? {
        if case .reject(let rejection) = await authorizeUpgrade(
            UpgradeRequest(uri: uri, headers: headers, remoteAddress: address)
        ) {
            return rejection
        }
        return nil
    }

    /// Runs the hub in a child task for the duration of `body`, then shuts it down.
    func running<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let task = Task { try await self.run() }
        // Wait for the bus subscription so cross-server delivery is in place.
        let deadline = ContinuousClock.now + .seconds(20)
        while await healthCheck().components["hub"]?.details["subscribed"] != true, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(2))
        }
        do {
            let result = try await body()
            shutdown()
            try await task.value
            return result
        } catch {
            shutdown()
            try? await task.value
            throw error
        }
    }
}
