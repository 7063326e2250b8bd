import RealtimeCore
import RealtimeJWKSTestSupport
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// The Redis backends over TLS: a TLS-only redis-server (`--port 0 --tls-port …`) with a CA and a certificate
    /// for 127.0.0.1 made by `openssl` for the run.
    @Suite(.timeLimit(.minutes(3))) struct RedisTLSTests {
        static let time = ConformanceTime.realTime(ttl: .milliseconds(500), tolerance: .milliseconds(200))

        @Test func everyBackendConformsOverTLS() async throws {
            let certificates = try TestCertificates.shared.get()
            let server = try await RedisTestServer.startTLS(certificates: certificates)
            defer { server.stop() }
            let configuration = server.configuration
            let client = RedisClient(configuration: configuration)
            try await client.checkReady()
            try await runBackendConformance(client: client, configuration: configuration)
            await client.shutdown()
        }

        @Test func aServerSignedByAnotherCAIsRefusedWithAClearError() async throws {
            let certificates = try TestCertificates.shared.get()
            let server = try await RedisTestServer.startTLS(certificates: certificates)
            defer { server.stop() }
            var configuration = server.configuration
            configuration.tls = RedisTLSOptions(caFile: certificates.otherCAFile)
            let client = RedisClient(configuration: configuration)
            do {
                try await client.checkReady()
                Issue.record("a certificate signed by an untrusted CA was accepted")
            } catch {
                #expect(error.code == .backendUnavailable)
                #expect(error.message.contains("TLS with Redis at 127.0.0.1:\(server.port) failed"), "\(error)")
            }
            await client.shutdown()

            // Plain TCP to the TLS port gets no answer it can use either.
            var plain = server.configuration
            plain.tls = nil
            let plainClient = RedisClient(configuration: plain)
            await #expect(throws: RealtimeError.self) { try await plainClient.checkReady() }
            await plainClient.shutdown()
        }

        /// `--tls-auth-clients yes`: the client certificate and key (`REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`)
        /// signed by the CA the server trusts get in; none, or one from another CA, is refused with a clear error.
        @Test func aServerThatAuthenticatesClientsNeedsTheirCertificate() async throws {
            let certificates = try TestCertificates.shared.get()
            let server = try await RedisTestServer.startTLS(certificates: certificates, requireClientCertificates: true)
            defer { server.stop() }
            #expect(server.configuration.tls?.certificateFile == certificates.clientCertificate)
            let client = RedisClient(configuration: server.configuration)
            try await client.checkReady()
            let limiter = RedisRateLimiter(client: client, prefix: "t\(RandomID.hex(bytes: 4)):")
            let policy = RateLimitPolicy(name: "mtls", limit: 2, period: .seconds(60))
            #expect(try await limiter.consume("k", cost: 2, policy: policy).allowed)
            #expect(try await !limiter.consume("k", cost: 1, policy: policy).allowed)
            await client.shutdown()

            func refusal(_ tls: RedisTLSOptions) async -> RealtimeError? {
                var configuration = server.configuration
                configuration.tls = tls
                return await readinessFailure(configuration)
            }
            let without = await refusal(certificates.clientOptions(withCertificate: false))
            #expect(without?.code == .backendUnavailable, "a client without a certificate got in")
            #expect(
                without?.message.contains("requires a client certificate (REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)")
                    == true,
                "\(String(describing: without))"
            )
            var otherCA = certificates.clientOptions(withCertificate: true)
            otherCA.certificateFile = certificates.otherClientCertificate
            otherCA.keyFile = certificates.otherClientKey
            let refused = await refusal(otherCA)
            #expect(refused?.code == .backendUnavailable, "a client certificate from an untrusted CA got in")
            #expect(
                refused?.message.contains("TLS with Redis at 127.0.0.1:\(server.port) failed") == true,
                "\(String(describing: refused))"
            )
        }

        @Test func tlsOptionsAreReadAndChecked() throws {
            let configuration = try RedisConfiguration(url: "rediss://user:secret@redis.example:6380/0")
            #expect(configuration.tls == RedisTLSOptions())
            #expect(configuration.tls?.verifyCertificate == true)
            #expect(configuration.host == "redis.example" && configuration.port == 6380)
            #expect(try RedisConfiguration(url: "redis://h:1").tls == nil)
            #expect(throws: RealtimeError.self) { try RedisConfiguration(url: "http://h:1") }
            #expect(throws: RealtimeError.self) { try RedisTLSOptions(certificateFile: "/c.pem").validate() }
            #expect(throws: RealtimeError.self) { try RedisTLSOptions(keyFile: "/k.pem").validate() }
        }

        @Test func missingTLSFilesAreAClearError() async throws {
            var configuration = RedisConfiguration(port: 1, connectTimeout: .milliseconds(500))
            configuration.tls = RedisTLSOptions(caFile: "/nonexistent/ca.pem")
            let client = RedisClient(configuration: configuration)
            do {
                try await client.checkReady()
                Issue.record("a missing CA file was accepted")
            } catch {
                #expect(error.code == .invalidConfiguration || error.code == .backendUnavailable, "\(error)")
                #expect("\(error)".contains("/nonexistent/ca.pem"), "\(error)")
            }
            await client.shutdown()
        }
    }
}
