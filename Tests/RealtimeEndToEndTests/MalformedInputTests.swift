// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Testing

@Suite("Malformed input over the socket and the HTTP API")
struct MalformedInputTests {
    /// After the abuse, the server must still serve: health, a new connection, a ping.
    static func expectStillServing(_ server: TestServer) async throws {
        let health = try await TestSocket.request(port: server.port, "GET", "/ws/health")
        #expect(health.status == 200)
        let socket = try await server.connect(TestKeys.token("after-\(RandomID.hex(bytes: 3))"))
        try await socket.sendText(#"{"type":"ping","id":"alive"}"#)
        #expect(try await socket.nextMessage(type: "pong")["id"]?.stringValue == "alive")
        await socket.close()
    }

    @Test("frames the protocol does not accept: errors for bad messages, the right close code for bad frames")
    func socketSweep() async throws {
        try await TestServer.with({ $0.limits.maxFrameBytes = 32 * 1024 }) { server in
            // Binary frames: an error message, the connection stays.
            let binary = try await server.connect(TestKeys.token("u1"))
            try await binary.sendFrame(opcode: 2, [0, 1, 2, 3, 255])
            let unsupported = try await binary.nextMessage(type: "error")
            #expect(unsupported["payload"]?["code"]?.stringValue == "unsupported_frame")

            // Not JSON, JSON that is not an object, unknown types, a JSON bomb: errors, connection stays.
            let nested = String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
            let wideObject = "{" + (0..<1200).map { #""k\#($0)":[[[[1]]]]"# }.joined(separator: ",") + "}"
            for (text, code) in [
                ("hello", "invalid_json"),
                ("[1,2,3]", "invalid_message"),
                (#"{"type":"teleport"}"#, "unknown_type"),
                (#"{"type":"subscribe","payload":{"eventTypes":"security.*"}}"#, "invalid_message"),
                (nested, "invalid_json"),
                (wideObject, "message_too_big"),
                (#"{"type":"ping","id":{"nested":true}}"#, "invalid_message"),
            ] {
                try await binary.sendText(text)
                let error = try await binary.nextMessage(type: "error")
                #expect(error["payload"]?["code"]?.stringValue == code, "\(text.prefix(40))")
            }
            try await binary.sendText(#"{"type":"ping","id":"ok"}"#)
            #expect(try await binary.nextMessage(type: "pong")["id"]?.stringValue == "ok")

            // A message split over fragments is reassembled.
            let fragments = Array(#"{"type":"ping","id":"frag"}"#.utf8)
            try await binary.sendFrame(opcode: 1, Array(fragments[..<10]), fin: false)
            try await binary.sendFrame(opcode: 9, Array("mid".utf8))  // a control frame between fragments
            try await binary.sendFrame(opcode: 0, Array(fragments[10...]), fin: true)
            let pong = try await binary.nextMessage(type: "pong")
            #expect(pong["id"]?.stringValue == "frag")
            await binary.close()

            // Text that is not UTF-8: 1007.
            let badUTF8 = try await server.connect(TestKeys.token("u2"))
            try await badUTF8.sendFrame(opcode: 1, [0x7B, 0xC3, 0x28, 0xFF, 0x7D])
            #expect(try await badUTF8.nextClose().code == 1007)
            await badUTF8.close()

            // A frame above the limit: 1009 (NIO's decoder refuses it before reading the payload).
            let huge = try await server.connect(TestKeys.token("u3"))
            try await huge.sendFrame(opcode: 1, Array(repeating: UInt8(ascii: "a"), count: 40 * 1024))
            #expect(try await huge.nextClose().code == 1009)
            await huge.close()

            // Fragments that add up to more than the limit: 1009 from the reassembly.
            let sneaky = try await server.connect(TestKeys.token("u4"))
            let chunk = Array(repeating: UInt8(ascii: "b"), count: 20 * 1024)
            try await sneaky.sendFrame(opcode: 1, chunk, fin: false)
            try await sneaky.sendFrame(opcode: 0, chunk, fin: false)
            #expect(try await sneaky.nextClose().code == 1009)
            await sneaky.close()

            // More fragments than a message may have, each empty (fourth fuzz: a CPU flood): 1009. One fewer is a
            // message like any other.
            let limit = 1024  // RealtimeWebSocketHandler.maxFragmentsPerMessage
            let manyFragments = try await server.connect(TestKeys.token("u5"))
            try await manyFragments.sendFrame(opcode: 1, Array(#"{"type":"ping","#.utf8), fin: false)
            for _ in 0..<(limit - 2) { try await manyFragments.sendFrame(opcode: 0, [], fin: false) }
            try await manyFragments.sendFrame(opcode: 0, Array(#""id":"many"}"#.utf8), fin: true)
            #expect(try await manyFragments.nextMessage(type: "pong")["id"]?.stringValue == "many")
            try await manyFragments.sendFrame(opcode: 1, Array("{".utf8), fin: false)
            for _ in 0..<limit { try await manyFragments.sendFrame(opcode: 0, [], fin: false) }
            let fragmentsClose = try await manyFragments.nextClose()
            #expect(fragmentsClose.code == 1009)
            #expect(fragmentsClose.reason.contains("fragments"))
            await manyFragments.close()

            // Protocol violations: 1002.
            let violations: [(name: String, opcode: UInt8, payload: [UInt8], rsv: UInt8, masked: Bool)] = [
                ("unmasked", 1, Array("{}".utf8), 0, false),
                ("reserved bits", 1, Array("{}".utf8), 4, true),
                ("lone continuation", 0, Array("x".utf8), 0, true),
                ("reserved opcode", 3, [], 0, true),
                ("long control frame", 9, Array(repeating: 1, count: 200), 0, true),
            ]
            for (name, opcode, payload, rsv, masked) in violations {
                let socket = try await server.connect(TestKeys.token("p-\(name.count)"))
                try await socket.sendFrame(opcode: opcode, payload, rsv: rsv, masked: masked)
                let close = try await socket.nextClose()
                #expect(close.code == 1002, "\(name)")
                await socket.close()
            }

            // Random bytes after the handshake: the connection ends, nothing else does. Deterministic seed.
            var generator = SplitMix64(seed: 0x5EED)
            for round in 0..<8 {
                let socket = try await server.connect(TestKeys.token("r\(round)"))
                let garbage = (0..<512).map { _ in UInt8.random(in: 0...255, using: &generator) }
                try? await socket.write(garbage)
                // Either a close frame or the end of the stream, within the close timeout.
                do {
                    _ = try await socket.nextClose(timeout: .seconds(5))
                } catch {
                    try await socket.waitForEOF()
                }
                await socket.close()
            }

            // A client that says "close" gets its code echoed.
            let polite = try await server.connect(TestKeys.token("u5"))
            try await polite.sendFrame(opcode: 8, [0x03, 0xE8] + Array("bye".utf8))
            #expect(try await polite.nextClose().code == 1000)
            try await polite.waitForEOF()

            // Close frames a client may not send (RFC 6455 §5.5.1, §7.4): a one-byte payload or a code that is
            // reserved, only for reporting or undefined is a protocol error (1002), a reason that is not UTF-8 1007;
            // the codes it may send are echoed.
            let closes: [(payload: [UInt8], expected: UInt16)] = [
                ([0x03], 1002),
                ([0x00, 0x00], 1002), ([0x03, 0xE7], 1002), ([0x03, 0xEC], 1002), ([0x03, 0xED], 1002),
                ([0x03, 0xEE], 1002), ([0x03, 0xF7], 1002), ([0x0B, 0xB7], 1002), ([0x13, 0x88], 1002),
                ([0xFF, 0xFF], 1002),
                ([0x03, 0xE8, 0xC3, 0x28], 1007),
                ([], 1000), ([0x03, 0xF3], 1011), ([0x03, 0xF6], 1014), ([0x0B, 0xB8], 3000), ([0x13, 0x87], 4999),
            ]
            for (index, (payload, expected)) in closes.enumerated() {
                let socket = try await server.connect(TestKeys.token("c\(index)"))
                try await socket.sendFrame(opcode: 8, payload)
                #expect(try await socket.nextClose().code == expected, "close payload \(payload)")
                await socket.close()
            }

            try await Self.expectStillServing(server)
            let stats = await server.hub.stats()
            #expect(stats.server.protocolErrors >= 8)
        }
    }

    @Test("the HTTP API answers bad input with 4xx and a JSON error")
    func apiSweep() async throws {
        try await TestServer.with { server in
            func expectError(
                _ reply: HTTPReply,
                _ status: Int,
                _ code: String,
                sourceLocation: SourceLocation = #_sourceLocation
            ) throws {
                #expect(reply.status == status, "\(reply.text)", sourceLocation: sourceLocation)
                let body = try reply.json()
                #expect(body["error"]?["code"]?.stringValue == code, "\(reply.text)", sourceLocation: sourceLocation)
                #expect(body["error"]?["message"]?.stringValue?.isEmpty == false, sourceLocation: sourceLocation)
            }
            let event = #"{"type":"security.suspicious.activity","userId":"alice"}"#
            try expectError(
                try await server.api("POST", "/api/v1/events", json: event, headers: [("Content-Type", "text/plain")]),
                415,
                "unsupported_media_type"
            )
            try expectError(try await server.api("POST", "/api/v1/events", json: "{not json"), 400, "invalid_json")
            try expectError(try await server.api("POST", "/api/v1/events", json: "[1]"), 400, "invalid_body")
            try expectError(try await server.api("POST", "/api/v1/events"), 400, "missing_body")
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"userId":"alice"}"#),
                400,
                "missing_field"
            )
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":42}"#),
                400,
                "invalid_field"
            )
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"security.x","data":[1]}"#),
                400,
                "invalid_field"
            )
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"weather.rain","userId":"a"}"#),
                400,
                "unknown_category"
            )
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"Security..X"}"#),
                400,
                "invalid_event_type"
            )
            // A bare category: `security.*` subscriptions would never match it (seventh probe).
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"security","userId":"a"}"#),
                400,
                "invalid_argument"
            )
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"system.x","scope":"galaxy"}"#),
                400,
                "invalid_field"
            )
            try expectError(
                try await server.api("POST", "/api/v1/notifications/user", json: #"{"title":"t","message":"m"}"#),
                400,
                "missing_field"
            )
            try expectError(
                try await server.api(
                    "POST",
                    "/api/v1/notifications/broadcast",
                    json: #"{"level":"apocalyptic","title":"t","message":"m"}"#
                ),
                400,
                "invalid_field"
            )
            // User and session ids follow IdentifierPolicy on every route: NFC (KELVIN SIGN K is not), no control
            // characters, 1 to 256 bytes.
            for badID in [#"\u212Aate"#, #"Zoe\u0308"#, "", #"a\u0007b"#, String(repeating: "u", count: 257)] {
                try expectError(
                    try await server.api(
                        "POST",
                        "/api/v1/events",
                        json: #"{"type":"security.suspicious.activity","userId":"\#(badID)"}"#
                    ),
                    400,
                    "invalid_field"
                )
                try expectError(
                    try await server.api(
                        "POST",
                        "/api/v1/notifications/user",
                        json: #"{"title":"t","message":"m","userId":"\#(badID)"}"#
                    ),
                    400,
                    "invalid_field"
                )
            }
            try expectError(
                try await server.api("POST", "/api/v1/users/%E2%84%AAate/disconnect", json: "{}"),
                400,
                "invalid_field"
            )
            try expectError(
                try await server.api("POST", "/api/v1/sessions/" + String(repeating: "s", count: 300) + "/revoke"),
                400,
                "invalid_field"
            )
            try expectError(
                try await server.api("GET", "/api/v1/connections?userId=%E2%84%AAate"),
                400,
                "invalid_parameter"
            )
            let bomb = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
            try expectError(
                try await server.api("POST", "/api/v1/events", json: #"{"type":"system.x","data":{"a":\#(bomb)}}"#),
                400,
                "invalid_json"
            )
            let oversize = #"{"type":"system.x","data":{"blob":""# + String(repeating: "z", count: 20_000) + #""}}"#
            try expectError(try await server.api("POST", "/api/v1/events", json: oversize), 413, "payload_too_large")

            // Random bodies never get a 5xx.
            var generator = SplitMix64(seed: 0xB0D1E5)
            for _ in 0..<20 {
                let body = (0..<200).map { _ in UInt8.random(in: 0...255, using: &generator) }
                let reply = try await TestSocket.request(
                    port: server.port,
                    "POST",
                    "/api/v1/events",
                    headers: [
                        ("Authorization", "Bearer \(TestKeys.token("ops", admin: true))"),
                        ("Content-Type", "application/json"),
                    ],
                    body: body
                )
                #expect((400..<500).contains(reply.status), "\(reply.status)")
            }
            try await Self.expectStillServing(server)
        }
    }
}

/// A small deterministic generator, so a failing sweep can be replayed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
