import RealtimeCore
import RealtimeJWKSTestSupport
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Testing

extension RedisIntegrationTests {
    /// Every Redis backend on a six-node Redis Cluster over TLS only (clients, bus and replication; certificates
    /// made by `openssl` for the run; nodes that require client certificates), reached from one `rediss://` seed.
    @Suite(.timeLimit(.minutes(5))) struct RedisClusterTLSTests {
        @Test func everyBackendConformsOnATLSCluster() async throws {
            try await withRedisTLSCluster { cluster in
                let certificates = try #require(cluster.certificates)
                // One rediss:// seed: the other primaries come from CLUSTER SLOTS (their TLS ports), reached over
                // TLS with the same options, the server's IP address checked against the certificate.
                var base = cluster.configuration
                base.clusterNodes = []
                let configuration = try RedisConfiguration.cluster(
                    nodes: "rediss://127.0.0.1:\(cluster.nodes[0].port)",
                    base: base
                )
                #expect(configuration.tls == certificates.clientOptions(withCertificate: true))
                #expect(configuration.tls?.verifyCertificate == true)
                let client = RedisClient(configuration: configuration)
                let peer = RedisClient(configuration: cluster.configuration)
                try await client.checkReady()
                #expect(client.isCluster)
                #expect(await client.healthCheck().status == .healthy)
                #expect(await client.healthCheck().details["primariesConnected"] == .int(3))

                try await RedisClusterTests.runConformance(on: cluster, client: client, peer: peer)
                await client.shutdown()
                await peer.shutdown()

                try await Self.refusesWhatItCannotTrust(cluster: cluster, certificates: certificates)
            }
        }

        /// On the same cluster: a server certificate from another CA, a certificate for another name, plain TCP,
        /// and no client certificate are each refused with an error that says so.
        static func refusesWhatItCannotTrust(cluster: RedisTestCluster, certificates: TestCertificates) async throws {
            let port = cluster.nodes[0].port
            func refusal(_ change: (inout RedisConfiguration) -> Void) async -> RealtimeError? {
                var configuration = cluster.configuration
                configuration.connectTimeout = .seconds(1)
                change(&configuration)
                return await readinessFailure(configuration)
            }

            let otherCA = await refusal { $0.tls?.caFile = certificates.otherCAFile }
            #expect(otherCA?.code == .backendUnavailable, "a server certificate from an untrusted CA was accepted")
            let otherCAText = String(describing: otherCA)
            #expect(otherCA?.message.contains("no Redis Cluster node answered CLUSTER SLOTS") == true, "\(otherCAText)")
            #expect(
                otherCA?.message.contains("TLS with Redis at 127.0.0.1:\(port) failed") == true,
                "the error names the node and TLS: \(otherCAText)"
            )

            let plain = await refusal { $0.tls = nil }
            #expect(plain != nil, "plain TCP to TLS-only nodes was accepted")

            let noCertificate = await refusal { $0.tls = certificates.clientOptions(withCertificate: false) }
            #expect(
                noCertificate?.message.contains("client certificate") == true,
                "the error says the nodes want a client certificate: \(String(describing: noCertificate))"
            )
        }

        @Test func clusterNodeListsSayWhetherTLSIsOn() throws {
            let tls = try RedisConfiguration.cluster(nodes: "rediss://10.0.0.1:6379, rediss://10.0.0.2:6379")
            #expect(tls.tls == RedisTLSOptions())
            #expect(tls.clusterNodes.map(\.port) == [6379, 6379])
            // Bare entries follow the others, and the base's TLS options (REDIS_TLS_*) are kept.
            let withCA = RedisConfiguration(tls: RedisTLSOptions(caFile: "/ca.pem"))
            #expect(try RedisConfiguration.cluster(nodes: "rediss://a:1,b:2", base: withCA).tls?.caFile == "/ca.pem")
            #expect(try RedisConfiguration.cluster(nodes: "a:1,b:2", base: withCA).tls?.caFile == "/ca.pem")
            #expect(try RedisConfiguration.cluster(nodes: "redis://a:1,b:2").tls == nil)

            func message(_ nodes: String, base: RedisConfiguration = RedisConfiguration()) -> String {
                do {
                    _ = try RedisConfiguration.cluster(nodes: nodes, base: base)
                    return "accepted"
                } catch {
                    return error.message
                }
            }
            #expect(message("rediss://a:1,redis://b:2").contains("mixes redis:// and rediss://"))
            #expect(message("redis://a:1", base: withCA).contains("says redis:// (plain TCP) but TLS is configured"))
            let credentials = message("rediss://user:hunter2@a:1")
            #expect(credentials.contains("credentials") && !credentials.contains("hunter2"), "\(credentials)")
        }
    }
}
