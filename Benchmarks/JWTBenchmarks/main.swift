// SPDX-License-Identifier: Apache-2.0
//
// Verifications per second of RealtimeJWT for HS256, RS256, ES256 and EdDSA, next to `openssl speed` for the
// same primitive measured in the same run, and HS256 next to vapor/jwt-kit on the same token.
//
//     REALTIMEHUB_BENCHMARKS=1 swift run -c release JWTBenchmarks [--runs 7] [--seconds 1]
//
// `--profile ALG --iterations N [--signature-only]` only verifies ALG's token N times (no `openssl speed`, no
// jwt-kit), for `valgrind --tool=callgrind` or `perf record`; `--signature-only` stops after the JWS layer.
//
// Single-threaded, like `openssl speed` without -multi. Each figure is the median of the runs. Rates are per
// second of CPU time (this process's, CLOCK_PROCESS_CPUTIME_ID), as `openssl speed` reports per second of user
// CPU time by default: on a shared, loaded machine wall-clock rates would measure the other tenants.

import Foundation
import JWTKit
import RealtimeCore
import RealtimeJWT

// MARK: Options

var runs = 7
var secondsPerRun = 1.0
var profileAlgorithm: String?
var profileIterations = 10_000
var profileSignatureOnly = false
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--runs": runs = Int(arguments.next() ?? "") ?? runs
    case "--seconds": secondsPerRun = Double(arguments.next() ?? "") ?? secondsPerRun
    case "--profile": profileAlgorithm = arguments.next()
    case "--iterations": profileIterations = Int(arguments.next() ?? "") ?? profileIterations
    case "--signature-only": profileSignatureOnly = true
    default:
        print("usage: JWTBenchmarks [--runs N] [--seconds S] [--profile ALG [--iterations N]]")
        exit(2)
    }
}

// MARK: Keys and tokens (the test fixtures' keys, made by PyJWT's make_fixtures.py)

let fixturesURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tests/RealtimeJWTTests/Fixtures/pyjwt-fixtures.json")
let fixtures = try JSONParser().parse(Array(try Data(contentsOf: fixturesURL)))
func fixture(_ key: String, _ field: String) -> String { fixtures["keys"]![key]![field]!.stringValue! }

let secret = "benchmark-secret-of-32-bytes-len"
let now = Timestamp.now()
let claims: JSONObject = [
    "sub": "user-42", "sid": "session-42", "iss": "auth-service", "aud": "realtime-hub", "typ": "access",
    "iat": .int(now.secondsSinceEpoch), "exp": .int(now.secondsSinceEpoch + 3600), "roles": ["user"],
]
let configuration = JWTVerifier.Configuration(
    issuer: "auth-service",
    audiences: ["realtime-hub"],
    tokenType: .claim("typ", equals: "access")
)

struct Case {
    let name: String
    let signer: JWTSigner
    let verifier: JWTVerifier
    let token: String
}

func makeCase(_ name: String, privateKey: JWTKey, publicKey: JWTKey) throws -> Case {
    let signer = try JWTSigner(key: privateKey)
    let token = try signer.sign(claims)
    return Case(
        name: name,
        signer: signer,
        verifier: JWTVerifier(keys: JWTKeySet([publicKey]), configuration: configuration),
        token: token
    )
}

let cases = [
    try makeCase("HS256", privateKey: .hmac(secret: secret, kid: "k"), publicKey: .hmac(secret: secret, kid: "k")),
    try makeCase(
        "RS256",
        privateKey: .privateKey(pem: fixture("rsa", "private_pem"), algorithm: .rs256, kid: "k"),
        publicKey: .publicKey(pem: fixture("rsa", "public_pem"), algorithm: .rs256, kid: "k")
    ),
    try makeCase(
        "ES256",
        privateKey: .privateKey(pem: fixture("ec-P-256", "private_pem"), algorithm: .es256, kid: "k"),
        publicKey: .publicKey(pem: fixture("ec-P-256", "public_pem"), algorithm: .es256, kid: "k")
    ),
    try makeCase(
        "EdDSA",
        privateKey: .privateKey(pem: fixture("ed25519", "private_pem"), algorithm: .eddsa, kid: "k"),
        publicKey: .publicKey(pem: fixture("ed25519", "public_pem"), algorithm: .eddsa, kid: "k")
    ),
]

// MARK: Measurement

/// CPU time used by this process so far, in seconds.
func cpuSeconds() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// Runs `body` in batches for about `secondsPerRun`, `runs` times, and returns the median operations per second.
@MainActor func measure(_ body: () throws -> Void) rethrows -> Double {
    var rates: [Double] = []
    for _ in 0..<runs {
        var operations = 0
        let start = cpuSeconds()
        var elapsed = 0.0
        repeat {
            for _ in 0..<64 { try body() }
            operations += 64
            elapsed = cpuSeconds() - start
        } while elapsed < secondsPerRun
        rates.append(Double(operations) / elapsed)
    }
    rates.sort()
    return rates[rates.count / 2]
}

@MainActor func measureAsync(_ body: () async throws -> Void) async rethrows -> Double {
    var rates: [Double] = []
    for _ in 0..<runs {
        var operations = 0
        let start = cpuSeconds()
        var elapsed = 0.0
        repeat {
            for _ in 0..<64 { try await body() }
            operations += 64
            elapsed = cpuSeconds() - start
        } while elapsed < secondsPerRun
        rates.append(Double(operations) / elapsed)
    }
    rates.sort()
    return rates[rates.count / 2]
}

