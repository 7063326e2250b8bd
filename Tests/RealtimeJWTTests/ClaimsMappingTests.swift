// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

@Suite struct ClaimsMappingTests {
    let signer = try! JWTSigner(key: .hmac(secret: "mapping-secret"))
    let keys = JWTKeySet([try! .hmac(secret: "mapping-secret")])

    func identity(
        _ claims: JSONObject,
        _ mapping: JWTVerifier.ClaimsMapping
    ) throws -> VerifiedIdentity {
        var all = claims
        all["exp"] = .int(referenceNow.secondsSinceEpoch + 60)
        let verifier = JWTVerifier(keys: keys, configuration: .init(claims: mapping))
        return try verifier.verify(signer.sign(all), at: referenceNow)
    }

    @Test func mapsUserAndSessionFromConfiguredClaims() throws {
        let mapping = JWTVerifier.ClaimsMapping(userIDClaim: "uid", sessionIDClaim: "session", rolesClaim: "groups")
        let identity = try identity(["uid": "u-9", "session": "s-9", "groups": "ops", "sub": "ignored"], mapping)
        #expect(identity.userID == "u-9")
        #expect(identity.sessionID == "s-9")
        #expect(identity.roles == ["ops"])
        let noSession = try self.identity(["sub": "u-1"], .init())
        #expect(noSession.sessionID == nil && noSession.roles.isEmpty && !noSession.isAdmin)
        let unmapped = try self.identity(["sub": "u-1", "sid": 5], .init(sessionIDClaim: nil))
        #expect(unmapped.sessionID == nil)
    }

    @Test func adminFromARoleClaim() throws {
        let rule = JWTVerifier.ClaimsMapping(admin: .claimEquals("role", "admin"))
        #expect(try identity(["sub": "u", "role": "admin"], rule).isAdmin)
        #expect(try !identity(["sub": "u", "role": "user"], rule).isAdmin)
        #expect(try !identity(["sub": "u"], rule).isAdmin)
        #expect(refusal { try identity(["sub": "u", "role": ["admin"]], rule) } == .invalidClaim)
    }

    @Test func adminFromARolesArray() throws {
        let rule = JWTVerifier.ClaimsMapping(admin: .arrayContains("roles", "admin"))
        #expect(try identity(["sub": "u", "roles": ["user", "admin"]], rule).isAdmin)
        #expect(try !identity(["sub": "u", "roles": ["user", "administrator"]], rule).isAdmin)
        #expect(refusal { try identity(["sub": "u", "roles": true], rule) } == .invalidClaim)
    }

    @Test func adminFromAScope() throws {
        let rule = JWTVerifier.ClaimsMapping(admin: .scopeContains("realtime:admin"))
        #expect(try identity(["sub": "u", "scope": "events:read realtime:admin"], rule).isAdmin)
        #expect(try !identity(["sub": "u", "scope": "events:read realtime:administer"], rule).isAdmin)
        #expect(try !identity(["sub": "u", "scope": "realtime:admin2"], rule).isAdmin)
        let scp = JWTVerifier.ClaimsMapping(admin: .scopeContains("realtime:admin", claim: "scp"))
        #expect(try identity(["sub": "u", "scp": ["realtime:admin"]], scp).isAdmin)
        #expect(refusal { try identity(["sub": "u", "scope": 1], rule) } == .invalidClaim)
    }

    @Test func adminFromABooleanClaim() throws {
        let rule = JWTVerifier.ClaimsMapping(admin: .booleanClaim("is_admin"))
        #expect(try identity(["sub": "u", "is_admin": true], rule).isAdmin)
        #expect(try !identity(["sub": "u", "is_admin": false], rule).isAdmin)
        #expect(refusal { try identity(["sub": "u", "is_admin": "true"], rule) } == .invalidClaim)
        let any = JWTVerifier.ClaimsMapping(admin: .anyOf([.booleanClaim("is_admin"), .claimEquals("role", "admin")]))
        #expect(try identity(["sub": "u", "role": "admin"], any).isAdmin)
        #expect(try !identity(["sub": "u", "role": "user", "is_admin": false], any).isAdmin)
    }

