// SPDX-License-Identifier: Apache-2.0

// The one Redis fixture of the test suite, shared by RealtimeRedisTests and the end-to-end tests. A target of its
// own (not a product; see Documentation/Architecture.md, "Tests"): test targets cannot depend on each other, and
// RealtimeTesting, a product for backend authors, should neither import RealtimeRedis nor launch processes.

import Foundation
import RealtimeCore
public import RealtimeJWKSTestSupport
public import RealtimeRedis

#if canImport(Glibc)
    import Glibc
#endif

/// A `redis-server` started by a test on a free loopback port, stopped by its PID. ``RedisTestCluster`` starts six
/// of them as a Redis Cluster.
///
/// `@unchecked Sendable`: `process` is only touched by `start()` (before the value is shared) and `stop()`,
/// which the owning test calls once it no longer uses the server; `port` and `arguments` are immutable.
public final class RedisTestServer: @unchecked Sendable {
    public static let binary = "/usr/bin/redis-server"

    /// Whether the tests that need Redis run: `REDIS_URL` is set or a redis-server binary exists. Under `CI=true`
    /// they always run, so a missing binary fails the run (``start(_:)`` throws) instead of skipping it; locally
    /// they are skipped with the reason printed.
    public static let enabled: Bool = {
        let available = FileManager.default.isExecutableFile(atPath: binary) || redisURL != nil
        if !available {
            print("redis-server not found at \(binary) and REDIS_URL unset: skipping the tests that need Redis")
        }
        return available || ProcessInfo.processInfo.environment["CI"] == "true"
    }()

    public static let redisURL: String? = ProcessInfo.processInfo.environment["REDIS_URL"]

    public let port: Int
    private let extraArguments: [String]
    /// Where the server writes (cluster config, replication files); the working directory is never used.
    private let directory: URL
    /// For a TLS-only server: how a client reaches it (the CA that signed its certificate, and the client
    /// certificate when the server authenticates clients).
    public let tls: RedisTLSOptions?
    /// For a TLS-only server: the CA that signed its certificate (what a client must trust).
    public var tlsCAFile: String? { tls?.caFile }
    private var process: Process?

    public var url: String { "redis://127.0.0.1:\(port)" }

    /// A client configuration for this server (over TLS, trusting its CA, for a TLS server).
    public var configuration: RedisConfiguration {
        RedisConfiguration(
            port: port,
            poolSize: 2,
            connectTimeout: .seconds(2),
            commandTimeout: .seconds(2),
            tls: tls
        )
    }

    private init(port: Int, extraArguments: [String], directory: URL, tls: RedisTLSOptions?) {
        self.port = port
        self.extraArguments = extraArguments
        self.directory = directory
        self.tls = tls
    }

    /// Starts a TLS-only server (`--port 0 --tls-port <port>`) with `certificates`' server certificate for
    /// 127.0.0.1, signed by their CA. With `requireClientCertificates` (`--tls-auth-clients yes`) a client must
    /// present a certificate signed by that CA (``configuration`` has theirs); else it needs none.
    public static func startTLS(
        certificates: TestCertificates,
        requireClientCertificates: Bool = false
    ) async throws -> RedisTestServer {
        try await start(tls: certificates.clientOptions(withCertificate: requireClientCertificates)) { port in
            certificates.redisServerArguments(tlsPort: port, requireClientCertificates: requireClientCertificates)
        }
    }

    /// Starts a server on a free port (several tries, in case another process takes the port first).
    public static func start(_ extraArguments: [String] = []) async throws -> RedisTestServer {
        try await start { _ in extraArguments }
    }

    /// Starts a server on a free port with arguments that may depend on the port (a cluster node's config file).
    public static func start(
        tlsCAFile: String? = nil,
        _ extraArguments: (_ port: Int) -> [String]
    ) async throws -> RedisTestServer {
        try await start(tls: tlsCAFile.map { RedisTLSOptions(caFile: $0) }, extraArguments)
    }

