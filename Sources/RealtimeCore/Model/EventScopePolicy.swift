/// Who sees an event that names no user and was given no explicit scope.
///
/// Security and operational internals must not reach ordinary users by default: an event such as
/// `security.suspicious.activity` about an address, or `system.error.critical`, goes to administrators unless
/// its publisher opts in to a broadcast with an explicit ``EventScope/everyone``. The hub applies the policy in
/// ``RealtimeHub/publish(_:)`` on the server where the event is published; the bus carries the resolved scope,
/// so every server of a cluster delivers the event to the same set of connections.
///
/// ```swift
/// var configuration = HubConfiguration()
/// configuration.scopePolicy = EventScopePolicy { type in
///     type.category == "billing" ? .everyone : EventScopePolicy.standard.decide(type)
/// }
/// ```
public struct EventScopePolicy: Sendable {
    /// What to do with an event that names no user and has no explicit scope.
    public enum Decision: Sendable, Hashable {
        /// Administrators only.
        case admins
        /// Every connection that subscribed to it.
        case everyone
        /// Refuse to publish it: ``RealtimeHub/publish(_:)`` throws ``RealtimeError/Code/userRequired`` with
        /// this message.
        case refuse(String)
    }

    /// Decides for one event type.
    public var decide: @Sendable (EventType) -> Decision

    public init(_ decide: @escaping @Sendable (EventType) -> Decision) {
        self.decide = decide
    }

    /// The default policy:
    ///
    /// | category | without a user and without a scope |
    /// |---|---|
    /// | `system.maintenance.*` | everyone (announcements) |
    /// | `authentication.*`, `session.*` | refused: meaningless without a user |
    /// | `admin.*`, `presence.*`, `security.*`, `system.error.*`, `system.performance.*`, any other | administrators |
    public static let standard = EventScopePolicy { type in
        switch type.category {
        case "authentication", "session":
            return .refuse("\(type.category).* events are about a user: give userId (or an explicit scope)")
        case "system" where type.rawValue.hasPrefix("system.maintenance."):
            return .everyone
        default:
            return .admins
        }
    }
}
