import RealtimeCore
import RealtimeTesting
import Testing

@Suite struct UpgradeTests {
    let fixture = HubFixture()

    @Test func acceptsATokenInTheQueryAndGreetsTheClient() async throws {
        let hub = try fixture.hub()
        let client = try await hub.connectClient(token: "alice-token")
        let connected = try await client.next()
        #expect(connected["type"] == "connected")
        #expect(connected["payload"]?["userId"] == "alice")
        #expect(connected["payload"]?["serverId"] == .string(hub.serverID.rawValue))
        #expect(connected["payload"]?["connectionId"] == .string(client.id.rawValue))
        #expect(connected["payload"]?["heartbeatIntervalMs"] == 30_000)
        #expect(try await fixture.store.count(.user("alice")) == 1)
    }

    @Test func acceptsABearerTokenInTheAuthorizationHeader() async throws {
        let hub = try fixture.hub()
        let client = try await hub.connectClient(token: nil, headers: [("Authorization", "Bearer bob-token")])
        #expect(try await client.next()["payload"]?["userId"] == "bob")
    }

    @Test func rejectsWhatMustBeRejectedWithTheRightStatus() async throws {
        let hub = try fixture.hub()
        let cases: [(String, [(name: String, value: String)], Int, String)] = [
            ("/ws/other?token=alice-token", [], 404, "not_found"),
            ("/ws/events", [], 401, "missing_token"),
            ("/ws/events?token=nope", [], 401, "invalid_token"),
            ("/ws/events", [("Authorization", "Basic abc")], 401, "invalid_authorization"),
            ("/ws/events", [("Authorization", "Bearer nope")], 401, "invalid_token"),
            ("/ws/admin?token=alice-token", [], 403, "admin_required"),
            ("/ws/events?token=alice-token", [("Origin", "https://evil.example")], 403, "origin_not_allowed"),
        ]
        for (uri, headers, status, reason) in cases {
            let rejection = try #require(await hub.rejection(uri: uri, headers: headers), "\(uri) was accepted")
            #expect(rejection.status == status, "\(uri)")
            #expect(rejection.code == reason, "\(uri)")
            #expect(!rejection.message.contains("nope"), "the client never sees its token echoed")
        }
        let stats = await hub.stats()
        #expect(stats.server.rejectionsByReason["invalid_token"] == 2)
        #expect(stats.server.authFailuresByReason["unknown_token"] == 2)
        #expect(stats.server.connections == 0)
    }

    @Test func anOversizeTokenIsRefusedBeforeVerification() async throws {
        let hub = try fixture.hub { $0.limits.maxTokenBytes = 100 }
        let rejection = try #require(await hub.rejection(uri: "/ws/events?token=" + String(repeating: "a", count: 101)))
        #expect(rejection.status == 401)
        #expect(await hub.stats().server.authFailuresByReason["too_large"] == 1)
    }

    @Test func queryTokensCanBeTurnedOff() async throws {
        let hub = try fixture.hub { $0.allowQueryToken = false }
        let rejection = try #require(await hub.rejection(uri: "/ws/events?token=alice-token"))
        #expect(rejection.status == 400)
        #expect(rejection.code == "query_token_disabled")
        _ = try await hub.connectClient(token: nil, headers: [("Authorization", "Bearer alice-token")])
    }

    @Test func theServerWideLimitCountsAcceptedUpgrades() async throws {
        let hub = try fixture.hub { $0.maxConnections = 2 }
        _ = try await hub.connectClient(token: "alice-token")
        _ = try await hub.connectClient(token: "bob-token")
        let rejection = try #require(await hub.rejection(uri: "/ws/events?token=alice-token-2"))
        #expect(rejection.status == 503)
        #expect(rejection.code == "server_full")
        #expect(rejection.retryAfterSeconds == 5)
    }

    @Test func revokedSessionsCannotConnect() async throws {
        let hub = try fixture.hub()
        try await fixture.sessions.revoke("s-alice", retainUntil: .now() + .seconds(60))
        let rejection = try #require(await hub.rejection(uri: "/ws/events?token=alice-token"))
        #expect(rejection.status == 401)
        #expect(rejection.code == "session_revoked")
    }

    @Test func registryModeNeedsACreatedSession() async throws {
        let fixture = HubFixture(sessionMode: .registry)
        let hub = try fixture.hub()
        #expect(await hub.rejection(uri: "/ws/events?token=alice-token")?.code == "session_inactive")
        try await hub.createSession("s-alice", userID: "alice", expiresAt: .now() + .seconds(60))
        _ = try await hub.connectClient(token: "alice-token")
        fixture.tokens.add("no-session", VerifiedIdentity(userID: "carol"))
        #expect(await hub.rejection(uri: "/ws/events?token=no-session")?.code == "session_required")
    }

