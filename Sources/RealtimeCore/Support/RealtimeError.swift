/// An error from the hub or one of its backends.
///
/// Backends map their own failures (a Redis connection that dropped, a script error) onto a ``Code`` and
/// keep the original error in ``underlying``, so callers can switch on the code without knowing the backend.
public struct RealtimeError: Error, Sendable, CustomStringConvertible {
    /// A stable, machine-readable error category.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// The stable identifier, e.g. `backend_unavailable`.
        public let rawValue: String
        public init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// A backend (Redis, a database) could not be reached or answered with a failure.
        public static let backendUnavailable = Code("backend_unavailable")
        /// An operation did not finish within its deadline.
        public static let timeout = Code("timeout")
        /// An argument was outside what the operation accepts.
        public static let invalidArgument = Code("invalid_argument")
        /// A configured limit was reached.
        public static let limitExceeded = Code("limit_exceeded")
        /// The thing asked for does not exist.
        public static let notFound = Code("not_found")
        /// A peer sent data that does not follow the protocol (a malformed reply or bus message).
        public static let protocolViolation = Code("protocol_violation")
        /// The event must name a user (e.g. `authentication.*` and `session.*` events; see ``EventScopePolicy``).
        public static let userRequired = Code("user_required")
        /// The operation conflicts with what exists (a session id that is another user's).
        public static let conflict = Code("conflict")
        /// The caller is not allowed to do this.
        public static let forbidden = Code("forbidden")
        /// The component was shut down.
        public static let shutDown = Code("shut_down")
        /// A configuration value is invalid.
        public static let invalidConfiguration = Code("invalid_configuration")
        /// An invariant broke inside the library.
        public static let internalError = Code("internal_error")
    }

    /// The category.
    public var code: Code
    /// A human-readable explanation. Never contains tokens or secrets.
    public var message: String
    /// The error that caused this one, if any.
    public var underlying: (any Error & Sendable)?

    public init(_ code: Code, _ message: String, underlying: (any Error & Sendable)? = nil) {
        self.code = code
        self.message = message
        self.underlying = underlying
    }

    public var description: String {
        if let underlying { return "\(code): \(message) (\(underlying))" }
        return "\(code): \(message)"
    }
}
