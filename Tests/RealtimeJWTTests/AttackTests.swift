// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

/// Forged, tampered and misdirected tokens: every one refused, each with its own reason.
@Suite struct AttackTests {
    /// The seed's settings: access tokens are HS256 under `JWT_SECRET`, refresh tokens under `JWT_REFRESH_SECRET`.
    static let jwtSecret = "your-jwt-secret-key"
    static let refreshSecret = "your-jwt-refresh-secret-key"

    let verifier: JWTVerifier
    let signer: JWTSigner
    let rsaSigner: JWTSigner
    let ecSigner: JWTSigner

    init() throws {
        let keys = JWTKeySet([
            try .hmac(secret: Self.jwtSecret),
            try .publicKey(pem: Fixtures.string("rsa", "public_pem"), algorithm: .rs256, kid: "rsa-1"),
            try .publicKey(pem: Fixtures.string("ec-P-256", "public_pem"), algorithm: .es256, kid: "ec-1"),
        ])
        verifier = JWTVerifier(
            keys: keys,
            configuration: .init(
                issuer: "auth-service",
                audiences: ["realtime-hub"],
                tokenType: .claim("typ", equals: "access")
            )
        )
        signer = try JWTSigner(key: .hmac(secret: Self.jwtSecret))
        rsaSigner = try JWTSigner(key: Fixtures.privateKey(for: .rs256, kid: "rsa-1"))
        ecSigner = try JWTSigner(key: Fixtures.privateKey(for: .es256, kid: "ec-1"))
    }

    /// Claims of a valid access token at ``referenceNow``, with `changes` applied (`null` removes a claim).
    static func claims(_ changes: JSONObject = [:]) -> JSONObject {
        let now = referenceNow.secondsSinceEpoch
        var claims: JSONObject = [
            "sub": "user-1", "sid": "session-1", "iss": "auth-service", "aud": "realtime-hub", "typ": "access",
            "iat": .int(now - 10), "exp": .int(now + 900),
        ]
        for (name, value) in changes { claims[name] = value.isNull ? nil : value }
        return claims
    }

    func reason(_ token: String) -> TokenVerificationError.Reason? {
        refusal { try verifier.verify(token, at: referenceNow) }
    }

    /// A token signed with `signer` from raw header and payload text.
    func raw(_ header: String, _ payload: String, signer: JWTSigner? = nil) throws -> String {
        try (signer ?? self.signer).sign(rawHeader: Array(header.utf8), rawPayload: Array(payload.utf8))
    }

    @Test func validTokenIsAccepted() throws {
        for signer in [signer, rsaSigner, ecSigner] {
            #expect(try verifier.verify(signer.sign(Self.claims()), at: referenceNow).userID == "user-1")
        }
    }

