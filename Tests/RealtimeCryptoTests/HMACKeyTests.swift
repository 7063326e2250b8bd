// SPDX-License-Identifier: Apache-2.0

import RealtimeCrypto
import Testing

/// HMAC through the reusable keyed context, against RFC 4231's test vectors.
@Suite struct HMACKeyTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        let name: String
        let key: [UInt8]
        let data: String
        let sha256: String
        let sha384: String
        let sha512: String
        var testDescription: String { name }
    }

    /// RFC 4231 §4.2 (test case 1), §4.3 (2) and §4.7 (6: a key longer than the block, hashed first).
    static let vectors = [
        Vector(
            name: "RFC 4231 test case 1",
            key: [UInt8](repeating: 0x0b, count: 20),
            data: "Hi There",
            sha256: "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            sha384: "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
                + "faea9ea9076ede7f4af152e8b2fa9cb6",
            sha512: "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
                + "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
        ),
        Vector(
            name: "RFC 4231 test case 2",
            key: Array("Jefe".utf8),
            data: "what do ya want for nothing?",
            sha256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            sha384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                + "8e2240ca5e69e2c78b3239ecfab21649",
            sha512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                + "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        ),
        Vector(
            name: "RFC 4231 test case 6",
            key: [UInt8](repeating: 0xaa, count: 131),
            data: "Test Using Larger Than Block-Size Key - Hash Key First",
            sha256: "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            sha384: "4ece084485813e9088d2c63a041bc5b44f9ef1012a2b588f3cd11f05033ac4c6"
                + "0c2ef6ab4030fe8296248df163f44952",
            sha512: "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352"
                + "6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598"
        ),
    ]

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xF)]] })
    }

    @Test(arguments: vectors)
    func macsMatchRFC4231(_ vector: Vector) throws {
        let message = Array(vector.data.utf8)
        for (digest, expected) in [
            (MessageDigest.sha256, vector.sha256), (.sha384, vector.sha384), (.sha512, vector.sha512),
        ] {
            let key = try #require(HMACKey(secret: vector.key, digest: digest))
            #expect(key.outputLength == digest.length)
            let mac = try #require(message.withUnsafeBytes { key.authenticate($0) })
            #expect(Self.hex(mac) == expected)
            #expect(mac.withUnsafeBytes { mac in message.withUnsafeBytes { key.verify(mac, for: $0) } })
        }
    }

    @Test func authenticateIntoWritesTheMacAndRefusesAShortBuffer() throws {
        let key = try #require(HMACKey(secret: Array("Jefe".utf8), digest: .sha256))
        let message = Array("what do ya want for nothing?".utf8)
        var out = [UInt8](repeating: 0, count: 32)
        #expect(out.withUnsafeMutableBytes { out in message.withUnsafeBytes { key.authenticate($0, into: out) } })
        #expect(Self.hex(out) == Self.vectors[1].sha256)
        var short = [UInt8](repeating: 0, count: 31)
        #expect(!short.withUnsafeMutableBytes { out in message.withUnsafeBytes { key.authenticate($0, into: out) } })
    }

    @Test func wrongOrTruncatedMacsAreRefused() throws {
        let key = try #require(HMACKey(secret: Array("Jefe".utf8), digest: .sha256))
        let message = Array("what do ya want for nothing?".utf8)
        let mac = try #require(message.withUnsafeBytes { key.authenticate($0) })
        var flipped = mac
        flipped[31] ^= 1
        for candidate in [flipped, Array(mac.dropLast()), mac + [0], []] {
            #expect(!candidate.withUnsafeBytes { mac in message.withUnsafeBytes { key.verify(mac, for: $0) } })
        }
    }

    @Test func anEmptySecretIsRefused() {
        #expect(HMACKey(secret: [], digest: .sha256) == nil)
    }

    @Test func constantTimeEqualityComparesBytesAndLengths() {
        let a: [UInt8] = [1, 2, 3, 4]
        #expect(a.withUnsafeBytes { a in [UInt8]([1, 2, 3, 4]).withUnsafeBytes { ConstantTime.equals(a, $0) } })
        #expect(!a.withUnsafeBytes { a in [UInt8]([1, 2, 3, 5]).withUnsafeBytes { ConstantTime.equals(a, $0) } })
        #expect(!a.withUnsafeBytes { a in [UInt8]([1, 2, 3]).withUnsafeBytes { ConstantTime.equals(a, $0) } })
        #expect([UInt8]().withUnsafeBytes { a in [UInt8]().withUnsafeBytes { ConstantTime.equals(a, $0) } })
    }
}
