// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeCrypto
import RealtimeJWT
import Testing

/// The hand-built DER of ECDSA signatures matches the minimal encoding OpenSSL writes and reads back.
@Suite struct ECDSASignatureFormTests {
    /// An independent DER encoder: SEQUENCE { INTEGER r, INTEGER s }, minimal, unsigned.
    static func referenceDER(_ raw: [UInt8]) -> [UInt8] {
        func integer(_ bytes: ArraySlice<UInt8>) -> [UInt8] {
            var bytes = Array(bytes.drop { $0 == 0 })
            if bytes.isEmpty { bytes = [0] }
            if bytes[0] & 0x80 != 0 { bytes.insert(0, at: 0) }
            return [0x02, UInt8(bytes.count)] + bytes
        }
        let half = raw.count / 2
        let body = integer(raw[..<half]) + integer(raw[half...])
        return (body.count < 0x80 ? [0x30, UInt8(body.count)] : [0x30, 0x81, UInt8(body.count)]) + body
    }

    static func edgeCases(half: Int) -> [[UInt8]] {
        let zero = [UInt8](repeating: 0, count: half)
        let ones = [UInt8](repeating: 0xFF, count: half)
        var leadingZeros = [UInt8](repeating: 0, count: half)
        leadingZeros[half - 1] = 1
        var topBitAfterZero = [UInt8](repeating: 0x11, count: half)
        topBitAfterZero[0] = 0
        topBitAfterZero[1] = 0x80
        var generator = SystemRandomNumberGenerator()
        let random = (0..<64).map { _ in (0..<(2 * half)).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        return [zero + zero, ones + ones, leadingZeros + ones, topBitAfterZero + leadingZeros, ones + zero] + random
    }

    @Test(arguments: [32, 48, 66])
    func derMatchesTheMinimalEncodingAndRoundTrips(half: Int) throws {
        for raw in Self.edgeCases(half: half) {
            let der = try #require(ECDSASignatureForm.der(fromRaw: raw))
            #expect(der == Self.referenceDER(raw))
            #expect(ECDSASignatureForm.raw(fromDER: der, half: half) == raw)
        }
    }

    @Test func oddOrOversizedSignaturesAreRefused() {
        #expect(ECDSASignatureForm.der(fromRaw: []) == nil)
        #expect(ECDSASignatureForm.der(fromRaw: [1, 2, 3]) == nil)
        #expect(ECDSASignatureForm.der(fromRaw: [UInt8](repeating: 1, count: 134)) == nil)
    }

    @Test(arguments: [JWTAlgorithm.es256, .es384, .es512])
    func manySignaturesVerify(_ algorithm: JWTAlgorithm) throws {
        // Random signatures cover r and s with a set top bit and with leading zero bytes.
        let signer = try JWTSigner(key: Fixtures.privateKey(for: algorithm))
        let verifier = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: algorithm)]))
        let now = Timestamp.now()
        for index in 0..<64 {
            let token = try signer.sign(["sub": .string("user-\(index)"), "exp": .int(now.secondsSinceEpoch + 60)])
            #expect(try verifier.verify(token, at: now).userID == "user-\(index)")
        }
    }
}
