/// Who may receive an event or notification.
public enum EventScope: Hashable, Sendable, CustomStringConvertible {
    /// One user's connections (and administrators watching).
    case user(String)
    /// Administrator connections only.
    case admins
    /// Every connection.
    case everyone

    public var description: String {
        switch self {
        case .user(let id): return "user:\(id)"
        case .admins: return "admins"
        case .everyone: return "everyone"
        }
    }
}

/// An authentication or security event.
public struct RealtimeEvent: Sendable, Hashable {
    /// Unique identifier (`evt_…` unless the publisher chose one).
    public var id: String
    public var type: EventType
    /// The user the event is about, if any.
    public var userID: String?
    /// The session the event is about, if any.
    public var sessionID: String?
    public var timestamp: Timestamp
    /// Event data: any JSON object.
    public var data: JSONObject
    /// Who may receive the event. Setting it makes it explicit: ``RealtimeHub/publish(_:)`` then keeps it.
    public var scope: EventScope {
        didSet { scopeIsExplicit = true }
    }
    /// Whether the publisher chose ``scope`` (in the initializer or by setting it) rather than leaving it to the
    /// defaults. Not part of the event's identity (``==`` ignores it).
    package private(set) var scopeIsExplicit: Bool

    /// Creates an event. Without an explicit scope, an `admin.*` or `presence.*` event is scoped to
    /// administrators, an event about a user to that user, and an event about no user as
    /// ``EventScopePolicy/standard`` decides (administrators, except `system.maintenance.*` announcements); the
    /// hub applies its configured ``HubConfiguration/scopePolicy`` to such events when they are published.
    public init(
        id: String = RandomID.event(),
        type: EventType,
        userID: String? = nil,
        sessionID: String? = nil,
        timestamp: Timestamp = .now(),
        data: JSONObject = [:],
        scope: EventScope? = nil
    ) {
        self.id = id
        self.type = type
        self.userID = userID
        self.sessionID = sessionID
        self.timestamp = timestamp
        self.data = data
        self.scopeIsExplicit = scope != nil
        if let scope {
            self.scope = scope
        } else if type.isAdminOnly {
            self.scope = .admins
        } else if let userID {
            self.scope = .user(userID)
        } else if case .everyone = EventScopePolicy.standard.decide(type) {
            self.scope = .everyone
        } else {
            self.scope = .admins
        }
    }

    public static func == (lhs: RealtimeEvent, rhs: RealtimeEvent) -> Bool {
        lhs.id == rhs.id && lhs.type == rhs.type && lhs.userID == rhs.userID && lhs.sessionID == rhs.sessionID
            && lhs.timestamp == rhs.timestamp && lhs.data == rhs.data && lhs.scope == rhs.scope
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(id)
        hasher.combine(type)
        hasher.combine(scope)
    }
}

/// The urgency of a notification.
public enum NotificationLevel: String, Sendable, Hashable, CaseIterable {
    case info, success, warning, error, critical
}

/// A human-facing notification. Delivered to its target without any subscription.
public struct RealtimeNotification: Sendable, Hashable {
    public var id: String
    public var level: NotificationLevel
    public var title: String
    public var message: String
    public var data: JSONObject
    public var timestamp: Timestamp
    /// `.user(id)` for one user, `.everyone` for a broadcast, `.admins` for administrators.
    public var target: EventScope

    public init(
        id: String = "ntf_" + RandomID.hex(bytes: 12),
        level: NotificationLevel,
        title: String,
        message: String,
        data: JSONObject = [:],
        timestamp: Timestamp = .now(),
        target: EventScope
    ) {
        self.id = id
        self.level = level
        self.title = title
        self.message = message
        self.data = data
        self.timestamp = timestamp
        self.target = target
    }
}

/// A cluster-wide command carried on the bus's control channel (or to one server).
///
/// A revocation's command carries its `session.revoked` event (``RevocationNotice``): each server queues it for
/// the connections it closes, right before their close frame, unless the event already reached them on its own
/// route. So a closed connection receives the event exactly once and before its close, whichever of the two
/// messages arrives first (with sharded pub/sub on a Redis Cluster they travel through different shards).
public enum ControlCommand: Sendable, Hashable {
    /// Close every connection of a user.
    case disconnectUser(userID: String, reason: String)
    /// Close every connection of a session; after a revocation, with the `session.revoked` event of each of its
    /// users (at most ``maxNotices``).
    case disconnectSession(sessionID: String, reason: String, notices: [RevocationNotice] = [])
    /// Close one connection.
    case disconnectConnection(ConnectionID, reason: String)
    /// Close (4009) every connection of a user whose token was issued before `issuedBefore` or does not say when
    /// it was issued (after a user-wide revocation), with the user's `session.revoked` event.
    case revokeUser(userID: String, issuedBefore: Timestamp, reason: String, notice: RevocationNotice? = nil)

    /// The most notices a command carries (a session of more users closes all of them; the users beyond this many
    /// get the event on their route only).
    public static let maxNotices = 16
}

/// The `session.revoked` event that a revocation's ``ControlCommand`` carries, with where it was recorded in the
/// user's stream and in the administrators' stream (so the copy a server queues before a close carries the same
/// position as the copy on the event's route).
public struct RevocationNotice: Sendable, Hashable {
    /// The event, as published on its routes (a user-scoped `session.revoked`).
    public var event: RealtimeEvent
    /// Its position in its user's stream, when history recorded it.
    public var userStreamPosition: StreamPosition?
    /// Its position in the administrators' stream, when history recorded it.
    public var adminsStreamPosition: StreamPosition?

    public init(
        event: RealtimeEvent,
        userStreamPosition: StreamPosition? = nil,
        adminsStreamPosition: StreamPosition? = nil
    ) {
        self.event = event
        self.userStreamPosition = userStreamPosition
        self.adminsStreamPosition = adminsStreamPosition
    }
}