    @Test func twoAuthorizationHeadersAreRefused() async throws {
        let hub = try fixture.hub()
        for headers in [
            [("Authorization", "Bearer alice-token"), ("authorization", "Bearer bob-token")],
            [("Authorization", "Bearer wrong"), ("Authorization", "Bearer alice-token")],
        ] {
            let rejection = await hub.rejection(uri: "/ws/events", headers: headers.map { (name: $0.0, value: $0.1) })
            #expect(rejection?.code == "invalid_authorization")
        }
        let api = await hub.authenticateRequest(
            UpgradeRequest(
                uri: "/api/v1/stats",
                headers: [("Authorization", "Bearer admin-token"), ("Authorization", "Bearer admin-token")],
                remoteAddress: ""
            )
        )
        #expect((try? api.get()) == nil)
        // Two query tokens (the first decided), also when both are the same.
        for uri in ["/ws/events?token=alice-token&token=bob-token", "/ws/events?token=alice-token&token=alice-token"] {
            #expect(await hub.rejection(uri: uri)?.code == "invalid_authorization", "\(uri)")
        }
    }

    @Test func twoOriginsAreRefused() async throws {
        let hub = try fixture.hub { $0.origin.allowedOrigins = ["https://app.example.com"] }
        let allowed = (name: "Origin", value: "https://app.example.com")
        let evil = (name: "Origin", value: "https://evil.example")
        for headers in [[allowed, allowed], [allowed, evil], [evil, allowed]] {
            let rejection = await hub.rejection(uri: "/ws/events?token=alice-token", headers: headers)
            #expect(rejection?.code == "origin_not_allowed", "\(headers)")
        }
        _ = try await hub.connectClient(token: "alice-token", headers: [(allowed.name, allowed.value)])
    }

    @Test func thePerIPRateLimitRefusesBurstsWithRetryAfter() async throws {
        // On a clock that stands still: the refill after the burst is 20 s away however long the connections take.
        let hub = try fixture.hub(rateLimiter: InMemoryRateLimiter(clock: ManualClock())) {
            $0.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 3, period: .seconds(60), burst: 3)
        }
        for _ in 0..<3 { _ = try await hub.connectClient(token: "alice-token", address: "192.0.2.7") }
        let rejection = try #require(await hub.rejection(uri: "/ws/events?token=alice-token", address: "192.0.2.7"))
        #expect(rejection.status == 429)
        #expect(rejection.code == "rate_limited")
        #expect((rejection.retryAfter ?? .zero) > .seconds(10))
        // Another address is not affected; an IPv6 neighbour in the same /64 shares the budget.
        _ = try await hub.connectClient(token: "alice-token", address: "192.0.2.8")
        for index in 0..<3 { _ = try await hub.connectClient(token: "bob-token", address: "2001:db8::\(index + 1)") }
        #expect(
            await hub.rejection(uri: "/ws/events?token=bob-token", address: "2001:db8::ffff")?.code == "rate_limited"
        )
    }

    @Test func theUserConnectionLimitHoldsAcrossTheCluster() async throws {
        let hubA = try fixture.hub { $0.maxConnectionsPerUser = 2 }
        let hubB = try fixture.hub { $0.maxConnectionsPerUser = 2 }
        try await hubA.running {
            try await hubB.running {
                let admin = try await hubA.connectClient(token: "admin-token", path: "/ws/admin")
                _ = try await hubA.connectClient(token: "alice-token")
                _ = try await hubB.connectClient(token: "alice-token-2")
                let rejection = try #require(await hubB.rejection(uri: "/ws/events?token=alice-token"))
                #expect(rejection.status == 429)
                #expect(rejection.code == "too_many_connections")
                // Administrators on the other server hear about it.
                await admin.send(#"{"type":"subscribe","payload":{"eventTypes":["session.*"]}}"#)
                _ = try await admin.next(type: "subscribed")
                _ = await hubB.rejection(uri: "/ws/events?token=alice-token")
                let event = try await admin.next(type: "event")
                #expect(event["payload"]?["type"] == "session.concurrent_limit")
                #expect(event["payload"]?["userId"] == "alice")
            }
        }
    }

    @Test func anUnusedTicketReleasesItsSlot() async throws {
        let hub = try fixture.hub { $0.maxConnections = 1 }
        guard
            case .accept(let ticket) = await hub.authorizeUpgrade(
                UpgradeRequest(uri: "/ws/events?token=alice-token", remoteAddress: "127.0.0.1")
            )
        else { Issue.record("rejected"); return }
        #expect(await hub.rejection(uri: "/ws/events?token=bob-token")?.code == "server_full")
        let connection = try await hub.connect(ticket)
        await connection.closed()
        #expect(await hub.rejection(uri: "/ws/events?token=bob-token") == nil)
        await #expect(throws: RealtimeError.self) { _ = try await hub.connect(ticket) }
    }

    @Test func anAddressSprayCannotGrowTheAbuseTracker() async throws {
        let hub = try fixture.hub {
            $0.rateLimits.maxTrackedAddresses = 500
            $0.rateLimits.authFailuresBeforeAlert = 1_000_000
        }
        var highest = 0
        for index in 0..<5_000 {
            // Distinct IPv6 /64s: every failure is a new address for the tracker.
            _ = await hub.rejection(uri: "/ws/events?token=forged", address: "2001:db8:\(String(index, radix: 16))::1")
            highest = max(highest, hub.trackedAddressCount)
        }
        #expect(highest <= 500)
        #expect(hub.trackedAddressCount > 0)
        #expect(await hub.stats().server.authFailuresByReason["unknown_token"] == 5_000)
    }

    @Test func trustedProxiesSetTheClientAddress() async throws {
        let hub = try fixture.hub {
            $0.clientAddress = ClientAddressResolver(trustedProxies: [IPNetwork("10.0.0.0/8")!])
            $0.rateLimits.connectionsPerIP = RateLimitPolicy(name: "conn-ip", limit: 1, period: .seconds(60), burst: 1)
        }
        let forwarded: [(name: String, value: String)] = [("X-Forwarded-For", "198.51.100.9, 10.1.1.1")]
        _ = try await hub.connectClient(token: "alice-token", address: "10.2.2.2", headers: forwarded)
        // Same client through another proxy: same budget.
        #expect(
            await hub.rejection(
                uri: "/ws/events?token=alice-token",
                headers: [("X-Forwarded-For", "198.51.100.9")],
                address: "10.3.3.3"
            )?.code == "rate_limited"
        )
        // A different client behind the proxy is independent.
        _ = try await hub.connectClient(
            token: "alice-token",
            address: "10.2.2.2",
            headers: [("X-Forwarded-For", "198.51.100.10")]
        )
    }
}