    @Test(arguments: ["none", "None", "NONE", "nOnE"])
    func algNoneIsRefused(_ alg: String) throws {
        let header = b64(#"{"alg":"\#(alg)","typ":"JWT"}"#)
        let payload = Base64URL.encode(JSONWriter.bytes(.object(Self.claims())))
        #expect(reason("\(header).\(payload).") == .unsupportedAlgorithm)
        // Even with a signature attached, or with a (real) signature from the HMAC key.
        let valid = try signer.sign(Self.claims()).split(separator: ".")
        #expect(reason("\(header).\(payload).\(valid[2])") == .unsupportedAlgorithm)
    }

    @Test func unknownOrMistypedAlgIsRefused() throws {
        let payload = Base64URL.encode(JSONWriter.bytes(.object(Self.claims())))
        #expect(reason(b64(#"{"alg":"HS256 "}"#) + ".\(payload).AAAA") == .unsupportedAlgorithm)
        #expect(reason(b64(#"{"alg":"hs256"}"#) + ".\(payload).AAAA") == .unsupportedAlgorithm)
        #expect(reason(b64(#"{"alg":"ES256K"}"#) + ".\(payload).AAAA") == .unsupportedAlgorithm)
        #expect(reason(b64(#"{"alg":256}"#) + ".\(payload).AAAA") == .malformed)
        #expect(reason(b64(#"{"typ":"JWT"}"#) + ".\(payload).AAAA") == .malformed)
        // An algorithm no configured key serves.
        let hs512 = try JWTSigner(key: .hmac(secret: Self.jwtSecret, algorithms: [.hs512])).sign(Self.claims())
        #expect(reason(hs512) == .unsupportedAlgorithm)
    }

    @Test func hmacSignedWithThePublicKeyPEMIsRefused() throws {
        // Algorithm confusion: HS256 "signed" with the RSA public key's PEM as the secret.
        let pem = Fixtures.string("rsa", "public_pem")
        let confused = try JWTSigner(key: .hmac(secret: pem, kid: "rsa-1"))
        #expect(reason(try confused.sign(Self.claims())) == .unknownKey)  // rsa-1 serves only RS256
        let noKID = try JWTSigner(key: .hmac(secret: pem))
        #expect(reason(try noKID.sign(Self.claims())) == .badSignature)  // only the real HMAC secret is tried
        let rsaOnly = JWTVerifier(
            keys: JWTKeySet([try .publicKey(pem: pem, algorithm: .rs256, kid: "rsa-1")]),
            configuration: verifier.configuration
        )
        #expect(refusal { try rsaOnly.verify(noKID.sign(Self.claims()), at: referenceNow) } == .unsupportedAlgorithm)
    }

    @Test func swappedKIDIsRefused() throws {
        // An ES256 token naming the RSA key.
        let ecWithRSAKid = try JWTSigner(key: Fixtures.privateKey(for: .es256, kid: "rsa-1"))
        #expect(reason(try ecWithRSAKid.sign(Self.claims())) == .unknownKey)
        // A kid nobody has.
        let stranger = try JWTSigner(key: Fixtures.privateKey(for: .rs256, kid: "rsa-2"))
        #expect(reason(try stranger.sign(Self.claims())) == .unknownKey)
        // Two keys of one kind: signed by one, naming the other.
        let rfc8037 = try JWTKey.jwk(
            #"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
        )
        let keys = JWTKeySet([
            try .publicKey(pem: Fixtures.string("ed25519", "public_pem"), algorithm: .eddsa, kid: "ed-a"),
            try .jwk(#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed-b"}"#),
        ])
        let edVerifier = JWTVerifier(keys: keys)
        let signedByB = try JWTSigner(key: rfc8037).sign(
            rawHeader: Array(#"{"alg":"EdDSA","kid":"ed-a"}"#.utf8),
            rawPayload: Array(JSONWriter.bytes(.object(Self.claims())))
        )
        #expect(refusal { try edVerifier.verify(signedByB, at: referenceNow) } == .badSignature)
        let honest = try JWTSigner(key: rfc8037).sign(
            rawHeader: Array(#"{"alg":"EdDSA","kid":"ed-b"}"#.utf8),
            rawPayload: Array(JSONWriter.bytes(.object(Self.claims(["aud": nil]))))
        )
        #expect(try edVerifier.verify(honest, at: referenceNow).userID == "user-1")
    }

    @Test func timeClaimsAreEnforced() throws {
        let now = referenceNow.secondsSinceEpoch
        #expect(reason(try signer.sign(Self.claims(["exp": .int(now - 31)]))) == .expired)
        #expect(reason(try signer.sign(Self.claims(["exp": .int(now - 20)]))) == nil)  // within 30 s leeway
        #expect(reason(try signer.sign(Self.claims(["exp": .double(Double(now) - 40.5)]))) == .expired)
        #expect(reason(try signer.sign(Self.claims(["nbf": .int(now + 31)]))) == .notYetValid)
        #expect(reason(try signer.sign(Self.claims(["nbf": .int(now + 20)]))) == nil)
        #expect(reason(try signer.sign(Self.claims(["iat": .int(now + 31)]))) == .issuedInFuture)
        #expect(reason(try signer.sign(Self.claims(["iat": .int(now + 20)]))) == nil)
        #expect(reason(try signer.sign(Self.claims(["exp": nil]))) == .missingClaim)  // exp is required by default
        #expect(reason(try signer.sign(Self.claims(["exp": .int(.max)]))) == nil)  // saturates, no overflow trap
        #expect(reason(try signer.sign(Self.claims(["exp": .double(-1e300)]))) == .expired)
    }

    @Test func issuerAndAudienceAreEnforced() throws {
        #expect(reason(try signer.sign(Self.claims(["iss": "evil-service"]))) == .wrongIssuer)
        #expect(reason(try signer.sign(Self.claims(["iss": nil]))) == .missingClaim)
        #expect(reason(try signer.sign(Self.claims(["aud": "other-service"]))) == .wrongAudience)
        #expect(reason(try signer.sign(Self.claims(["aud": ["a", "b"]]))) == .wrongAudience)
        #expect(reason(try signer.sign(Self.claims(["aud": []]))) == .wrongAudience)
        #expect(reason(try signer.sign(Self.claims(["aud": ["a", "realtime-hub"]]))) == nil)
        #expect(reason(try signer.sign(Self.claims(["aud": nil]))) == .missingClaim)
        // A verifier with no audience refuses a token that names one (RFC 7519 §4.1.3).
        let plain = JWTVerifier(keys: verifier.keys)
        #expect(refusal { try plain.verify(signer.sign(Self.claims()), at: referenceNow) } == .wrongAudience)
        #expect(refusal { try plain.verify(signer.sign(Self.claims(["aud": nil])), at: referenceNow) } == nil)
    }

    @Test func brokenEncodingIsRefused() throws {
        let token = try signer.sign(Self.claims())
        let parts = token.split(separator: ".").map(String.init)
        let (header, payload, signature) = (parts[0], parts[1], parts[2])
        #expect(reason("\(header.dropLast()).\(payload).\(signature)") == .malformed)  // truncated header
        #expect(reason("\(header).\(payload).\(signature.dropFirst(4))") == .badSignature)  // truncated MAC
        #expect(reason("\(header).\(payload).\(signature.dropLast(2))") == .malformed)  // 4n+1 characters
        #expect(reason("\(header).\(payload).\(signature)=") == .malformed)  // padding
        #expect(reason("\(header)==.\(payload).\(signature)") == .malformed)
        #expect(reason("\(header).\(payload).\(signature) ") == .malformed)  // stray characters
        #expect(reason("\(header).\(payload).\(signature)\n") == .malformed)
        #expect(reason(" \(header).\(payload).\(signature)") == .malformed)
        let standardAlphabet = signature.replacingAll("-", with: "+").replacingAll("_", with: "/")
        if standardAlphabet != signature { #expect(reason("\(header).\(payload).\(standardAlphabet)") == .malformed) }
        #expect(reason("\(header).\(payload).\(signature).") == .malformed)  // four parts
        #expect(reason("\(header).\(payload)") == .malformed)  // two parts
        #expect(reason("\(header)..\(signature)") == .malformed)  // empty payload
        #expect(reason("") == .malformed)
        #expect(reason("..") == .malformed)
        #expect(reason("\(header).\(payload).é\(signature)") == .malformed)
        // A payload that is tampered is caught by the signature before it is parsed.
        #expect(reason("\(header).\(payload.dropLast(3)).\(signature)") == .badSignature)
    }

    @Test func nonCanonicalBase64IsRefused() throws {
        // "AB" and "AC" differ only in unused low bits: only the canonical form (zero bits) is accepted.
        #expect(Base64URL.decode("AA") == [0])
        #expect(Base64URL.decode("AB") == nil)
        #expect(Base64URL.decode("AAA") == [0, 0])
        #expect(Base64URL.decode("AAB") == nil)
        #expect(Base64URL.decode("A") == nil)
        #expect(Base64URL.decode("AA==") == nil)
        #expect(Base64URL.decode("A+/A") == nil)
        #expect(Base64URL.decode("-_-_") == [0xFB, 0xFF, 0xBF])
        for length in 0..<40 {
            let bytes = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            #expect(Base64URL.decode(Base64URL.encode(bytes)) == bytes)
        }
    }

    @Test func derEncodedECDSASignatureIsRefused() throws {
        let token = try ecSigner.sign(Self.claims())
        #expect(reason(token) == nil)
        let parts = token.split(separator: ".").map(String.init)
        let raw = Base64URL.decode(parts[2])!
        #expect(raw.count == 64)
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var bytes = Array(bytes.drop { $0 == 0 })
            if bytes.first.map({ $0 >= 0x80 }) ?? true { bytes.insert(0, at: 0) }
            return [0x02, UInt8(bytes.count)] + bytes
        }
        let body = integer(raw[0..<32]) + integer(raw[32..<64])
        let der = [0x30, UInt8(body.count)] + body
        #expect(reason("\(parts[0]).\(parts[1]).\(Base64URL.encode(der))") == .badSignature)
        // Raw signatures of the wrong length (P-384 size, one byte short) are refused as well.
        #expect(reason("\(parts[0]).\(parts[1]).\(Base64URL.encode(raw + raw[0..<32]))") == .badSignature)
        #expect(reason("\(parts[0]).\(parts[1]).\(Base64URL.encode(Array(raw.dropLast())))") == .badSignature)
    }

    @Test func oversizeTokenIsRefused() throws {
        let big = try signer.sign(Self.claims(["padding": .string(String(repeating: "x", count: 8192))]))
        #expect(reason(big) == .tooLarge)
        #expect(reason(String(repeating: "a", count: 100_000)) == .tooLarge)
        let roomy = JWTVerifier(
            keys: verifier.keys,
            configuration: .init(issuer: "auth-service", audiences: ["realtime-hub"], maxTokenBytes: 20_000)
        )
        #expect(refusal { try roomy.verify(big, at: referenceNow) } == nil)
    }

    @Test func nonObjectJSONIsRefused() throws {
        let claims = JSONWriter.string(.object(Self.claims()))
        #expect(reason(b64("[\"HS256\"]") + "." + b64(claims) + ".AAAA") == .malformed)
        #expect(reason(b64("\"HS256\"") + "." + b64(claims) + ".AAAA") == .malformed)
        #expect(reason(b64("{\"alg\":\"HS256\"") + "." + b64(claims) + ".AAAA") == .malformed)
        for payload in ["[1,2]", "\"user-1\"", "42", "null", "{\"sub\":\"a\",}", "{\"sub\":\"a\"} x", "", " "] {
            #expect(reason(try raw(#"{"alg":"HS256"}"#, payload)) == .malformed, "\(payload)")
        }
    }

    @Test func duplicateMembersAreRefused() throws {
        let base = JSONWriter.string(.object(Self.claims(["sub": nil])))
        let duplicated = "{\"sub\":\"user-1\",\"sub\":\"admin\"," + base.dropFirst()
        #expect(reason(try raw(#"{"alg":"HS256"}"#, duplicated)) == .malformed)
        let twoExp = JSONWriter.string(.object(Self.claims(["exp": nil]))).dropLast() + ",\"exp\":1,\"exp\":4102444800}"
        #expect(reason(try raw(#"{"alg":"HS256"}"#, String(twoExp))) == .malformed)
        #expect(reason(try raw(#"{"alg":"HS256","alg":"none"}"#, base)) == .malformed)
    }

    @Test func wronglyTypedClaimsAreRefused() throws {
        #expect(reason(try signer.sign(Self.claims(["exp": "4102444800"]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["nbf": true]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["iat": ["x"]]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["sub": 12345]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["sub": ""]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["sub": nil]))) == .missingClaim)
        #expect(reason(try signer.sign(Self.claims(["sid": 7]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["iss": 1]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["aud": 1]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["aud": ["realtime-hub", 1]]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["roles": ["admin", 1]]))) == .invalidClaim)
        #expect(reason(try signer.sign(Self.claims(["typ": 1]))) == .invalidClaim)
        #expect(reason(try raw(#"{"alg":"HS256","kid":7}"#, JSONWriter.string(.object(Self.claims())))) == .malformed)
    }

    @Test func criticalHeadersAreRefusedUnlessUnderstood() throws {
        let payload = JSONWriter.string(.object(Self.claims()))
        #expect(reason(try raw(#"{"alg":"HS256","crit":["exp"],"exp":1}"#, payload)) == .unsupportedCritical)
        #expect(reason(try raw(#"{"alg":"HS256","crit":["b64"],"b64":false}"#, payload)) == .unsupportedCritical)
        #expect(reason(try raw(#"{"alg":"HS256","crit":["alg"]}"#, payload)) == .malformed)
        #expect(reason(try raw(#"{"alg":"HS256","crit":[]}"#, payload)) == .malformed)
        #expect(reason(try raw(#"{"alg":"HS256","crit":"exp"}"#, payload)) == .malformed)
        #expect(reason(try raw(#"{"alg":"HS256","crit":["x","x"],"x":1}"#, payload)) == .malformed)
        var configuration = verifier.configuration
        configuration.understoodCriticalHeaders = ["exp"]
        let understanding = JWTVerifier(keys: verifier.keys, configuration: configuration)
        let token = try raw(#"{"alg":"HS256","crit":["exp"],"exp":1}"#, payload)
        #expect(refusal { try understanding.verify(token, at: referenceNow) } == nil)
        // A typ header of any value is tolerated when no header type is required.
        #expect(reason(try raw(#"{"alg":"HS256","typ":"at+jwt"}"#, payload)) == nil)
    }

    @Test func emptySignatureIsRefused() throws {
        let parts = try signer.sign(Self.claims()).split(separator: ".")
        #expect(reason("\(parts[0]).\(parts[1]).") == .badSignature)
        let rsaParts = try rsaSigner.sign(Self.claims()).split(separator: ".")
        #expect(reason("\(rsaParts[0]).\(rsaParts[1]).") == .badSignature)
    }

    @Test func refreshTokensAreNotConnectionCredentials() throws {
        // Signed with JWT_REFRESH_SECRET: no key verifies it.
        let refreshSigner = try JWTSigner(key: .hmac(secret: Self.refreshSecret))
        #expect(reason(try refreshSigner.sign(Self.claims(["typ": "refresh"]))) == .badSignature)
        let refreshWithKID = try JWTSigner(key: .hmac(secret: Self.refreshSecret, kid: "refresh"))
        #expect(reason(try refreshWithKID.sign(Self.claims(["typ": "refresh"]))) == .unknownKey)
        // Signed with the access secret but typed as a refresh token, or untyped.
        #expect(reason(try signer.sign(Self.claims(["typ": "refresh"]))) == .wrongTokenType)
        #expect(reason(try signer.sign(Self.claims(["typ": nil]))) == .wrongTokenType)
        // A header type requirement (RFC 9068 at+jwt) reads the header instead.
        let headerTyped = JWTVerifier(
            keys: verifier.keys,
            configuration: .init(tokenType: .header("typ", equals: "at+jwt"))
        )
        let claims = Self.claims(["aud": nil])
        #expect(refusal { try headerTyped.verify(signer.sign(claims), at: referenceNow) } == .wrongTokenType)
        #expect(
            refusal { try headerTyped.verify(signer.sign(claims, header: ["typ": "at+jwt"]), at: referenceNow) } == nil
        )
    }

    @Test func embeddedKeysInTheHeaderAreIgnored() throws {
        // A token carrying its own key (jwk header, CVE-2018-0114 style) is checked against our keys only.
        let attacker = try JWTKey.jwk(
            #"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
        )
        let header =
            #"{"alg":"EdDSA","jwk":{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}}"#
        let token = try JWTSigner(key: attacker).sign(
            rawHeader: Array(header.utf8),
            rawPayload: JSONWriter.bytes(.object(Self.claims()))
        )
        #expect(reason(token) == .unsupportedAlgorithm)
        let withEd = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: .eddsa)]))
        #expect(refusal { try withEd.verify(token, at: referenceNow) } == .badSignature)
    }

