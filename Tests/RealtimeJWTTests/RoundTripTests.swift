// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

@Suite struct RoundTripTests {
    static let claims: JSONObject = [
        "sub": "user-1", "sid": "session-1", "exp": .int(referenceNow.secondsSinceEpoch + 600),
        "iat": .int(referenceNow.secondsSinceEpoch), "roles": ["user", "admin"],
    ]

    @Test(arguments: JWTAlgorithm.allCases)
    func signsAndVerifies(_ algorithm: JWTAlgorithm) throws {
        let signer = try JWTSigner(key: Fixtures.privateKey(for: algorithm, kid: "k1"))
        let token = try signer.sign(Self.claims)
        let verifier = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: algorithm, kid: "k1")]))
        let identity = try verifier.verify(token, at: referenceNow)
        #expect(identity.userID == "user-1")
        #expect(identity.sessionID == "session-1")
        #expect(identity.roles == ["user", "admin"])
        #expect(identity.isAdmin == false)
        #expect(identity.issuedAt == referenceNow)
        let (header, _) = try verifier.verifySignature(token)
        #expect(header == ["alg": .string(algorithm.name), "typ": "JWT", "kid": "k1"])

        // Any change to the signing input breaks the signature.
        let parts = token.split(separator: ".").map(String.init)
        var payload = Self.claims
        payload["sub"] = "user-2"
        let swapped = parts[0] + "." + Base64URL.encode(JSONWriter.bytes(.object(payload))) + "." + parts[2]
        #expect(refusal { try verifier.verify(swapped, at: referenceNow) } == .badSignature)
    }

    @Test(arguments: JWTAlgorithm.allCases.filter { !$0.isHMAC })
    func privateJWKSignsAndPublicJWKVerifies(_ algorithm: JWTAlgorithm) throws {
        let keyName = Fixtures.keyName(for: algorithm)
        let privateKey = try JWTKey.jwk(Fixtures.jwkText(keyName, "private_jwk"), algorithm: algorithm)
        var publicJWK = Fixtures.key(keyName)["public_jwk"]!.objectValue!
        publicJWK["key_ops"] = nil
        let publicKey = try JWTKey.jwk(publicJWK, algorithm: algorithm)
        #expect(privateKey.canSign && !publicKey.canSign)
        let token = try JWTSigner(key: privateKey).sign(Self.claims)
        let verifier = JWTVerifier(keys: JWTKeySet([publicKey]))
        #expect(try verifier.verify(token, at: referenceNow).userID == "user-1")
    }

    @Test func legacyPEMFormsLoad() throws {
        // PKCS#1 RSA public and private keys, SEC 1 EC private key.
        let rsaPublic = try JWTKey.publicKey(pem: Fixtures.string("rsa", "public_pem_pkcs1"), algorithm: .rs256)
        let rsaPrivate = try JWTKey.privateKey(pem: Fixtures.string("rsa", "private_pem_pkcs1"), algorithm: .rs256)
        let token = try JWTSigner(key: rsaPrivate).sign(Self.claims)
        #expect(try JWTVerifier(keys: JWTKeySet([rsaPublic])).verify(token, at: referenceNow).userID == "user-1")
        let ecPrivate = try JWTKey.privateKey(pem: Fixtures.string("ec-P-256", "private_pem_sec1"), algorithm: .es256)
        let ecToken = try JWTSigner(key: ecPrivate).sign(Self.claims)
        let ecPublic = try Fixtures.publicKey(for: .es256)
        #expect(try JWTVerifier(keys: JWTKeySet([ecPublic])).verify(ecToken, at: referenceNow).userID == "user-1")
    }

    @Test func keysAreBoundToTheirAlgorithms() throws {
        let rsaPEM = Fixtures.string("rsa", "public_pem")
        // An RSA key is never an HMAC key, and a P-256 key is only ES256.
        #expect(throws: JWTError.self) { try JWTKey.publicKey(pem: rsaPEM, algorithm: .hs256) }
        #expect(throws: JWTError.self) { try JWTKey.publicKey(pem: rsaPEM, algorithm: .es256) }
        #expect(throws: JWTError.self) {
            try JWTKey.publicKey(pem: Fixtures.string("ec-P-256", "public_pem"), algorithm: .es384)
        }
        #expect(throws: JWTError.self) { try JWTKey.hmac(secret: "secret", algorithms: [.rs256]) }
        #expect(throws: JWTError.self) { try JWTKey.hmac(secret: "", algorithms: [.hs256]) }
        // A private PEM is not a public PEM and vice versa; garbage is refused.
        #expect(throws: JWTError.self) {
            try JWTKey.publicKey(pem: Fixtures.string("rsa", "private_pem"), algorithm: .rs256)
        }
        #expect(throws: JWTError.self) { try JWTKey.privateKey(pem: rsaPEM, algorithm: .rs256) }
        #expect(throws: JWTError.self) {
            try JWTKey.publicKey(pem: "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", algorithm: .rs256)
        }
        // A public key cannot sign; an HS256 key does not sign HS512.
        #expect(throws: JWTError.self) { try JWTSigner(key: Fixtures.publicKey(for: .rs256)) }
        #expect(throws: JWTError.self) { try JWTSigner(key: .hmac(secret: "s"), algorithm: .hs512) }
        // An RSA key serving RS256 and PS256 verifies both, but not RS512.
        let both = try JWTKey.privateKey(pem: Fixtures.string("rsa", "private_pem"), algorithms: [.rs256, .ps256])
        let verifier = JWTVerifier(keys: JWTKeySet([both]))
        for algorithm in [JWTAlgorithm.rs256, .ps256] {
            let token = try JWTSigner(key: both, algorithm: algorithm).sign(Self.claims)
            #expect(try verifier.verify(token, at: referenceNow).userID == "user-1")
        }
        let rs512 = try JWTSigner(key: Fixtures.privateKey(for: .rs512)).sign(Self.claims)
        #expect(refusal { try verifier.verify(rs512, at: referenceNow) } == .unsupportedAlgorithm)
    }
}