    @Test func requiredClaimsMustBePresent() throws {
        let verifier = JWTVerifier(keys: keys, configuration: .init(requiredClaims: ["exp", "sid", "jti"]))
        let exp = JSONValue.int(referenceNow.secondsSinceEpoch + 60)
        #expect(
            refusal { try verifier.verify(signer.sign(["sub": "u", "sid": "s", "exp": exp]), at: referenceNow) }
                == .missingClaim
        )
        #expect(
            refusal {
                try verifier.verify(signer.sign(["sub": "u", "sid": "s", "jti": nil, "exp": exp]), at: referenceNow)
            } == .missingClaim
        )
        #expect(
            refusal {
                try verifier.verify(signer.sign(["sub": "u", "sid": "s", "jti": "1", "exp": exp]), at: referenceNow)
            } == nil
        )
        let lenient = JWTVerifier(keys: keys, configuration: .init(requiredClaims: []))
        #expect(try lenient.verify(signer.sign(["sub": "u"]), at: referenceNow).expiresAt == nil)
    }

    /// `VerifiedIdentity.claims` is built from the parsed payload only when read: it must be the whole payload,
    /// value for value, and the identity must equal (and hash like) one made with the claims as a dictionary.
    @Test func claimsHoldTheWholePayloadWhenFirstRead() async throws {
        let claims: JSONObject = [
            "sub": "u-1", "sid": "s-1", "roles": ["user", "admin"], "exp": .int(referenceNow.secondsSinceEpoch + 60),
            "iat": .double(Double(referenceNow.secondsSinceEpoch) - 0.5), "nbf": nil, "flag": true, "off": false,
            "big": .int(.min), "ratio": 0.25, "nested": ["list": [1, "two", nil, ["deep": true]], "empty": [:]],
            "empty": [], "ключ": "значение", "text": "quote \" backslash \\ tab \t é 🎉",
        ]
        let mapping = JWTVerifier.ClaimsMapping(admin: .arrayContains("roles", "admin"))
        let verifier = JWTVerifier(keys: keys, configuration: .init(claims: mapping))
        let token = try signer.sign(claims)
        let identity = try verifier.verify(token, at: referenceNow)
        let eager = VerifiedIdentity(
            userID: "u-1",
            sessionID: "s-1",
            isAdmin: true,
            roles: ["user", "admin"],
            expiresAt: Timestamp(millisecondsSinceEpoch: (referenceNow.secondsSinceEpoch + 60) * 1000),
            issuedAt: Timestamp(millisecondsSinceEpoch: referenceNow.secondsSinceEpoch * 1000 - 500),
            claims: claims
        )
        #expect(identity == eager)
        #expect(identity.hashValue == eager.hashValue)
        #expect(identity.claims == claims)

        // Many tasks reading the claims of one fresh identity first, at once.
        let fresh = try verifier.verify(token, at: referenceNow)
        let agreed = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<16 { group.addTask { fresh.claims == claims } }
            return await group.reduce(true) { $0 && $1 }
        }
        #expect(agreed)

        // Setting the claims replaces them; the identity the verifier returned is a value like any other.
        var edited = try verifier.verify(token, at: referenceNow)
        edited.claims["extra"] = "x"
        #expect(edited.claims.count == claims.count + 1 && edited != identity)
        edited.claims = claims
        #expect(edited == identity)
    }
}

@Suite struct KeyRotationTests {
    @Test func replacingKeysTakesEffectForTheNextVerification() async throws {
        let old = try JWTKey.hmac(secret: "old-secret", kid: "2026-01")
        let new = try JWTKey.hmac(secret: "new-secret", kid: "2026-02")
        let claims: JSONObject = ["sub": "u", "exp": .int(referenceNow.secondsSinceEpoch + 60)]
        let oldToken = try JWTSigner(key: old).sign(claims)
        let newToken = try JWTSigner(key: new).sign(claims)
        let verifier = JWTVerifier(keys: JWTKeySet([old]))
        #expect(refusal { try verifier.verify(newToken, at: referenceNow) } == .unknownKey)
        try verifier.keyStore.replaceKeys(JWTKeySet([old, new]))  // overlap while both are in use
        #expect(try verifier.verify(oldToken, at: referenceNow).userID == "u")
        #expect(try verifier.verify(newToken, at: referenceNow).userID == "u")
        try verifier.keyStore.replaceKeys(JWTKeySet([new]))
        #expect(refusal { try verifier.verify(oldToken, at: referenceNow) } == .unknownKey)
        #expect(verifier.keys.keys.map(\.kid) == ["2026-02"])
    }

    @Test func verificationsRunConcurrentlyWithRotation() async throws {
        let keyA = try Fixtures.publicKey(for: .es256, kid: "a")
        let keyB = try JWTKey.hmac(secret: "b-secret", kid: "b")
        let claims: JSONObject = ["sub": "u", "exp": .int(Timestamp.now().secondsSinceEpoch + 600)]
        let tokenA = try JWTSigner(key: Fixtures.privateKey(for: .es256, kid: "a")).sign(claims)
        let tokenB = try JWTSigner(key: keyB).sign(claims)
        let verifier = JWTVerifier(keys: JWTKeySet([keyA, keyB]))
        let accepted = await withTaskGroup(of: Int.self) { group in
            group.addTask {
                for round in 0..<200 {
                    // Both sets contain both keys, in different orders: every verification must succeed.
                    let keys = JWTKeySet(round.isMultiple(of: 2) ? [keyB, keyA] : [keyA, keyB])
                    do { try verifier.keyStore.replaceKeys(keys) } catch { Issue.record(error) }
                    await Task.yield()
                }
                return 0
            }
            for worker in 0..<4 {
                group.addTask {
                    var count = 0
                    for _ in 0..<100 {
                        let token = worker.isMultiple(of: 2) ? tokenA : tokenB
                        if (try? await verifier.verify(token)) != nil { count += 1 }
                    }
                    return count
                }
            }
            return await group.reduce(0, +)
        }
        #expect(accepted == 400)
    }
}
