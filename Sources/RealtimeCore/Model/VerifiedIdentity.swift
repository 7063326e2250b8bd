/// Who a verified token speaks for: the result of ``TokenVerifier/verify(_:)``.
public struct VerifiedIdentity: Sendable, Hashable {
    /// The user the token was issued to.
    public var userID: String
    /// The session the token belongs to, if the token names one.
    public var sessionID: String?
    /// Whether the token grants administrator privilege (the `/ws/admin` endpoint).
    public var isAdmin: Bool
    /// The roles the token lists, if any.
    public var roles: [String]
    /// When the token expires. A connection authenticated with it is closed then unless it is refreshed.
    public var expiresAt: Timestamp?
    /// When the token was issued, if it says.
    public var issuedAt: Timestamp?
    /// All claims of the token, for hosts that need more than the mapped fields. Never logged by the hub.
    public var claims: JSONObject

    public init(
        userID: String,
        sessionID: String? = nil,
        isAdmin: Bool = false,
        roles: [String] = [],
        expiresAt: Timestamp? = nil,
        issuedAt: Timestamp? = nil,
        claims: JSONObject = [:]
    ) {
        self.userID = userID
        self.sessionID = sessionID
        self.isAdmin = isAdmin
        self.roles = roles
        self.expiresAt = expiresAt
        self.issuedAt = issuedAt
        self.claims = claims
    }
}
