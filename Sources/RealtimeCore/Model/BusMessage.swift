/// Where a bus message goes. Backends map each route to a channel.
///
/// A server always hears ``everyone``, ``control`` and its own ``server(_:)`` route; it hears ``user(_:)`` only
/// while it holds a connection of that user and ``admins`` only while it holds an administrator connection
/// (see ``EventBusSubscription/addInterest(_:)``), so its bus traffic follows its own connections.
public enum BusRoute: Hashable, Sendable, CustomStringConvertible {
    /// Events and notifications for one user.
    case user(String)
    /// Everything administrators may see.
    case admins
    /// Events and notifications for every connection.
    case everyone
    /// Cluster-wide commands (disconnect a user or a session).
    case control
    /// Commands for one server (disconnect one of its connections).
    case server(ServerID)

    public var description: String {
        switch self {
        case .user(let id): return "user:\(id)"
        case .admins: return "admins"
        case .everyone: return "everyone"
        case .control: return "control"
        case .server(let id): return "server:\(id)"
        }
    }

    /// Parses ``description`` back.
    public init?(_ description: String) {
        switch description {
        case "admins": self = .admins
        case "everyone": self = .everyone
        case "control": self = .control
        default:
            if description.hasPrefix("user:") {
                self = .user(String(description.dropFirst(5)))
            } else if description.hasPrefix("server:") {
                self = .server(ServerID(String(description.dropFirst(7))))
            } else {
                return nil
            }
        }
    }
}

/// What a bus message carries.
public enum BusPayload: Sendable, Hashable {
    case event(RealtimeEvent)
    case notification(RealtimeNotification)
    case control(ControlCommand)
}

/// One message on the event bus.
///
/// Equality and hashing compare ``origin``, ``route`` and ``payload``.
public struct BusMessage: Sendable, Hashable {
    /// The server that published it. A hub ignores its own messages (it delivered them locally already).
    public var origin: ServerID
    public var route: BusRoute
    public var payload: BusPayload {
        didSet { eventFrame = nil }
    }

    /// For an event, the text of the client's `event` message (`{"type":"event","payload":{…}}`) when it is
    /// already encoded: set by the publishing hub (which encoded it for its own connections) and by the bus codec
    /// (which carries it), so neither the bus nor the receiving hub encodes the event again. Cleared whenever
    /// ``payload`` changes; not part of equality.
    package var eventFrame: String?

    /// Where the message was recorded in its route's ``HistoryStream``, when it was: set by
    /// ``EventBus/publish(_:recordingIn:)`` (and carried by the bus to every server) and by
    /// ``HistoryStore/read(_:after:limit:)``; `nil` for a message published without history. Not part of equality.
    public var position: StreamPosition?

    public init(origin: ServerID, route: BusRoute, payload: BusPayload) {
        self.origin = origin
        self.route = route
        self.payload = payload
    }

    package init(origin: ServerID, route: BusRoute, payload: BusPayload, eventFrame: String?) {
        self.origin = origin
        self.route = route
        self.payload = payload
        self.eventFrame = eventFrame
    }

    /// Whether origin, route and payload are equal (the carried event frame is a cache of the payload's encoding, and
    /// ``position`` says where a copy of the message was recorded, not what it is).
    public static func == (lhs: BusMessage, rhs: BusMessage) -> Bool {
        lhs.origin == rhs.origin && lhs.route == rhs.route && lhs.payload == rhs.payload
    }

    /// Hashes origin, route and payload, consistently with ``==(_:_:)``.
    public func hash(into hasher: inout Hasher) {
        hasher.combine(origin)
        hasher.combine(route)
        hasher.combine(payload)
    }
}

/// What an ``EventBusSubscription`` yields.
public enum BusDelivery: Sendable, Hashable {
    /// A message on one of the subscription's routes.
    case message(BusMessage)
    /// Messages from other servers may have been missed between `from` and `to` (the bus was disconnected or
    /// its buffer overflowed). The hub tells every local client with a `gap` message.
    case gap(from: Timestamp, to: Timestamp)
}
