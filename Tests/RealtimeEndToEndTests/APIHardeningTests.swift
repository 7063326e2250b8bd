// SPDX-License-Identifier: Apache-2.0

import Hummingbird
import RealtimeCore
import RealtimeHummingbird
import Testing

/// The HTTP API admits every request with the checks of a WebSocket upgrade, answers every error as JSON, and
/// keeps events that name no user away from ordinary users (issue 12, parts 3 to 5).
@Suite("HTTP API hardening over real sockets")
struct APIHardeningTests {
    /// Every route of the API, with a body it accepts.
    static let routes: [(method: String, path: String, json: String?)] = [
        ("POST", "/api/v1/events", #"{"type":"system.maintenance.scheduled","data":{}}"#),
        ("POST", "/api/v1/notifications/user", #"{"userId":"bob","title":"t","message":"m"}"#),
        ("POST", "/api/v1/notifications/broadcast", #"{"title":"t","message":"m"}"#),
        ("POST", "/api/v1/notifications/admin", #"{"title":"t","message":"m"}"#),
        ("POST", "/api/v1/sessions/s-other/revoke", nil),
        ("POST", "/api/v1/users/nobody/disconnect", nil),
        ("GET", "/api/v1/stats", nil),
    ]

    @Test("a revoked session's admin token gets 401 session_revoked on every API route")
    func revokedSessionIsRefusedEverywhere() async throws {
        try await TestServer.with { server in
            let admin = TestKeys.token("ops", session: "s-ops", admin: true)
            for route in Self.routes {
                let reply = try await server.api(route.method, route.path, token: admin, json: route.json)
                #expect((200..<300).contains(reply.status), "\(route.path): \(reply.text)")
            }
            let revoke = try await server.api("POST", "/api/v1/sessions/s-ops/revoke", token: admin)
            #expect(revoke.status == 200)
            for route in Self.routes {
                let reply = try await server.api(route.method, route.path, token: admin, json: route.json)
                #expect(reply.status == 401, "\(route.path)")
                #expect(try reply.json()["error"]?["code"]?.stringValue == "session_revoked", "\(route.path)")
                #expect(reply.header("WWW-Authenticate")?.contains("invalid_token") == true)
            }
            // Another session of the same administrator still works.
            let other = try await server.api(
                "GET",
                "/api/v1/stats",
                token: TestKeys.token("ops", session: "s-ops-2", admin: true)
            )
            #expect(other.status == 200)
        }
    }

    @Test("API requests count against the per-address API rate limit and authentication failures are accounted")
    func rateLimitsAndFailures() async throws {
        try await TestServer.with({
            $0.rateLimits.apiRequestsPerIP = RateLimitPolicy(name: "api-ip", limit: 3, period: .seconds(60), burst: 3)
        }) { server in
            for _ in 0..<3 {
                #expect(try await server.api("GET", "/api/v1/stats").status == 200)
            }
            let limited = try await server.api("GET", "/api/v1/stats")
            #expect(limited.status == 429)
            #expect(try limited.json()["error"]?["code"]?.stringValue == "rate_limited")
            #expect(limited.header("Retry-After") != nil)
        }
        try await TestServer.with { server in
            let bad = try await server.api("GET", "/api/v1/stats", token: "not-a-token")
            #expect(bad.status == 401)
            #expect(try bad.json()["error"]?["code"]?.stringValue == "invalid_token")
            let missing = try await server.api("GET", "/api/v1/stats", token: nil)
            #expect(missing.status == 401)
            #expect(try missing.json()["error"]?["code"]?.stringValue == "missing_token")
            let basic = try await server.api(
                "GET",
                "/api/v1/stats",
                token: nil,
                headers: [("Authorization", "Basic x")]
            )
            #expect(try basic.json()["error"]?["code"]?.stringValue == "invalid_authorization")
            let stats = await server.hub.stats()
            #expect(stats.server.authFailuresByReason["malformed", default: 0] >= 1)
            // A user token is authenticated but not allowed.
            let user = try await server.api("GET", "/api/v1/stats", token: TestKeys.token("alice"))
            #expect(user.status == 403)
            #expect(try user.json()["error"]?["code"]?.stringValue == "forbidden")
        }
    }

    @Test("unknown paths, unknown notification targets and wrong methods get JSON errors, with Allow on 405")
    func everyErrorIsJSON() async throws {
        try await TestServer.with { server in
            for (method, path, status, code, allow) in [
                ("POST", "/api/v1/notifications/everyone", 404, "not_found", nil),
                ("POST", "/api/v1/nothing", 404, "not_found", nil),
                ("GET", "/api/v2/events", 404, "not_found", nil),
                ("GET", "/api/v1/events", 405, "method_not_allowed", "POST"),
                ("DELETE", "/api/v1/stats", 405, "method_not_allowed", "GET, HEAD"),
                ("GET", "/api/v1/sessions/s1/revoke", 405, "method_not_allowed", "POST"),
                ("POST", "/ws/events", 405, "method_not_allowed", "GET, HEAD"),
                ("PUT", "/ws/health", 405, "method_not_allowed", "GET, HEAD"),
                ("GET", "/ws/nothing", 404, "not_found", nil),
                ("GET", "/ws/events", 426, "upgrade_required", nil),
            ] as [(String, String, Int, String, String?)] {
                let reply = try await server.api(method, path, json: method == "GET" ? nil : "{}")
                #expect(reply.status == status, "\(method) \(path)")
                #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true, "\(method) \(path)")
                #expect(try reply.json()["error"]?["code"]?.stringValue == code, "\(method) \(path)")
                #expect(reply.header("Allow") == allow, "\(method) \(path)")
            }
        }
    }

    /// Outside the hub's prefixes the host's own error handling answers (Hummingbird: an empty 404), unless the
    /// router is the hub's alone (`jsonErrorsOnEveryPath`, as in realtime-server): then the same JSON 404.
    @Test("unknown paths outside the hub's prefixes: the host's 404, or the JSON one when the router is the hub's")
    func unknownPathsOutsideTheHub() async throws {
        try await TestServer.with { server in
            let reply = try await server.api("GET", "/elsewhere")
            #expect(reply.status == 404)
            #expect(reply.header("Content-Type")?.hasPrefix("application/json") != true, "left to the host")
        }
        try await TestServer.with(routeOptions: { $0.jsonErrorsOnEveryPath = true }) { server in
            for (method, path) in [("GET", "/elsewhere"), ("POST", "/"), ("GET", "/a/b/c")] {
                let reply = try await server.api(method, path, json: method == "GET" ? nil : "{}")
                #expect(reply.status == 404, "\(method) \(path)")
                #expect(reply.header("Content-Type")?.hasPrefix("application/json") == true, "\(method) \(path)")
                #expect(try reply.json()["error"]?["code"]?.stringValue == "not_found", "\(method) \(path)")
            }
            // The hub's own answers are unchanged.
            #expect(try await server.api("PUT", "/ws/health").status == 405)
        }
    }

    @Test("each API route is one action that authorize allows or refuses per identity")
    func perActionAuthorization() async throws {
        // A risk engine's token: it reports (events, a user's notifications), it never revokes or disconnects.
        let reporter = TestKeys.token("risk-engine", roles: ["service", "reporter"])
        let fullService = TestKeys.token("auth-svc", roles: ["service"])
        let reporting: Set<RealtimeAPIAction> = [.publishEvent, .publishEvents, .notifyUser]
        try await TestServer.with(routeOptions: { options in
            options.authorize = { identity, action in
                identity.roles.contains("reporter")
                    ? reporting.contains(action) : RealtimeRouteOptions.defaultAuthorization(identity, action)
            }
        }) { server in
            let event = #"{"type":"security.high_risk.detected","userId":"alice"}"#
            #expect(try await server.api("POST", "/api/v1/events", token: reporter, json: event).status == 202)
            let note = #"{"userId":"alice","title":"t","message":"m"}"#
            #expect(
                try await server.api("POST", "/api/v1/notifications/user", token: reporter, json: note).status == 202
            )
            let refusals: [(String, String, String?, RealtimeAPIAction)] = [
                ("POST", "/api/v1/users/alice/revoke", nil, .revokeUser),
                ("POST", "/api/v1/users/alice/disconnect", nil, .disconnectUser),
                ("POST", "/api/v1/sessions/s1/revoke", nil, .revokeSession),
                ("POST", "/api/v1/notifications/broadcast", #"{"title":"t","message":"m"}"#, .notifyBroadcast),
                ("GET", "/api/v1/stats", nil, .readStats),
                ("GET", "/api/v1/connections", nil, .listConnections),
            ]
            for (method, path, json, action) in refusals {
                let reply = try await server.api(method, path, token: reporter, json: json)
                #expect(reply.status == 403, "\(path): \(reply.text)")
                #expect(
                    try reply.json()["error"]?["message"]?.stringValue
                        == "this token may not take the action '\(action.rawValue)'"
                )
            }
            // The default still holds for other identities: a service revokes, it does not list.
            #expect(try await server.api("POST", "/api/v1/users/bob/revoke", token: fullService).status == 200)
            #expect(try await server.api("GET", "/api/v1/connections", token: fullService).status == 403)
            #expect(try await server.api("GET", "/api/v1/connections").status == 200, "an administrator lists")
        }
        #expect(RealtimeAPIAction(named: "revoke_user") == .revokeUser)
        #expect(RealtimeAPIAction(named: "nonsense") == nil)
        #expect(RealtimeAPIAction.all.filter(\.isListing).count == 3)
    }

    @Test("a notification to an offline user answers whether it was kept for the user's next connection")
    func offlineNotificationReceipt() async throws {
        var limits = OfflineNotificationLimits()
        limits.maxNotificationBytes = 1024
        let offline = try InMemoryOfflineNotificationStore(limits: limits)
        let backends = HubBackends.inMemory(tokenVerifier: TestKeys.verifier(), offlineNotifications: offline)
        try await TestServer.with(backends: backends) { server in
            let kept = try await server.api(
                "POST",
                "/api/v1/notifications/user",
                json: #"{"userId":"olga","title":"New sign-in","message":"from Lisbon"}"#
            )
            #expect(kept.status == 202, "\(kept.text)")
            #expect(try kept.json()["offline"] == ["kept": true, "queued": 1])
            // Too large to keep (fuzz: it answered the same 202 as a kept one and was dropped silently).
            let blob = String(repeating: "x", count: 2000)
            let dropped = try await server.api(
                "POST",
                "/api/v1/notifications/user",
                json: #"{"userId":"olga","title":"Report","message":"\#(blob)"}"#
            )
            #expect(dropped.status == 202, "sent live all the same: \(dropped.text)")
            let offlineReply = try dropped.json()["offline"]
            #expect(offlineReply?["kept"] == false)
            #expect(offlineReply?["reason"]?.stringValue?.contains("exceeds the limit of 1024") == true)
            // Online: delivered, nothing to keep, no `offline` in the receipt.
            let olga = try await server.connect(TestKeys.token("olga"))
            #expect(try await olga.nextMessage(type: "notification")["payload"]?["title"]?.stringValue == "New sign-in")
            let live = try await server.api(
                "POST",
                "/api/v1/notifications/user",
                json: #"{"userId":"olga","title":"Live","message":""}"#
            )
            #expect(try live.json()["localDeliveries"]?.intValue == 1)
            #expect(try live.json()["offline"] == nil)
            let stats = try await server.api("GET", "/api/v1/stats").json()
            #expect(
                stats["server"]?["offlineNotifications"] == [
                    "kept": 1, "tooLarge": 1, "storeFailures": 0, "displaced": 0,
                ]
            )
            await olga.close()
        }
    }

    @Test("the hub's own audit and presence events cannot be published, alone or in a batch")
    func reservedTypesAreRefused() async throws {
        try await TestServer.with { server in
            let service = TestKeys.token("svc1", roles: ["service"])
            for type in [
                "admin.action.revoke_user", "admin.connection.opened", "admin.subscription.changed",
                "presence.user.online", "presence.user.offline",
            ] {
                let json = #"{"type":"\#(type)","userId":"ghost","data":{"actor":"ops"}}"#
                let reply = try await server.api("POST", "/api/v1/events", token: service, json: json)
                #expect(reply.status == 403, "\(type): \(reply.text)")
                #expect(try reply.json()["error"]?["code"]?.stringValue == "forbidden", "\(type)")
            }
            let batch = try await server.api(
                "POST",
                "/api/v1/events/batch",
                token: service,
                json:
                    #"{"events":[{"type":"admin.user.created","data":{}},{"type":"presence.user.online","userId":"x"}]}"#
            )
            #expect(batch.status == 403, "\(batch.text)")
            #expect(try batch.json()["error"]?["message"]?.stringValue?.hasPrefix("events[1]") == true)
            // The publishers' admin events are theirs to publish.
            let created = try await server.api(
                "POST",
                "/api/v1/events",
                token: service,
                json: #"{"type":"admin.user.created","data":{"user":"new"}}"#
            )
            #expect(created.status == 202, "\(created.text)")
        }
    }

    @Test("events without a user reach administrators only unless broadcast explicitly; auth events need a user")
    func leastPrivilegeOverTheAPI() async throws {
        try await TestServer.with { server in
            let alice = try await server.connect(TestKeys.token("alice"))
            let bob = try await server.connect(TestKeys.token("bob"))
            let admin = try await server.connect(TestKeys.token("root", admin: true), path: "/ws/admin")
            for socket in [alice, bob, admin] {
                try await socket.sendText(#"{"type":"subscribe","payload":{"eventTypes":["*"]}}"#)
                _ = try await socket.nextMessage(type: "subscribed")
            }
            for json in [
                #"{"type":"security.suspicious.activity","data":{"ip":"192.0.2.7"}}"#,
                #"{"type":"system.error.critical","data":{}}"#,
                #"{"type":"system.performance.degraded","data":{}}"#,
                #"{"type":"system.maintenance.scheduled","data":{}}"#,
                #"{"type":"security.high_risk.detected","scope":"everyone","data":{}}"#,
            ] {
                #expect(try await server.api("POST", "/api/v1/events", json: json).status == 202)
            }
            let refused = try await server.api("POST", "/api/v1/events", json: #"{"type":"authentication.logout"}"#)
            #expect(refused.status == 400)
            #expect(try refused.json()["error"]?["code"]?.stringValue == "user_required")
            func types(_ socket: TestSocket) async throws -> [String] {
                try await socket.drainUntilPong().compactMap {
                    $0["type"] == "event" ? $0["payload"]?["type"]?.stringValue : nil
                }
            }
            #expect(try await types(alice) == ["system.maintenance.scheduled", "security.high_risk.detected"])
            #expect(try await types(bob) == ["system.maintenance.scheduled", "security.high_risk.detected"])
            #expect(
                try await types(admin).filter { !$0.hasPrefix("presence.") && !$0.hasPrefix("admin.") } == [
                    "security.suspicious.activity", "system.error.critical", "system.performance.degraded",
                    "system.maintenance.scheduled", "security.high_risk.detected",
                ]
            )
            for socket in [alice, bob, admin] { await socket.close() }
        }
    }

    @Test("a host's own routes behind RealtimeAuthenticationMiddleware see the admitted identity; refusals are JSON")
    func hostRoutesBehindTheMiddleware() async throws {
        try await TestServer.with(
            { $0.rateLimits.authFailuresBeforeAlert = 1000 },
            routes: { router, hub in
                router.group("/internal")
                    .add(
                        middleware: RealtimeAuthenticationMiddleware(
                            hub: hub,
                            authorize: { !$0.roles.contains("banned") }
                        )
                    )
                    .get("whoami") { _, context in context.verifiedIdentity?.userID ?? "nobody" }
            }
        ) { server in
            let alice = try await server.api("GET", "/internal/whoami", token: TestKeys.token("alice"))
            #expect(alice.status == 200)
            #expect(alice.text == "alice")
            let banned = try await server.api(
                "GET",
                "/internal/whoami",
                token: TestKeys.token("eve", roles: ["banned"])
            )
            #expect(banned.status == 403)
            #expect(try banned.json()["error"]?["code"]?.stringValue == "forbidden")
            let missing = try await server.api("GET", "/internal/whoami", token: nil)
            #expect(missing.status == 401)
            #expect(missing.header("WWW-Authenticate") == #"Bearer realm="realtime""#)
            #expect(try missing.json()["error"]?["code"]?.stringValue == "missing_token")
            // The same admission as the hub's API: a revoked session is refused on the host's routes too.
            let token = TestKeys.token("alice", session: "s-gone")
            try await server.hub.revoke(sessionID: "s-gone", userID: "alice", reason: "test")
            let revoked = try await server.api("GET", "/internal/whoami", token: token)
            #expect(revoked.status == 401)
            #expect(try revoked.json()["error"]?["code"]?.stringValue == "session_revoked")
            #expect(revoked.header("WWW-Authenticate") == #"Bearer realm="realtime", error="invalid_token""#)
        }
    }
}
