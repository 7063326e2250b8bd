// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCore

/// The keys a ``JWTVerifier`` accepts, chosen per token by its `kid` header and `alg`.
///
/// A token with a `kid` is checked only against the keys with that identifier; a token without one against
/// every key bound to its algorithm. A key set is an immutable value: to rotate keys, build a new set and
/// hand it to ``JWTKeyStore/replaceKeys(_:)``.
///
/// ```swift
/// let keys = try JWTKeySet(jwks: jwksJSON)                      // e.g. an identity provider's JWKS
/// let both = JWTKeySet([try .hmac(secret: secret), try .publicKey(pem: pem, algorithm: .rs256, kid: "k1")])
/// ```
public struct JWTKeySet: Sendable {
    /// The keys, in the order given.
    public let keys: [JWTKey]
    private let byKID: [String: [Int]]
    /// Every algorithm some key serves.
    let algorithms: AlgorithmSet

    /// A set of keys. Several keys may share a `kid` if they serve different algorithms (or during a rotation).
    public init(_ keys: [JWTKey]) {
        self.keys = keys
        var byKID: [String: [Int]] = [:]
        var algorithms = AlgorithmSet([])
        for (index, key) in keys.enumerated() {
            if let kid = key.kid { byKID[kid, default: []].append(index) }
            algorithms.mask |= key.allowed.mask
        }
        self.byKID = byKID
        self.algorithms = algorithms
    }

    /// An empty key set: every token is refused (`TokenVerificationError.Reason.unsupportedAlgorithm`).
    public static let empty = JWTKeySet([])

    /// The keys of a JWK Set (RFC 7517 §5): `{"keys": [ … ]}`.
    ///
    /// Keys meant for encryption (`use` `enc`), or of a type or algorithm this library does not verify
    /// (e.g. `RSA-OAEP`, X25519), are skipped, as RFC 7517 §5 asks of implementations that meet keys they do
    /// not understand; a key of a supported type that is malformed makes the whole set fail, so a typo is
    /// noticed rather than silently dropped.
    ///
    /// A set read from a URL is public: pass `publicKeysOnly` for it, and a symmetric (`oct`) key or a private key
    /// in it fails the whole set, since anyone who reads the set could sign tokens with such a key.
    ///
    /// - Parameters:
    ///   - json: The JWK Set as JSON text.
    ///   - rsaAlgorithms: The algorithms of RSA keys that have no `alg` member (some providers omit it).
    ///   - publicKeysOnly: Refuse `oct` keys and keys with private members (`d`). Default `false` (a local file
    ///     may hold the secrets this process signs with).
    /// - Throws: ``JWTError`` when the text is not a JWK Set, a supported key in it is malformed (an `oct` secret
    ///   shorter than RFC 7518 §3.2 allows included), or `publicKeysOnly` is set and a key is not public.
    public init(
        jwks json: String,
        rsaAlgorithms: Set<JWTAlgorithm> = [.rs256],
        publicKeysOnly: Bool = false
    ) throws(JWTError) {
        let value: JSONValue
        do {
            value = try JSONParser(limits: .init(maxBytes: 1 << 20, maxDepth: 8)).parse(json)
        } catch {
            throw JWTError(.invalidJWK, "the JWK Set is not valid JSON (\(error.kind.rawValue))")
        }
        guard let list = value["keys"]?.arrayValue else {
            throw JWTError(.invalidJWK, "a JWK Set is an object with a \"keys\" array")
        }
        var keys: [JWTKey] = []
        for (index, entry) in list.enumerated() {
            guard let object = entry.objectValue else { throw JWTError(.invalidJWK, "keys[\(index)] is not an object") }
            if object["use"]?.stringValue == "enc" { continue }
            if publicKeysOnly, object["kty"]?.stringValue == "oct" || object["d"] != nil {
                let what = object["kty"]?.stringValue == "oct" ? "a symmetric (oct) key" : "a private key (d)"
                throw JWTError(
                    .invalidJWK,
                    "keys[\(index)] is \(what): a JWK Set served over the network is public and may hold public keys "
                        + "only (anyone who reads it could sign tokens)"
                )
            }
            do {
                keys.append(try JWTKey.jwk(object, algorithm: nil, rsaDefault: rsaAlgorithms))
            } catch  where error.code == .unsupportedKey {
                continue
            } catch {
                throw JWTError(error.code, "keys[\(index)]: \(error.message)")
            }
        }
        self.init(keys)
    }

    /// The keys whose `kid` is `kid`.
    func keys(withKID kid: String) -> [Int] { byKID[kid] ?? [] }
}
