// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWT
import Testing

/// The examples of RFC 7515 Appendix A and RFC 8037 Appendix A.4, verified bit for bit.
@Suite struct RFCVectorTests {
    /// The RFC 7515 payload `{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}`.
    static let payload =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    /// Shortly before the example's `exp` (2011-03-22T18:43:00Z).
    static let exampleTime = Timestamp(secondsSinceEpoch: 1_300_819_000)
    /// The examples have no `sub`: map the user id from `iss`.
    static let configuration = JWTVerifier.Configuration(claims: .init(userIDClaim: "iss"))

    static let a2JWK = """
        {"kty":"RSA",
         "n":"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ",
         "e":"AQAB",
         "d":"Eq5xpGnNCivDflJsRQBXHx1hdR1k6Ulwe2JZD50LpXyWPEAeP88vLNO97IjlA7_GQ5sLKMgvfTeXZx9SE-7YwVol2NXOoAJe46sui395IW_GO-pWJ1O0BkTGoVEn2bKVRUCgu-GjBVaYLU6f3l9kJfFNS3E0QbVdxzubSu3Mkqzjkn439X0M_V51gfpRLI9JYanrC4D4qAdGcopV_0ZHHzQlBjudU2QvXt4ehNYTCBr6XCLQUShb1juUO1ZdiYoFaFQT5Tw8bGUl_x_jTj3ccPDVZFD9pIuhLhBOneufuBiB4cS98l2SR_RQyGWSeWjnczT0QU91p1DhOVRuOopznQ",
         "p":"4BzEEOtIpmVdVEZNCqS7baC4crd0pqnRH_5IB3jw3bcxGn6QLvnEtfdUdiYrqBdss1l58BQ3KhooKeQTa9AB0Hw_Py5PJdTJNPY8cQn7ouZ2KKDcmnPGBY5t7yLc1QlQ5xHdwW1VhvKn-nXqhJTBgIPgtldC-KDV5z-y2XDwGUc",
         "q":"uQPEfgmVtjL0Uyyx88GZFF1fOunH3-7cepKmtH4pxhtCoHqpWmT8YAmZxaewHgHAjLYsp1ZSe7zFYHj7C6ul7TjeLQeZD_YwD66t62wDmpe_HlB-TnBA-njbglfIsRLtXlnDzQkv5dTltRJ11BKBBypeeF6689rjcJIDEz9RWdc",
         "dp":"BwKfV3Akq5_MFZDFZCnW-wzl-CCo83WoZvnLQwCTeDv8uzluRSnm71I3QCLdhrqE2e9YkxvuxdBfpT_PI7Yz-FOKnu1R6HsJeDCjn12Sk3vmAktV2zb34MCdy7cpdTh_YVr7tss2u6vneTwrA86rZtu5Mbr1C1XsmvkxHQAdYo0",
         "dq":"h_96-mK1R_7glhsum81dZxjTnYynPbZpHziZjeeHcXYsXaaMwkOlODsWa7I9xXDoRwbKgB719rrmI2oKr6N3Do9U0ajaHF-NKJnwgjMd2w9cjz3_-kyNlxAr2v4IKhGNpmM5iIgOS1VZnOZ68m6_pbLBSp3nssTdlqvd0tIiTHU",
         "qi":"IYd7DHOhrWvxkwPQsRM2tOgrjbcrfvtQJipd-DlcxyVuuM9sQLdgjVk2oy26F0EmpScGLq2MowX7fhd_QJQ3ydy5cY7YIBi87w93IKLEdfnbJtoOPLUW0ITrJReOgo1cq9SbsxYawBgfp_gh6A5603k2-ZQwVK0JKSHuLFkuQ3U"}
        """

    @Test func appendixA1HS256() throws {
        let key = try JWTKey.jwk(
            #"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#,
            algorithm: .hs256
        )
        let verifier = JWTVerifier(keys: JWTKeySet([key]), configuration: Self.configuration)
        let token =
            "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.\(Self.payload).dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        let identity = try verifier.verify(token, at: Self.exampleTime)
        #expect(identity.userID == "joe")
        #expect(identity.expiresAt == Timestamp(secondsSinceEpoch: 1_300_819_380))
        #expect(identity.claims["http://example.com/is_root"] == true)
        // The example's time has passed: at the real time it is expired.
        #expect(refusal { try verifier.verify(token, at: .now()) } == .expired)
        // One flipped bit in the MAC.
        let forged = String(token.dropLast()) + "Y"
        #expect(refusal { try verifier.verify(forged, at: Self.exampleTime) } == .badSignature)
    }

