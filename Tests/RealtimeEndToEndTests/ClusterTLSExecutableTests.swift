// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWKSTestSupport
import RealtimeRedisTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Issue 15's "done when": two `realtime-server` processes on a local six-node Redis Cluster over TLS, configured
/// by the one set of variables README.md's "Two servers on a Redis Cluster over TLS" shows.
@Suite(
    "Two realtime-server processes on a Redis Cluster over TLS",
    .enabled(if: RedisTestServer.enabled, "needs redis-server and redis-cli"),
    .timeLimit(.minutes(3))
)
struct ClusterTLSExecutableTests {
    /// The variables of the README's section, with this cluster's ports and certificate files.
    static func environment(_ cluster: RedisTestCluster, certificates: TestCertificates) -> [String: String] {
        [
            "REDIS_CLUSTER_ENABLED": "true",
            "REDIS_CLUSTER_NODES": cluster.nodes.prefix(3).map { "rediss://127.0.0.1:\($0.port)" }
                .joined(separator: ","),
            "REDIS_TLS_CA_FILE": certificates.caFile,
            "REDIS_TLS_CERT_FILE": certificates.clientCertificate,
            "REDIS_TLS_KEY_FILE": certificates.clientKey,
        ]
    }

    @Test("publish through A's API reaches a client on B, stats count 2 servers, a wrong CA stops a server at start")
    func twoServersOnATLSCluster() async throws {
        let certificates = try TestCertificates.shared.get()
        let cluster = try await RedisTestCluster.startTLS(certificates: certificates)
        defer { cluster.stop() }
        let environment = Self.environment(cluster, certificates: certificates)
        let secret = "cluster-secret-for-the-process-tests-0123456789"
        let a = try await ClusterChild.start(redisEnvironment: environment, clusterSecret: secret)
        defer { a.child.stop() }
        let b = try await ClusterChild.start(redisEnvironment: environment, clusterSecret: secret)
        defer { b.child.stop() }
        try await a.waitUntilSubscribed()
        try await b.waitUntilSubscribed()

        let aliceOnB = try await b.connect(TestKeys.token("alice"))
        let bobOnB = try await b.connect(TestKeys.token("bob"))
        for socket in [aliceOnB, bobOnB] {
            try await socket.sendText(#"{"type":"subscribe","payload":{"eventTypes":["security.*"]}}"#)
            _ = try await socket.nextMessage(type: "subscribed")
        }
        try await a.publishHighRiskEvent(userID: "alice", deliveredTo: aliceOnB, notTo: bobOnB)

        let stats = try await a.api("GET", "/api/v1/stats")
        #expect(stats.status == 200, "\(stats.text)")
        #expect(try stats.json()["global"]?["totalServers"]?.intValue == 2, "\(stats.text)")
        let ready = try await TestSocket.request(port: b.port, "GET", "/health/ready")
        #expect(ready.status == 200, "\(ready.text)")
        for socket in [aliceOnB, bobOnB] { await socket.close() }

        // The same variables with a CA that did not sign the nodes' certificates: a clear error at start.
        var wrongCA = environment
        wrongCA["REDIS_TLS_CA_FILE"] = certificates.otherCAFile
        let refused = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--host", "127.0.0.1", "--port", "0"],
            environment: wrongCA.merging([
                "JWT_SECRET": TestKeys.secret, "JWT_AUDIENCE": TestKeys.audience, "REALTIME_CLUSTER_SECRET": secret,
            ]) { $1 }
        )
        defer { refused.stop() }
        let exit = try await refused.finish()
        #expect(exit.status != 0)
        #expect(exit.output.contains("REDIS_CLUSTER_NODES: no Redis Cluster node answered"), "\(exit.output)")
        #expect(exit.output.contains("TLS with Redis at 127.0.0.1:"), "\(exit.output)")

        for server in [a, b] { kill(server.child.process.processIdentifier, SIGTERM) }
        for server in [a, b] {
            let exit = try await server.child.finish()
            #expect(exit.status == 0, "\(exit.output.suffix(400))")
        }
    }

    /// The README's section is the text of this test: every variable it sets, every node and redis-cli option the
    /// fixture uses, and a command that makes each certificate the same way.
    @Test("README.md shows the variables and node options this test uses")
    func theReadmeShowsThisSetup() throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("../../README.md"),
            encoding: .utf8
        )
        let heading = "## Two servers on a Redis Cluster over TLS"
        let start = try #require(readme.range(of: heading), "README.md has no '\(heading)' section")
        let rest = readme[start.upperBound...]
        let section = rest[..<(rest.range(of: "\n## ")?.lowerBound ?? rest.endIndex)]
        let certificates = try TestCertificates.shared.get()
        for variable in [
            "REDIS_CLUSTER_ENABLED=true", "REDIS_CLUSTER_NODES=rediss://", "REDIS_TLS_CA_FILE=",
            "REDIS_TLS_CERT_FILE=", "REDIS_TLS_KEY_FILE=", "REALTIME_CLUSTER_SECRET=",
        ] {
            #expect(section.contains(variable), "README's TLS cluster section does not set \(variable)")
        }
        // Each option, with its value when that is a setting (`--tls-cluster yes`, `--port 0`) rather than a path.
        let arguments = certificates.redisClusterNodeArguments(tlsPort: 7101) + certificates.redisCLIArguments
        let options = arguments.indices.filter { arguments[$0].hasPrefix("--") }.map { index in
            let value = index + 1 < arguments.count ? arguments[index + 1] : ""
            return ["yes", "no", "0"].contains(value) ? "\(arguments[index]) \(value)" : arguments[index]
        }
        for option in options + ["--cluster-enabled", "--cluster-replicas 1", "extendedKeyUsage=clientAuth"] {
            #expect(section.contains(option), "README's TLS cluster section does not use \(option)")
        }
        #expect(section.contains("subjectAltName=IP:127.0.0.1"), "the nodes' certificate names their address")
    }
}
