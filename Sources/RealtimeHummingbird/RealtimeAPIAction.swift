// SPDX-License-Identifier: Apache-2.0

/// One thing the hub's HTTP API does: what ``RealtimeRouteOptions/authorize`` decides on, and the name the audit
/// trail records (`admin.action.<rawValue>`).
///
/// Each API route is one action (`Documentation/HTTP-API.md`): a deployment can give each kind of token exactly what
/// it needs, e.g. a risk engine's `service` token publishing events and notifications but never revoking a user.
public struct RealtimeAPIAction: Hashable, Sendable, CustomStringConvertible {
    /// The action's name, as the audit trail records it (`publish_event`, `revoke_user`, …).
    public let rawValue: String

    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// The action named `name` (one of ``all``), or `nil`.
    public init?(named name: String) {
        guard let action = Self.all.first(where: { $0.rawValue == name }) else { return nil }
        self = action
    }

    public var description: String { rawValue }

    /// `POST /events`.
    public static let publishEvent = Self("publish_event")
    /// `POST /events/batch`.
    public static let publishEvents = Self("publish_events")
    /// `POST /notifications/user`.
    public static let notifyUser = Self("notify_user")
    /// `POST /notifications/broadcast`.
    public static let notifyBroadcast = Self("notify_broadcast")
    /// `POST /notifications/admin`.
    public static let notifyAdmin = Self("notify_admin")
    /// `POST /sessions/{sessionId}/revoke`.
    public static let revokeSession = Self("revoke_session")
    /// `POST /sessions`.
    public static let createSession = Self("create_session")
    /// `DELETE /sessions/{sessionId}`.
    public static let endSession = Self("end_session")
    /// `POST /users/{userId}/revoke`.
    public static let revokeUser = Self("revoke_user")
    /// `POST /users/{userId}/disconnect`.
    public static let disconnectUser = Self("disconnect_user")
    /// `GET /stats`.
    public static let readStats = Self("read_stats")
    /// `GET /connections`.
    public static let listConnections = Self("list_connections")
    /// `GET /users/{userId}/connections`.
    public static let listUserConnections = Self("list_user_connections")
    /// `GET /users/{userId}/sessions`.
    public static let listSessions = Self("list_sessions")

    /// Every action of the API.
    public static let all: [RealtimeAPIAction] = [
        .publishEvent, .publishEvents, .notifyUser, .notifyBroadcast, .notifyAdmin, .revokeSession, .createSession,
        .endSession, .revokeUser, .disconnectUser, .readStats, .listConnections, .listUserConnections, .listSessions,
    ]

    /// The admin API's listings: who is connected, which sessions a user has.
    public var isListing: Bool {
        self == .listConnections || self == .listUserConnections || self == .listSessions
    }
}
