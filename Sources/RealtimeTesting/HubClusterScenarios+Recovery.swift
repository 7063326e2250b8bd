public import RealtimeCore
import Testing

/// Recovery scenarios (issue 14) for a cluster whose backends include a ``HistoryStore`` keeping at least
/// ``recoveryStreamEntries`` entries per user stream.
extension HubClusterScenarios {
    /// The user stream size the recovery scenarios need (they publish up to 500 events to one user).
    public static let recoveryStreamEntries = 1000

    /// The `position` of an event message.
    static func position(of message: JSONValue) -> JSONValue? { message["payload"]?["position"] }

    /// The `n` in the data of every event up to the `recovered` message, and that message.
    static func replayed(_ client: TestClient) async throws -> (numbers: [Int64], recovered: JSONValue) {
        let (messages, recovered) = try await untilRecovered(client)
        let numbers = messages.compactMap { message in
            message["type"] == "event" ? message["payload"]?["data"]?["n"]?.intValue : nil
        }
        return (numbers, recovered)
    }

    /// Every message a client received up to its `recovered` message, and that message.
    static func untilRecovered(_ client: TestClient) async throws -> (messages: [JSONValue], recovered: JSONValue) {
        var messages: [JSONValue] = []
        while true {
            let message = try await client.next()
            if message["type"] == "recovered" { return (messages, message) }
            messages.append(message)
        }
    }