    /// Starts a server on a free port with arguments that may depend on the port; `tls` is how clients reach it.
    public static func start(
        tls: RedisTLSOptions?,
        _ extraArguments: (_ port: Int) -> [String]
    ) async throws -> RedisTestServer {
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw RealtimeError(.backendUnavailable, "redis-server is not installed (apt-get install redis-server)")
        }
        var lastError: (any Error)?
        for _ in 0..<5 {
            let port = try freePort()
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
                "realtime-redis-\(port)-\(RandomID.hex(bytes: 4))"
            )
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let server = RedisTestServer(
                port: port,
                extraArguments: extraArguments(port),
                directory: directory,
                tls: tls
            )
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                server.stop()
            }
        }
        throw lastError ?? RealtimeError(.backendUnavailable, "could not start redis-server")
    }

    /// Starts (or restarts, on the same port) the process and waits until it answers PING.
    public func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments =
            [
                "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--protected-mode", "yes", "--daemonize", "no", "--enable-debug-command", "local", "--loglevel",
                "warning", "--dir", directory.path,
            ] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { break }
            if Self.canConnect(port: port) { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw RealtimeError(.backendUnavailable, "redis-server on port \(port) did not come up")
    }

    /// Stops the process (SIGKILL to its PID, like a crash) and waits for it to exit.
    public func stop() {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// Whether the process runs.
    public var isRunning: Bool { process?.isRunning ?? false }

    deinit {
        stop()
        try? FileManager.default.removeItem(at: directory)
    }

    /// A loopback port free at the time of the call.
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw RealtimeError(.internalError, "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0 else { throw RealtimeError(.internalError, "bind() failed") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    private static func canConnect(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}

/// Runs `body` against a Redis: `REDIS_URL` when set and `ownServer` is false, else a fresh redis-server.
public func withRedis(
    ownServer: Bool = false,
    _ body: (RedisConfiguration, RedisTestServer?) async throws -> Void
) async throws {
    if !ownServer, let url = RedisTestServer.redisURL {
        try await body(try RedisConfiguration(url: url), nil)
        return
    }
    let server = try await RedisTestServer.start()
    defer { server.stop() }
    try await body(server.configuration, server)
}

/// A Redis Cluster of six ``RedisTestServer`` nodes on free loopback ports: three primaries with a replica each,
/// created with `redis-cli --cluster create … --cluster-replicas 1` and ready (`cluster_state:ok` on every node,
/// every replica attached) when ``start()`` returns. A node failure is detected after `nodeTimeout`.
///
/// `@unchecked Sendable`: `nodes` is set once by `start()` before the value is shared; each node is itself safe to
/// share, and `stop()` is called once by the owning test.
public final class RedisTestCluster: @unchecked Sendable {
    public static let cli = "/usr/bin/redis-cli"
    public let nodes: [RedisTestServer]
    public let nodeTimeout: Duration
    /// For a cluster over TLS only (see `RedisTestCluster+TLS.swift`): the certificates of its nodes and clients.
    public let certificates: TestCertificates?

    private init(nodes: [RedisTestServer], nodeTimeout: Duration, certificates: TestCertificates?) {
        self.nodes = nodes
        self.nodeTimeout = nodeTimeout
        self.certificates = certificates
    }

    /// The seeds (every node), as `REDIS_CLUSTER_NODES` spells them (`rediss://` entries over TLS).
    public var nodeList: String {
        nodes.map { (certificates == nil ? "" : "rediss://") + "127.0.0.1:\($0.port)" }.joined(separator: ",")
    }

    /// A cluster client configuration with every node as a seed and a fast slot-map refresh.
    public var configuration: RedisConfiguration {
        var configuration = RedisConfiguration(
            poolSize: 2,
            connectTimeout: .seconds(2),
            commandTimeout: .seconds(2),
            maximumReconnectDelay: .milliseconds(500)
        )
        configuration.clusterNodes = nodes.map { RedisNodeAddress(host: "127.0.0.1", port: $0.port) }
        configuration.host = "127.0.0.1"
        configuration.port = nodes[0].port
        configuration.clusterRefreshInterval = .milliseconds(500)
        configuration.tls = nodes[0].tls
        return configuration
    }

    /// Starts six nodes, creates the cluster and waits until it is ready; over TLS only with `certificates`
    /// (``startTLS(certificates:nodeTimeout:)``).
    public static func start(
        nodeTimeout: Duration = .milliseconds(1000),
        certificates: TestCertificates? = nil
    ) async throws -> RedisTestCluster {
        guard FileManager.default.isExecutableFile(atPath: cli) else {
            throw RealtimeError(.backendUnavailable, "redis-cli is not installed (apt-get install redis-tools)")
        }
        var nodes: [RedisTestServer] = []
        do {
            for _ in 0..<6 {
                nodes.append(
                    try await RedisTestServer.start(tls: certificates?.clientOptions(withCertificate: true)) { port in
                        (certificates?.redisClusterNodeArguments(tlsPort: port) ?? []) + [
                            // The cluster bus port defaults to port + 10,000, which may be taken or above 65,535.
                            "--cluster-port", String((try? RedisTestServer.freePort()) ?? 0),
                            "--cluster-enabled", "yes", "--cluster-config-file", "nodes-\(port).conf",
                            "--cluster-node-timeout", String(nodeTimeout.milliseconds),
                            // A replica of a dead primary takes over without waiting for a data-age check.
                            "--cluster-replica-validity-factor", "0",
                        ]
                    }
                )
            }
            let cluster = RedisTestCluster(nodes: nodes, nodeTimeout: nodeTimeout, certificates: certificates)
            try await cluster.run(
                ["--cluster", "create"] + nodes.map { "127.0.0.1:\($0.port)" } + [
                    "--cluster-replicas", "1", "--cluster-yes",
                ]
            )
            try await cluster.waitUntilReady(primaries: 3, replicas: 3)
            return cluster
        } catch {
            for node in nodes { node.stop() }
            throw error
        }
    }

    /// Runs `redis-cli` with `arguments` (after the TLS options of a TLS cluster) and waits (polling, bounded to
    /// 60 s, then killed by PID and reported with its output) for it to exit successfully. Its output goes to a
    /// file (read once it exited), so no thread ever blocks on a pipe.
    public func run(_ arguments: [String]) async throws {
        let command = (certificates?.redisCLIArguments ?? []) + arguments
        let log = FileManager.default.temporaryDirectory.appendingPathComponent(
            "redis-cli-\(RandomID.hex(bytes: 6)).log"
        )
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: log) }
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.cli)
        process.arguments = command
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning {
            guard ContinuousClock.now < deadline else {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
                throw RealtimeError(
                    .timeout,
                    "redis-cli \(command.joined(separator: " ")) did not finish within 60 s (killed): \(text.suffix(500))"
                )
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            throw RealtimeError(.backendUnavailable, "redis-cli \(command.joined(separator: " ")) failed: \(text)")
        }
    }

    /// Sends `command` to one node directly (not through the cluster routing).
    public func send(_ command: RedisCommand, to node: RedisTestServer) async throws -> RESPValue {
        let client = RedisClient(configuration: node.configuration)
        do {
            let reply = try await client.send(command)
            await client.shutdown()
            return reply
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// The node's role and, for a replica, its primary's port, from `ROLE`.
    public func role(of node: RedisTestServer) async throws -> (primary: Bool, primaryPort: Int?) {
        let reply = try await send(RedisCommand("ROLE"), to: node)
        guard let fields = reply.array, let role = fields.first?.string else { return (false, nil) }
        if role == "master" { return (true, nil) }
        return (false, fields.count > 2 ? fields[2].int.map { Int($0) } : nil)
    }

    /// The running node that is the primary of `key`'s slot.
    public func primary(serving key: String) async throws -> RedisTestServer {
        let reply = try await send(RedisCommand("CLUSTER", "KEYSLOT", key), to: try firstRunning())
        guard let slot = reply.int else { throw RealtimeError(.protocolViolation, "CLUSTER KEYSLOT returned \(reply)") }
        let slots = try await send(RedisCommand("CLUSTER", "SLOTS"), to: try firstRunning())
        for range in slots.array ?? [] {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].int, let end = fields[1].int,
                (start...end).contains(slot), let port = fields[2].array?[1].int,
                let node = nodes.first(where: { $0.port == Int(port) })
            else { continue }
            return node
        }
        throw RealtimeError(.backendUnavailable, "no node serves slot \(slot)")
    }

    private func firstRunning() throws -> RedisTestServer {
        guard let node = nodes.first(where: \.isRunning) else {
            throw RealtimeError(.backendUnavailable, "no cluster node runs")
        }
        return node
    }

    /// Waits (polling, bounded to 30 s) until every running node reports `cluster_state:ok` and the roles are
    /// `primaries` primaries and `replicas` replicas with their replication link up.
    public func waitUntilReady(primaries: Int, replicas: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(30)
        var last = ""
        while ContinuousClock.now < deadline {
            do {
                if try await isReady(primaries: primaries, replicas: replicas, last: &last) { return }
            } catch {
                last = "\(error)"
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw RealtimeError(.timeout, "the Redis Cluster did not become ready: \(last)")
    }

    private func isReady(primaries: Int, replicas: Int, last: inout String) async throws -> Bool {
        var (primaryCount, replicaCount) = (0, 0)
        for node in nodes where node.isRunning {
            let info = try await send(RedisCommand("CLUSTER", "INFO"), to: node).string ?? ""
            guard info.contains("cluster_state:ok") else {
                last = "node \(node.port): cluster_state not ok"
                return false
            }
            let replication = try await send(RedisCommand("INFO", "replication"), to: node).string ?? ""
            if replication.contains("role:master") {
                primaryCount += 1
            } else if replication.contains("master_link_status:up") {
                replicaCount += 1
            }
        }
        last = "\(primaryCount) primaries, \(replicaCount) replicas with their link up"
        return primaryCount == primaries && replicaCount == replicas
    }

    /// Stops every node (SIGKILL to each PID).
    public func stop() {
        for node in nodes { node.stop() }
    }
}

// MARK: Resharding (issue 15, sharded pub/sub)

extension RedisTestCluster {
    /// The running primaries.
    public func primaries() async throws -> [RedisTestServer] {
        var primaries: [RedisTestServer] = []
        for node in nodes where node.isRunning {
            if try await role(of: node).primary { primaries.append(node) }
        }
        return primaries
    }

    /// Moves the slot of `key` to `destination` while the cluster serves it, with the steps of
    /// `redis-cli --cluster reshard`: `CLUSTER SETSLOT … IMPORTING` on the destination, `… MIGRATING` on the source,
    /// `MIGRATE` of the slot's keys (in batches of 100), then `CLUSTER SETSLOT … NODE` on every primary (an error
    /// reply of any step throws).
    public func migrateSlot(of key: String, to destination: RedisTestServer) async throws {
        let source = try await primary(serving: key)
        guard source.port != destination.port else { return }
        guard let slot = try await send(RedisCommand("CLUSTER", "KEYSLOT", key), to: source).int else {
            throw RealtimeError(.protocolViolation, "CLUSTER KEYSLOT gave no slot for \(key)")
        }
        let slotText = String(slot)
        func id(of node: RedisTestServer) async throws -> String {
            guard let id = try await send(RedisCommand("CLUSTER", "MYID"), to: node).string else {
                throw RealtimeError(.protocolViolation, "CLUSTER MYID gave no id on \(node.port)")
            }
            return id
        }
        let (sourceID, destinationID) = (try await id(of: source), try await id(of: destination))
        for (node, command) in [
            (destination, RedisCommand("CLUSTER", "SETSLOT", slotText, "IMPORTING", sourceID)),
            (source, RedisCommand("CLUSTER", "SETSLOT", slotText, "MIGRATING", destinationID)),
        ] {
            _ = try await send(command, to: node)
        }
        while true {
            let listed = try await send(RedisCommand("CLUSTER", "GETKEYSINSLOT", slotText, "100"), to: source)
            let keys = (listed.array ?? []).compactMap(\.string)
            if keys.isEmpty { break }
            let arguments = ["MIGRATE", "127.0.0.1", String(destination.port), "", "0", "5000", "KEYS"] + keys
            _ = try await send(RedisCommand(arguments), to: source)
        }
        for node in try await primaries() {
            _ = try await send(RedisCommand("CLUSTER", "SETSLOT", slotText, "NODE", destinationID), to: node)
        }
    }
}

/// Runs `body` against a fresh Redis Cluster (six nodes), stopped afterwards.
public func withRedisCluster(_ body: (RedisTestCluster) async throws -> Void) async throws {
    let cluster = try await RedisTestCluster.start()
    defer { cluster.stop() }
    try await body(cluster)
}
