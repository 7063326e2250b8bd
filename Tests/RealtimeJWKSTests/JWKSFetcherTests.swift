import RealtimeCore
import RealtimeJWKSTestSupport
import RealtimeJWT
import Testing

@testable import RealtimeJWKS

/// Every way a JWK Set response can be refused, against the HTTPS test server: slow, huge (announced or not),
/// invalid JSON, another content type, an error status, a set without usable keys, keys whose `alg`/`use` do not
/// fit, an untrusted certificate, a server that is gone.
@Suite(.serialized, .timeLimit(.minutes(2))) struct JWKSFetcherTests {
    static func fetch(
        _ server: HTTPSTestServer,
        _ answer: HTTPSTestServer.Answer,
        caFile: String? = nil,
        maximumKeys: Int = 100
    ) async throws -> JWKSError? {
        let certificates = try TestCertificates.shared.get()
        server.answer("/jwks", with: answer)
        var configuration = JWKSKeyProvider.Configuration(
            source: .url(server.url("/jwks")),
            caFile: caFile ?? certificates.caFile
        )
        configuration.readTimeout = .milliseconds(300)
        configuration.connectTimeout = .seconds(1)
        configuration.requestTimeout = .seconds(3)
        configuration.maximumKeys = maximumKeys
        let fetcher = try JWKSFetcher(configuration: configuration)
        do {
            _ = try await fetcher.keySet(server.url("/jwks"))
            await fetcher.shutdown()
            return nil
        } catch {
            await fetcher.shutdown()
            return error
        }
    }

    @Test func refusesWhatIsNotAUsableKeySet() async throws {
        try await JWKSKeyProviderTests.withServer { server in
            let good = try JWKSKeyProviderTests.set(["k1"])
            #expect(try await Self.fetch(server, .body(good)) == nil)
            #expect(try await Self.fetch(server, .stall)?.code == .unreachable)
            #expect(try await Self.fetch(server, .huge(bytes: 10 << 20, announced: false))?.code == .tooLarge)
            #expect(try await Self.fetch(server, .huge(bytes: 10 << 20, announced: true))?.code == .tooLarge)
            #expect(try await Self.fetch(server, .body("{\"keys\": [")).map(\.code) == .invalidKeySet)
            #expect(try await Self.fetch(server, .body("[]"))?.code == .invalidKeySet)
            #expect(try await Self.fetch(server, .body(good, contentType: "text/html"))?.code == .contentType)
            #expect(try await Self.fetch(server, .body(good, contentType: "application/json; charset=utf-8")) == nil)
            #expect(try await Self.fetch(server, .status(404))?.code == .httpStatus)
            #expect(try await Self.fetch(server, .body(#"{"keys":[]}"#))?.code == .invalidKeySet)
            // Only encryption keys: nothing to verify with.
            let encryption = #"{"keys":[{"kty":"oct","use":"enc","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#
            #expect(try await Self.fetch(server, .body(encryption))?.code == .invalidKeySet)
            // A key whose alg does not fit its type (as for JWK Set files).
            let mismatched = #"{"keys":[{"kty":"oct","alg":"RS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#
            #expect(try await Self.fetch(server, .body(mismatched))?.code == .invalidKeySet)
            // A set served over the network may hold public keys only: a shared secret in it lets anyone sign.
            let secret = Base64URL.encode([UInt8](repeating: 7, count: 32))
            let symmetric = #"{"keys":[{"kty":"oct","kid":"h1","alg":"HS256","k":"\#(secret)"}]}"#
            let published = try await Self.fetch(server, .body(symmetric))
            #expect(published?.code == .invalidKeySet)
            #expect(published?.message.contains("public keys only") == true)
            // More usable keys than the limit (a token without `kid` is checked against each of them).
            let three = try JWKSKeyProviderTests.set(["k1", "k2", "k3"])
            #expect(try await Self.fetch(server, .body(three), maximumKeys: 3) == nil)
            let many = try await Self.fetch(server, .body(three), maximumKeys: 2)
            #expect(many?.code == .invalidKeySet)
            #expect(many?.message.hasSuffix("sent 3 usable keys; the limit is 2") == true)
            // A certificate no configured CA signed.
            let other = try TestCertificates.shared.get().otherCAFile
            #expect(try await Self.fetch(server, .body(good), caFile: other)?.code == .unreachable)
        }
    }

    /// Fifth adversarial probe, MEDIUM: a body trickled a byte at a time (each byte within the read timeout) held
    /// the fetch for as long as the server went on; `requestTimeout` bounds the whole exchange, body included.
    @Test func aTrickledBodyEndsAtTheRequestTimeout() async throws {
        try await JWKSKeyProviderTests.withServer { server in
            // 50 bytes 100 ms apart (5 s; the read timeout is 300 ms) against a request timeout of 3 s. Had it been
            // read to its end, the body (spaces) would be refused as an invalid key set instead.
            let error = try await Self.fetch(server, .trickle(chunks: 50, interval: .milliseconds(100)))
            #expect(error?.code == .unreachable)
            #expect(error?.message.hasSuffix("request timeout") == true)
        }
    }

    @Test func aServerThatIsGoneIsUnreachable() async throws {
        let server = try await HTTPSTestServer.start(certificates: try TestCertificates.shared.get())
        await server.stop()
        #expect(try await Self.fetch(server, .body("{}"))?.code == .unreachable)
    }

    @Test func configurationIsValidated() {
        #expect(throws: JWKSError.self) {
            try JWKSKeyProvider.Configuration(source: .url("http://idp/jwks")).validate()
        }
        var configuration = JWKSKeyProvider.Configuration(source: .url("https://idp.example/jwks"))
        #expect(throws: Never.self) { try configuration.validate() }
        configuration.maximumBytes = 2 << 20
        #expect(throws: JWKSError.self) { try configuration.validate() }
        configuration.maximumBytes = 1 << 20
        for keys in [0, 1001] {
            configuration.maximumKeys = keys
            #expect(throws: JWKSError.self) { try configuration.validate() }
        }
        configuration.maximumKeys = 100
        configuration.minimumLifetime = .seconds(7200)
        #expect(throws: JWKSError.self) { try configuration.validate() }
        // User information in the URL would not be sent, and would show wherever the host is named.
        configuration.minimumLifetime = .seconds(60)
        configuration.source = .url("https://user:secret@idp.example/jwks")
        #expect(throws: JWKSError.self) { try configuration.validate() }
        configuration.source = .openIDIssuer("https://user@idp.example")
        #expect(throws: JWKSError.self) { try configuration.validate() }
        configuration.source = .url("https://idp.example/jwks?contact=ops@example.com")
        #expect(throws: Never.self) { try configuration.validate() }
        configuration.caFile = "/nonexistent/ca.pem"
        configuration.minimumLifetime = .seconds(60)
        #expect(throws: JWKSError.self) { try JWKSFetcher(configuration: configuration) }
    }

    @Test func cacheControlIsParsed() {
        #expect(CacheControl.lifetime(nil) == nil)
        #expect(CacheControl.lifetime("public, max-age=120") == .seconds(120))
        #expect(CacheControl.lifetime("MAX-AGE=7, private") == .seconds(7))
        #expect(CacheControl.lifetime("no-cache, max-age=120") == .zero)
        #expect(CacheControl.lifetime("max-age=-1") == nil)
        #expect(CacheControl.lifetime("max-age=1e3") == nil)
        #expect(CacheControl.lifetime("max-age=99999999999999999999") == .seconds(999_999_999_999))
        // Fifth adversarial probe, MEDIUM: `Cache-Control: =` trapped (index out of range) and took the server down.
        for header in ["=", "", ",", " , ", "==", "=,=", "max-age", "max-age=", "=5"] {
            #expect(CacheControl.lifetime(header) == nil, "\(header)")
        }
        #expect(CacheControl.lifetime("=, max-age=5") == .seconds(5))
    }

    @Test func messagesNameTheHostOnly() {
        #expect(JWKSFetcher.host(of: "https://idp.example:8443/jwks?key=secret#x") == "idp.example:8443")
        #expect(JWKSFetcher.host(of: "https://user:secret@idp.example/jwks") == "idp.example")
        #expect(JWKSFetcher.host(of: "https://a@b@idp.example?q=@") == "idp.example")
        #expect(JWKSFetcher.host(of: "not a url") == "the JWKS server")
    }
}
