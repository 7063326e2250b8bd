// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Testing

@Suite("POST /api/v1/events/batch over real sockets")
struct BatchPublishingAPITests {
    @Test("a batch reaches the subscribers in order, with one receipt per event")
    func batchDelivery() async throws {
        try await TestServer.with { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            try await alice.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
            _ = try await alice.nextMessage(type: "subscribed")
            let items = (0..<10).map { #"{"type":"security.batch.item","scope":"everyone","data":{"n":\#($0)}}"# }
            let reply = try await server.api(
                "POST",
                "/api/v1/events/batch",
                json: #"{"events":["# + items.joined(separator: ",") + "]}"
            )
            #expect(reply.status == 202, "\(reply.text)")
            let receipts = try #require(try reply.json()["receipts"]?.arrayValue)
            #expect(receipts.count == 10)
            #expect(receipts.allSatisfy { $0["localDeliveries"]?.intValue == 1 })
            var received: [Int64] = []
            for _ in 0..<10 {
                let event = try await alice.nextMessage(type: "event")
                received.append(event["payload"]?["data"]?["n"]?.intValue ?? -1)
            }
            #expect(received == Array(0..<10))
            await alice.close()
        }
    }

    /// With history on, what no recovery could replay is refused with a clear 400 and reaches nobody: an event, a
    /// batch item, and a notification to everyone or administrators whose frame is larger than a history entry
    /// (seventh and eighth probes: each was accepted, delivered without a position, and missing from a recovery that
    /// said `recovered: true`). A user notification is not recorded, so it is not bounded by the entry size.
    @Test("with history on, events and notifications too large for a history entry get 400 and reach nobody")
    func tooLargeForHistory() async throws {
        var history = HistoryConfiguration()
        history.maxEntryBytes = 1024
        let backends = HubBackends.inMemory(
            tokenVerifier: TestKeys.verifier(),
            historyStore: try InMemoryHistoryStore(configuration: history)
        )
        try await TestServer.with({ $0.history = history }, backends: backends) { server in
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            try await admin.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
            _ = try await admin.nextMessage(type: "subscribed")
            let big = String(repeating: "x", count: 2000)
            let refused: [(String, String, String)] = [
                ("/api/v1/events", #"{"type":"security.test.big","userId":"alice","data":{"pad":"\#(big)"}}"#, ""),
                (
                    "/api/v1/events/batch",
                    #"{"events":[{"type":"security.test.small","userId":"alice"},"#
                        + #"{"type":"security.test.big","userId":"alice","data":{"pad":"\#(big)"}}]}"#,
                    "events[1]: "
                ),
                ("/api/v1/notifications/broadcast", #"{"title":"t","message":"\#(big)"}"#, ""),
                ("/api/v1/notifications/admin", #"{"title":"t","message":"\#(big)"}"#, ""),
            ]
            for (path, body, prefix) in refused {
                let reply = try await server.api("POST", path, json: body)
                #expect(reply.status == 400, "\(path): \(reply.text)")
                let message = try reply.json()["error"]?["message"]?.stringValue ?? ""
                #expect(message.hasPrefix(prefix) && message.contains("larger than a history entry"), "\(message)")
            }
            let user = try await server.api(
                "POST",
                "/api/v1/notifications/user",
                json: #"{"userId":"alice","title":"t","message":"\#(big)"}"#
            )
            #expect(user.status == 202, "\(user.text)")
            // Neither refused event nor refused notification reaches the administrator: the first of either kind is
            // the event published after the refusals.
            let accepted = try await server.api("POST", "/api/v1/events", json: #"{"type":"security.test.after"}"#)
            #expect(accepted.status == 202, "\(accepted.text)")
            while true {
                let message = try await admin.nextMessage()
                let type = message["type"]?.stringValue
                #expect(type != "notification", "a refused notification was delivered: \(message)")
                guard type == "event" else { continue }
                #expect(message["payload"]?["type"]?.stringValue == "security.test.after")
                break
            }
            await admin.close()
        }
    }

    @Test("a bad batch is refused whole with a clear 400 naming the event")
    func badBatches() async throws {
        try await TestServer.with { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            try await alice.sendText(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
            _ = try await alice.nextMessage(type: "subscribed")
            let good = #"{"type":"security.batch.item","scope":"everyone"}"#
            let cases: [(String, String, String)] = [
                (#"{}"#, "missing_field", "events must be an array"),
                (#"{"events":{}}"#, "invalid_field", "events must be an array"),
                (#"{"events":[]}"#, "invalid_field", "1 to 100 events"),
                (
                    #"{"events":["# + Array(repeating: good, count: 101).joined(separator: ",") + "]}", "invalid_field",
                    "1 to 100 events, not 101"
                ),
                (#"{"events":[\#(good),"x"]}"#, "invalid_field", "events[1]: must be an object"),
                (#"{"events":[\#(good),{"type":"Bad Type"}]}"#, "invalid_event_type", "events[1]: "),
                (
                    #"{"events":[\#(good),\#(good),{"type":"authentication.login.success"}]}"#, "user_required",
                    "events[2]: "
                ),
                (
                    #"{"events":[{"type":"security.a.b","scope":"everyone","id":"e1"},\#(good),"#
                        + #"{"type":"security.c.d","scope":"everyone","id":"e1"}]}"#,
                    "invalid_argument", "events[2]: its id 'e1' is also the id of events[0]"
                ),
                // Fuzz: an id with CR LF was accepted (and "same" and "same\r\n" passed the duplicate check).
                (
                    #"{"events":[\#(good),{"type":"security.c.d","scope":"everyone","id":"e1\r\nX"}]}"#,
                    "invalid_argument", "events[1]: the event's id contains control characters"
                ),
            ]
            for (body, code, message) in cases {
                let reply = try await server.api("POST", "/api/v1/events/batch", json: body)
                #expect(reply.status == 400, "\(body.prefix(80)): \(reply.text)")
                let error = try reply.json()["error"]
                #expect(error?["code"]?.stringValue == code, "\(body.prefix(80))")
                #expect(error?["message"]?.stringValue?.contains(message) == true, "\(reply.text)")
            }
            // An item larger than a single event's body (64 KiB): 413, named by its index, though the batch fits.
            let big =
                #"{"type":"security.batch.item","scope":"everyone","data":{"blob":""#
                + String(repeating: "z", count: 70_000) + #""}}"#
            let tooLarge = try await server.api("POST", "/api/v1/events/batch", json: #"{"events":[\#(good),\#(big)]}"#)
            #expect(tooLarge.status == 413, "\(tooLarge.text)")
            #expect(try tooLarge.json()["error"]?["code"]?.stringValue == "payload_too_large")
            #expect(try tooLarge.json()["error"]?["message"]?.stringValue?.hasPrefix("events[1]: ") == true)
            // Nothing of a refused batch was published.
            #expect(try await alice.drainUntilPong().filter { $0["type"]?.stringValue == "event" }.isEmpty)
            await alice.close()
        }
    }
}
