// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

/// Refresh tokens are never access tokens: refused by their markers, or by the refresh key that signed them,
/// and the refresh key never accepts anything.
@Suite struct RefreshTokenTests {
    static let accessSecret = "access-secret-0123456789abcdef0123456789"
    static let refreshSecret = "refresh-secret-0123456789abcdef012345678"

    /// HS256 under the access secret, RS256 by `kid`, and the refresh secret as refresh key (every HS*).
    let verifier: JWTVerifier
    let signer: JWTSigner
    let refreshSigner: JWTSigner

    init() throws {
        verifier = try JWTVerifier(
            keys: JWTKeySet([
                try .hmac(secret: Self.accessSecret),
                try .publicKey(pem: Fixtures.string("rsa", "public_pem"), algorithm: .rs256, kid: "rsa-1"),
            ]),
            refreshKeys: JWTKeySet([try .hmac(secret: Self.refreshSecret, algorithms: [.hs256, .hs384, .hs512])]),
            configuration: .init(issuer: "auth-service", audiences: ["realtime-hub"])
        )
        signer = try JWTSigner(key: .hmac(secret: Self.accessSecret))
        refreshSigner = try JWTSigner(key: .hmac(secret: Self.refreshSecret))
    }

    /// Valid access-token claims without a type, with `changes` (`null` removes a claim).
    static func claims(_ changes: JSONObject = [:]) -> JSONObject {
        var changes = changes
        if changes["typ"] == nil { changes["typ"] = .null }
        return AttackTests.claims(changes)
    }

    func reason(_ token: String, _ verifier: JWTVerifier? = nil) -> TokenVerificationError.Reason? {
        refusal { try (verifier ?? self.verifier).verify(token, at: referenceNow) }
    }

    static let refreshValues = [
        "refresh", "Refresh", "REFRESH", "refresh_token", "Refresh_Token", "refresh-token", "refresh+jwt",
        "Refresh+JWT", "application/refresh+jwt", "Application/Refresh+JWT", " refresh ", "refresh+jwt; v=1",
    ]

    @Test(arguments: ["typ", "token_use", "type"], refreshValues)
    func refreshClaimIsRefused(_ claim: String, _ value: String) throws {
        let token = try signer.sign(Self.claims([claim: .string(value)]))
        #expect(reason(token) == .wrongTokenType)
        // In an array of strings too.
        #expect(reason(try signer.sign(Self.claims([claim: ["x", .string(value)]]))) == .wrongTokenType)
    }

    @Test(arguments: refreshValues)
    func refreshHeaderTypeIsRefused(_ value: String) throws {
        #expect(reason(try signer.sign(Self.claims(), header: ["typ": .string(value)])) == .wrongTokenType)
    }

    @Test func refreshMarkerWinsOverOtherFaults() throws {
        let now = referenceNow.secondsSinceEpoch
        // Expired, or for another audience: still said to be a refresh token (the signature verified).
        #expect(reason(try signer.sign(Self.claims(["typ": "refresh", "exp": .int(now - 3600)]))) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["type": "refresh", "aud": "other"]))) == .wrongTokenType)
        // A forged token that claims to be a refresh token is refused for its signature.
        let forged = try JWTSigner(key: .hmac(secret: "not-our-secret-0123456789abcdef0123456789"))
        #expect(reason(try forged.sign(Self.claims(["typ": "refresh"]))) == .badSignature)
        #expect(reason(try forged.sign(Self.claims(), header: ["typ": "refresh+jwt"])) == .badSignature)
    }

    @Test(arguments: [
        ("typ", "access"), ("token_use", "access"), ("type", "access"), ("typ", "at+jwt"), ("typ", "JWT"),
        ("typ", "refreshed"), ("token_use", "id"), ("typ", "application/at+jwt"),
    ])
    func accessMarkersAreAccepted(_ claim: String, _ value: String) throws {
        #expect(reason(try signer.sign(Self.claims([claim: .string(value)]))) == nil)
    }

    @Test func accessHeaderTypesAndOtherJSONTypesAreAccepted() throws {
        for typ in ["JWT", "jwt", "at+jwt", "application/at+jwt", "AT+JWT"] {
            #expect(reason(try signer.sign(Self.claims(), header: ["typ": .string(typ)])) == nil, "\(typ)")
        }
        // A marker claim of another JSON type is not a refresh marker (and `type` may be the host's own claim).
        for value: JSONValue in [3, true, ["kind": "refresh"], [1, 2]] {
            #expect(reason(try signer.sign(Self.claims(["type": value]))) == nil, "\(value)")
        }
        // A header parameter other than typ is not read.
        #expect(reason(try signer.sign(Self.claims(), header: ["cty": "refresh"])) == nil)
    }

