// SPDX-License-Identifier: Apache-2.0

public import RealtimeCore
internal import Synchronization

/// The keys of one or more ``JWTVerifier``s, replaceable at run time: the one place where keys change.
///
/// A store holds the access keys and the refresh keys (keys that recognise refresh tokens and never accept one).
/// Whoever rotates keys — a host re-reading its key files on `SIGHUP`, or `JWKSKeyProvider` (the `RealtimeJWKS`
/// product) fetching an identity provider's JWK Set — replaces them here, and every verifier built on the store
/// uses the new keys from its next verification. A replacement is atomic: a verification uses the old pair or the
/// new pair, never a mix, and verifications in flight finish with the pair they started with.
///
/// ```swift
/// let keys = try JWTKeyStore(keys: JWTKeySet([try .hmac(secret: secret)]))
/// let verifier = JWTVerifier(keys: keys, configuration: configuration)
/// // later, e.g. on SIGHUP:
/// try keys.replaceKeys(JWTKeySet([try .hmac(secret: newSecret)]))
/// ```
///
/// Cost on the verification path: a verification reads the current pair under a lock held only to copy one
/// reference (an uncontended lock and one reference-count increment).
public final class JWTKeyStore: Sendable {
    /// The access keys and the refresh keys, swapped together (one reference, so a read copies one pointer).
    final class Ring: Sendable {
        let access: JWTKeySet
        let refresh: JWTKeySet

        init(access: JWTKeySet, refresh: JWTKeySet) {
            self.access = access
            self.refresh = refresh
        }
    }

    private let ring: Mutex<Ring>

    /// A store of `ring`, whose keys were checked already (or need no check).
    init(ring: Ring) {
        self.ring = Mutex(ring)
    }

    /// A store with access `keys` and `refreshKeys` (none by default).
    ///
    /// - Throws: ``JWTError/Code/invalidKey`` when a refresh key is also an access key (the same HMAC secret for
    ///   a common algorithm), which would make every refresh token an access token.
    public init(keys: JWTKeySet = .empty, refreshKeys: JWTKeySet = .empty) throws(JWTError) {
        try Self.checkDistinct(keys, refreshKeys)
        ring = Mutex(Ring(access: keys, refresh: refreshKeys))
    }

    /// The current access keys.
    public var keys: JWTKeySet { current.access }

    /// The current refresh keys (empty unless configured).
    public var refreshKeys: JWTKeySet { current.refresh }

    /// The current pair, for one verification.
    var current: Ring { ring.withLock { $0 } }

    /// Replaces the access keys, keeping the refresh keys.
    ///
    /// - Throws: ``JWTError/Code/invalidKey`` when a new key is also a refresh key; nothing is replaced.
    public func replaceKeys(_ keys: JWTKeySet) throws(JWTError) {
        try ring.withLock { (ring: inout Ring) throws(JWTError) in
            try Self.checkDistinct(keys, ring.refresh)
            ring = Ring(access: keys, refresh: ring.refresh)
        }
    }

    /// Replaces the refresh keys, keeping the access keys (which may be replaced concurrently by another source,
    /// e.g. a JWKS provider: the two replacements do not undo each other).
    ///
    /// - Throws: ``JWTError/Code/invalidKey`` when a new refresh key is also an access key; nothing is replaced.
    public func replaceRefreshKeys(_ refreshKeys: JWTKeySet) throws(JWTError) {
        try ring.withLock { (ring: inout Ring) throws(JWTError) in
            try Self.checkDistinct(ring.access, refreshKeys)
            ring = Ring(access: ring.access, refresh: refreshKeys)
        }
    }

    /// Replaces the access keys and the refresh keys together.
    ///
    /// - Throws: ``JWTError/Code/invalidKey`` when a refresh key is also an access key; nothing is replaced.
    public func replaceKeys(_ keys: JWTKeySet, refreshKeys: JWTKeySet) throws(JWTError) {
        try Self.checkDistinct(keys, refreshKeys)
        let new = Ring(access: keys, refresh: refreshKeys)
        ring.withLock { $0 = new }
    }

    /// Refuses refresh keys that are also access keys.
    static func checkDistinct(_ access: JWTKeySet, _ refresh: JWTKeySet) throws(JWTError) {
        for refreshKey in refresh.keys where access.keys.contains(where: { $0.sharesSecret(with: refreshKey) }) {
            throw JWTError(.invalidKey, "a refresh key is also an access key: the refresh secret must differ")
        }
    }
}

/// Fetches keys a verifier does not have yet: asked by ``JWTVerifier`` when a token names a key (`kid`) that its
/// store lacks, e.g. a key an identity provider published after its JWK Set was last fetched.
///
/// An implementation refetches at most as often as its own rate limit allows and answers at once otherwise, so a
/// flood of tokens with forged `kid`s costs no request beyond that limit and no waiting on the network.
public protocol JWTUnknownKeyHandler: Sendable {
    /// Fetches new keys into the verifier's store if allowed now, and returns whether the keys changed (the
    /// verifier then checks the token once more). Returns `false` at once when no fetch is allowed.
    func refreshForUnknownKey() async -> Bool

    /// The key source's health, reported as the verifier's (``JWTVerifier/healthCheck()``). Default: healthy.
    func healthCheck() async -> ComponentHealth
}

extension JWTUnknownKeyHandler {
    public func healthCheck() async -> ComponentHealth { .healthy }
}
