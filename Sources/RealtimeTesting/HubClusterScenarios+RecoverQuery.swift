public import RealtimeCore
import Testing

/// Recovery named in the upgrade URL (`?recover=<stream>:<epoch>:<offset>,…`, issue 14, item 3).
extension HubClusterScenarios {
    /// Connects `token`'s user to `hub` with `recover` as the upgrade's `recover` parameter (as given: the test
    /// writes it percent-encoded where needed) and reads its `connected` message.
    static func connect(
        _ hub: RealtimeHub,
        token: String,
        recover: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> TestClient {
        let uri = "/ws/events?token=\(token)&recover=\(recover)"
        switch await hub.authorizeUpgrade(UpgradeRequest(uri: uri, remoteAddress: "127.0.0.1")) {
        case .reject(let rejection):
            Issue.record("upgrade rejected: \(rejection)", sourceLocation: sourceLocation)
            throw rejection
        case .accept(let ticket):
            let client = TestClient(try await hub.connect(ticket), autoPong: true)
            _ = try await client.next(type: "connected")
            return client
        }
    }

    /// A client that names its last positions in the upgrade URL and reconnects to the other server recovers what
    /// it missed on its first `subscribe` (which names no `recover` itself), in order and once; the first
    /// `subscribe` only: a later one does not recover again.
    public static func aClientRecoversFromTheUpgradeQuery(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let first = try await hubA.connectClient(token: "alice-token")
                    await first.send(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
                    let subscribed = try await first.next(type: "subscribed")
                    let user = try #require(subscribed["payload"]?["positions"]?["user:alice"])
                    let everyone = try #require(subscribed["payload"]?["positions"]?["everyone"])
                    await first.close()
                    for n in 1...20 {
                        try await (n % 2 == 0 ? hubA : hubB).publishSecurityEvent(
                            "security.test.query",
                            userID: "alice",
                            data: ["n": .int(Int64(n))]
                        )
                        try await hubA.publishSecurityEvent("security.test.query", userID: "bob", data: ["n": -1])
                    }
                    func item(_ stream: String, _ position: JSONValue) -> String {
                        "\(stream):\(position["epoch"]?.stringValue ?? ""):\(position["offset"]?.intValue ?? -1)"
                    }
                    let back = try await connect(
                        hubB,
                        token: "alice-token",
                        recover: item("user:alice", user) + "," + item("everyone", everyone)
                    )
                    await back.send(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
                    #expect(try await back.next(type: "subscribed")["payload"]?["positions"] == nil)
                    let (numbers, recovered) = try await replayed(back)
                    #expect(numbers == Array(1...20), "alice's missed events, in order; none of bob's")
                    #expect(recovered["payload"]?["recovered"] == true)
                    #expect(recovered["payload"]?["streams"]?["everyone"]?["recovered"] == true)
                    await back.send(#"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
                    _ = try await back.next(type: "subscribed")
                    #expect(
                        try await back.drainUntilPong().filter { $0["type"] == "recovered" || $0["type"] == "event" }
                            .isEmpty,
                        "only the first subscribe recovers"
                    )
                }
            }
        }
    }

    /// A forged or malformed `recover` parameter (another user's stream, the administrators' stream, negative or
    /// huge offsets, a value too long, garbage) is answered with a clear `error` after `connected`; the connection
    /// stays open, its first `subscribe` succeeds without recovering, and nothing of another user is replayed.
    public static func aForgedRecoverQueryGetsAClearErrorAndNoData(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hub = try servers.hub()
            try await hub.running {
                let bob = try await hub.connectClient(token: "bob-token")
                await bob.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                let epoch = try #require(
                    try await bob.next(type: "subscribed")["payload"]?["positions"]?["user:bob"]?["epoch"]?.stringValue
                )
                try await hub.publishSecurityEvent("security.test.query", userID: "bob", data: ["n": -1])
                let cases: [(recover: String, code: String)] = [
                    ("user:bob:\(epoch):0", "forbidden_stream"),
                    ("admins:\(epoch):0", "forbidden_stream"),
                    ("control:\(epoch):0", "forbidden_stream"),
                    ("user:alice:\(epoch):-1", "invalid_position"),
                    ("user:alice:\(epoch):99999999999999999999", "invalid_position"),
                    ("user:alice:\(epoch):9007199254740992", "invalid_position"),
                    ("user:alice:\(String(repeating: "e", count: 2000)):0", "invalid_position"),
                    ("user:alice:\(epoch):1,user:alice:\(epoch):2", "invalid_position"),
                    ("garbage", "invalid_position"),
                    ("user:alice::0", "invalid_position"),
                ]
                for (recover, code) in cases {
                    let alice = try await connect(hub, token: "alice-token", recover: recover)
                    let error = try await alice.next(type: "error")
                    #expect(error["payload"]?["code"]?.stringValue == code, "\(recover.prefix(60))")
                    await alice.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                    let subscribed = try await alice.next(type: "subscribed")
                    #expect(subscribed["payload"]?["recovered"] == nil, "no recovery runs")
                    let after = try await alice.drainUntilPong()
                    #expect(after.allSatisfy { $0["type"] != "event" && $0["type"] != "recovered" }, "nothing replayed")
                    await alice.close()
                }
            }
        }
    }
}
