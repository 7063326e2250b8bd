import Synchronization

/// A ``TokenVerifier`` backed by a table of token strings, for tests and development.
///
/// Tokens can be added and removed while the hub runs. A token not in the table is refused with
/// ``TokenVerificationError/Reason/unknownToken``; a token whose identity's
/// ``VerifiedIdentity/expiresAt`` has passed is refused with ``TokenVerificationError/Reason/expired``.
///
/// ```swift
/// let verifier = StaticTokenVerifier(["alice-token": VerifiedIdentity(userID: "alice")])
/// verifier.add("admin-token", VerifiedIdentity(userID: "root", isAdmin: true))
/// ```
///
/// Never use it in production: the tokens are bearer secrets compared as plain strings.
public final class StaticTokenVerifier: TokenVerifier {
    private let tokens: Mutex<[String: VerifiedIdentity]>
    private let now: @Sendable () -> Timestamp

    /// Creates a verifier.
    /// - Parameters:
    ///   - tokens: The initial table, token → identity.
    ///   - now: The wall clock deciding expiry (tests pass a manual clock).
    public init(
        _ tokens: [String: VerifiedIdentity] = [:],
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) {
        self.tokens = Mutex(tokens)
        self.now = now
    }

    /// Adds a token, or replaces the identity of a known one.
    public func add(_ token: String, _ identity: VerifiedIdentity) {
        tokens.withLock { $0[token] = identity }
    }

    /// Removes a token. Returns whether it was known.
    @discardableResult
    public func remove(_ token: String) -> Bool {
        tokens.withLock { $0.removeValue(forKey: token) != nil }
    }

    public func verify(_ token: String) async throws(TokenVerificationError) -> VerifiedIdentity {
        guard let identity = tokens.withLock({ $0[token] }) else {
            throw TokenVerificationError(.unknownToken, "the token is not in the table")
        }
        if let expiresAt = identity.expiresAt, expiresAt <= now() {
            throw TokenVerificationError(.expired, "the token expired at \(expiresAt)")
        }
        return identity
    }
}