    /// Fifth adversarial probe, LOW: a 1-byte `oct` key in a JWK Set (even one fetched from a URL, which anyone can
    /// read) was accepted, and signed admin tokens.
    @Test func weakAndPublishedSecretsInAJWKSetAreRefused() throws {
        // RFC 7518 §3.2: an HS256/384/512 secret is at least as long as the hash's output.
        let short = #"{"kty":"oct","alg":"HS256","k":"eA"}"#
        #expect(throws: JWTError.self) { try JWTKey.jwk(short) }
        let thirtyOne = Base64URL.encode([UInt8](repeating: 7, count: 31))
        #expect(throws: JWTError.self) { try JWTKey.jwk(#"{"kty":"oct","alg":"HS256","k":"\#(thirtyOne)"}"#) }
        let thirtyTwo = Base64URL.encode([UInt8](repeating: 7, count: 32))
        #expect(throws: JWTError.self) { try JWTKey.jwk(#"{"kty":"oct","alg":"HS384","k":"\#(thirtyTwo)"}"#) }
        let hmac = #"{"kty":"oct","kid":"h1","alg":"HS256","k":"\#(thirtyTwo)"}"#
        #expect(try JWTKey.jwk(hmac).isHMAC)
        #expect(throws: JWTError.self) { try JWTKeySet(jwks: #"{"keys":[\#(short)]}"#) }
        // A set that is public (publicKeysOnly, as for a JWKS URL) refuses every key anyone could sign with.
        #expect(try JWTKeySet(jwks: #"{"keys":[\#(hmac)]}"#).keys.count == 1)
        let publicEd = #"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
        let privateEd =
            #"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
        #expect(try JWTKeySet(jwks: #"{"keys":[\#(publicEd)]}"#, publicKeysOnly: true).keys.count == 1)
        for key in [hmac, privateEd] {
            do {
                _ = try JWTKeySet(jwks: #"{"keys":[\#(publicEd),\#(key)]}"#, publicKeysOnly: true)
                Issue.record("a public set accepted \(key)")
            } catch {
                #expect(error.code == .invalidJWK)
                #expect(error.message.contains("keys[1]") && error.message.contains("public keys only"))
            }
        }
    }

    @Test func errorDetailsNeverContainTheTokenOrClaims() throws {
        let secretish = "sensitive-\(UInt64.random(in: 0 ... .max))"
        let tokens = [
            try signer.sign(Self.claims(["sub": .string(secretish), "iss": .string(secretish)])),
            try signer.sign(Self.claims(["typ": .string(secretish)])),
            try raw(#"{"alg":"\#(secretish)"}"#, "{}"),
            try raw(#"{"alg":"HS256","kid":"\#(secretish)"}"#, "{}"),
        ]
        for token in tokens {
            do {
                _ = try verifier.verify(token, at: referenceNow)
                Issue.record("accepted")
            } catch {
                #expect(!error.detail.contains(secretish))
                #expect(!error.description.contains(token))
            }
        }
    }
}

extension String {
    fileprivate func replacingAll(_ target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
