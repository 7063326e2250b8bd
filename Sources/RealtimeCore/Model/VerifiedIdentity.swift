import Synchronization

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
    ///
    /// A token verifier may hand over the token's parsed claims without building this dictionary: it is then
    /// built the first time it is read (by any copy of the identity, from any thread, once) and shared by every
    /// copy. Either way it reads the same, and equality and hashing of identities use its value.
    public var claims: JSONObject {
        get { claimStorage.object }
        set { claimStorage = .object(newValue) }
    }

    private var claimStorage: ClaimStorage

    /// An identity with the given fields and claims.
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
        self.claimStorage = .object(claims)
    }

    /// An identity whose ``claims`` are `claimMembers` (a claim set as the parser returned it, without duplicate
    /// names), turned into a ``JSONObject`` only when ``claims`` is first read: most hosts never read it, and
    /// building the dictionary (hashing every claim name) is a large part of verifying a token.
    package init(
        userID: String,
        sessionID: String?,
        isAdmin: Bool,
        roles: [String],
        expiresAt: Timestamp?,
        issuedAt: Timestamp?,
        claimMembers: [JSONMember]
    ) {
        self.init(
            userID: userID,
            sessionID: sessionID,
            isAdmin: isAdmin,
            roles: roles,
            expiresAt: expiresAt,
            issuedAt: issuedAt
        )
        claimStorage = .deferred(DeferredClaims(claimMembers))
    }
}

extension VerifiedIdentity: CustomReflectable {
    /// The same children as a plain struct with a stored `claims` dictionary would show.
    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "userID": userID, "sessionID": sessionID as Any, "isAdmin": isAdmin, "roles": roles,
                "expiresAt": expiresAt as Any, "issuedAt": issuedAt as Any, "claims": claims,
            ],
            displayStyle: .struct
        )
    }
}

/// The claims of a ``VerifiedIdentity``: a dictionary, or members that become one when first read. Equal and
/// hashed by the dictionary they stand for, so an identity's equality and hash are what they would be with a
/// stored `claims` dictionary.
private enum ClaimStorage: Sendable, Hashable {
    case object(JSONObject)
    case deferred(DeferredClaims)

    var object: JSONObject {
        switch self {
        case .object(let object): object
        case .deferred(let deferred): deferred.object
        }
    }

    static func == (lhs: ClaimStorage, rhs: ClaimStorage) -> Bool {
        if case .deferred(let left) = lhs, case .deferred(let right) = rhs, left === right { return true }
        return lhs.object == rhs.object
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(object)
    }
}

/// A claim set kept as parsed members until its dictionary is first needed, then kept as that dictionary (the
/// members are released). Shared by every copy of an identity, so the dictionary is built at most once.
///
/// Sendable without `@unchecked`: the only stored property is a `Mutex` of a `Sendable` state, and the
/// dictionary is built while the lock is held, so concurrent first reads wait for one build and all return it.
private final class DeferredClaims: Sendable {
    private enum State: Sendable {
        case members([JSONMember])
        case built(JSONObject)
    }

    private let state: Mutex<State>

    init(_ members: [JSONMember]) {
        state = Mutex(.members(members))
    }

    var object: JSONObject {
        state.withLock { state in
            switch state {
            case .built(let object):
                return object
            case .members(let members):
                let object = members.object
                state = .built(object)
                return object
            }
        }
    }
}
