import RealtimeCore
import RealtimeRedis
import Testing

/// The Redis bus's wire format (`RedisBusCodec`), moved from RealtimeCore with the codec: the bytes are unchanged, so
/// servers of different builds on one Redis keep understanding each other.
@Suite struct RedisBusCodecTests {
    @Test func busMessagesRoundTrip() throws {
        let event = RealtimeEvent(
            type: .securityHighRiskDetected,
            userID: "user-123",
            sessionID: "session-456",
            data: ["riskScore": 85, "factors": ["unusual_location", "new_device"]]
        )
        let messages = [
            BusMessage(origin: "srv_a", route: .user("user-123"), payload: .event(event)),
            BusMessage(
                origin: "srv_a",
                route: .everyone,
                payload: .notification(.init(level: .warning, title: "t", message: "m", target: .everyone))
            ),
            BusMessage(
                origin: "srv_b",
                route: .control,
                payload: .control(.disconnectSession(sessionID: "s", reason: "r"))
            ),
            BusMessage(
                origin: "srv_b",
                route: .server("srv_a"),
                payload: .control(.disconnectConnection("c1", reason: "r"))
            ),
            BusMessage(
                origin: "srv_b",
                route: .control,
                payload: .control(.revokeUser(userID: "u1", issuedBefore: Self.stamp, reason: "r"))
            ),
            BusMessage(
                origin: "srv_b",
                route: .control,
                payload: .control(
                    .disconnectSession(sessionID: "s", reason: "r", notices: [Self.notice("u1"), Self.notice("u2")])
                )
            ),
            BusMessage(
                origin: "srv_b",
                route: .control,
                payload: .control(
                    .revokeUser(userID: "u1", issuedBefore: Self.stamp, reason: "r", notice: Self.notice("u1"))
                )
            ),
        ]
        for message in messages {
            #expect(try RedisBusCodec.decode(RedisBusCodec.encode(message, alsoAdmins: false)).message == message)
        }
    }

    static let stamp = Timestamp(millisecondsSinceEpoch: 1_795_940_572_123)

    static func notice(_ userID: String) -> RevocationNotice {
        RevocationNotice(
            event: RealtimeEvent(
                type: .sessionRevoked,
                userID: userID,
                sessionID: "s",
                timestamp: stamp,
                data: ["reason": "r"]
            ),
            userStreamPosition: StreamPosition(epoch: "e1", offset: 41),
            adminsStreamPosition: userID == "u1" ? StreamPosition(epoch: "e2", offset: 9) : nil
        )
    }

