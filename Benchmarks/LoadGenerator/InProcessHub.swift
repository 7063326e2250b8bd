// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `--in-process-hub`: the hub's own share of the memory per connection, without sockets, NIO or Hummingbird.
///
/// Builds a ``RealtimeHub`` with the example server's in-memory backends and JWT verifier, then for each client does
/// what the host does: `authorizeUpgrade` with the token, `connect`, one task draining the connection's outbound
/// frames (the host's writer task), and a `subscribe` message. This process's RSS before and after, divided by the
/// number of connections, is the hub's share; a second measurement of as many bare suspended tasks tells how much of
/// it is the one task per connection.
enum InProcessHub {
    static func measure(
        connections: Int,
        users: Int,
        patterns: [String],
        secret: String,
        environment: [String: String]
    ) async throws -> [String] {
        var lines: [String] = []
        let key = try JWTKey.hmac(secret: secret)
        let signer = try JWTSigner(key: key)
        let verifier = JWTVerifier(keys: JWTKeySet([key]))
        let configuration = try HubConfiguration(environment: environment)
        let hub = try RealtimeHub(configuration: configuration, backends: .inMemory(tokenVerifier: verifier))
        let subscribe =
            #"{"type":"subscribe","id":1,"payload":{"eventTypes":["#
            + patterns.map { "\"\($0)\"" }.joined(separator: ",") + "]}}"
        var tokens: [String] = []
        tokens.reserveCapacity(connections)
        let now = Timestamp.now()
        for index in 0..<connections {
            let user = "lg-u\(index % users)"
            tokens.append(
                try signer.sign([
                    "sub": .string(user), "sid": .string("lgs-\(index)"), "iat": .int(now.secondsSinceEpoch),
                    "exp": .int(now.secondsSinceEpoch + 3600),
                ])
            )
        }
        func ownRSS() -> Int { SystemInfo.statusKiB(pid: getpid(), field: "VmRSS") ?? 0 }

        var held: [HubConnection] = []
        held.reserveCapacity(connections)
        let drainedFrames = Atomic<Int>(0)
        do {
            let before = ownRSS()
            var refused = 0
            for token in tokens {
                let request = UpgradeRequest(
                    uri: "/ws/events",
                    headers: [("Authorization", "Bearer \(token)")],
                    remoteAddress: "127.0.0.1"
                )
                guard case .accept(let ticket) = await hub.authorizeUpgrade(request),
                    let connection = try? await hub.connect(ticket)
                else {
                    refused += 1
                    continue
                }
                // Push-style, as RealtimeHummingbird's channel handler consumes frames: no task per connection.
                // (A benchmark drains inside the wake-up; an event-loop host schedules the drain instead.)
                connection.onOutboundReady { [weak connection] in
                    _ = connection?.drainOutbound { _ in drainedFrames.add(1, ordering: .relaxed) }
                }
                await connection.receive(text: subscribe)
                held.append(connection)
            }
            try? await Task.sleep(for: .seconds(1))
            let after = ownRSS()
            let perConnection = Double(after - before) * 1024 / Double(max(held.count, 1))
            lines.append(
                "in-process hub: \(held.count) connections (\(refused) refused), RSS \(before) → \(after) KiB = "
                    + "\(Report.bytes(perConnection)) per connection (hub state + queue; push-style consumer, no task)"
            )
            for connection in held { await connection.closed(code: .normal) }
        }
        let drained = drainedFrames.load(ordering: .relaxed)
        lines.append("  (\(drained) frames drained: connected + subscribed per connection)")

        // Reference: as many bare tasks suspended on a continuation.
        let gate = Gate()
        let before = ownRSS()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<connections {
                group.addTask { await gate.wait() }
            }
            try? await Task.sleep(for: .seconds(1))
            let after = ownRSS()
            lines.append(
                "  reference: \(connections) suspended tasks, RSS \(before) → \(after) KiB = "
                    + Report.bytes(Double(after - before) * 1024 / Double(max(connections, 1))) + " per task"
            )
            await gate.open()
        }
        return lines
    }
}

/// Suspends tasks until opened.
private actor Gate {
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var isOpen = false

    func wait() async {
        if isOpen { return }
        await withCheckedContinuation { waiters.append($0) }
    }

    func open() {
        isOpen = true
        for waiter in waiters { waiter.resume() }
        waiters = []
    }
}