/// Runs `openssl speed -mr` and returns the figure of the first line starting with `prefix`, field `field`.
@MainActor func opensslSpeed(_ arguments: [String], prefix: String, field: Int) -> Double? {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["openssl", "speed", "-mr", "-seconds", "\(max(Int(secondsPerRun * 2), 1))"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return nil }
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    for line in output.split(separator: "\n") where line.hasPrefix(prefix) {
        let fields = line.split(separator: ":")
        if fields.count > field { return Double(fields[field]) }
    }
    return nil
}

func format(_ rate: Double) -> String {
    let rounded = Int(rate.rounded())
    var digits = String(rounded)
    var index = digits.count - 3
    while index > 0 {
        digits.insert(",", at: digits.index(digits.startIndex, offsetBy: index))
        index -= 3
    }
    return digits
}

func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
}

// Sanity: every token verifies before it is timed.
for benchmark in cases {
    let identity = try benchmark.verifier.verify(benchmark.token, at: .now())
    precondition(identity.userID == "user-42")
}

if let profileAlgorithm {
    guard let benchmark = cases.first(where: { $0.name == profileAlgorithm }) else {
        print("unknown algorithm \(profileAlgorithm); one of \(cases.map(\.name))")
        exit(2)
    }
    let verifyAt = Timestamp.now()
    if profileSignatureOnly {
        // The JWS layer alone: header, signature, payload decoding; no payload parse, no claims.
        for _ in 0..<profileIterations { _ = try benchmark.verifier.verifySignature(benchmark.token) }
    } else {
        for _ in 0..<profileIterations { _ = try benchmark.verifier.verify(benchmark.token, at: verifyAt) }
    }
    exit(0)
}

let hsSigningInputBytes = cases[0].token.utf8.count - cases[0].token.split(separator: ".")[2].count - 1
print("RealtimeJWT verification benchmark: \(runs) runs of ~\(secondsPerRun) CPU-s each, median, 1 thread")
print("token: \(cases[0].token.utf8.count) bytes for HS256 (signing input \(hsSigningInputBytes) bytes)")
print("")
print(pad("alg", 7) + pad("RealtimeJWT verify/s", 22) + pad("openssl speed", 32) + "ratio")

let opensslFigures: [String: (String, Double?)] = [
    "HS256": (
        "hmac(sha256) @256 B",
        opensslSpeed(["-bytes", "256", "-hmac", "sha256"], prefix: "+F:", field: 3).map { $0 / 256 }
    ),
    "RS256": ("rsa2048 verify", opensslSpeed(["rsa2048"], prefix: "+F2:", field: 4)),
    "ES256": ("ecdsap256 verify", opensslSpeed(["ecdsap256"], prefix: "+F4:", field: 4)),
    "EdDSA": ("ed25519 verify", opensslSpeed(["ed25519"], prefix: "+F6:", field: 5)),
]

var results: [String: Double] = [:]
for benchmark in cases {
    let rate = try measure {
        _ = try benchmark.verifier.verify(benchmark.token, at: .now())
    }
    results[benchmark.name] = rate
    let (label, reference) = opensslFigures[benchmark.name] ?? ("", nil)
    let ratio = reference.map { String(format: "%.1f%%", rate / $0 * 100) } ?? "n/a"
    print(
        pad(benchmark.name, 7) + pad(format(rate), 22)
            + pad("\(reference.map(format) ?? "n/a") (\(label))", 32) + ratio
    )
}

// MARK: HS256 against vapor/jwt-kit, same token, both through their async API

struct JWTKitPayload: JWTPayload {
    var sub: SubjectClaim
    var sid: String
    var iss: IssuerClaim
    var aud: AudienceClaim
    var typ: String
    var iat: IssuedAtClaim
    var exp: ExpirationClaim
    var roles: [String]

    func verify(using algorithm: some JWTKit.JWTAlgorithm) async throws {
        try exp.verifyNotExpired()
        try aud.verifyIntendedAudience(includes: "realtime-hub")
        guard iss.value == "auth-service", typ == "access" else {
            throw JWTKit.JWTError.claimVerificationFailure(failedClaim: iss, reason: "issuer or type")
        }
    }
}

let keyCollection = await JWTKeyCollection().add(hmac: HMACKey(from: secret), digestAlgorithm: .sha256, kid: "k")
let hsToken = cases[0].token
let kitPayload = try await keyCollection.verify(hsToken, as: JWTKitPayload.self)
precondition(kitPayload.sub.value == "user-42")
let hsVerifier = cases[0].verifier
let oursAsync = try await measureAsync { _ = try await hsVerifier.verify(hsToken) }
let jwtKit = try await measureAsync { _ = try await keyCollection.verify(hsToken, as: JWTKitPayload.self) }
print("")
print("HS256, same token, async API (TokenVerifier.verify vs JWTKeyCollection.verify):")
print("  RealtimeJWT  \(format(oursAsync)) verify/s")
print("  jwt-kit 5    \(format(jwtKit)) verify/s")
print(String(format: "  ratio        %.2fx", oursAsync / jwtKit))

// Signing, for reference (not a goal).
print("")
print(
    "signing, sign/s: "
        + cases.map { benchmark in
            let rate = measure { _ = try? benchmark.signer.sign(claims) }
            return "\(benchmark.name) \(format(rate))"
        }.joined(separator: ", ")
)