@Suite struct AddressAndOriginTests {
    @Test func forwardingHeadersAreOnlyTrustedFromTrustedPeers() {
        let resolver = ClientAddressResolver(trustedProxies: [IPNetwork("10.0.0.0/8")!, IPNetwork("fd00::/8")!])
        #expect(
            resolver.resolve(peer: "203.0.113.5", headers: [("X-Forwarded-For", "1.2.3.4")])?.description
                == "203.0.113.5"
        )
        #expect(
            resolver.resolve(peer: "10.0.0.1", headers: [("X-Forwarded-For", "1.2.3.4, 10.0.0.9")])?.description
                == "1.2.3.4"
        )
        #expect(
            resolver.resolve(peer: "10.0.0.1", headers: [("x-forwarded-for", "6.6.6.6, 1.2.3.4")])?.description
                == "1.2.3.4"
        )
        #expect(
            resolver.resolve(
                peer: "fd00::1",
                headers: [("Forwarded", #"for="[2001:db8::7]:443";proto=https, for=10.0.0.2"#)]
            )?.description
                == "2001:db8:0:0:0:0:0:7"
        )
        #expect(
            resolver.resolve(peer: "10.0.0.1", headers: [("X-Forwarded-For", "garbage")])?.description == "10.0.0.1"
        )
        #expect(resolver.resolve(peer: "not-an-ip", headers: []) == nil)
        #expect(IPAddress("::ffff:192.0.2.1")?.description == "192.0.2.1")
        #expect(IPAddress("2001:db8:1:2:3:4:5:6")?.rateLimitKey == "2001:db8:1:2::/64")
        #expect(IPAddress("192.0.2.1:5555")?.description == "192.0.2.1")
    }

    @Test func originPolicyRules() {
        let policy = OriginPolicy(allowedOrigins: ["https://app.example.com", "https://*.example.org"])
        #expect(policy.allows("https://app.example.com"))
        #expect(policy.allows("https://APP.example.com/"))
        #expect(!policy.allows("http://app.example.com"))
        #expect(!policy.allows("https://app.example.com:8443"))
        #expect(policy.allows("https://a.example.org"))
        #expect(policy.allows("https://a.b.example.org"))
        #expect(!policy.allows("https://example.org"))
        #expect(!policy.allows("https://evilexample.org"))
        #expect(!policy.allows("null"))
        #expect(!policy.allows("http://localhost:3000"))
        #expect(policy.allows(nil), "non-browser clients send no Origin")
        #expect(!OriginPolicy(allowMissingOrigin: false).allows(nil))
        #expect(!OriginPolicy().allows("https://anything.example"), "an empty allow-list refuses browsers")
        let development = HubConfiguration.development().origin
        #expect(development.allows("http://localhost:5173"))
        #expect(development.allows("http://127.0.0.1:8080"))
        #expect(development.allows("http://[::1]:3000"))
        #expect(!development.allows("http://localhost.evil.com"))
    }
}

