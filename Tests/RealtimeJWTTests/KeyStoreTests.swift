import RealtimeCore
import RealtimeJWT
import RealtimeTesting
import Synchronization
import Testing

/// `JWTKeyStore` (keys replaced at run time, shared by verifiers) and the verifier's `JWTUnknownKeyHandler`.
@Suite struct KeyStoreTests {
    static let claims: JSONObject = ["sub": "u", "exp": .int(Timestamp.now().secondsSinceEpoch + 600)]

    static func key(_ kid: String) throws -> JWTKey { try .hmac(secret: "secret-of-\(kid)-0123456789abcdef", kid: kid) }

    static func token(_ kid: String) throws -> String { try JWTSigner(key: key(kid)).sign(claims) }

    static func reason(_ verifier: JWTVerifier, _ token: String) async -> TokenVerificationError.Reason? {
        await refusalReason(of: token, by: verifier)
    }

    /// Installs `next` into `store` when asked, and counts the calls.
    final class Handler: JWTUnknownKeyHandler {
        let store: JWTKeyStore
        let next: JWTKeySet?
        let calls = Mutex(0)

        init(store: JWTKeyStore, next: JWTKeySet?) {
            self.store = store
            self.next = next
        }

        func refreshForUnknownKey() async -> Bool {
            calls.withLock { $0 += 1 }
            guard let next else { return false }
            do {
                try store.replaceKeys(next)
                return true
            } catch {
                return false
            }
        }
    }

    @Test func verifiersOfOneStoreSeeEveryReplacementAndOldKeysWorkWhileInTheSet() async throws {
        let store = try JWTKeyStore(keys: JWTKeySet([try Self.key("k1")]))
        let (first, second) = (JWTVerifier(keys: store), JWTVerifier(keys: store))
        try store.replaceKeys(JWTKeySet([try Self.key("k1"), try Self.key("k2")]))
        for verifier in [first, second] {
            #expect(try await verifier.verify(Self.token("k1")).userID == "u")
            #expect(try await verifier.verify(Self.token("k2")).userID == "u")
        }
        try store.replaceKeys(JWTKeySet([try Self.key("k2")]))
        for verifier in [first, second] {
            #expect(await Self.reason(verifier, try Self.token("k1")) == .unknownKey)
            #expect(try await verifier.verify(Self.token("k2")).userID == "u")
        }
    }

    @Test func refreshKeysAreReplacedAloneAndNeverEqualAnAccessKey() throws {
        let access = JWTKeySet([try .hmac(secret: "access-secret-0123456789abcdef012345")])
        let store = try JWTKeyStore(keys: access)
        let refresh = JWTKeySet([try .hmac(secret: "refresh-secret-0123456789abcdef01234")])
        try store.replaceRefreshKeys(refresh)
        #expect(store.refreshKeys.keys.count == 1)
        #expect(store.keys.keys.count == 1)
        // Refused, and nothing changes.
        #expect(throws: JWTError.self) { try store.replaceRefreshKeys(access) }
        #expect(throws: JWTError.self) { try store.replaceKeys(refresh) }
        #expect(throws: JWTError.self) { try JWTKeyStore(keys: access, refreshKeys: access) }
        #expect(store.refreshKeys.keys.count == 1)
    }

    @Test func anUnknownKidAsksTheHandlerOnceAndIsCheckedAgain() async throws {
        let store = try JWTKeyStore(keys: JWTKeySet([try Self.key("k1")]))
        let rotating = Handler(store: store, next: JWTKeySet([try Self.key("k1"), try Self.key("k2")]))
        let verifier = JWTVerifier(keys: store, unknownKeyHandler: rotating)
        #expect(try await verifier.verify(Self.token("k2")).userID == "u")
        #expect(rotating.calls.withLock { $0 } == 1)

        let stubborn = Handler(store: store, next: nil)
        let refusing = JWTVerifier(keys: store, unknownKeyHandler: stubborn)
        #expect(await Self.reason(refusing, try Self.token("k3")) == .unknownKey)
        #expect(stubborn.calls.withLock { $0 } == 1)
        // Not asked for a known kid with a bad signature, a token without kid, or an unusable algorithm name.
        let forged = try JWTSigner(key: .hmac(secret: "another-secret-0123456789abcdef", kid: "k1")).sign(Self.claims)
        #expect(await Self.reason(refusing, forged) == .badSignature)
        let noKid = try JWTSigner(key: .hmac(secret: "another-secret-0123456789abcdef")).sign(Self.claims)
        #expect(await Self.reason(refusing, noKid) == .badSignature)
        #expect(stubborn.calls.withLock { $0 } == 1)
        // A kid for an algorithm no key serves yet (a new key type at the provider) asks too.
        let es256 = try JWTSigner(key: Fixtures.privateKey(for: .es256, kid: "ec-1")).sign(Self.claims)
        #expect(await Self.reason(refusing, es256) == .unsupportedAlgorithm)
        #expect(stubborn.calls.withLock { $0 } == 2)
        // The synchronous verify(_:at:) never asks.
        #expect(throws: TokenVerificationError.self) { try refusing.verify(Self.token("k4"), at: .now()) }
        #expect(stubborn.calls.withLock { $0 } == 2)
    }
}