    @Test func appendixA2RS256() throws {
        let token =
            "eyJhbGciOiJSUzI1NiJ9.\(Self.payload)."
            + "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
        let privateKey = try JWTKey.jwk(Self.a2JWK, algorithm: .rs256)
        #expect(privateKey.canSign)
        let verifier = JWTVerifier(keys: JWTKeySet([privateKey]), configuration: Self.configuration)
        #expect(try verifier.verify(token, at: Self.exampleTime).userID == "joe")

        // RSASSA-PKCS1-v1_5 is deterministic: our signer reproduces the example's signature exactly.
        let signer = try JWTSigner(key: privateKey)
        let signed = try signer.sign(
            rawHeader: Array(#"{"alg":"RS256"}"#.utf8),
            rawPayload: Base64URL.decode(Self.payload)!
        )
        #expect(signed == token)

        // The public half alone (n, e) verifies too.
        let value = try JSONParser().parse(Self.a2JWK)
        let publicJWK: JSONObject = ["kty": "RSA", "n": value["n"]!, "e": value["e"]!]
        let publicOnly = JWTVerifier(
            keys: JWTKeySet([try .jwk(publicJWK, algorithm: .rs256)]),
            configuration: Self.configuration
        )
        #expect(try publicOnly.verify(token, at: Self.exampleTime).userID == "joe")
    }

    @Test func appendixA3ES256() throws {
        let key = try JWTKey.jwk(
            """
            {"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}
            """
        )
        #expect(key.algorithms == [.es256])
        let verifier = JWTVerifier(keys: JWTKeySet([key]), configuration: Self.configuration)
        let token =
            "eyJhbGciOiJFUzI1NiJ9.\(Self.payload)."
            + "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
        #expect(try verifier.verify(token, at: Self.exampleTime).userID == "joe")
        // ECDSA is randomised: a fresh signature of the same input differs but verifies.
        let again = try JWTSigner(key: key).sign(
            rawHeader: Array(#"{"alg":"ES256"}"#.utf8),
            rawPayload: Base64URL.decode(Self.payload)!
        )
        #expect(again != token)
        #expect(try verifier.verify(again, at: Self.exampleTime).userID == "joe")
    }

    @Test func appendixA4ES512() throws {
        let key = try JWTKey.jwk(
            """
            {"kty":"EC","crv":"P-521",
             "x":"AekpBQ8ST8a8VcfVOTNl353vSrDCLLJXmPk06wTjxrrjcBpXp5EOnYG_NjFZ6OvLFV1jSfS9tsz4qUxcWceqwQGk",
             "y":"ADSmRA43Z1DSNx_RvcLI87cdL07l6jQyyBXMoxVg_l2Th-x3S1WDhjDly79ajL4Kkd0AZMaZmh9ubmf63e3kyMj2"}
            """
        )
        #expect(key.algorithms == [.es512])
        #expect(!key.canSign)
        let verifier = JWTVerifier(keys: JWTKeySet([key]))
        // The payload is the text "Payload", not claims: check the JWS layer.
        let token =
            "eyJhbGciOiJFUzUxMiJ9.UGF5bG9hZA."
            + "AdwMgeerwtHoh-l192l60hp9wAHZFVJbLfD_UxMi70cwnZOYaRI1bKPWROc-mZZqwqT2SI-KGDKB34XO0aw_7XdtAG8GaSwFKdCAPZgoXD2YBJZCPEX3xKpRwcdOO8KpEHwJjyqOgzDO7iKvU8vcnwNrmxYbSW9ERBXukOXolLzeO_Jn"
        let (header, payload) = try verifier.verifySignature(token)
        #expect(header["alg"] == "ES512")
        #expect(payload == Array("Payload".utf8))
        // As a JWT it is refused: the payload is not a claims object.
        #expect(refusal { try verifier.verify(token, at: referenceNow) } == .malformed)
        let tampered = token.replacingOccurrences(of: "UGF5bG9hZA", with: "UGF5bG9hZB")
        #expect(refusal { try verifier.verifySignature(tampered) } == .badSignature)
    }

    @Test func rfc8037AppendixA4Ed25519() throws {
        let key = try JWTKey.jwk(
            """
            {"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A",
             "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}
            """
        )
        #expect(key.algorithms == [.eddsa])
        let token =
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc."
            + "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        let verifier = JWTVerifier(keys: JWTKeySet([key]))
        #expect(try verifier.verifySignature(token).payload == Array("Example of Ed25519 signing".utf8))
        // Ed25519 is deterministic: our signer makes the same token.
        let signed = try JWTSigner(key: key).sign(
            rawHeader: Array(#"{"alg":"EdDSA"}"#.utf8),
            rawPayload: Array("Example of Ed25519 signing".utf8)
        )
        #expect(signed == token)
        // A public key whose x does not match d is refused.
        #expect(throws: JWTError.self) {
            try JWTKey.jwk(
                #"{"kty":"OKP","crv":"Ed25519","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","x":"AAqYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
            )
        }
    }
}
