public import RealtimeCore
import Synchronization
public import Testing

// A client and helpers that drive a `RealtimeHub` the way a host does, for tests of hubs on any backend.

/// A wait that did not end. Waits in these tests are hang guards, not timing requirements: they are generous
/// because CI runs every suite in parallel on two cores.
public struct TestTimeout: Error, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
}

/// A client driving a `HubConnection` the way a host would: a pump task writes outbound frames into a buffer
/// the test reads from.
public final class TestClient: Sendable {
    final class Buffer: Sendable {
        let frames = Mutex<[OutboundFrame]>([])
    }

    public let connection: HubConnection
    private let buffer = Buffer()
    private let cursor = Mutex(0)
    private let pump: Task<Void, Never>

    /// - Parameters:
    ///   - connection: the hub's connection the client reads and writes, connected by the caller.
    ///   - autoPong: answer the hub's pings as a WebSocket client library does (turn off to play a dead client).
    public init(_ connection: HubConnection, autoPong: Bool = true) {
        self.connection = connection
        let buffer = self.buffer
        pump = Task {
            for await frame in connection.outbound {
                if autoPong && frame == .ping { connection.receivedPong() }
                buffer.frames.withLock { $0.append(frame) }
                // A WebSocket host reports the socket closed once the close handshake is over.
                if case .close(let code, _) = frame { await connection.closed(code: code) }
            }
        }
    }

    deinit { pump.cancel() }

    public var id: ConnectionID { connection.id }

    public func send(_ text: String) async { await connection.receive(text: text) }

    /// Waits for the next frame that is not a ping.
    public func nextFrame(timeout: Duration = .seconds(20)) async throws -> OutboundFrame {
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
    public func next(timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let frame = try await nextFrame(timeout: timeout)
        guard let text = frame.text else { throw TestTimeout(description: "expected text, got \(frame)") }
        return try JSONParser().parse(text)
    }

    /// The next message of a type, skipping others.
    public func next(type: String, timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TestTimeout(description: "no \(type) message within \(timeout)") }
            let message = try await next(timeout: remaining)
            if message["type"]?.stringValue == type { return message }
        }
    }

    /// Waits for the close frame, skipping other frames.
    public func nextClose(timeout: Duration = .seconds(20)) async throws -> (CloseCode, String) {
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TestTimeout(description: "no close within \(timeout)") }
            if case .close(let code, let reason) = try await nextFrame(timeout: remaining) { return (code, reason) }
        }
    }

    /// Sends a ping with an id and collects every message up to its pong: what the hub queued before.
    public func drainUntilPong() async throws -> [JSONValue] {
        let marker = "sync-" + RandomID.hex(bytes: 4)
        await send(#"{"type":"ping","id":"\#(marker)"}"#)
        var messages: [JSONValue] = []
        while true {
            let message = try await next()
            if message["type"]?.stringValue == "pong" && message["id"]?.stringValue == marker { return messages }
            messages.append(message)
        }
    }

    /// Subscribes to patterns and waits for the `subscribed` reply.
    public func subscribe(_ patterns: [String]) async throws {
        let list = patterns.map { "\"\($0)\"" }.joined(separator: ",")
        await send(#"{"type":"subscribe","payload":{"eventTypes":[\#(list)]}}"#)
        _ = try await next(type: "subscribed")
    }

    /// Waits until the client has received `count` pings in all (answered already, unless `autoPong` is off).
    public func waitForPings(_ count: Int, timeout: Duration = .seconds(20)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if allFrames.count(where: { $0 == .ping }) >= count { return }
            try await Task.sleep(for: .milliseconds(2))
        }
        throw TestTimeout(description: "fewer than \(count) pings within \(timeout)")
    }

    /// All frames received so far, including pings.
    public var allFrames: [OutboundFrame] { buffer.frames.withLock { $0 } }

    public func close() async { await connection.closed() }
}

extension RealtimeHub {
    /// Upgrades and connects; fails the test on rejection.
    public func connectClient(
        token: String?,
        path: String = "/ws/events",
        address: String = "127.0.0.1",
        headers: [(name: String, value: String)] = [],
        autoPong: Bool = true,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> TestClient {
        let uri = token.map { "\(path)?token=\($0)" } ?? path
        switch await authorizeUpgrade(UpgradeRequest(uri: uri, headers: headers, remoteAddress: address)) {
        case .reject(let rejection):
            Issue.record("upgrade rejected: \(rejection)", sourceLocation: sourceLocation)
            throw rejection
        case .accept(let ticket):
            return TestClient(try await connect(ticket), autoPong: autoPong)
        }
    }

    /// Upgrades expecting a rejection.
    public func rejection(
        uri: String,
        headers: [(name: String, value: String)] = [],
        address: String = "127.0.0.1"
    ) async -> AdmissionRejection? {
        if case .reject(let rejection) = await authorizeUpgrade(
            UpgradeRequest(uri: uri, headers: headers, remoteAddress: address)
        ) {
            return rejection
        }
        return nil
    }

    /// Runs the hub in a child task for the duration of `body`, then shuts it down.
    public func running<T: Sendable>(_ body: () async throws -> T) async throws -> T {
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

extension HubConfiguration {
    /// A configuration for tests that drive a hub with many connections from one address: no periodic `stats`
    /// messages, and upgrade rate limits (per address and per user) of 10,000 per second, so that only the limits
    /// a test sets itself are in the way. `adjust` runs last.
    public static func testing(_ adjust: (inout HubConfiguration) -> Void = { _ in }) -> HubConfiguration {
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
}
