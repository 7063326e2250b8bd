// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWT
import Testing

/// Tokens made by another implementation (PyJWT + cryptography, Fixtures/make_fixtures.py) verified by ours,
/// and tokens made by ours for PyJWT (Fixtures/verify_with_pyjwt.py).
@Suite struct InteropTests {
    static let tokens: [JSONObject] = Fixtures.pyjwt["tokens"]!.arrayValue!.map { $0.objectValue! }

    static var configuration: JWTVerifier.Configuration {
        var configuration = JWTVerifier.Configuration(
            issuer: Fixtures.pyjwt["issuer"]!.stringValue!,
            audiences: [Fixtures.pyjwt["audience"]!.stringValue!],
            tokenType: .claim("typ", equals: "access")
        )
        configuration.claims.admin = .anyOf([.arrayContains("roles", "admin"), .scopeContains("realtime:admin")])
        return configuration
    }

    @Test func fixturesCoverEveryAlgorithm() {
        let algorithms = Set(Self.tokens.map { $0["alg"]!.stringValue! })
        #expect(algorithms == Set(JWTAlgorithm.allCases.map(\.name)))
    }

    @Test(arguments: ["public_pem", "public_jwk", "private_pem", "private_jwk"])
    func verifiesPyJWTTokens(keyForm: String) throws {
        var keys: [JWTKey] = []
        for entry in Self.tokens {
            let algorithm = JWTAlgorithm(name: entry["alg"]!.stringValue!)!
            let keyName = entry["key"]!.stringValue!
            let kid = entry["kid"]!.stringValue!
            if algorithm.isHMAC {
                keys.append(
                    keyForm.hasSuffix("jwk")
                        ? try .jwk(
                            Fixtures.jwkText("hmac", "jwk").replacingOccurrences(of: "}", with: #","kid":"\#(kid)"}"#),
                            algorithm: algorithm
                        )
                        : try .hmac(secret: Fixtures.hmacSecret, algorithms: [algorithm], kid: kid)
                )
            } else if keyForm.hasSuffix("pem") {
                let pem = Fixtures.string(keyName, keyForm)
                keys.append(
                    keyForm.hasPrefix("public")
                        ? try .publicKey(pem: pem, algorithm: algorithm, kid: kid)
                        : try .privateKey(pem: pem, algorithm: algorithm, kid: kid)
                )
            } else {
                var jwk = Fixtures.key(keyName)[keyForm]!.objectValue!
                jwk["kid"] = .string(kid)
                jwk["key_ops"] = nil
                keys.append(try .jwk(jwk, algorithm: algorithm))
            }
        }
        let verifier = JWTVerifier(keys: JWTKeySet(keys), configuration: Self.configuration)
        for entry in Self.tokens {
            let claims = entry["claims"]!.objectValue!
            let token = entry["token"]!.stringValue!
            let identity = try verifier.verify(token, at: referenceNow)
            #expect(identity.userID == claims["sub"]!.stringValue!)
            #expect(identity.sessionID == claims["sid"]!.stringValue!)
            #expect(identity.roles == claims["roles"]!.arrayValue!.map { $0.stringValue! })
            let alg = entry["alg"]!.stringValue!
            #expect(identity.isAdmin == (alg.hasPrefix("ES") || alg.hasPrefix("PS")), "\(alg)")
            #expect(identity.expiresAt == Timestamp(secondsSinceEpoch: 4_102_444_800))
            #expect(identity.claims == claims)
            // And with the real clock (the fixtures expire in 2100).
            _ = try verifier.verify(token, at: .now())
        }
    }

    @Test func verifiesPyJWTTokensThroughAJWKSet() throws {
        var list: [JSONValue] = []
        for entry in Self.tokens where !JWTAlgorithm(name: entry["alg"]!.stringValue!)!.isHMAC {
            var jwk = Fixtures.key(entry["key"]!.stringValue!)["public_jwk"]!.objectValue!
            jwk["kid"] = entry["kid"]!
            jwk["alg"] = entry["alg"]!
            list.append(.object(jwk))
        }
        // An encryption key in the set is skipped, not an error.
        list.append(["kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"])
        let keys = try JWTKeySet(jwks: JSONWriter.string(["keys": .array(list)]))
        #expect(keys.keys.count == 10)
        let verifier = JWTVerifier(keys: keys, configuration: Self.configuration)
        for entry in Self.tokens {
            let algorithm = JWTAlgorithm(name: entry["alg"]!.stringValue!)!
            let result = refusal { try verifier.verify(entry["token"]!.stringValue!, at: referenceNow) }
            #expect(result == (algorithm.isHMAC ? .unsupportedAlgorithm : nil), "\(algorithm)")
        }
    }

    /// Signs a token per algorithm with the fixture keys, checks it with our verifier, and writes the set for
    /// `verify_with_pyjwt.py` to the path in `REALTIMEHUB_JWT_INTEROP_OUT` when that is set.
    @Test func signsTokensForPyJWT() throws {
        var out: [JSONValue] = []
        for algorithm in JWTAlgorithm.allCases {
            let keyName = Fixtures.keyName(for: algorithm)
            let kid = "swift-\(algorithm.name.lowercased())"
            let claims: JSONObject = [
                "sub": .string("swift-\(algorithm.name)"), "sid": "s-1", "iss": "https://auth.example.com",
                "aud": "realtime-hub", "iat": 1_767_225_600, "exp": 4_102_444_800, "typ": "access",
                "roles": ["user"], "name": "Zoë \"quoted\" \u{1F600}",
            ]
            let token = try JWTSigner(key: Fixtures.privateKey(for: algorithm, kid: kid)).sign(claims)
            let verifier = JWTVerifier(
                keys: JWTKeySet([try Fixtures.publicKey(for: algorithm, kid: kid)]),
                configuration: Self.configuration
            )
            #expect(try verifier.verify(token, at: referenceNow).claims == claims)
            out.append([
                "alg": .string(algorithm.name), "key": .string(keyName), "token": .string(token),
                "claims": .object(claims),
            ])
        }
        if let path = ProcessInfo.processInfo.environment["REALTIMEHUB_JWT_INTEROP_OUT"] {
            let text = JSONWriter.string(["generator": "RealtimeJWT JWTSigner", "tokens": .array(out)])
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }
    }
}
