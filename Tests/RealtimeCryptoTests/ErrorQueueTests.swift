// SPDX-License-Identifier: Apache-2.0

import RealtimeCrypto
import Testing

/// Every call into libcrypto leaves the calling thread's OpenSSL error queue empty, whether it fails or not, so
/// no stale error reaches the next OpenSSL user on the thread. The tests are synchronous: one test runs on one
/// thread from start to end, so the queue they read is the one the calls wrote to.
@Suite struct ErrorQueueTests {
    /// Runs `body` and checks that the queue is empty before and after it.
    func leavesTheQueueEmpty<T>(
        _ body: () throws -> T,
        sourceLocation: SourceLocation = #_sourceLocation
    ) rethrows -> T {
        #expect(OpenSSLErrorQueue.isEmpty, "the queue was not empty before", sourceLocation: sourceLocation)
        let result = try body()
        #expect(OpenSSLErrorQueue.isEmpty, "the queue is not empty after", sourceLocation: sourceLocation)
        return result
    }

    func load(_ body: () throws(EVPKey.LoadError) -> EVPKey) -> Result<EVPKey, EVPKey.LoadError> {
        Result { () throws(EVPKey.LoadError) in try body() }
    }

    @Test func unreadableKeysAreRefusedWithoutLeavingErrors() {
        let encrypted = """
            -----BEGIN RSA PRIVATE KEY-----
            Proc-Type: 4,ENCRYPTED
            DEK-Info: AES-128-CBC,00000000000000000000000000000000

            AAAA
            -----END RSA PRIVATE KEY-----
            """
        let truncated = String(TestKeys.p256Public.dropLast(40))
        for (pem, isPrivate) in [
            ("not a key", false), ("not a key", true), (encrypted, true), (truncated, false),
            (TestKeys.p256Public, true), (TestKeys.p256Private, false),
        ] {
            let result = leavesTheQueueEmpty {
                load { () throws(EVPKey.LoadError) in try .pem(pem, isPrivate: isPrivate) }
            }
            #expect(throws: EVPKey.LoadError.refused) { try result.get() }
        }
        for result in [
            leavesTheQueueEmpty { load { () throws(EVPKey.LoadError) in try .rsa(components: [[0x01]]) } },
            leavesTheQueueEmpty {
                load { () throws(EVPKey.LoadError) in try .ed25519(raw: [1, 2, 3], isPrivate: false) }
            },
            leavesTheQueueEmpty {
                load { () throws(EVPKey.LoadError) in
                    try .ec(group: "P-256", point: [0x04] + [UInt8](repeating: 1, count: 64), privateScalar: [])
                }
            },
            leavesTheQueueEmpty {
                load { () throws(EVPKey.LoadError) in try .ec(group: "no-such-curve", point: [0x04], privateScalar: [])
                }
            },
        ] {
            #expect(throws: EVPKey.LoadError.refused) { try result.get() }
        }
    }

    @Test func keysOfOtherTypesAreRefusedWithoutLeavingErrors() {
        for pem in [TestKeys.x25519Public, TestKeys.secp256k1Public] {
            let result = leavesTheQueueEmpty { load { () throws(EVPKey.LoadError) in try .pem(pem, isPrivate: false) } }
            #expect(throws: EVPKey.LoadError.unsupportedType) { try result.get() }
        }
    }

    @Test func readableKeysAndTheirChecksLeaveNoErrors() throws {
        let cases: [(String, Bool, EVPKey.Kind)] = [
            (TestKeys.rsaPrivate, true, .rsa), (TestKeys.rsaPublic, false, .rsa), (TestKeys.p256Private, true, .ecP256),
            (TestKeys.p256Public, false, .ecP256), (TestKeys.ed25519Private, true, .ed25519),
        ]
        for (pem, isPrivate, kind) in cases {
            let key = try leavesTheQueueEmpty { try EVPKey.pem(pem, isPrivate: isPrivate) }
            #expect(key.kind == kind)
            #expect(key.isPrivate == isPrivate)
            #expect(leavesTheQueueEmpty { key.check() })
        }
    }

    struct Signer: Sendable, CustomTestStringConvertible {
        let pem: String
        let scheme: SignatureScheme
        let digest: MessageDigest?
        var testDescription: String { "\(scheme)" }
    }

    static let signers = [
        Signer(pem: TestKeys.rsaPrivate, scheme: .rsaPKCS1v15, digest: .sha256),
        Signer(pem: TestKeys.rsaPrivate, scheme: .rsaPSS, digest: .sha384),
        Signer(pem: TestKeys.p256Private, scheme: .ecdsa, digest: .sha256),
        Signer(pem: TestKeys.ed25519Private, scheme: .ed25519, digest: nil),
    ]

    @Test(arguments: signers)
    func signaturesVerifyAndForgeriesFailWithoutLeavingErrors(_ signer: Signer) throws {
        let key = try EVPKey.pem(signer.pem, isPrivate: true)
        let message = Array("header.payload".utf8)
        let signature = try leavesTheQueueEmpty {
            try message.withUnsafeBytes { try key.sign($0, scheme: signer.scheme, digest: signer.digest) }
        }
        var forged = signature
        forged[forged.count / 2] ^= 0x40
        let template = VerifyContext(key: key, scheme: signer.scheme, digest: signer.digest)
        #expect(template != nil)
        for context in [template, nil] {
            func verifies(_ signature: [UInt8], _ message: [UInt8]) -> Bool {
                leavesTheQueueEmpty {
                    signature.withUnsafeBytes { signature in
                        message.withUnsafeBytes {
                            key.verify(
                                signature,
                                for: $0,
                                scheme: signer.scheme,
                                digest: signer.digest,
                                template: context
                            )
                        }
                    }
                }
            }
            #expect(verifies(signature, message))
            #expect(!verifies(forged, message))
            #expect(!verifies(signature, message + [0]))
            #expect(!verifies(Array(signature.dropLast()), message))
            #expect(!verifies([UInt8](repeating: 0, count: signature.count), message))
        }
    }

    @Test func aPublicKeyDoesNotSign() throws {
        let key = try EVPKey.pem(TestKeys.p256Public, isPrivate: false)
        #expect(throws: EVPKey.SigningError.publicKey) {
            try [UInt8](repeating: 0, count: 8).withUnsafeBytes { try key.sign($0, scheme: .ecdsa, digest: .sha256) }
        }
    }

    @Test func malformedECDSASignaturesLeaveNoErrors() {
        #expect(leavesTheQueueEmpty { ECDSASignatureForm.raw(fromDER: [0x30, 0x03, 0x02, 0x01], half: 32) } == nil)
        #expect(leavesTheQueueEmpty { ECDSASignatureForm.raw(fromDER: [], half: 32) } == nil)
    }

    @Test func theEd25519PublicKeyIsDerivedFromThePrivateKey() throws {
        let key = try EVPKey.pem(TestKeys.ed25519Private, isPrivate: true)
        let raw = try #require(leavesTheQueueEmpty { key.ed25519PublicKey() })
        let rebuilt = try EVPKey.ed25519(raw: raw, isPrivate: false)
        #expect(rebuilt.kind == .ed25519)
        #expect(!rebuilt.isPrivate)
        #expect(rebuilt.ed25519PublicKey() == raw)
    }
}
