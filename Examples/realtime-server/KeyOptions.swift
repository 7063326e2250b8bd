// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Foundation
import Logging
import RealtimeCore
import RealtimeJWKS
import RealtimeJWT

/// A configuration problem reported to the operator (exit code 2, no stack trace).
struct ConfigurationError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Where the verification key comes from: the same options for `serve`, `token` and `verify-token`, each
/// with an environment variable.
struct KeyOptions: ParsableArguments {
    @Option(help: "File holding the HMAC secret (env JWT_SECRET_FILE; or JWT_SECRET with the secret itself).")
    var secretFile: String?

    @Option(
        help: """
            File holding the refresh-token HMAC secret (env JWT_REFRESH_SECRET_FILE; or JWT_REFRESH_SECRET): tokens \
            it verifies are refused (wrong_token_type); `token --refresh` signs with it.
            """
    )
    var refreshSecretFile: String?

    @Option(help: "PEM file of the public key (env JWT_PUBLIC_KEY_FILE); needs --alg.")
    var publicKey: String?

    @Option(help: "PEM file of the private key, for `token` with RS*/PS*/ES*/EdDSA (env JWT_PRIVATE_KEY_FILE).")
    var privateKey: String?

    @Option(help: "Algorithm of --public-key/--private-key or of the secret (env JWT_ALGORITHM; default HS256).")
    var alg: String?

    @Option(help: "File holding a JWK Set (env JWT_JWKS_FILE).")
    var jwks: String?

    @Option(
        help: """
            HTTPS URL of a JWK Set, fetched and kept fresh by `serve` (env JWT_JWKS_URL); excludes the secret, \
            public key and JWK Set file.
            """
    )
    var jwksURL: String?

    @Option(
        help: """
            OpenID Connect issuer whose /.well-known/openid-configuration names the JWK Set (env JWT_OIDC_ISSUER); \
            like --jwks-url.
            """
    )
    var oidcIssuer: String?

    @Option(
        help: "PEM file of the CAs trusted for --jwks-url/--oidc-issuer instead of the system's (env JWT_JWKS_CA_FILE)."
    )
    var jwksCAFile: String?

    @Option(help: "Required issuer, `iss` (env JWT_ISSUER).")
    var issuer: String?

    @Option(help: "Accepted audience, `aud`; repeatable (env JWT_AUDIENCE, comma-separated).")
    var audience: [String] = []

    /// The HMAC secret, if one is configured.
    func secret(_ environment: [String: String]) throws -> [UInt8]? {
        try Self.secret(file: secretFile, variable: "JWT_SECRET", environment)
    }

    /// The refresh-token HMAC secret, if one is configured.
    func refreshSecret(_ environment: [String: String]) throws -> [UInt8]? {
        try Self.secret(file: refreshSecretFile, variable: "JWT_REFRESH_SECRET", environment)
    }

