// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import RealtimeCore
import RealtimeJWT
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension PublishMode: ExpressibleByArgument {}
extension LoadTarget: ExpressibleByArgument {}

/// `realtime-loadgen`: drives a running `realtime-server` over real sockets on loopback and reports delivery,
/// loss, latency, connection setup rate and the server's memory per connection.
@main
struct LoadGenerator: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "realtime-loadgen",
        abstract: "Load-test a realtime-server on loopback: N WebSocket clients, M published events per mode.",
        discussion: """
            Tokens are minted in-process with the server's HMAC secret (--secret or env JWT_SECRET). Exits 1 when a \
            message is lost, duplicated, reordered or leaked, when a client fails to connect or is closed, when a \
            publish fails, or when --duration runs out; 2 on a usage error.
            """
    )

    @Option(help: "Server address: 127.0.0.1, ::1 or localhost only.")
    var host = "127.0.0.1"

    @Option(help: "Server port.")
    var port = 3000

    @Option(
        help: """
            Port of the server the events are published to (default: --port). Another server of the same cluster \
            measures the cross-server path: publish on A, clients on B (--port), --server-pid B.
            """
    )
    var publishPort: Int?

    @Option(help: "HMAC secret of the server's tokens (default: env JWT_SECRET).")
    var secret: String?

    @Option(help: "Issuer claim to put in tokens (env JWT_ISSUER).")
    var issuer: String?

    @Option(help: "Audience claim to put in tokens (env JWT_AUDIENCE, first entry).")
    var audience: String?

    @Option(name: .shortAndLong, help: "WebSocket clients on /ws/events (1 to 10000).")
    var clients = 1000

    @Option(help: "Distinct users among the clients (client i is user lg-u<i % users>); default: one per client.")
    var users: Int?

    @Option(help: "Additional administrator clients on /ws/admin (0 to 100).")
    var admins = 0

    @Option(name: .customLong("pattern"), help: "A pattern every client subscribes to; repeatable.")
    var patterns: [String] = ["security.*"]

    @Option(help: "The type of the published events.")
    var eventType = "security.loadtest.probe"

    @Option(name: .shortAndLong, help: "Events published per mode.")
    var events = 1000

    @Option(name: .customLong("mode"), help: "Publishing mode, burst, rate or batch; repeatable, run in order.")
    var modes: [PublishMode] = [.burst]

    @Option(help: "Events per second in rate mode (over all publisher lanes).")
    var rate = 1000

    @Option(help: "Percent of events addressed to one user (scope user); the rest go to everyone.")
    var userPercent = 50

    @Option(help: "Events per request in batch mode (POST /api/v1/events/batch; 1 to 100).")
    var batchSize = 20

    @Option(help: "HTTP connections publishing in parallel (order is checked per connection).")
    var publishers = 4

    @Option(help: "WebSocket handshakes in flight at once while connecting.")
    var connectConcurrency = 200

    @Option(help: "Plain TCP connections opened (and held) first as a connect-rate reference; 0 to skip.")
    var tcpReference = 1000

    @Option(
        help: """
            PID of the server, for its RSS and CPU (from /proc/PID); repeatable: the figures are summed over every \
            process given (nginx's master and workers for Nchan).
            """
    )
    var serverPID: [Int32] = []

    @Option(help: "The server: realtime (realtime-server) or nchan (nginx + Nchan, the reference).")
    var target = LoadTarget.realtime

    @Option(help: "Nchan channel id of the run (--target nchan); a fresh one per run.")
    var nchanChannel: String?

    @Option(help: "Pad every event frame to this many bytes (0: no padding).")
    var frameBytes = 0

    @Option(help: "A label printed in the machine-readable RESULT lines.")
    var label = "run"

    @Option(help: "Seconds to let the server settle before measuring idle RSS.")
    var settle = 3

    @Option(help: "Seconds to wait for outstanding deliveries after the last publish of a mode.")
    var drainTimeout = 20

    @Option(help: "Hard cap on the whole run in seconds; exceeding it fails the run.")
    var duration = 600

    @Option(help: "Event-loop threads of the generator (default: the number of cores).")
    var threads: Int?

    @Option(help: "Path prefix of the publishing API.")
    var apiPrefix = "/api/v1"

    @Option(help: "Seed of the plan's user targets.")
    var seed: UInt64 = 42

    @Flag(
        help: """
            Measure the hub's own memory per connection in this process instead (no server, no sockets): --clients \
            connections through RealtimeHub's host API with the example server's load-test limits.
            """
    )
    var inProcessHub = false

    func run() async throws {
        let started = ContinuousClock.now
        let deadline = started + .seconds(duration)
        let environment = Environment.current
        if inProcessHub {
            let lines = try await InProcessHub.measure(
                connections: clients,
                users: users ?? clients,
                patterns: patterns,
                secret: secret ?? environment["JWT_SECRET"] ?? "in-process-hub-measurement-secret-0123456789",
                environment: [
                    "WEBSOCKET_MAX_CONNECTIONS": String(clients + 1000),
                    "WEBSOCKET_CONNECTION_RATE_LIMIT_PER_IP": "1000000",
                    "WEBSOCKET_MAX_CONNECTIONS_PER_USER": "10",
                    "WEBSOCKET_CONNECTION_RATE_LIMIT_PER_USER": "30",
                ]
            )
            for line in lines { print(line) }
            return
        }
        // The hard cap, even if a socket hangs: the phases below check `deadline` themselves and report; this
        // watchdog only fires if one of them cannot return.
        let capSeconds = duration
        let watchdog = Task {
            try await Task.sleep(for: .seconds(capSeconds + 15))
            print("FAILED: --duration \(capSeconds) s exceeded by 15 s and the run did not stop by itself; exiting")
            SystemInfo.terminate(1)
        }
        defer { watchdog.cancel() }
        guard let secret = secret ?? environment["JWT_SECRET"], !secret.isEmpty else {
            throw ValidationError("no secret: pass --secret or set JWT_SECRET to the server's secret")
        }
        let fileLimit = SystemInfo.raiseFileLimit(to: clients + admins + tcpReference + publishers + 1024)
        guard fileLimit >= clients + admins + tcpReference + publishers + 64 else {
            print("FAILED: the open-file limit is \(fileLimit); not enough for \(clients + admins) clients")
            throw ExitCode(1)
        }
        let userCount = users ?? clients
        let parsedPatterns = try patterns.map { try EventPattern(validating: $0) }
        let plan = Plan(
            runID: RandomID.hex(bytes: 6),
            modes: modes,
            eventsPerPhase: events,
            userPercent: userPercent,
            users: userCount,
            lanes: publishers,
            eventType: eventType,
            patterns: parsedPatterns,
            seed: seed,
            target: target,
            nchanChannel: nchanChannel ?? "",
            frameBytes: frameBytes
        )
        var report = Report()
        report.line("realtime-loadgen \(plan.runID): \(clients) clients (\(userCount) users) + \(admins) admins, ")
        report.append(
            "patterns \(patterns.joined(separator: ",")), \(events) events × \(modes.map(\.rawValue)), "
                + "\(userPercent)% to one user, \(publishers) publishers, rate \(rate)/s"
        )
        report.line("load average before: \(SystemInfo.loadAverage()); open-file limit \(fileLimit)")
        if !plan.patternsMatch {
            report.line("note: the patterns do not match \(eventType); no client expects any event")
        }

        // Tokens, minted with the server's secret.
        let minter = try TokenMinter(
            secret: secret,
            issuer: issuer ?? environment["JWT_ISSUER"],
            audience: audience
                ?? environment["JWT_AUDIENCE"]?.split(separator: ",").first.map {
                    String($0).trimmingCharacters(in: " ")
                }
        )
        let specs = try minter.clientSpecs(clients: clients, users: userCount, admins: admins)
        let publisherToken = try minter.mint("lg-publisher", admin: true)

        /// The server's address and `Host` header at `port`.
        func endpoint(_ port: Int) throws -> (address: SocketAddress, hostHeader: String) {
            do {
                let address = try SocketAddress(ipAddress: host == "localhost" ? "127.0.0.1" : host, port: port)
                return (address, (host.contains(":") ? "[\(host)]" : host) + ":\(port)")
            } catch {
                throw ValidationError("cannot use \(host):\(port): \(error)")
            }
        }
        let (address, hostHeader) = try endpoint(port)
        let (publishAddress, publishHostHeader) = try endpoint(publishPort ?? port)
        let threadCount = threads ?? System.coreCount
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threadCount)
        let loops = Array(group.makeIterator())
        let shared = SharedCounters()
        var registries: [NIOLoopBound<LoopRegistry>] = []
        for loop in loops {
            let patterns = self.patterns
            registries.append(
                try await loop.submit {
                    NIOLoopBound(LoopRegistry(plan: plan, shared: shared, patterns: patterns), eventLoop: loop)
                }.get()
            )
        }
        var failures: [String] = []
        /// Machine-readable lines (`RESULT label=… key=value …`) for Benchmarks/fanout-vs-nchan/run.
        var results: [String] = []
        var rssPerConnection: Double?
        let ownCPUStart = SystemInfo.ownCPUSeconds()

        // Server memory before anything connects.
        let server = ServerProcesses(pids: serverPID)
        let pids = serverPID
        func rss() -> Int? { server.rssKiB() }
        func serverCPU() -> Double? { server.cpuTimes()?.total }
        for pid in pids where !SystemInfo.processExists(pid) {
            print("FAILED: no process \(pid) (--server-pid)")
            throw ExitCode(1)
        }
        let rssBefore = rss()

        // Reference: plain TCP connections to the same port at the same concurrency.
        if tcpReference > 0 {
            let reference = await Self.tcpConnect(
                count: tcpReference,
                concurrency: connectConcurrency,
                loops: loops,
                address: address,
                deadline: deadline
            )
            report.line(
                "reference: \(reference.opened)/\(tcpReference) plain TCP connects in "
                    + "\(Report.seconds(reference.elapsed)) = \(Report.rate(reference.opened, reference.elapsed))/s "
                    + "(held, then closed)"
            )
            try await Task.sleep(for: .milliseconds(500))
        }
        let rssAfterReference = rss()

        // Connect, authenticate (token in the upgrade request) and subscribe.
        let cpuBeforeConnect = serverCPU()
        let ownCPUBeforeConnect = SystemInfo.ownCPUSeconds()
        let setup = await Self.connectAll(
            specs: specs,
            concurrency: connectConcurrency,
            loops: loops,
            registries: registries,
            plan: plan,
            address: address,
            hostHeader: hostHeader,
            deadline: deadline
        )
        let serverCPUConnect = Self.difference(serverCPU(), cpuBeforeConnect)
        let ownCPUConnect = SystemInfo.ownCPUSeconds() - ownCPUBeforeConnect
        report.line(
            "setup: \(setup.ready)/\(specs.count) clients connected, authenticated and subscribed in "
                + "\(Report.seconds(setup.elapsed)) = \(Report.rate(setup.ready, setup.elapsed)) connections/s; "
                + "handshake p50 \(Report.duration(setup.latency.valueAtPercentile(50))) "
                + "p99 \(Report.duration(setup.latency.valueAtPercentile(99)))"
        )
        report.line(
            "  CPU during setup: server \(serverCPUConnect.map { Report.seconds($0) } ?? "n/a"), "
                + "generator \(Report.seconds(ownCPUConnect))"
        )
        if !setup.failures.isEmpty {
            let summary = setup.failures.sorted { $0.value > $1.value }.prefix(5).map { "\($1)× \($0)" }
            report.line("  setup failures: " + summary.joined(separator: "; "))
            failures.append("\(setup.failures.values.reduce(0, +)) clients failed to connect")
        }
        if ContinuousClock.now >= deadline { failures.append("--duration \(duration) s ran out while connecting") }

        // Idle memory.
        let serverCPUBeforeSettle = serverCPU()
        if settle > 0 { try await Task.sleep(for: .seconds(settle)) }
        let rssIdle = rss()
        if settle > 0, let idleCPU = Self.difference(serverCPU(), serverCPUBeforeSettle) {
            report.line(
                "server CPU while idle with \(setup.ready) connections: "
                    + "\(Report.format3(idleCPU * 100 / Double(settle))) % of a core (over \(settle) s)"
            )
        }
        if let rssBefore, let rssIdle {
            let perConnection = Double(rssIdle - rssBefore) * 1024 / Double(max(setup.ready, 1))
            rssPerConnection = perConnection
            report.line(
                "server RSS: before \(rssBefore) KiB, after the TCP reference \(rssAfterReference ?? 0) KiB, "
                    + "idle with \(setup.ready) connections \(rssIdle) KiB → "
                    + "\(Report.bytes(perConnection)) per idle authenticated connection (goal ≤ 10 KiB: "
                    + (perConnection <= 10 * 1024 ? "met" : "MISSED") + ")"
            )
        }

        // Publish, phase by phase.
        var readyPerUser = [Int](repeating: 0, count: userCount)
        var readyAdmins = 0
        for spec in specs where setup.readyIndexes.contains(spec.index) {
            if spec.isAdmin { readyAdmins += 1 } else { readyPerUser[spec.user] += 1 }
        }
        let readyUsers = readyPerUser.reduce(0, +)
        var expectedSoFar = 0
        var accepted: [Bool] = Array(repeating: false, count: plan.eventCount)
        for (phaseIndex, phase) in plan.phases.enumerated() where !phase.range.isEmpty {
            if ContinuousClock.now >= deadline { break }
            let serverCPUStart = server.cpuTimes()
            let ownCPUStart = SystemInfo.ownCPUSeconds()
            let start = ContinuousClock.now
            let startNanos = NIODeadline.now().uptimeNanoseconds
            let lanes = await withTaskGroup(of: LaneResult.self) { group in
                for lane in 0..<publishers {
                    let publisher = PublisherLane(
                        group: loops[lane % loops.count],
                        address: publishAddress,
                        hostHeader: publishHostHeader,
                        apiPrefix: apiPrefix,
                        token: publisherToken,
                        plan: plan,
                        lane: lane,
                        batchSize: batchSize
                    )
                    let rate = self.rate
                    group.addTask { await publisher.run(phase: phase, rate: rate, start: start, deadline: deadline) }
                }
                var results: [LaneResult] = []
                for await result in group { results.append(result) }
                return results
            }
            let publishEnd = NIODeadline.now().uptimeNanoseconds
            var phaseExpected = 0
            var serverDeliveries = 0
            var publishFailures: [String] = []
            var roundTrip = Histogram<UInt64>(
                highestTrackableValue: 120_000_000_000,
                numberOfSignificantValueDigits: .three
            )
            var maxLag: UInt64 = 0
            for lane in lanes {
                for sequence in lane.accepted {
                    accepted[sequence] = true
                    if plan.patternsMatch {
                        let target = plan.targets[sequence]
                        phaseExpected += (target < 0 ? readyUsers : readyPerUser[Int(target)]) + readyAdmins
                    }
                }
                serverDeliveries += lane.serverDeliveries
                roundTrip.add(lane.roundTrip)
                maxLag = max(maxLag, lane.maxLag)
                publishFailures += lane.failures.prefix(3).map { "HTTP \($0.status) \($0.reason)" }
                if lane.stoppedByDeadline { failures.append("--duration ran out while publishing (\(phase.mode))") }
            }
            let acceptedCount = lanes.map(\.accepted.count).reduce(0, +)
            expectedSoFar += phaseExpected
            // Wait for the deliveries (bounded by the drain timeout and the hard cap).
            let drainDeadline = min(ContinuousClock.now + .seconds(drainTimeout), deadline)
            while shared.expectedReceipts.load(ordering: .relaxed) < expectedSoFar
                && ContinuousClock.now < drainDeadline
            {
                try await Task.sleep(for: .milliseconds(5))
            }
            let serverCPUTimes = Self.difference(server.cpuTimes(), serverCPUStart)
            let serverCPUPhase = serverCPUTimes?.total
            let ownCPUPhase = SystemInfo.ownCPUSeconds() - ownCPUStart
            var latency = Histogram<UInt64>(
                highestTrackableValue: 120_000_000_000,
                numberOfSignificantValueDigits: .three
            )
            var lastReceipt: UInt64 = 0
            var receipts = 0
            for registry in registries {
                let snapshot = try await registry.eventLoop.submit {
                    let value = registry.value
                    return (
                        value.latency[phaseIndex], value.lastReceipt[phaseIndex], value.receiptsPerPhase[phaseIndex]
                    )
                }.get()
                latency.add(snapshot.0)
                lastReceipt = max(lastReceipt, snapshot.1)
                receipts += snapshot.2
            }
            let publishSeconds = Double(publishEnd - startNanos) / 1e9
            let deliverySeconds = Double(max(lastReceipt, startNanos) - startNanos) / 1e9
            report.line(
                "\(phase.mode): \(acceptedCount)/\(phase.range.count) events accepted in \(Report.seconds(publishSeconds)) "
                    + "(\(Report.rate(acceptedCount, publishSeconds)) publishes/s"
                    + (phase.mode == .rate ? ", target \(rate)/s, worst lag \(Report.duration(maxLag))" : "")
                    + "; HTTP round trip p50 \(Report.duration(roundTrip.valueAtPercentile(50))) "
                    + "p99 \(Report.duration(roundTrip.valueAtPercentile(99))))"
            )
            report.line(
                "  delivered \(receipts)/\(phaseExpected) expected (server queued \(serverDeliveries)) in "
                    + "\(Report.seconds(deliverySeconds)) = \(Report.rate(receipts, deliverySeconds)) messages/s"
            )
            report.line(
                "  publish-to-receive latency p50 \(Report.duration(latency.valueAtPercentile(50))) "
                    + "p99 \(Report.duration(latency.valueAtPercentile(99))) "
                    + "p999 \(Report.duration(latency.valueAtPercentile(99.9))) "
                    + "max \(Report.duration(latency.max))"
            )
            report.line(
                "  CPU: server \(serverCPUTimes.map { "\(Report.seconds($0.total)) (system \(Report.seconds($0.system)))" } ?? "n/a"), "
                    + "generator \(Report.seconds(ownCPUPhase)); load average \(SystemInfo.loadAverage())"
            )
            let cpuPerDelivery = serverCPUPhase.map { receipts > 0 ? $0 * 1e6 / Double(receipts) : 0 }
            // The kernel's share (system time): the sockets' system calls and, on loopback, the receive work charged
            // to the sender; about the same for any server writing the same frames, so the rest tells servers apart.
            let systemPerDelivery = serverCPUTimes.map { receipts > 0 ? $0.system * 1e6 / Double(receipts) : 0 }
            results.append(
                "RESULT label=\(label) mode=\(phase.mode) clients=\(setup.ready) delivered=\(receipts) "
                    + "expected=\(phaseExpected) "
                    + "deliveries_per_s=\(Report.plain(Double(receipts) / max(deliverySeconds, 1e-9))) "
                    + "cpu_us_per_delivery=\(cpuPerDelivery.map { Report.plain($0) } ?? "nan") "
                    + "cpu_sys_us_per_delivery=\(systemPerDelivery.map { Report.plain($0) } ?? "nan") "
                    + "publishes_per_s=\(Report.plain(Double(acceptedCount) / max(publishSeconds, 1e-9))) "
                    + "p50_ms=\(Report.plain(Double(latency.valueAtPercentile(50)) / 1e6)) "
                    + "p99_ms=\(Report.plain(Double(latency.valueAtPercentile(99)) / 1e6)) "
                    + "p999_ms=\(Report.plain(Double(latency.valueAtPercentile(99.9)) / 1e6))"
            )
            if !publishFailures.isEmpty {
                report.line("  publish failures: " + publishFailures.prefix(5).joined(separator: "; "))
                failures.append("\(phase.range.count - acceptedCount) publishes failed (\(phase.mode))")
            }
            if receipts < phaseExpected {
                failures.append("\(phaseExpected - receipts) deliveries missing after the drain (\(phase.mode))")
            }
        }

        // Per-client verdict: lost, duplicated, out of order, unexpected.
        let acceptedBits = Self.bits(accepted)
        var totals = ClientTotals()
        for registry in registries {
            let readyIndexes = setup.readyIndexes
            let part = try await registry.eventLoop.submit {
                registry.value.totals(readyIndexes: readyIndexes, accepted: acceptedBits)
            }.get()
            totals.add(part)
        }
        let closedByServer = shared.unexpectedCloses.load(ordering: .relaxed)
        failures += totals.report(closedByServer: closedByServer, into: &report)

        let rssAfter = rss()
        let hwm = server.peakRSSKiB()
        if let rssAfter {
            report.line("server RSS after the run: \(rssAfter) KiB (peak \(hwm ?? 0) KiB)")
        }
        report.line(
            "generator CPU \(Report.seconds(SystemInfo.ownCPUSeconds() - ownCPUStart)) over "
                + "\(Report.seconds(Report.seconds(of: ContinuousClock.now - started))) wall; "
                + "load average after: \(SystemInfo.loadAverage())"
        )
        if ContinuousClock.now >= deadline { failures.append("--duration \(duration) s ran out") }

        // Close every client and stop.
        for registry in registries {
            try? await registry.eventLoop.submit { registry.value.closeAll() }.get()
        }
        try? await Task.sleep(for: .milliseconds(300))
        try? await group.shutdownGracefully()

        results.append(
            "RESULT label=\(label) mode=verdict clients=\(setup.ready) "
                + "rss_per_connection_bytes=\(rssPerConnection.map { Report.plain($0) } ?? "nan") "
                + "lost=\(totals.lost) duplicated=\(totals.duplicates) out_of_order=\(totals.outOfOrder) "
                + "unexpected=\(totals.unexpected) closed=\(shared.unexpectedCloses.load(ordering: .relaxed))"
        )
        print(report.text)
        for line in results { print(line) }
        if failures.isEmpty {
            print("PASSED: no message lost, duplicated, reordered or leaked")
        } else {
            print("FAILED: " + failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }

    static func difference<Value: AdditiveArithmetic>(_ later: Value?, _ earlier: Value?) -> Value? {
        guard let later, let earlier else { return nil }
        return later - earlier
    }

    static func bits(_ flags: [Bool]) -> [UInt64] {
        var words = [UInt64](repeating: 0, count: (flags.count + 63) / 64)
        for (index, flag) in flags.enumerated() where flag { words[index >> 6] |= UInt64(1) << UInt64(index & 63) }
        return words
    }
}
