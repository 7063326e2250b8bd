// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Foundation
import RealtimeCore
import RealtimeJWT

/// `realtime-server token`: mints an access token with the configured key, for development and tests.
struct Token: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mint an access token with the configured key (JWT_SECRET, --secret-file or --private-key).",
        discussion: "With --refresh, mint a refresh token (typ refresh) with the refresh secret instead."
    )

    @Option(help: "The user id (`sub`).")
    var user: String

    @Flag(help: "Grant administrator privilege (`roles: [\"admin\"]`).")
    var admin = false

    @Option(help: "The session id (`sid`).")
    var session: String?

    @Option(help: "Lifetime in seconds (default 3600; at most WEBSOCKET_REVOCATION_RETENTION, 24 h by default).")
    var ttl: Int = 3600

    @Flag(help: "Mint a refresh token (`typ: refresh`) with JWT_REFRESH_SECRET (or --refresh-secret-file).")
    var refresh = false

    @OptionGroup var keys: KeyOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard ttl > 0 else { throw ValidationError("--ttl must be positive") }
        // The server refuses a token that would outlive a revocation (`lifetime_too_long`): minting one is no use.
        let retention = try HubConfiguration(environment: environment).revocationRetention
        guard refresh || Duration.seconds(ttl) <= retention else {
            throw ValidationError(
                "--ttl \(ttl) is longer than the revocation retention (\(retention.components.seconds) s): the server "
                    + "would refuse the token; raise WEBSOCKET_REVOCATION_RETENTION or mint a shorter-lived one"
            )
        }
        // A token the server would refuse is no use: the ids follow the hub's rule.
        if let problem = IdentifierPolicy.problem(with: user) { throw ValidationError("--user \(problem)") }
        if let session, let problem = IdentifierPolicy.problem(with: session) {
            throw ValidationError("--session \(problem)")
        }
        guard let signer = try refresh ? keys.refreshSigner(environment) : keys.signer(environment) else {
            throw ConfigurationError(
                refresh
                    ? "no refresh secret: set JWT_REFRESH_SECRET (or JWT_REFRESH_SECRET_FILE), or pass --refresh-secret-file"
                    : "no signing key: set JWT_SECRET (or JWT_SECRET_FILE), or pass --secret-file or --private-key with --alg"
            )
        }
        let token = try mintToken(
            signer: signer,
            userID: user,
            sessionID: session,
            admin: admin,
            lifetime: .seconds(ttl),
            issuer: keys.issuer ?? environment["JWT_ISSUER"],
            audience: keys.audiences(environment).first,
            type: refresh ? "refresh" : nil
        )
        print(token)
    }
}

/// `realtime-server verify-token`: explains why a token is refused, for operators debugging a client.
struct VerifyToken: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-token",
        abstract: "Verify a token: exit 0 and print its claims as JSON, or exit 1 and print `reason: <code>`.",
        discussion: "Pass - as TOKEN to read it from standard input (keeps it out of the shell history)."
    )

    @Argument(help: "The token, or - to read it from standard input.")
    var token: String

    @OptionGroup var keys: KeyOptions

    @Option(help: "Allowed clock skew in seconds (default 30).")
    var leeway: Int?

    @Option(help: "A claim that must be present; repeatable (default: exp).")
    var requireClaim: [String] = []

    @Option(help: "The claim that states the token's type, e.g. token_use (with --token-type).")
    var tokenTypeClaim: String?

    @Option(help: "The value --token-type-claim must have, e.g. access.")
    var tokenType: String?

    @Option(help: "The largest token accepted, in bytes (default 8192).")
    var maxTokenBytes: Int?

    @Option(help: "Evaluate the token at this moment (seconds since 1970) instead of now.")
    var at: Int64?

    func validate() throws {
        if (tokenTypeClaim == nil) != (tokenType == nil) {
            throw ValidationError("--token-type-claim and --token-type go together")
        }
        if let leeway, leeway < 0 { throw ValidationError("--leeway must not be negative") }
        if let maxTokenBytes, maxTokenBytes <= 0 { throw ValidationError("--max-token-bytes must be positive") }
    }

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let keySet = try keys.keySet(environment)
        guard !keySet.keys.isEmpty else {
            throw ConfigurationError(
                "no key: pass --secret-file, --public-key with --alg, or --jwks (or set JWT_SECRET / JWT_*_FILE); "
                    + "--jwks-url and --oidc-issuer are read by serve only"
            )
        }
        var configuration = keys.verifierConfiguration(environment)
        if let leeway { configuration.leeway = .seconds(leeway) }
        if !requireClaim.isEmpty { configuration.requiredClaims = Set(requireClaim) }
        if let tokenTypeClaim, let tokenType { configuration.tokenType = .claim(tokenTypeClaim, equals: tokenType) }
        if let maxTokenBytes { configuration.maxTokenBytes = maxTokenBytes }
        let verifier = JWTVerifier(keys: try keys.keyStore(keys: keySet, environment), configuration: configuration)

        var text = token
        if text == "-" { text = readLine(strippingNewline: true) ?? "" }
        text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        let moment = at.map { Timestamp(secondsSinceEpoch: $0) } ?? .now()
        do {
            let identity = try verifier.verify(text, at: moment)
            print(JSONWriter.string(.object(identity.claims)))
        } catch {
            print("reason: \(error.reason.rawValue)")
            if !error.detail.isEmpty { FileHandle.standardError.write(Data("detail: \(error.detail)\n".utf8)) }
            throw ExitCode(1)
        }
    }
}
