// SPDX-License-Identifier: Apache-2.0

public import RealtimeCore
internal import RealtimeCrypto

extension JWTKey {
    /// A key from a JSON Web Key (RFC 7517): `kty` `oct` (HMAC secret), `RSA`, `EC` (P-256, P-384, P-521) or
    /// `OKP` (Ed25519). A JWK with private members (`d`, or `k` for `oct`) can sign.
    ///
    /// The algorithm comes from the JWK's `alg` member, else from `algorithm`, else from the curve (`EC`:
    /// `ES256`/`ES384`/`ES512`; `OKP`: `EdDSA`). RSA and `oct` keys without either are refused, because their
    /// algorithm cannot be guessed safely.
    ///
    /// - Parameters:
    ///   - json: The JWK as JSON text.
    ///   - algorithm: The algorithm when the JWK has no `alg`; if both are present they must agree.
    /// - Throws: ``JWTError/Code/invalidJWK`` for a JWK of the wrong shape (missing members, a `use` other than
    ///   `sig`, bad base64url), and the errors of the PEM initialisers for unsuitable keys.
    public static func jwk(_ json: String, algorithm: JWTAlgorithm? = nil) throws(JWTError) -> JWTKey {
        let value: JSONValue
        do {
            value = try JSONParser(limits: .init(maxBytes: 1 << 16, maxDepth: 8)).parse(json)
        } catch {
            throw JWTError(.invalidJWK, "the JWK is not valid JSON (\(error.kind.rawValue))")
        }
        guard let object = value.objectValue else { throw JWTError(.invalidJWK, "a JWK is a JSON object") }
        return try jwk(object, algorithm: algorithm)
    }

    /// A key from a parsed JSON Web Key. See ``jwk(_:algorithm:)-(String,_)``.
    public static func jwk(_ object: JSONObject, algorithm: JWTAlgorithm? = nil) throws(JWTError) -> JWTKey {
        try Self.jwk(object, algorithm: algorithm, rsaDefault: [])
    }

