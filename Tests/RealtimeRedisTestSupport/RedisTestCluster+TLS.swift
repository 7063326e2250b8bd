// SPDX-License-Identifier: Apache-2.0

// The TLS half of the Redis fixture: how a TLS-only redis-server, a node of a TLS-only Redis Cluster and redis-cli
// use the certificates `openssl` made for the run (`TestCertificates`). Kept apart from RedisTestServer.swift, which
// only asks these helpers for arguments.

public import RealtimeJWKSTestSupport
public import RealtimeRedis

extension TestCertificates {
    /// The arguments that make a redis-server TLS-only on `tlsPort` (`--port 0`) with the server certificate for
    /// 127.0.0.1; `--tls-auth-clients yes` (Redis's default) makes clients present a certificate signed by the CA.
    public func redisServerArguments(tlsPort: Int, requireClientCertificates: Bool) -> [String] {
        [
            "--port", "0", "--tls-port", String(tlsPort), "--tls-cert-file", serverCertificate,
            "--tls-key-file", serverKey, "--tls-ca-cert-file", caFile,
            "--tls-auth-clients", requireClientCertificates ? "yes" : "no",
        ]
    }

    /// A TLS-only node of a Redis Cluster: clients, the cluster bus and replication all over TLS, every node
    /// authenticating the others by the client certificate (`--tls-client-cert-file`; the server certificate is for
    /// servers only) and every client by its own. `CLUSTER SLOTS` and redirects then name the TLS port. (The bus
    /// port is `--cluster-port`, which the fixture sets; without it, it is the TLS port + 10,000.)
    public func redisClusterNodeArguments(tlsPort: Int) -> [String] {
        redisServerArguments(tlsPort: tlsPort, requireClientCertificates: true) + [
            "--tls-cluster", "yes", "--tls-replication", "yes", "--tls-client-cert-file", clientCertificate,
            "--tls-client-key-file", clientKey,
        ]
    }

    /// `redis-cli`'s options to reach a node that authenticates clients.
    public var redisCLIArguments: [String] {
        ["--tls", "--cacert", caFile, "--cert", clientCertificate, "--key", clientKey]
    }

    /// A client's TLS options: trust the CA (server-name verification on), with the client certificate when
    /// `withCertificate`.
    public func clientOptions(withCertificate: Bool) -> RedisTLSOptions {
        RedisTLSOptions(
            caFile: caFile,
            certificateFile: withCertificate ? clientCertificate : nil,
            keyFile: withCertificate ? clientKey : nil
        )
    }
}

extension RedisTestCluster {
    /// Starts six TLS-only nodes (three primaries, three replicas, client certificates required), creates the
    /// cluster with `redis-cli --tls …` and waits until it is ready. ``configuration`` and ``nodeList`` are then
    /// TLS ones (`rediss://`).
    public static func startTLS(
        certificates: TestCertificates,
        nodeTimeout: Duration = .milliseconds(1000)
    ) async throws -> RedisTestCluster {
        try await start(nodeTimeout: nodeTimeout, certificates: certificates)
    }
}

/// Runs `body` against a fresh TLS-only Redis Cluster (six nodes), stopped afterwards.
public func withRedisTLSCluster(_ body: (RedisTestCluster) async throws -> Void) async throws {
    let cluster = try await RedisTestCluster.startTLS(certificates: try TestCertificates.shared.get())
    defer { cluster.stop() }
    try await body(cluster)
}