    /// A control command whose notices are not what a server sends is refused as a whole, not half applied.
    @Test func controlCommandsWithMalformedNoticesAreRefused() throws {
        func body(_ content: String) -> [UInt8] { Array((#"[2,"srv_b","control","control"]"# + "\n" + content).utf8) }
        let event = #""event":{"id":"evt_1","type":"session.revoked","timestamp":1,"scope":"user:u1","data":{}}"#
        #expect(
            (try? RedisBusCodec.decode(
                body(#"{"command":"disconnect_session","sessionId":"s","reason":"r","notices":[{\#(event)}]}"#)
            ))
                != nil
        )
        let refused = [
            // A position with a negative offset, a notice that is not an object, a scope that is no scope, too many.
            #"{"command":"disconnect_session","sessionId":"s","reason":"r","notices":[{\#(event),"userPosition":{"epoch":"e","offset":-1}}]}"#,
            #"{"command":"disconnect_session","sessionId":"s","reason":"r","notices":["x"]}"#,
            #"{"command":"revoke_user","userId":"u1","issuedBefore":1,"reason":"r","notice":{"event":{"id":"evt_1","type":"session.revoked","timestamp":1,"scope":"nobody","data":{}}}}"#,
            #"{"command":"disconnect_session","sessionId":"s","reason":"r","notices":["#
                + Array(repeating: "{\(event)}", count: ControlCommand.maxNotices + 1).joined(separator: ",") + "]}",
        ]
        for content in refused {
            #expect(throws: RealtimeError.self) { try RedisBusCodec.decode(body(content)) }
        }
    }

    @Test func busEventsCarryTheClientFrameVerbatim() throws {
        let event = RealtimeEvent(
            id: "evt_1",
            type: "auth.login",
            userID: "u1",
            timestamp: Self.stamp,
            data: ["a": 1]
        )
        let message = BusMessage(origin: "srv_a", route: .user("u1"), payload: .event(event))
        let body = String(decoding: RedisBusCodec.encode(message, alsoAdmins: false), as: UTF8.self)
        #expect(
            body == #"[2,"srv_a","user:u1","event","user:u1",1795940572123,false]"# + "\n"
                + #"{"id":"evt_1","type":"auth.login","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{"a":1}}"#
        )
        let decoded = try RedisBusCodec.decode(Array(body.utf8))
        #expect(decoded.message == message)
        #expect(!decoded.alsoAdmins)
        // The receiving hub delivers the carried frame: exactly what the publishing hub encoded.
        #expect(decoded.message.eventFrame == RealtimeHub.encodeForBenchmark(event))
        #expect(try RedisBusCodec.decode(RedisBusCodec.encode(message, alsoAdmins: true)).alsoAdmins)

        // Strings that need escaping, optional members, a line feed inside the data.
        let tricky = RealtimeEvent(
            type: .securityHighRiskDetected,
            userID: "u \"1\"\n",
            sessionID: "s\\1",
            data: ["text": "line\nbreak", "nested": ["list": [1, 2.5, nil, true]]]
        )
        for route in [BusRoute.user("u \"1\"\n"), .admins] {
            let trickyMessage = BusMessage(origin: "srv\n", route: route, payload: .event(tricky))
            let trickyDecoded = try RedisBusCodec.decode(RedisBusCodec.encode(trickyMessage, alsoAdmins: false)).message
            #expect(trickyDecoded == trickyMessage)
            #expect(trickyDecoded.eventFrame == RealtimeHub.encodeForBenchmark(tricky))
        }
        // A frame carried in from the publishing hub is reused, not re-encoded.
        let carried = BusMessage(
            origin: "srv_a",
            route: .user("u1"),
            payload: .event(event),
            eventFrame: RealtimeHub.encodeForBenchmark(event)
        )
        #expect(RedisBusCodec.encode(carried, alsoAdmins: false) == RedisBusCodec.encode(message, alsoAdmins: false))
    }

    /// Version 2 bodies written by hand from the format (member order in a JSON object is free), as servers of an
    /// earlier build put them on Redis: the codec in RealtimeRedis reads them as the one in RealtimeCore did.
    @Test func readsTheVersionTwoBodiesOfEveryKind() throws {
        let forBoth = try RedisBusCodec.decode(
            Array(
                (#"[2,"srv_a","user:u1","event","user:u1",1795940572123,true]"# + "\n"
                    + #"{"id":"evt_1","type":"auth.login","userId":"u1","sessionId":"s1","timestamp":"2026-11-29T08:22:52.123Z","data":{"a":[1,"x"]}}"#)
                    .utf8
            )
        )
        let event = RealtimeEvent(
            id: "evt_1",
            type: "auth.login",
            userID: "u1",
            sessionID: "s1",
            timestamp: Self.stamp,
            data: ["a": [1, "x"]],
            scope: .user("u1")
        )
        #expect(forBoth.alsoAdmins)
        #expect(forBoth.message == BusMessage(origin: "srv_a", route: .user("u1"), payload: .event(event)))
        // Re-encoded, the event's bytes are what was read (the carried payload is written verbatim).
        #expect(
            String(decoding: RedisBusCodec.encode(forBoth.message, alsoAdmins: true), as: UTF8.self)
                == #"[2,"srv_a","user:u1","event","user:u1",1795940572123,true]"# + "\n"
                + #"{"id":"evt_1","type":"auth.login","userId":"u1","sessionId":"s1","timestamp":"2026-11-29T08:22:52.123Z","data":{"a":[1,"x"]}}"#
        )

        let control = try RedisBusCodec.decode(
            Array(
                (#"[2,"srv_b","server:srv_a","control"]"# + "\n"
                    + #"{"reason":"r","connectionId":"c1","command":"disconnect_connection"}"#).utf8
            )
        )
        #expect(!control.alsoAdmins)
        #expect(
            control.message
                == BusMessage(
                    origin: "srv_b",
                    route: .server("srv_a"),
                    payload: .control(.disconnectConnection("c1", reason: "r"))
                )
        )

        let notification = try RedisBusCodec.decode(
            Array(
                (#"[2,"srv_a","user:u1","notification"]"# + "\n"
                    + #"{"target":{"userId":"u1","kind":"user"},"timestamp":1795940572123,"title":"t","message":"m","level":"warning","id":"ntf_1","data":{"n":1}}"#)
                    .utf8
            )
        )
        let expected = RealtimeNotification(
            id: "ntf_1",
            level: .warning,
            title: "t",
            message: "m",
            data: ["n": 1],
            timestamp: Self.stamp,
            target: .user("u1")
        )
        #expect(
            notification.message == BusMessage(origin: "srv_a", route: .user("u1"), payload: .notification(expected))
        )
    }

    @Test func changingThePayloadDropsTheCarriedFrame() throws {
        let first = RealtimeEvent(type: "auth.login", userID: "u1", data: ["n": 1])
        let second = RealtimeEvent(type: "auth.logout", userID: "u1", data: ["n": 2])
        var message = try RedisBusCodec.decode(
            RedisBusCodec.encode(
                BusMessage(origin: "srv_a", route: .user("u1"), payload: .event(first)),
                alsoAdmins: false
            )
        ).message
        #expect(message.eventFrame != nil)
        message.payload = .event(second)
        #expect(message.eventFrame == nil)
        let decoded = try RedisBusCodec.decode(RedisBusCodec.encode(message, alsoAdmins: false)).message
        #expect(decoded.payload == .event(second))
        #expect(decoded.eventFrame == RealtimeHub.encodeForBenchmark(second))
    }

    @Test func malformedBusMessagesAreRefused() {
        let header = #"[2,"srv_a","user:u1","event","user:u1",1795940572123,false]"#
        let content =
            #"{"id":"evt_1","type":"auth.login","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{}}"#
        #expect(throws: Never.self) { try RedisBusCodec.decode(Array((header + "\n" + content).utf8)) }
        let refused = [
            "",
            header,
            content,
            // Version 1 (the JSON envelope) and unknown versions.
            #"{"v":1,"origin":"srv_a","route":"user:u1","kind":"event","event":{}}"#,
            #"[1,"srv_a","user:u1","event","user:u1",1795940572123,false]"# + "\n" + content,
            // Header: missing or ill-typed fields, unknown route, scope or kind.
            #"[2,"srv_a","user:u1","event","user:u1",1795940572123]"# + "\n" + content,
            #"[2,"srv_a","user:u1","event","user:u1","1795940572123",false]"# + "\n" + content,
            #"[2,"srv_a","user:u1","event","user:u1",1795940572123,1]"# + "\n" + content,
            #"[2,"srv_a","group:u1","event","user:u1",1795940572123,false]"# + "\n" + content,
            #"[2,"srv_a","user:u1","event","group:u1",1795940572123,false]"# + "\n" + content,
            #"[2,"srv_a","user:u1","gossip"]"# + "\n" + content,
            #"[2,"srv_a","user:u1","notification",true]"# + "\n" + content,
            #"[2,"srv_a","user:u1""# + "\n" + content,
            // Content: members reordered, extra, missing, ill-typed; timestamp not the header's; trailing data.
            header + "\n"
                + #"{"type":"auth.login","id":"evt_1","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{}}"#,
            header + "\n"
                + #"{"id":"evt_1","type":"auth.login","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{},"scope":"everyone"}"#,
            header + "\n" + #"{"id":"evt_1","type":"auth.login","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z"}"#,
            header + "\n"
                + #"{"id":"evt_1","type":"auth.login","userId":1,"timestamp":"2026-11-29T08:22:52.123Z","data":{}}"#,
            header + "\n" + #"{"id":"evt_1","type":"auth..login","timestamp":"2026-11-29T08:22:52.123Z","data":{}}"#,
            header + "\n" + #"{"id":"evt_1","type":"auth.login","timestamp":"2026-11-29T08:22:52.124Z","data":{}}"#,
            header + "\n" + #"{"id":"evt_1","type":"auth.login","timestamp":"2026-11-29T08:22:52.123Z","data":[]}"#,
            header + "\n" + content + " x",
            header + "\n" + content + "\n" + content,
            header + "\n" + "[]",
            #"[2,"srv_a","control","control"]"# + "\n" + #"{"command":"reboot","reason":"r"}"#,
            #"[2,"srv_a","everyone","notification"]"# + "\n" + "[]",
        ]
        for text in refused {
            #expect(throws: RealtimeError.self, "\(text)") { try RedisBusCodec.decode(Array(text.utf8)) }
        }
    }
}