    /// A secret from `file`, else from the file named by `<variable>_FILE`, else from `variable` itself.
    private static func secret(file: String?, variable: String, _ environment: [String: String]) throws -> [UInt8]? {
        if let file = file ?? environment[variable + "_FILE"] {
            return Array(try readFile(file).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        }
        if let secret = environment[variable], !secret.isEmpty { return Array(secret.utf8) }
        return nil
    }

    /// Whether any key is configured (then the server runs the JWT verifier with it).
    func isConfigured(_ environment: [String: String]) -> Bool {
        hasLocalKeys(environment) || jwksURL != nil || oidcIssuer != nil
            || ["JWT_JWKS_URL", "JWT_OIDC_ISSUER"].contains { !(environment[$0] ?? "").isEmpty }
    }

    /// Whether access keys come from a secret, a PEM file or a JWK Set file.
    private func hasLocalKeys(_ environment: [String: String]) -> Bool {
        secretFile != nil || publicKey != nil || jwks != nil
            || ["JWT_SECRET", "JWT_SECRET_FILE", "JWT_PUBLIC_KEY_FILE", "JWT_JWKS_FILE"].contains {
                !(environment[$0] ?? "").isEmpty
            }
    }

    /// The remote key set (`--jwks-url` or `--oidc-issuer`), if one is configured.
    ///
    /// - Throws: ``ConfigurationError`` when both are set, when local access keys are set too, or when the URL is
    ///   not https.
    func remoteKeySet(_ environment: [String: String]) throws -> JWKSKeyProvider.Configuration? {
        func value(_ flag: String?, _ variable: String) -> String? {
            (flag ?? environment[variable]).flatMap { $0.isEmpty ? nil : $0 }
        }
        let url = value(jwksURL, "JWT_JWKS_URL")
        let issuer = value(oidcIssuer, "JWT_OIDC_ISSUER")
        let source: JWKSKeyProvider.Configuration.Source
        switch (url, issuer) {
        case (nil, nil): return nil
        case (let url?, nil): source = .url(url)
        case (nil, let issuer?): source = .openIDIssuer(issuer)
        case (_?, _?): throw ConfigurationError("JWT_JWKS_URL and JWT_OIDC_ISSUER exclude each other")
        }
        guard !hasLocalKeys(environment) else {
            throw ConfigurationError(
                "JWT_JWKS_URL/JWT_OIDC_ISSUER exclude JWT_SECRET, JWT_PUBLIC_KEY_FILE and JWT_JWKS_FILE: the access "
                    + "keys come from one place (JWT_REFRESH_SECRET may be set)"
            )
        }
        let configuration = JWKSKeyProvider.Configuration(
            source: source,
            caFile: value(jwksCAFile, "JWT_JWKS_CA_FILE")
        )
        do {
            try configuration.validate()
        } catch {
            throw ConfigurationError("JWT_JWKS_URL/JWT_OIDC_ISSUER: \(error.message)")
        }
        return configuration
    }

    /// The key files that a reload re-reads (secrets given in the environment itself cannot change).
    func keyFiles(_ environment: [String: String]) -> [String] {
        [
            secretFile ?? environment["JWT_SECRET_FILE"], refreshSecretFile ?? environment["JWT_REFRESH_SECRET_FILE"],
            publicKey ?? environment["JWT_PUBLIC_KEY_FILE"], jwks ?? environment["JWT_JWKS_FILE"],
        ].compactMap { $0.flatMap { $0.isEmpty ? nil : $0 } }
    }

    /// Refuses secrets shorter than 32 bytes outside development mode (the refresh secret guards as much as the
    /// access secret); in development mode, warns.
    func checkSecretStrength(_ environment: [String: String], developmentMode: Bool, logger: Logger) throws {
        let secrets = [("JWT secret", try secret(environment)), ("JWT refresh secret", try refreshSecret(environment))]
        for case (let name, let secret?) in secrets where secret.count < 32 {
            guard developmentMode else {
                throw ConfigurationError(
                    "the \(name) is \(secret.count) bytes; outside development mode it must be at least 32 "
                        + "random bytes (e.g. `openssl rand -hex 32`)"
                )
            }
            logger.warning("the \(name) is shorter than 32 bytes; acceptable in development only")
        }
    }

    func algorithm(_ environment: [String: String]) throws -> JWTAlgorithm? {
        guard let name = alg ?? environment["JWT_ALGORITHM"] else { return nil }
        guard let algorithm = JWTAlgorithm(name: name.uppercased() == "EDDSA" ? "EdDSA" : name.uppercased()) else {
            throw ConfigurationError("unknown JWT algorithm '\(name)'")
        }
        return algorithm
    }

    /// The verification keys.
    func keySet(_ environment: [String: String]) throws -> JWTKeySet {
        var keys: [JWTKey] = []
        if let secret = try secret(environment) {
            let algorithm = try algorithm(environment) ?? .hs256
            keys.append(try JWTKey.hmac(secret: secret, algorithms: [algorithm]))
        }
        if let file = publicKey ?? environment["JWT_PUBLIC_KEY_FILE"] {
            guard let algorithm = try algorithm(environment) else {
                throw ConfigurationError("--public-key needs --alg (or JWT_ALGORITHM), e.g. RS256 or ES256")
            }
            keys.append(try JWTKey.publicKey(pem: try readFile(file), algorithm: algorithm))
        }
        if let file = jwks ?? environment["JWT_JWKS_FILE"] {
            keys.append(contentsOf: try JWTKeySet(jwks: try readFile(file)).keys)
        }
        return JWTKeySet(keys)
    }

    /// The refresh key: the refresh secret for every HMAC algorithm (it never accepts a token, so serving
    /// them all only widens what is recognised as a refresh token), or none.
    func refreshKeySet(_ environment: [String: String]) throws -> JWTKeySet {
        guard let secret = try refreshSecret(environment) else { return .empty }
        return JWTKeySet([try JWTKey.hmac(secret: secret, algorithms: [.hs256, .hs384, .hs512])])
    }

    /// A key store of `keys` with the refresh key, if any.
    ///
    /// - Throws: ``ConfigurationError`` when the refresh secret is the access secret.
    func keyStore(keys: JWTKeySet, _ environment: [String: String]) throws -> JWTKeyStore {
        do {
            return try JWTKeyStore(keys: keys, refreshKeys: try refreshKeySet(environment))
        } catch {
            // The one refusal: a refresh key that is also an access key.
            throw ConfigurationError(
                "JWT_REFRESH_SECRET must differ from JWT_SECRET: with one secret every refresh token would be an "
                    + "access token"
            )
        }
    }

    /// The verifier's checks: issuer, audiences, the claims mapping the server uses, and refresh tokens
    /// refused by their markers (`typ`/`token_use`/`type` claims, `typ` header).
    func verifierConfiguration(_ environment: [String: String]) -> JWTVerifier.Configuration {
        var configuration = JWTVerifier.Configuration(
            issuer: issuer ?? environment["JWT_ISSUER"],
            audiences: Set(audiences(environment))
        )
        configuration.claims.admin = .arrayContains("roles", "admin")
        configuration.refreshTokenMarkers = .standard
        return configuration
    }

    func audiences(_ environment: [String: String]) -> [String] {
        if !audience.isEmpty { return audience }
        return (environment["JWT_AUDIENCE"] ?? "").split(separator: ",").map {
            $0.trimmingCharacters(in: .whitespaces)
        }.filter { !$0.isEmpty }
    }

    /// A signer for `token --refresh`: the refresh secret, with JWT_ALGORITHM when it is an HMAC one.
    func refreshSigner(_ environment: [String: String]) throws -> JWTSigner? {
        guard let secret = try refreshSecret(environment) else { return nil }
        let configured = try algorithm(environment)
        let algorithm = configured.flatMap { $0.isHMAC ? $0 : nil } ?? .hs256
        return try JWTSigner(key: JWTKey.hmac(secret: secret, algorithms: [algorithm]))
    }

    /// A signer for `token`: the secret, or the private key.
    func signer(_ environment: [String: String]) throws -> JWTSigner? {
        if let file = privateKey ?? environment["JWT_PRIVATE_KEY_FILE"] {
            guard let algorithm = try algorithm(environment) else {
                throw ConfigurationError("--private-key needs --alg (or JWT_ALGORITHM), e.g. RS256 or ES256")
            }
            return try JWTSigner(key: JWTKey.privateKey(pem: try readFile(file), algorithm: algorithm))
        }
        if let secret = try secret(environment) {
            let algorithm = try algorithm(environment) ?? .hs256
            return try JWTSigner(key: JWTKey.hmac(secret: secret, algorithms: [algorithm]))
        }
        return nil
    }
}

func readFile(_ path: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ConfigurationError("cannot read \(path)")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw ConfigurationError("\(path) is not UTF-8 text") }
    return text
}

/// Mints a token with the claims the server's verifier maps; `type`, if any, goes into `typ`
/// (`refresh` for a refresh token).
func mintToken(
    signer: JWTSigner,
    userID: String,
    sessionID: String?,
    admin: Bool,
    lifetime: Duration,
    issuer: String?,
    audience: String?,
    type: String? = nil
) throws -> String {
    let now = Timestamp.now()
    var claims: JSONObject = [
        "sub": .string(userID),
        "iat": .int(now.secondsSinceEpoch),
        "exp": .int((now + lifetime).secondsSinceEpoch),
        "jti": .string(RandomID.hex(bytes: 8)),
    ]
    if let sessionID { claims["sid"] = .string(sessionID) }
    if admin { claims["roles"] = ["admin"] }
    if let issuer { claims["iss"] = .string(issuer) }
    if let audience { claims["aud"] = .string(audience) }
    if let type { claims["typ"] = .string(type) }
    return try signer.sign(claims)
}