    @Test func refreshKeySignedTokenIsRefusedEvenWithoutType() throws {
        #expect(reason(try refreshSigner.sign(Self.claims())) == .wrongTokenType)
        #expect(reason(try refreshSigner.sign(Self.claims(["typ": "access"]))) == .wrongTokenType)
        #expect(reason(try refreshSigner.sign(Self.claims(), header: ["typ": "at+jwt"])) == .wrongTokenType)
        // Every HMAC algorithm the refresh key serves, and a kid none of the access keys has.
        let hs512 = try JWTSigner(key: .hmac(secret: Self.refreshSecret, algorithms: [.hs512]))
        #expect(reason(try hs512.sign(Self.claims())) == .wrongTokenType)
        let withKID = try JWTSigner(key: .hmac(secret: Self.refreshSecret, kid: "refresh-1"))
        #expect(reason(try withKID.sign(Self.claims())) == .wrongTokenType)
        // Whatever its claims say: expired, no subject, not even JSON.
        let now = referenceNow.secondsSinceEpoch
        #expect(reason(try refreshSigner.sign(Self.claims(["exp": .int(now - 3600), "sub": nil]))) == .wrongTokenType)
        #expect(
            reason(try refreshSigner.sign(rawHeader: Array(#"{"alg":"HS256"}"#.utf8), rawPayload: [0x5B]))
                == .wrongTokenType
        )
    }

    @Test func refreshKeyNeverAccepts() throws {
        // Access-token claims of every shape, signed with the refresh secret: none is ever accepted.
        let variants: [JSONObject] = [
            [:], ["typ": "access"], ["token_use": "access"], ["roles": ["admin"]], ["aud": nil], ["iss": nil],
        ]
        for changes in variants {
            #expect(reason(try refreshSigner.sign(Self.claims(changes))) == .wrongTokenType, "\(changes)")
        }
        // A verifier with refresh keys only accepts nothing, and says why.
        let refreshOnly = try JWTVerifier(keys: .empty, refreshKeys: verifier.refreshKeys)
        #expect(reason(try refreshSigner.sign(Self.claims(["aud": nil])), refreshOnly) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["aud": nil])), refreshOnly) == .unsupportedAlgorithm)
    }

    @Test func refreshKeyOpensNoBypass() throws {
        let token = try refreshSigner.sign(Self.claims())
        let parts = token.split(separator: ".").map(String.init)
        // A payload changed after signing verifies under no key.
        let tampered = Base64URL.encode(JSONWriter.bytes(.object(Self.claims(["sub": "admin"]))))
        #expect(reason("\(parts[0]).\(tampered).\(parts[2])") == .badSignature)
        #expect(reason("\(parts[0]).\(parts[1]).\(parts[2].dropFirst(4))") == .badSignature)
        #expect(reason("\(parts[0]).\(parts[1]).") == .badSignature)
        #expect(reason("\(parts[0]).\(parts[1]).\(parts[2])=") == .malformed)
        // Algorithm confusion: the refresh key serves HMAC only, so an RS256 or none header is never tried on it.
        for header in [#"{"alg":"RS256","kid":"rsa-1"}"#, #"{"alg":"RS256"}"#, #"{"alg":"PS256"}"#] {
            let hmacOverRSAHeader = try refreshSigner.sign(
                rawHeader: Array(header.utf8),
                rawPayload: JSONWriter.bytes(.object(Self.claims()))
            )
            #expect(reason(hmacOverRSAHeader) != .wrongTokenType, "\(header)")
            #expect(reason(hmacOverRSAHeader) != nil, "\(header)")
        }
        #expect(reason(b64(#"{"alg":"none"}"#) + ".\(parts[1]).") == .unsupportedAlgorithm)
        #expect(reason(b64(#"{"alg":"none"}"#) + ".\(parts[1]).\(parts[2])") == .unsupportedAlgorithm)
        // HS256 keyed with the RSA public key's PEM: neither the access nor the refresh key verifies it.
        let pemKeyed = try JWTSigner(key: .hmac(secret: Fixtures.string("rsa", "public_pem")))
        #expect(reason(try pemKeyed.sign(Self.claims())) == .badSignature)
        // Reasons for tokens no key verifies are those of a verifier without refresh keys.
        let plain = JWTVerifier(keys: verifier.keys, configuration: verifier.configuration)
        let stranger = try JWTSigner(key: .hmac(secret: "stranger-0123456789abcdef0123456789ab", kid: "refresh-1"))
        let hs384 = try JWTSigner(key: .hmac(secret: "stranger-0123456789abcdef0123456789ab", algorithms: [.hs384]))
        for token in [
            try stranger.sign(Self.claims()), try hs384.sign(Self.claims()), try pemKeyed.sign(Self.claims()),
        ] {
            #expect(reason(token) == reason(token, plain))
            #expect(reason(token) != nil)
        }
        #expect(reason(try stranger.sign(Self.claims())) == .unknownKey)
        #expect(reason(try hs384.sign(Self.claims())) == .unsupportedAlgorithm)
    }

    @Test func refreshKeyIsRecognisedBesideAsymmetricAccessKeys() throws {
        let rsaOnly = try JWTVerifier(
            keys: JWTKeySet([try .publicKey(pem: Fixtures.string("rsa", "public_pem"), algorithm: .rs256, kid: "rsa-1")]
            ),
            refreshKeys: verifier.refreshKeys,
            configuration: verifier.configuration
        )
        let rsaSigner = try JWTSigner(key: Fixtures.privateKey(for: .rs256, kid: "rsa-1"))
        #expect(reason(try rsaSigner.sign(Self.claims()), rsaOnly) == nil)
        #expect(reason(try refreshSigner.sign(Self.claims()), rsaOnly) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims()), rsaOnly) == .unsupportedAlgorithm)
    }

    @Test func markersCanBeConfiguredOrTurnedOff() throws {
        var configuration = verifier.configuration
        configuration.refreshTokenMarkers = nil
        let off = try JWTVerifier(keys: verifier.keys, refreshKeys: verifier.refreshKeys, configuration: configuration)
        #expect(reason(try signer.sign(Self.claims(["typ": "refresh"])), off) == nil)
        // The refresh key still refuses what it signed.
        #expect(reason(try refreshSigner.sign(Self.claims()), off) == .wrongTokenType)

        configuration.refreshTokenMarkers = .init(
            claims: ["token_use"],
            headerParameters: ["x-kind"],
            values: ["Offline", "refresh", "RT"]
        )
        let custom = JWTVerifier(keys: verifier.keys, configuration: configuration)
        #expect(reason(try signer.sign(Self.claims(["token_use": "offline"])), custom) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["token_use": "OFFLINE"])), custom) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["token_use": "rt"])), custom) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["token_use": "r"])), custom) == nil)
        #expect(reason(try signer.sign(Self.claims(), header: ["x-kind": "refresh"]), custom) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["typ": "refresh"])), custom) == nil)
        #expect(reason(try signer.sign(Self.claims(), header: ["typ": "refresh+jwt"]), custom) == nil)
        #expect(reason(try signer.sign(Self.claims(["token_use": "access"])), custom) == nil)

        // The default configuration refuses the standard markers; an explicit access type still applies.
        #expect(JWTVerifier.Configuration().refreshTokenMarkers == .standard)
        configuration.refreshTokenMarkers = .standard
        configuration.tokenType = .claim("token_use", equals: "access")
        let typed = JWTVerifier(keys: verifier.keys, configuration: configuration)
        #expect(reason(try signer.sign(Self.claims(["token_use": "access"])), typed) == nil)
        #expect(
            reason(try signer.sign(Self.claims(["token_use": "access", "typ": "refresh"])), typed) == .wrongTokenType
        )
        #expect(reason(try signer.sign(Self.claims()), typed) == .wrongTokenType)
    }

    @Test func refreshSecretEqualToAnAccessSecretIsRefused() throws {
        let access = JWTKeySet([try .hmac(secret: Self.accessSecret, algorithms: [.hs512])])
        let same = JWTKeySet([try .hmac(secret: Self.accessSecret, algorithms: [.hs256, .hs384, .hs512])])
        #expect(throws: JWTError.self) { try JWTVerifier(keys: access, refreshKeys: same) }
        do {
            _ = try JWTVerifier(keys: access, refreshKeys: same)
        } catch {
            #expect(error.code == .invalidKey)
            #expect(!error.message.contains(Self.accessSecret))
        }
        // Different secrets, or the same secret for algorithms that never meet, are fine.
        _ = try JWTVerifier(keys: access, refreshKeys: verifier.refreshKeys)
        let hs256Only = JWTKeySet([try .hmac(secret: Self.accessSecret, algorithms: [.hs256])])
        _ = try JWTVerifier(keys: access, refreshKeys: hs256Only)

        // Replacing the keys is checked the same way, and a refused replacement changes nothing.
        let rotating = try JWTVerifier(keys: verifier.keys, refreshKeys: verifier.refreshKeys)
        #expect(throws: JWTError.self) { try rotating.keyStore.replaceKeys(access, refreshKeys: same) }
        #expect(rotating.keys.keys.count == 2)
        #expect(reason(try refreshSigner.sign(Self.claims(["aud": nil])), rotating) == .wrongTokenType)
        let newRefresh = try JWTSigner(key: .hmac(secret: "next-refresh-0123456789abcdef0123456789"))
        try rotating.keyStore.replaceKeys(verifier.keys, refreshKeys: JWTKeySet([newRefresh.key]))
        #expect(reason(try newRefresh.sign(Self.claims(["aud": nil])), rotating) == .wrongTokenType)
        #expect(reason(try refreshSigner.sign(Self.claims(["aud": nil])), rotating) == .badSignature)
        // replaceKeys(_:) keeps the refresh keys, and refuses an access key that is a refresh key.
        try rotating.keyStore.replaceKeys(verifier.keys)
        #expect(throws: JWTError.self) { try rotating.keyStore.replaceKeys(JWTKeySet([newRefresh.key])) }
        #expect(rotating.keys.keys.count == verifier.keys.keys.count)
        #expect(reason(try newRefresh.sign(Self.claims(["aud": nil])), rotating) == .wrongTokenType)
    }
}