    static func jwk(
        _ jwk: JSONObject,
        algorithm: JWTAlgorithm?,
        rsaDefault: Set<JWTAlgorithm>
    ) throws(JWTError) -> JWTKey {
        let reader = JWKReader(object: jwk)
        let kty = try reader.string("kty")
        if let use = try reader.optionalString("use"), use != "sig" {
            throw JWTError(.invalidJWK, "the JWK's use is \"\(use)\", not \"sig\"")
        }
        if let operations = jwk["key_ops"] {
            guard let list = operations.arrayValue, list.allSatisfy({ $0.stringValue != nil }) else {
                throw JWTError(.invalidJWK, "key_ops must be an array of strings")
            }
            let names = list.compactMap(\.stringValue)
            guard names.contains("verify") || names.contains("sign") else {
                throw JWTError(.invalidJWK, "key_ops allows neither sign nor verify")
            }
        }
        let kid = try reader.optionalString("kid")
        var algorithms: Set<JWTAlgorithm>
        if let name = try reader.optionalString("alg") {
            guard let named = JWTAlgorithm(name: name) else {
                throw JWTError(.unsupportedKey, "the JWK's alg \"\(name)\" is not a supported signature algorithm")
            }
            if let algorithm, algorithm != named {
                throw JWTError(.algorithmMismatch, "the JWK says \(named), the caller \(algorithm)")
            }
            algorithms = [named]
        } else if let algorithm {
            algorithms = [algorithm]
        } else {
            algorithms = []
        }

        switch kty {
        case "oct":
            let secret = try reader.bytes("k")
            guard !algorithms.isEmpty else { throw JWTError(.invalidJWK, "an oct JWK needs an alg") }
            // RFC 7518 §3.2: a key at least as long as the hash's output (32, 48 or 64 bytes).
            let minimum = algorithms.map { $0.digest?.length ?? 0 }.max() ?? 0
            guard secret.count >= minimum else {
                throw JWTError(
                    .invalidKey,
                    "the oct JWK's secret is \(secret.count) bytes; RFC 7518 §3.2 requires at least \(minimum) for "
                        + algorithms.map(\.name).sorted().joined(separator: "/")
                )
            }
            return try hmac(secret: secret, algorithms: algorithms, kid: kid)
        case "RSA":
            let n = try reader.bytes("n")
            let e = try reader.bytes("e")
            var components = [n, e]
            if jwk["d"] != nil {
                components.append(try reader.bytes("d"))
                let crt = ["p", "q", "dp", "dq", "qi"]
                guard crt.allSatisfy({ jwk[$0] != nil }) else {
                    throw JWTError(.invalidJWK, "a private RSA JWK needs p, q, dp, dq and qi")
                }
                for name in crt { components.append(try reader.bytes(name)) }
            }
            let key = try EVPKey.loading(refused: "OpenSSL refused the RSA JWK") { () throws(EVPKey.LoadError) in
                try .rsa(components: components)
            }
            guard key.check() else { throw JWTError(.invalidKey, "the RSA JWK fails OpenSSL's consistency check") }
            if algorithms.isEmpty { algorithms = rsaDefault }
            guard !algorithms.isEmpty else { throw JWTError(.invalidJWK, "an RSA JWK needs an alg") }
            return try make(key, algorithms: algorithms, kid: kid)
        case "EC":
            let curve = try reader.string("crv")
            let (group, length, implied): (String, Int, JWTAlgorithm)
            switch curve {
            case "P-256": (group, length, implied) = ("P-256", 32, .es256)
            case "P-384": (group, length, implied) = ("P-384", 48, .es384)
            case "P-521": (group, length, implied) = ("P-521", 66, .es512)
            default: throw JWTError(.unsupportedKey, "EC curve \"\(curve)\" is not supported")
            }
            let x = try reader.bytes("x")
            let y = try reader.bytes("y")
            guard x.count == length, y.count == length else {
                throw JWTError(.invalidJWK, "x and y of a \(curve) JWK are \(length) bytes each")
            }
            var privateScalar: [UInt8] = []
            if jwk["d"] != nil {
                privateScalar = try reader.bytes("d")
                guard privateScalar.count == length else {
                    throw JWTError(.invalidJWK, "d of a \(curve) JWK is \(length) bytes")
                }
            }
            let point = [0x04] + x + y
            let key = try EVPKey.loading(refused: "OpenSSL refused the EC JWK") { () throws(EVPKey.LoadError) in
                try .ec(group: group, point: point, privateScalar: privateScalar)
            }
            guard key.check() else { throw JWTError(.invalidKey, "the EC JWK fails OpenSSL's consistency check") }
            return try make(key, algorithms: algorithms.isEmpty ? [implied] : algorithms, kid: kid)
        case "OKP":
            let curve = try reader.string("crv")
            guard curve == "Ed25519" else { throw JWTError(.unsupportedKey, "OKP curve \"\(curve)\" is not supported") }
            let x = try reader.bytes("x")
            guard x.count == 32 else { throw JWTError(.invalidJWK, "x of an Ed25519 JWK is 32 bytes") }
            let key: EVPKey
            if jwk["d"] != nil {
                let d = try reader.bytes("d")
                guard d.count == 32 else { throw JWTError(.invalidJWK, "d of an Ed25519 JWK is 32 bytes") }
                key = try EVPKey.loading(refused: "OpenSSL refused the Ed25519 JWK") { () throws(EVPKey.LoadError) in
                    try .ed25519(raw: d, isPrivate: true)
                }
                guard key.ed25519PublicKey() == x else { throw JWTError(.invalidKey, "x is not the public key of d") }
            } else {
                key = try EVPKey.loading(refused: "OpenSSL refused the Ed25519 JWK") { () throws(EVPKey.LoadError) in
                    try .ed25519(raw: x, isPrivate: false)
                }
            }
            return try make(key, algorithms: algorithms.isEmpty ? [.eddsa] : algorithms, kid: kid)
        default:
            throw JWTError(.unsupportedKey, "JWK kty \"\(kty)\" is not supported")
        }
    }
}

/// Typed access to JWK members, with errors that name the member (never its value).
private struct JWKReader {
    let object: JSONObject

    func string(_ name: String) throws(JWTError) -> String {
        guard let value = object[name] else { throw JWTError(.invalidJWK, "the JWK has no \(name)") }
        guard let string = value.stringValue else { throw JWTError(.invalidJWK, "the JWK's \(name) is not a string") }
        return string
    }

    func optionalString(_ name: String) throws(JWTError) -> String? {
        guard let value = object[name] else { return nil }
        guard let string = value.stringValue else { throw JWTError(.invalidJWK, "the JWK's \(name) is not a string") }
        return string
    }

    func bytes(_ name: String) throws(JWTError) -> [UInt8] {
        let text = try string(name)
        guard let bytes = Base64URL.decode(text), !bytes.isEmpty else {
            throw JWTError(.invalidJWK, "the JWK's \(name) is not non-empty base64url")
        }
        return bytes
    }
}
