import InMemoryLogging
import Logging
import RealtimeCore
import RealtimeTesting
import Testing

/// The audit trail of the hub: ``RealtimeHub/audit(_:)`` and what administrators' WebSocket actions record.
@Suite struct AuditTests {
    let fixture = HubFixture()
    let log = InMemoryLogHandler()

    func hub() throws -> RealtimeHub {
        var logger = Logger(label: "audit-test") { _ in log }
        logger.logLevel = .notice
        return try RealtimeHub(
            configuration: HubFixture.configuration(),
            backends: .inMemory(tokenVerifier: fixture.tokens, sessionStore: fixture.sessions),
            logger: logger
        )
    }

    func auditLines() -> [InMemoryLogHandler.Entry] {
        log.entries.filter { $0.message == "admin action" }
    }

    @Test func anAdministratorsWebSocketActionsAreRecordedAsEventsAndLogLines() async throws {
        let hub = try hub()
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        _ = try await admin.next(type: "connected")
        try await admin.subscribe(["admin.action.*"])
        let subscribed = try await admin.next(type: "event")
        #expect(subscribed["payload"]?["type"] == "admin.action.subscribe")
        #expect(subscribed["payload"]?["data"]?["actor"] == "root")
        #expect(subscribed["payload"]?["data"]?["result"] == "success")
        #expect(subscribed["payload"]?["data"]?["clientAddress"] == "127.0.0.1")

        await admin.send(#"{"type":"unsubscribe","payload":{"eventTypes":["presence.*"]}}"#)
        let unsubscribed = try await admin.next(type: "event")
        #expect(unsubscribed["payload"]?["type"] == "admin.action.unsubscribe")

        let actions = auditLines().compactMap { $0.metadata["realtime.audit.action"]?.description }
        #expect(actions.sorted() == ["connect", "subscribe", "unsubscribe"])
        for line in auditLines() {
            #expect(line.level == .notice)
            #expect(line.metadata["realtime.audit.actor"] == "root")
            #expect(!line.metadata.values.contains { "\($0)".contains("admin-token") }, "no token in the log")
        }
        // A user's connection records nothing.
        let alice = try await hub.connectClient(token: "alice-token")
        _ = try await alice.next(type: "connected")
        try await alice.subscribe(["*"])
        #expect(auditLines().count == 3)
        #expect(try await alice.drainUntilPong().isEmpty, "audit events go to administrators only")
    }

    @Test func anActionThatIsNotOneSegmentIsRecordedAsOther() async throws {
        let hub = try hub()
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        try await admin.subscribe(["admin.action.other"])
        await hub.audit(
            AuditRecord(
                actor: "ops",
                action: "Not.One Segment",
                target: String(repeating: "t", count: 1000),
                outcome: .failure(code: "invalid_field"),
                channel: .http
            )
        )
        let event = try await admin.next(type: "event")
        #expect(event["payload"]?["type"] == "admin.action.other")
        #expect(event["payload"]?["data"]?["action"] == "Not.One Segment")
        #expect(event["payload"]?["data"]?["error"] == "invalid_field")
        let target = try #require(event["payload"]?["data"]?["target"]?.stringValue)
        #expect(target.utf8.count <= 256 + 3, "long fields are cut")
    }

    /// Fuzz (MEDIUM): a refused event type with CR LF, sent with a service token, forged a whole line of the audit
    /// log; an ESC reached the operator's terminal.
    @Test func controlCharactersNeverReachTheLogRaw() async throws {
        let hub = try hub()
        let forged = "a\r\n2026-12-07T00:00:00+0000 critical realtime-server: FAKE\u{1B}[2J\u{0}\u{85}\u{202E}\u{2028}z"
        await hub.audit(
            AuditRecord(
                actor: "svc\n",
                action: "publish_event",
                target: forged,
                outcome: .failure(code: "invalid\u{7F}"),
                clientAddress: "127.0.0.1",
                channel: .http
            )
        )
        let line = try #require(auditLines().last)
        let target = try #require(line.metadata["realtime.audit.target"]?.description)
        #expect(
            target
                == "a\\u{D}\\u{A}2026-12-07T00:00:00+0000 critical realtime-server: FAKE\\u{1B}[2J\\u{0}\\u{85}\\u{202E}\\u{2028}z"
        )
        #expect(line.metadata["realtime.audit.actor"]?.description == "svc\\u{A}")
        #expect(line.metadata["realtime.audit.error"]?.description == "invalid\\u{7F}")
        // Printable text, Unicode included, is left alone.
        await hub.audit(
            AuditRecord(actor: "ops", action: "notify_user", target: "user:zoë 名前", outcome: .success, channel: .http)
        )
        #expect(auditLines().last?.metadata["realtime.audit.target"]?.description == "user:zoë 名前")
    }

    @Test func aRecordThatIsNotAnnouncedIsOnlyLogged() async throws {
        let hub = try hub()
        let admin = try await hub.connectClient(token: "admin-token", path: "/ws/admin")
        try await admin.subscribe(["admin.action.read_stats", "admin.action.notify_admin"])
        await hub.audit(
            AuditRecord(actor: "ops", action: "read_stats", outcome: .success, channel: .http, announce: false)
        )
        await hub.audit(AuditRecord(actor: "ops", action: "notify_admin", outcome: .success, channel: .http))
        // Events are queued in order: the first one here is the announced record's.
        #expect(try await admin.next(type: "event")["payload"]?["type"] == "admin.action.notify_admin")
        let logged = auditLines().compactMap { $0.metadata["realtime.audit.action"]?.description }
        #expect(logged.contains("read_stats"))
        #expect(logged.contains("notify_admin"))
    }

    /// Only the hub emits its audit trail and presence: a publisher cannot forge them, alone or in a batch.
    @Test func publishersCannotForgeAuditOrPresenceEvents() async throws {
        let hub = try hub()
        for type: EventType in ["admin.action.revoke_user", .adminConnectionOpened, .presenceUserOnline] {
            #expect(type.isReservedForTheHub)
            await #expect(throws: RealtimeError.self) {
                try await hub.publish(RealtimeEvent(type: type, userID: "ghost", data: [:]))
            }
            do {
                _ = try await hub.publish([
                    RealtimeEvent(type: .adminUserCreated, data: [:]), RealtimeEvent(type: type),
                ])
                Issue.record("\(type) was published in a batch")
            } catch {
                #expect(error.code == .forbidden)
                #expect(error.message.hasPrefix("events[1]"))
            }
        }
        #expect(!EventType.adminUserCreated.isReservedForTheHub)
        #expect(!EventType.sessionRevoked.isReservedForTheHub)
        _ = try await hub.publishAdminEvent(.adminUserCreated, data: ["user": "new"])
    }
}