@Suite struct ConfigurationTests {
    @Test func readsTheEnvironment() throws {
        let configuration = try HubConfiguration(environment: [
            "WEBSOCKET_MAX_CONNECTIONS": "500",
            "WEBSOCKET_HEARTBEAT_INTERVAL": "10000",
            "WEBSOCKET_CLEANUP_INTERVAL": "60000",
            "WEBSOCKET_ALLOWED_ORIGINS": "https://app.example.com, https://*.example.org",
            "WEBSOCKET_TRUSTED_PROXIES": "10.0.0.0/8,::1",
            "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "0",
            "WEBSOCKET_FIRST_MESSAGE_AUTH": "true",
            "WEBSOCKET_SESSION_MODE": "registry",
            "WEBSOCKET_REVOCATION_RETENTION": "3600000",
            "WEBSOCKET_BODY_READ_TIMEOUT": "15000",
            "WEBSOCKET_HTTP_IDLE_TIMEOUT": "20000",
            "PATH": "/usr/bin",
        ])
        #expect(configuration.maxConnections == 500)
        #expect(configuration.heartbeatInterval == .seconds(10))
        #expect(configuration.idleTimeout == .seconds(25))
        #expect(configuration.cleanupInterval == .seconds(60))
        #expect(configuration.origin.allowedOrigins == ["https://app.example.com", "https://*.example.org"])
        #expect(configuration.clientAddress.trustedProxies.count == 2)
        #expect(configuration.maxConnectionsPerUser == nil)
        #expect(configuration.firstMessageAuthentication)
        #expect(configuration.sessionMode == .registry)
        #expect(configuration.revocationRetention == .seconds(3600))
        #expect(configuration.http.bodyReadTimeout == .seconds(15))
        #expect(configuration.http.idleTimeout == .seconds(20))
        #expect(
            try HubConfiguration(environment: ["WEBSOCKET_SESSION_MODE": "revocation-list"]).sessionMode
                == .revocationList
        )
        #expect(HubConfiguration().sessionMode == .revocationList)
        try configuration.validate()
    }

    @Test(arguments: [
        ("WEBSOCKET_MAX_CONNECTIONS", "lots"),
        ("WEBSOCKET_MAX_CONNECTIONS", "0"),
        ("WEBSOCKET_HEARTBEAT_INTERVAL", "-5"),
        ("WEBSOCKET_FIRST_MESSAGE_AUTH", "maybe"),
        ("WEBSOCKET_TRUSTED_PROXIES", "10.0.0.0/99"),
        ("WEBSOCKET_ALLOWED_ORIGINS", "app.example.com"),
        ("WEBSOCKET_MAX_CONECTIONS", "5"),
        ("WEBSOCKET_SERVER_ID", ""),
        ("WEBSOCKET_HISTORY_ENABLED", "perhaps"),
        ("WEBSOCKET_HISTORY_SIZE", "0"),
        ("WEBSOCKET_HISTORY_SIZE", "many"),
        ("WEBSOCKET_HISTORY_TTL", "-1"),
        ("WEBSOCKET_HISTORY_SHARED_SIZE", "-3"),
        ("WEBSOCKET_HISTORY_SHARED_TTL", "0"),
        ("WEBSOCKET_HISTORY_RETENTION", "soon"),
        ("WEBSOCKET_HISTORY_MAX_ENTRY_BYTES", "10"),
        ("WEBSOCKET_HISTORY_MEMORY_LIMIT", "1"),
        ("WEBSOCKET_HISTORY_SIZES", "5"),
        ("WEBSOCKET_SESSION_MODE", "sessions"),
        ("WEBSOCKET_REVOCATION_RETENTION", "0"),
        ("WEBSOCKET_REVOCATION_RETENTION", "a day"),
        ("WEBSOCKET_OFFLINE_NOTIFICATIONS", "-1"),
        ("WEBSOCKET_OFFLINE_NOTIFICATIONS", "10001"),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_TTL", "0"),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_TTL", "a week"),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_MAX_BYTES", "10"),
        ("WEBSOCKET_OFFLINE_NOTIFICATION_MEMORY_LIMIT", "10"),
    ])
    func invalidValuesAreNamedInTheError(_ name: String, _ value: String) {
        do {
            _ = try HubConfiguration(environment: [name: value])
            Issue.record("\(name)=\(value) was accepted")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(error.message.contains(name))
        }
    }

    @Test func inconsistentConfigurationsAreRefused() {
        var configuration = HubConfiguration()
        configuration.idleTimeout = .seconds(1)
        #expect(throws: RealtimeError.self) { try configuration.validate() }
        configuration = HubConfiguration()
        configuration.adminPath = configuration.eventsPath
        #expect(throws: RealtimeError.self) { try configuration.validate() }
    }
}
