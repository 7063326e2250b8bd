/// The health of one backend, as reported to ``RealtimeHub/healthCheck()``.
public struct ComponentHealth: Sendable, Hashable {
    /// How well the component works.
    public enum Status: String, Sendable, Hashable, Comparable {
        /// Working normally.
        case healthy
        /// Working with reduced guarantees (e.g. a Redis backend that fell back to local-only operation).
        case degraded
        /// Not working.
        case unhealthy

        private var rank: Int {
            switch self {
            case .healthy: return 0
            case .degraded: return 1
            case .unhealthy: return 2
            }
        }

        public static func < (lhs: Status, rhs: Status) -> Bool { lhs.rank < rhs.rank }
    }

    public var status: Status
    /// Component-specific details (connection state, last probe round trip, …).
    public var details: JSONObject

    public init(status: Status, details: JSONObject = [:]) {
        self.status = status
        self.details = details
    }

    /// A healthy component with no details.
    public static let healthy = ComponentHealth(status: .healthy)
}
