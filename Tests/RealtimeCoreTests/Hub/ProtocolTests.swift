import RealtimeTesting
import Testing

@testable import RealtimeCore

@Suite struct ProtocolTests {
    let fixture = HubFixture()

    func connected(_ token: String = "alice-token", path: String = "/ws/events", hub: RealtimeHub? = nil) async throws
        -> (RealtimeHub, TestClient)
    {
        let hub = try hub ?? fixture.hub()
        let client = try await hub.connectClient(token: token, path: path)
        #expect(try await client.next()["type"] == "connected")
        return (hub, client)
    }

    @Test func subscribeUnsubscribeAndListWithEchoedIDs() async throws {
        let (_, client) = try await connected()
        await client.send(#"{"type":"subscribe","id":"s1","payload":{"eventTypes":["authentication.*","security.*"]}}"#)
        let subscribed = try await client.next()
        #expect(subscribed["type"] == "subscribed")
        #expect(subscribed["id"] == "s1")
        #expect(subscribed["payload"]?["eventTypes"] == ["authentication.*", "security.*"])
        await client.send(#"{"type":"subscribe","id":7,"payload":{"eventTypes":["security.*","session.*"]}}"#)
        let again = try await client.next()
        #expect(again["id"] == 7)
        #expect(again["payload"]?["eventTypes"] == ["session.*"], "only new patterns are reported as added")
        await client.send(#"{"type":"unsubscribe","payload":{"eventTypes":["security.*","nothing.here"]}}"#)
        let unsubscribed = try await client.next()
        #expect(unsubscribed["type"] == "unsubscribed")
        #expect(unsubscribed["payload"]?["eventTypes"] == ["security.*"])
        await client.send(#"{"type":"get_subscriptions","id":"g"}"#)
        let list = try await client.next()
        #expect(list["type"] == "subscriptions")
        #expect(list["payload"]?["eventTypes"] == ["authentication.*", "session.*"])
        await client.send(#"{"type":"ping","id":"p"}"#)
        let pong = try await client.next()
        #expect(pong["type"] == "pong")
        #expect(pong["id"] == "p")
    }

    @Test(arguments: [
        ("not json", "invalid_json"),
        ("[1,2]", "invalid_message"),
        ("{}", "invalid_message"),
        (#"{"type":42}"#, "invalid_message"),
        (#"{"type":"launch_missiles"}"#, "unknown_type"),
        (#"{"type":"subscribe"}"#, "invalid_message"),
        (#"{"type":"subscribe","payload":[]}"#, "invalid_message"),
        (#"{"type":"subscribe","payload":{"eventTypes":"security.*"}}"#, "invalid_message"),
        (#"{"type":"subscribe","payload":{"eventTypes":[]}}"#, "invalid_message"),
        (#"{"type":"subscribe","payload":{"eventTypes":[1]}}"#, "invalid_message"),
        (#"{"type":"subscribe","payload":{"eventTypes":["bad pattern"]}}"#, "invalid_pattern"),
        (#"{"type":"subscribe","payload":{"eventTypes":["auth*"]}}"#, "invalid_pattern"),
        (#"{"type":"subscribe","payload":{"eventTypes":["a..b"]}}"#, "invalid_pattern"),
        (#"{"type":"subscribe","payload":{"eventTypes":[""]}}"#, "invalid_pattern"),
        (#"{"type":"subscribe","payload":{"eventTypes":["admin.*"]}}"#, "forbidden_pattern"),
        (#"{"type":"subscribe","payload":{"eventTypes":["presence.user.online"]}}"#, "forbidden_pattern"),
        (#"{"type":"refresh_token","payload":{}}"#, "invalid_message"),
        (#"{"type":"ping","id":{"nested":true}}"#, "invalid_message"),
        (#"{"type":"auth","payload":{"token":"alice-token"}}"#, "already_authenticated"),
        (#"{"type":"ping","payload":"x"}"#, "invalid_message"),
        ("{\"type\":\"ping\",\"id\":\"\u{00e9}\",\"x\":\"\\ud800\"}", "invalid_json"),
    ])
    func malformedInputGetsAnErrorAndTheConnectionStaysUsable(_ input: String, _ code: String) async throws {
        let (_, client) = try await connected()
        await client.send(input)
        let error = try await client.next()
        #expect(error["type"] == "error")
        #expect(error["payload"]?["code"] == .string(code))
        #expect(error["payload"]?["message"]?.stringValue?.isEmpty == false)
        await client.send(#"{"type":"ping","id":"after"}"#)
        #expect(try await client.next()["id"] == "after")
    }

    @Test func limitsOnSizeAndCountAreReportedAsErrors() async throws {
        let hub = try fixture.hub {
            $0.limits.maxMessageBytes = 256
            $0.limits.maxSubscriptionsPerConnection = 3
            $0.limits.maxPatternsPerMessage = 2
        }
        let (_, client) = try await connected(hub: hub)
        await client.send(#"{"type":"ping","id":""# + String(repeating: "x", count: 300) + #""}"#)
        #expect(try await client.next()["payload"]?["code"] == "message_too_big")
        await client.send(#"{"type":"subscribe","payload":{"eventTypes":["a","b","c"]}}"#)
        #expect(try await client.next()["payload"]?["code"] == "too_many_patterns")
        await client.send(#"{"type":"subscribe","payload":{"eventTypes":["a","b"]}}"#)
        #expect(try await client.next()["type"] == "subscribed")
        await client.send(#"{"type":"subscribe","payload":{"eventTypes":["c","d"]}}"#)
        let refused = try await client.next()
        #expect(refused["payload"]?["code"] == "too_many_subscriptions")
        await client.send(#"{"type":"subscribe","payload":{"eventTypes":["a","c"]}}"#)
        #expect(try await client.next()["payload"]?["eventTypes"] == ["c"], "a repeated pattern does not count twice")
        let deep = String(repeating: "[", count: 50) + String(repeating: "]", count: 50)
        await client.send(#"{"type":"ping","payload":{"x":"# + deep + "}}")
        #expect(try await client.next()["payload"]?["code"] == "invalid_json")
    }

    @Test func binaryFramesAreAnsweredWithAnError() async throws {
        let (_, client) = try await connected()
        await client.connection.receive(binaryFrameOfSize: 10)
        #expect(try await client.next()["payload"]?["code"] == "unsupported_frame")
        await client.send(#"{"type":"ping"}"#)
        #expect(try await client.next()["type"] == "pong")
    }

    @Test func aFloodOfInvalidMessagesClosesWithPolicyViolation() async throws {
        let hub = try fixture.hub {
            $0.limits.maxProtocolErrorsPerMinute = 5
            $0.rateLimits.messagesPerConnection = RateLimitPolicy(name: "msg", limit: 1000, period: .seconds(1))
        }
        let (_, client) = try await connected(hub: hub)
        for _ in 0..<6 { await client.send("garbage") }
        let (code, _) = try await client.nextClose()
        #expect(code == .policyViolation)
    }

    @Test func messageRateLimitRepliesThenClosesAndBlocksTheAddress() async throws {
        let hub = try fixture.hub {
            $0.rateLimits.messagesPerConnection = RateLimitPolicy(name: "msg", limit: 1, period: .seconds(60), burst: 2)
            $0.rateLimits.violationsBeforeBlock = 3
        }
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        await admin.send(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
        _ = try await admin.next(type: "subscribed")
        let client = try await hub.connectClient(token: "alice-token", address: "192.0.2.50")
        _ = try await client.next(type: "connected")
        await client.send(#"{"type":"ping"}"#)
        await client.send(#"{"type":"ping"}"#)
        #expect(try await client.next()["type"] == "pong")
        #expect(try await client.next()["type"] == "pong")
        await client.send(#"{"type":"ping"}"#)
        let limited = try await client.next()
        #expect(limited["payload"]?["code"] == "rate_limited")
        #expect((limited["payload"]?["retryAfterMs"]?.intValue ?? 0) > 1000)
        await client.send(#"{"type":"ping"}"#)
        await client.send(#"{"type":"ping"}"#)
        let (code, _) = try await client.nextClose()
        #expect(code == .rateLimited)
        let alert = try await admin.next(type: "event")
        #expect(alert["payload"]?["type"] == "security.rate_limit.exceeded")
        #expect(alert["payload"]?["data"]?["address"] == "192.0.2.50")
        let blocked = try #require(await hub.rejection(uri: "/ws/events?token=alice-token", address: "192.0.2.50"))
        #expect(blocked.code == "address_blocked")
        #expect(blocked.status == 429)
    }

    @Test func repeatedAuthenticationFailuresRaiseSuspiciousActivity() async throws {
        let hub = try fixture.hub { $0.rateLimits.authFailuresBeforeAlert = 3 }
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        await admin.send(#"{"type":"subscribe","payload":{"eventTypes":["security.suspicious.activity"]}}"#)
        _ = try await admin.next(type: "subscribed")
        for _ in 0..<4 { _ = await hub.rejection(uri: "/ws/events?token=guess", address: "203.0.113.9") }
        let alert = try await admin.next(type: "event")
        #expect(alert["payload"]?["type"] == "security.suspicious.activity")
        #expect(alert["payload"]?["data"]?["address"] == "203.0.113.9")
        #expect(alert["payload"]?["data"]?["failures"] == 3)
        let rest = try await admin.drainUntilPong()
        #expect(rest.isEmpty, "one alert per window, not one per failure")
    }

    @Test func tokenRefreshKeepsTheUserAndSession() async throws {
        let (_, client) = try await connected()
        fixture.tokens.add(
            "alice-fresh",
            VerifiedIdentity(userID: "alice", sessionID: "s-alice", expiresAt: .now() + .seconds(3600))
        )
        await client.send(#"{"type":"refresh_token","id":1,"payload":{"token":"alice-fresh"}}"#)
        let refreshed = try await client.next()
        #expect(refreshed["type"] == "token_refreshed")
        #expect(refreshed["id"] == 1)
        #expect(refreshed["payload"]?["expiresAt"]?.stringValue != nil)
        await client.send(#"{"type":"refresh_token","id":2,"payload":{"token":"bob-token"}}"#)
        #expect(try await client.next()["payload"]?["code"] == "token_user_mismatch")
        await client.send(#"{"type":"refresh_token","id":3,"payload":{"token":"alice-other-session"}}"#)
        #expect(try await client.next()["payload"]?["code"] == "token_user_mismatch")
        await client.send(#"{"type":"refresh_token","id":4,"payload":{"token":"forged"}}"#)
        #expect(try await client.next()["payload"]?["code"] == "token_invalid")
        await client.send(#"{"type":"ping","id":5}"#)
        #expect(try await client.next()["id"] == 5, "a refused refresh leaves the connection usable")
    }

    @Test func firstMessageAuthentication() async throws {
        let hub = try fixture.hub { $0.firstMessageAuthentication = true }
        guard
            case .accept(let ticket) = await hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events", remoteAddress: "127.0.0.1")
            )
        else {
            Issue.record("rejected")
            return
        }
        #expect(ticket.identity == nil)
        let client = TestClient(try await hub.connect(ticket))
        await client.send(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
        #expect(try await client.next()["payload"]?["code"] == "not_authenticated")
        await client.send(#"{"type":"auth","payload":{"token":"alice-token"}}"#)
        let connected = try await client.next()
        #expect(connected["type"] == "connected")
        #expect(connected["payload"]?["userId"] == "alice")
        #expect(try await fixture.store.count(.user("alice")) == 1)

        guard
            case .accept(let second) = await hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events", remoteAddress: "127.0.0.1")
            )
        else { return }
        let liar = TestClient(try await hub.connect(second))
        await liar.send(#"{"type":"auth","payload":{"token":"wrong"}}"#)
        #expect(try await liar.nextClose().0 == .authenticationFailed)
    }

    @Test func firstMessageAuthenticationHasADeadline() async throws {
        let hub = try fixture.hub {
            $0.firstMessageAuthentication = true
            $0.authenticationTimeout = .milliseconds(200)
        }
        try await hub.running {
            guard
                case .accept(let ticket) = await hub.authorizeUpgrade(
                    UpgradeRequest(uri: "/ws/events", remoteAddress: "127.0.0.1")
                )
            else { return }
            let client = TestClient(try await hub.connect(ticket))
            let (code, reason) = try await client.nextClose()
            #expect(code == .authenticationFailed)
            #expect(reason == "authentication timeout")
        }
    }

    @Test func expiredTokensCloseTheConnectionAfterAWarning() async throws {
        let hub = try fixture.hub {
            $0.authenticationTimeout = .milliseconds(200)
            $0.tokenExpiryWarning = .seconds(60)
        }
        try await hub.running {
            let client = try await hub.connectClient(token: "alice-token")
            _ = try await client.next(type: "connected")
            // Refresh to a token that expires soon: the connection takes on its expiry.
            fixture.tokens.add(
                "alice-short",
                VerifiedIdentity(userID: "alice", sessionID: "s-alice", expiresAt: .now() + .seconds(3))
            )
            await client.send(#"{"type":"refresh_token","payload":{"token":"alice-short"}}"#)
            _ = try await client.next(type: "token_refreshed")
            let warning = try await client.next(type: "token_expiring")
            #expect(warning["payload"]?["expiresAt"]?.stringValue != nil)
            let (code, _) = try await client.nextClose()
            #expect(code == .tokenExpired)
        }
    }

    /// The heartbeat driven by hand at chosen instants (the run loop's own heartbeat is an hour away), so the test
    /// decides what "a second of silence" is instead of racing the wall clock.
    @Test func theHubPingsAndClosesIdleConnections() async throws {
        let hub = try fixture.hub {
            $0.heartbeatInterval = .seconds(3600)
            $0.idleTimeout = .seconds(7200)  // above the interval, as the configuration requires
        }
        try await hub.running {
            let lively = try await hub.connectClient(token: "alice-token")  // answers pings
            let dead = try await hub.connectClient(token: "bob-token", autoPong: false)
            let start = ContinuousClock.now
            hub.heartbeat(now: start)
            // The lively client's pump answers a ping before it records it: once recorded, its pong is in.
            try await lively.waitForPings(1)
            try await dead.waitForPings(1)
            // Past the idle timeout by the heartbeat's clock: the dead one was pinged and stayed silent; the lively
            // one answered after the ping, so it is pinged again.
            hub.heartbeat(now: start + .seconds(7201))
            #expect(try await dead.nextClose() == (.goingAway, "idle timeout"))
            try await lively.waitForPings(2)
            #expect(!lively.allFrames.contains { if case .close = $0 { true } else { false } })
        }
    }
}
