import Logging

/// One administrative action, as the audit trail records it: who (the actor's `sub`), did what (the action), to
/// what (the target), with which result, from where. ``RealtimeHub/audit(_:)`` turns it into an
/// `admin.action.<action>` event for administrators and a structured log line. It holds no credential: the actor's
/// token is never part of it.
public struct AuditRecord: Sendable, Hashable {
    /// How the action ended.
    public enum Outcome: Sendable, Hashable {
        case success
        /// Refused or failed, with a stable error code (`invalid_field`, `backend_unavailable`, …).
        case failure(code: String)

        /// `success` or `failure`.
        public var name: String {
            switch self {
            case .success: "success"
            case .failure: "failure"
            }
        }
    }

    /// Where the action came from.
    public enum Channel: String, Sendable, Hashable {
        /// The HTTP API.
        case http
        /// An administrator's WebSocket (`/ws/admin`).
        case websocket
    }

    /// The actor: the `sub` (user id) of the token that authorised the action.
    public var actor: String
    /// What was done: one event-type segment (lower-case letters, digits, `_`), such as `revoke_user`; the event
    /// type is `admin.action.<action>` (`admin.action.other` for an action that is not one segment).
    public var action: String
    /// What it was done to (`user:alice`, `session:s1`, `event:security.high_risk.detected`), if anything.
    public var target: String?
    /// How it ended.
    public var outcome: Outcome
    /// The client's address (after trusted proxies), if known.
    public var clientAddress: String?
    public var channel: Channel
    /// More about the action (an HTTP method, path and status; a connection id). Never a token.
    public var details: JSONObject
    /// Whether administrators get the `admin.action.*` event; `false` records the log line only (for reads, which a
    /// polling console would otherwise repeat to every administrator every few seconds).
    public var announce: Bool

    public init(
        actor: String,
        action: String,
        target: String? = nil,
        outcome: Outcome,
        clientAddress: String? = nil,
        channel: Channel,
        details: JSONObject = [:],
        announce: Bool = true
    ) {
        self.actor = actor
        self.action = action
        self.target = target
        self.outcome = outcome
        self.clientAddress = clientAddress
        self.channel = channel
        self.details = details
        self.announce = announce
    }

    /// The longest actor, target or address an audit event carries, in UTF-8 bytes (longer ones are cut).
    static let maxFieldBytes = 256

    /// `admin.action.<action>`, or `admin.action.other` when the action is not one well-formed segment.
    public var eventType: EventType {
        let type = EventType.adminActionPrefix + action
        return action.utf8.count <= 64 && !action.contains(".") && EventType.isWellFormed(type)
            ? EventType(type) : EventType(EventType.adminActionPrefix + "other")
    }

    /// The event's data: `actor`, `action`, `target`, `result`, `error` (for a failure), `clientAddress`,
    /// `channel`, then ``details``.
    var eventData: JSONObject {
        var data = details
        data["actor"] = .string(Self.bounded(actor))
        data["action"] = .string(Self.bounded(action))
        data["target"] = target.map { .string(Self.bounded($0)) } ?? .null
        data["result"] = .string(outcome.name)
        if case .failure(let code) = outcome { data["error"] = .string(Self.bounded(code)) }
        data["clientAddress"] = clientAddress.map { .string(Self.bounded($0)) } ?? .null
        data["channel"] = .string(channel.rawValue)
        return data
    }

    static func bounded(_ text: String) -> String {
        guard text.utf8.count > maxFieldBytes else { return text }
        var cut = String(text.utf8.prefix(maxFieldBytes)) ?? ""
        while cut.isEmpty == false && cut.utf8.count > maxFieldBytes { cut.removeLast() }
        return cut + "…"
    }

    /// `text` bounded, with every control character (C0, DEL, C1) and every bidirectional formatting character
    /// written as `\u{XX}`: a log line is one line, whatever a client put in a refused id or type (fuzz: a CR LF in
    /// an event type, refused with 400, wrote a forged line into the audit log; an ESC cleared the terminal).
    static func loggable(_ text: String) -> String {
        let text = bounded(text)
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            if needsEscape(scalar) {
                escaped += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            } else {
                escaped.unicodeScalars.append(scalar)
            }
        }
        return escaped
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true  // C0, DEL, C1
        case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069: true  // bidirectional marks, embeddings, isolates
        case 0x2028, 0x2029: true  // line and paragraph separators
        default: false
        }
    }
}

extension RealtimeHub {
    /// Records an action of an administrator connection (`/ws/admin`): what ``audit(_:)`` records for the API.
    func auditAdminConnection(
        _ core: ConnectionCore,
        identity: VerifiedIdentity,
        action: String,
        target: String? = nil,
        outcome: AuditRecord.Outcome = .success
    ) async {
        guard core.endpoint == .admin else { return }
        await audit(
            AuditRecord(
                actor: identity.userID,
                action: action,
                target: target,
                outcome: outcome,
                clientAddress: core.remoteAddress.description,
                channel: .websocket,
                details: ["connectionId": .string(core.id.rawValue), "serverId": .string(serverID.rawValue)]
            )
        )
    }

    /// Records an administrative action: a `notice` log line with its fields under `realtime.audit.*` metadata and,
    /// when ``AuditRecord/announce`` is set, an `admin.action.<action>` event to administrators (scope
    /// ``EventScope/admins``, cluster-wide). The hub records its own administrators' WebSocket actions; `RealtimeHummingbird` records every
    /// request of the HTTP API it admitted. A host records its own administrative routes with it.
    public func audit(_ record: AuditRecord) async {
        var metadata: Logger.Metadata = [
            "realtime.audit.actor": "\(AuditRecord.loggable(record.actor))",
            "realtime.audit.action": "\(AuditRecord.loggable(record.action))",
            "realtime.audit.result": "\(record.outcome.name)",
            "realtime.audit.channel": "\(record.channel.rawValue)",
        ]
        if let target = record.target { metadata["realtime.audit.target"] = "\(AuditRecord.loggable(target))" }
        if case .failure(let code) = record.outcome {
            metadata["realtime.audit.error"] = "\(AuditRecord.loggable(code))"
        }
        if let address = record.clientAddress { metadata["realtime.remote"] = "\(AuditRecord.loggable(address))" }
        logger.notice("admin action", metadata: metadata)
        counters.increment("realtime_admin_actions_total", ("result", record.outcome.name))
        guard record.announce else { return }
        await publishResolvedEvent(RealtimeEvent(type: record.eventType, data: record.eventData, scope: .admins))
    }
}
