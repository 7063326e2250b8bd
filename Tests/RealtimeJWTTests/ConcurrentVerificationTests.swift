// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT
import Testing

/// Verifications share pooled OpenSSL contexts per key and algorithm: many at once all get the right answer.
@Suite struct ConcurrentVerificationTests {
    @Test(arguments: [JWTAlgorithm.rs256, .ps256, .es256, .es512, .eddsa])
    func concurrentVerificationsAgree(_ algorithm: JWTAlgorithm) async throws {
        let signer = try JWTSigner(key: Fixtures.privateKey(for: algorithm))
        let verifier = JWTVerifier(keys: JWTKeySet([try Fixtures.publicKey(for: algorithm)]))
        let now = Timestamp.now()
        let good = try signer.sign(["sub": "user-1", "exp": .int(now.secondsSinceEpoch + 60)])
        let parts = good.split(separator: ".").map(String.init)
        let other = try signer.sign(["sub": "user-2", "exp": .int(now.secondsSinceEpoch + 60)])
        let forged = parts[0] + "." + parts[1] + "." + other.split(separator: ".").map(String.init)[2]
        let outcomes = await withTaskGroup(of: (Bool, Bool).self) { group in
            for _ in 0..<32 {
                group.addTask {
                    var allGood = true
                    var allForgedRefused = true
                    for _ in 0..<20 {
                        allGood = allGood && (try? verifier.verify(good, at: now))?.userID == "user-1"
                        allForgedRefused = allForgedRefused && (try? verifier.verify(forged, at: now)) == nil
                    }
                    return (allGood, allForgedRefused)
                }
            }
            return await group.reduce(into: [(Bool, Bool)]()) { $0.append($1) }
        }
        #expect(outcomes.count == 32)
        #expect(outcomes.allSatisfy { $0.0 && $0.1 })
    }
}