    /// A client on server A receives events 1…50 of its user's stream and leaves; 100 more are published, half on
    /// A and half on B, while events are also published live; A stops; the client reconnects to B with its last
    /// position and receives exactly the 100 missed events in order, then the live ones, with no repeat. Another
    /// user's events, admin-only types and types outside the client's patterns, published meanwhile, are not
    /// replayed to it.
    public static func aClientRecoversWhatItMissedOnAnotherServer(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubB.running {
                let lastPosition: JSONValue = try await hubA.running {
                    let alice = try await hubA.connectClient(token: "alice-token")
                    let connected = try await alice.next(type: "connected")
                    #expect(connected["payload"]?["recovery"]?["streams"] == ["user:alice", "everyone"])
                    await alice.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                    let subscribed = try await alice.next(type: "subscribed")
                    #expect(subscribed["payload"]?["positions"]?["user:alice"]?["offset"] != nil)
                    var last: JSONValue = .null
                    for n in 1...50 {
                        try await hubA.publishSecurityEvent(
                            "security.test.recovery",
                            userID: "alice",
                            data: ["n": .int(Int64(n))]
                        )
                    }
                    for n in Int64(1)...50 {
                        let event = try await alice.next(type: "event")
                        #expect(event["payload"]?["data"]?["n"]?.intValue == n)
                        #expect(position(of: event)?["offset"]?.intValue == n, "offsets 1…50 of alice's stream")
                        last = position(of: event) ?? .null
                    }
                    await alice.close()
                    // Missed: 100 of alice's events, half published on each server, and what alice may not see.
                    for n in 51...150 {
                        let hub = n % 2 == 0 ? hubA : hubB
                        try await hub.publishSecurityEvent(
                            "security.test.recovery",
                            userID: "alice",
                            data: ["n": .int(Int64(n))]
                        )
                        if n % 25 == 0 {
                            // Another stream; an admin-only type in alice's stream; the admins' stream.
                            try await hub.publishSecurityEvent("security.test.recovery", userID: "bob", data: ["n": -1])
                            try await hub.publish(
                                RealtimeEvent(
                                    type: "admin.user.locked",
                                    userID: "alice",
                                    data: ["n": -2],
                                    scope: .user("alice")
                                )
                            )
                            try await hub.publishAdminEvent("admin.user.deleted", userID: "alice", data: ["n": -3])
                        }
                    }
                    return last
                }
                // A is gone; alice comes back on B.
                let alice = try await hubB.connectClient(token: "alice-token")
                let connected = try await alice.next(type: "connected")
                #expect(connected["payload"]?["recovery"] != .null)
                await alice.send(
                    #"{"type":"subscribe","id":"r1","payload":{"eventTypes":["*"],"recover":{"user:alice":\#(JSONWriter.string(lastPosition))}}}"#
                )
                let subscribed = try await alice.next(type: "subscribed")
                #expect(subscribed["id"] == "r1")
                let (numbers, recovered) = try await replayed(alice)
                #expect(numbers == Array(51...150), "exactly the missed events, in order")
                #expect(recovered["payload"]?["recovered"] == true)
                #expect(recovered["payload"]?["replayed"]?.intValue == 100)
                #expect(recovered["payload"]?["streams"]?["user:alice"]?["recovered"] == true)
                // Then live, continuing the stream, no repeat.
                try await hubB.publishSecurityEvent("security.test.recovery", userID: "alice", data: ["n": 151])
                let live = try await alice.next(type: "event")
                #expect(live["payload"]?["data"]?["n"]?.intValue == 151)
                // 150 of alice's events and 4 admin-only ones in her stream; bob's and the admins' are elsewhere.
                #expect(position(of: live)?["offset"]?.intValue == 155)
                #expect(try await alice.drainUntilPong().filter { $0["type"] == "event" }.isEmpty, "no duplicates")
            }
        }
    }

    /// Events published while a recovery runs are neither lost nor repeated: the replay and the live events
    /// join at the seam.
    public static func eventsPublishedDuringARecoveryAreDeliveredOnce(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hubA = try servers.hub()
            let hubB = try servers.hub()
            try await hubA.running {
                try await hubB.running {
                    let first = try await hubB.connectClient(token: "bob-token")
                    await first.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                    let subscribed = try await first.next(type: "subscribed")
                    let start = try #require(subscribed["payload"]?["positions"]?["user:bob"])
                    await first.close()
                    for n in 1...300 {
                        try await hubA.publishSecurityEvent(
                            "security.test.seam",
                            userID: "bob",
                            data: ["n": .int(Int64(n))]
                        )
                    }
                    let bob = try await hubB.connectClient(token: "bob-token")
                    _ = try await bob.next(type: "connected")
                    // Publishing continues on A while bob recovers on B.
                    async let more: Void = {
                        for n in 301...500 {
                            try await hubA.publishSecurityEvent(
                                "security.test.seam",
                                userID: "bob",
                                data: ["n": .int(Int64(n))]
                            )
                        }
                    }()
                    await bob.send(
                        #"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":{"user:bob":\#(JSONWriter.string(start))}}}"#
                    )
                    let (replayed, recovered) = try await replayed(bob)
                    try await more
                    #expect(recovered["payload"]?["recovered"] == true, "\(recovered)")
                    var numbers = replayed
                    while numbers.last != 500 {
                        let event = try await bob.next(type: "event")
                        if let n = event["payload"]?["data"]?["n"]?.intValue { numbers.append(n) }
                    }
                    #expect(numbers == Array(1...500), "every event once, in order")
                }
            }
        }
    }

    /// A user cannot recover another user's stream, nor read history with a forged position: clear errors, no
    /// other user's data.
    public static func forgedRecoveryRequestsGetErrorsAndNoData(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hub = try servers.hub()
            try await hub.running {
                let alice = try await hub.connectClient(token: "alice-token")
                _ = try await alice.next(type: "connected")
                await alice.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                let alicePosition = try #require(
                    try await alice.next(type: "subscribed")["payload"]?["positions"]?["user:alice"]
                )
                for n in 1...5 {
                    try await hub.publishSecurityEvent(
                        "security.test.secret",
                        userID: "alice",
                        data: ["n": .int(Int64(n))]
                    )
                }
                let mallory = try await hub.connectClient(token: "bob-token")
                _ = try await mallory.next(type: "connected")
                let epoch = alicePosition["epoch"]?.stringValue ?? ""
                let attempts: [(String, String)] = [
                    (#"{"user:alice":{"epoch":"\#(epoch)","offset":0}}"#, "forbidden_stream"),
                    (#"{"admins":{"epoch":"\#(epoch)","offset":0}}"#, "forbidden_stream"),
                    (#"{"user:bob":{"stream":"user:alice","epoch":"\#(epoch)","offset":0}}"#, "invalid_position"),
                    (#"{"user:bob":{"epoch":"\#(epoch)","offset":-1}}"#, "invalid_position"),
                    (#"{"user:bob":{"epoch":"\#(epoch)","offset":99999999999999999999}}"#, "invalid_position"),
                    (#"{"everyone":{"epoch":"x","offset":1e300}}"#, "invalid_position"),
                ]
                for (recover, code) in attempts {
                    await mallory.send(#"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":\#(recover)}}"#)
                    let error = try await mallory.next(type: "error")
                    #expect(error["payload"]?["code"]?.stringValue == code, "\(recover)")
                }
                // Alice's epoch on bob's own stream: not bob's epoch, so nothing is replayed.
                await mallory.send(
                    #"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":{"user:bob":{"epoch":"\#(epoch)","offset":0}}}}"#
                )
                _ = try await mallory.next(type: "subscribed")
                let (numbers, recovered) = try await replayed(mallory)
                #expect(numbers.isEmpty)
                #expect(recovered["payload"]?["recovered"] == false)
                #expect(recovered["payload"]?["streams"]?["user:bob"]?["reason"] == "epoch_changed")
                // One recovery per connection.
                await mallory.send(
                    #"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":{"user:bob":{"epoch":"\#(epoch)","offset":0}}}}"#
                )
                #expect(try await mallory.next(type: "error")["payload"]?["code"] == "recovery_refused")
                let rest = try await mallory.drainUntilPong()
                #expect(!rest.contains { $0["payload"]?["userId"] == "alice" }, "none of alice's data")
            }
        }
    }

    /// A client that missed more than the replay limit is told `recovered: false` (`too_many_missed`) and is
    /// replayed nothing, with the stream's current position to continue from.
    public static func aClientThatMissedTooMuchIsToldToResynchronise(_ cluster: Cluster) async throws {
        try await with(cluster) { servers in
            let hub = try servers.hub { $0.history.recovery.maxEvents = 10 }
            try await hub.running {
                let alice = try await hub.connectClient(token: "alice-token")
                _ = try await alice.next(type: "connected")
                await alice.send(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                let start = try #require(
                    try await alice.next(type: "subscribed")["payload"]?["positions"]?["user:alice"]
                )
                await alice.close()
                for n in 1...30 {
                    try await hub.publishSecurityEvent(
                        "security.test.trim",
                        userID: "alice",
                        data: ["n": .int(Int64(n))]
                    )
                }
                let again = try await hub.connectClient(token: "alice-token")
                _ = try await again.next(type: "connected")
                await again.send(
                    #"{"type":"subscribe","payload":{"eventTypes":["*"],"recover":{"user:alice":\#(JSONWriter.string(start))}}}"#
                )
                let (numbers, recovered) = try await replayed(again)
                #expect(recovered["payload"]?["recovered"] == false)
                #expect(recovered["payload"]?["streams"]?["user:alice"]?["reason"] == "too_many_missed")
                #expect(numbers.isEmpty, "never a partial replay presented as complete")
                #expect(recovered["payload"]?["positions"]?["user:alice"]?["offset"]?.intValue == 30)
            }
        }
    }
}
