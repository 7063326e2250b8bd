// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

/// RS256/RS384/RS512 accept exactly the PKCS#1 v1.5 encoding of RFC 8017 §9.2: the DER DigestInfo (with NULL
/// parameters) of the algorithm's hash of the signing input. The fixtures (Fixtures/make_rsa_encoding_fixtures.py)
/// are correctly padded signatures over other encodings, which must all be refused.
@Suite struct RSAEncodingTests {
    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let algorithm: JWTAlgorithm
        let valid: Bool
        let token: String
        var testDescription: String { name }
    }

    static let cases: [Case] = Fixtures.load("rsa-encoding-fixtures.json")["tokens"]!.arrayValue!.map { entry in
        Case(
            name: entry["name"]!.stringValue!,
            algorithm: JWTAlgorithm(name: entry["alg"]!.stringValue!)!,
            valid: entry["valid"]!.boolValue!,
            token: entry["token"]!.stringValue!
        )
    }

    @Test(arguments: cases)
    func onlyTheDigestInfoEncodingVerifies(_ fixture: Case) throws {
        let verifier = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: fixture.algorithm)]))
        // Twice: the second verification reuses the pooled contexts of the first.
        for _ in 0..<2 {
            let reason = refusal { try verifier.verify(fixture.token, at: referenceNow) }
            #expect(reason == (fixture.valid ? nil : .badSignature))
        }
    }

    @Test func oneVerifierAlternatingRefusalsAndAcceptancesStaysRight() throws {
        #expect(Self.cases.count == 11)
        for algorithm in [JWTAlgorithm.rs256, .rs384, .rs512] {
            let cases = Self.cases.filter { $0.algorithm == algorithm }
            #expect(cases.contains { $0.valid } && cases.contains { !$0.valid })
            // A refused signature leaves the pooled context fit for the next verification, and so on.
            let verifier = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: algorithm)]))
            for fixture in cases + cases.reversed() + cases {
                let reason = refusal { try verifier.verify(fixture.token, at: referenceNow) }
                #expect(reason == (fixture.valid ? nil : .badSignature), "\(fixture.name)")
            }
        }
    }
}
