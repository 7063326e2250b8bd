/// The type of an event: dot-separated segments such as `authentication.login.success`.
///
/// A well-formed type has 1 to 8 segments of 1 to 64 characters from `a-z A-Z 0-9 _ -`, at most 200 bytes in
/// all. The catalogue from the specification is available as static members (``authenticationLoginSuccess``
/// and so on); any other well-formed type is accepted too.
public struct EventType: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    /// Creates a type without validation. Use ``init(validating:)`` for untrusted input.
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }

    /// Creates a type from untrusted input, or `nil` if it is not well-formed.
    public init?(validating rawValue: String) {
        guard EventType.isWellFormed(rawValue) else { return nil }
        self.rawValue = rawValue
    }

    public var description: String { rawValue }

    /// The first segment (`authentication` for `authentication.login.success`).
    public var category: Substring {
        rawValue.utf8.firstIndex(of: UInt8(ascii: ".")).map { rawValue[..<$0] } ?? rawValue[...]
    }

    /// The longest type accepted, in bytes.
    public static let maxLength = 200
    /// The most segments a type may have.
    public static let maxSegments = 8

    /// Whether `string` is a well-formed event type.
    public static func isWellFormed(_ string: String) -> Bool {
        let utf8 = string.utf8
        guard !utf8.isEmpty, utf8.count <= maxLength else { return false }
        var segmentLength = 0
        var segments = 1
        for byte in utf8 {
            if byte == UInt8(ascii: ".") {
                guard segmentLength > 0 else { return false }
                segments += 1
                segmentLength = 0
                continue
            }
            guard isSegmentByte(byte) else { return false }
            segmentLength += 1
            if segmentLength > 64 { return false }
        }
        return segmentLength > 0 && segments <= maxSegments
    }

    static func isSegmentByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
            return true
        default:
            return false
        }
    }
}

extension EventType {
    // MARK: Authentication
    public static let authenticationLoginSuccess: EventType = "authentication.login.success"
    public static let authenticationLoginFailure: EventType = "authentication.login.failure"
    public static let authenticationLogout: EventType = "authentication.logout"
    public static let authenticationMFAChallenge: EventType = "authentication.mfa.challenge"
    public static let authenticationMFASuccess: EventType = "authentication.mfa.success"
    public static let authenticationPasswordChange: EventType = "authentication.password.change"
    public static let authenticationTokenRefresh: EventType = "authentication.token.refresh"
    // MARK: Security
    public static let securityHighRiskDetected: EventType = "security.high_risk.detected"
    public static let securityRateLimitExceeded: EventType = "security.rate_limit.exceeded"
    public static let securitySuspiciousActivity: EventType = "security.suspicious.activity"
    public static let securityValidationFailed: EventType = "security.validation.failed"
    // MARK: Session
    public static let sessionCreated: EventType = "session.created"
    public static let sessionExpired: EventType = "session.expired"
    public static let sessionRevoked: EventType = "session.revoked"
    public static let sessionConcurrentLimit: EventType = "session.concurrent_limit"
    // MARK: Admin
    public static let adminUserCreated: EventType = "admin.user.created"
    public static let adminUserUpdated: EventType = "admin.user.updated"
    public static let adminUserDeleted: EventType = "admin.user.deleted"
    public static let adminRoleAssigned: EventType = "admin.role.assigned"
    public static let adminPermissionGranted: EventType = "admin.permission.granted"
    /// Audit: an administrator connected to `/ws/admin`.
    public static let adminConnectionOpened: EventType = "admin.connection.opened"
    /// Audit: an administrator connection subscribed to patterns.
    public static let adminSubscriptionChanged: EventType = "admin.subscription.changed"
    /// Audit: the prefix of `admin.action.<action>`, one event per administrative action (``AuditRecord``).
    public static let adminActionPrefix = "admin.action."
    // MARK: System
    public static let systemMaintenanceScheduled: EventType = "system.maintenance.scheduled"
    public static let systemErrorCritical: EventType = "system.error.critical"
    public static let systemPerformanceDegraded: EventType = "system.performance.degraded"
    // MARK: Presence (admin-scoped)
    /// A user's first connection in the cluster opened.
    public static let presenceUserOnline: EventType = "presence.user.online"
    /// A user's last connection in the cluster closed (or its server was purged).
    public static let presenceUserOffline: EventType = "presence.user.offline"

    /// Every type of the catalogue.
    public static let catalogue: [EventType] = [
        .authenticationLoginSuccess, .authenticationLoginFailure, .authenticationLogout, .authenticationMFAChallenge,
        .authenticationMFASuccess, .authenticationPasswordChange, .authenticationTokenRefresh,
        .securityHighRiskDetected, .securityRateLimitExceeded, .securitySuspiciousActivity, .securityValidationFailed,
        .sessionCreated, .sessionExpired, .sessionRevoked, .sessionConcurrentLimit,
        .adminUserCreated, .adminUserUpdated, .adminUserDeleted, .adminRoleAssigned, .adminPermissionGranted,
        .adminConnectionOpened, .adminSubscriptionChanged,
        .systemMaintenanceScheduled, .systemErrorCritical, .systemPerformanceDegraded,
        .presenceUserOnline, .presenceUserOffline,
    ]

    /// Whether the event must never be dropped silently: if it cannot be queued for a connection, that
    /// connection is closed with ``CloseCode/slowConsumer`` so the client knows to resynchronise.
    public var isSecurityCritical: Bool {
        let category = self.category
        return category == "security" || self == .sessionRevoked || self == .sessionExpired
            || self == .systemErrorCritical
    }

    /// Whether only administrator connections may ever see events of this type.
    public var isAdminOnly: Bool {
        let category = self.category
        return category == "admin" || category == "presence"
    }

    /// Whether only the hub emits this type: its audit trail (`admin.action.*`, `admin.connection.opened`,
    /// `admin.subscription.changed`) and presence (`presence.*`). ``RealtimeHub/publish(_:)-(RealtimeEvent)`` refuses
    /// them, so no publisher can forge an audit record or a user's presence (record a host's own administrative
    /// actions with ``RealtimeHub/audit(_:)``).
    public var isReservedForTheHub: Bool {
        rawValue.hasPrefix(Self.adminActionPrefix) || self == .adminConnectionOpened
            || self == .adminSubscriptionChanged || category == "presence"
    }
}
