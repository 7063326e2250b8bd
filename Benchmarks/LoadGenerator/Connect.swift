// SPDX-License-Identifier: Apache-2.0

import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// The outcome of the connection phase.
struct SetupResult: Sendable {
    var ready = 0
    var readyIndexes: Set<Int> = []
    /// Failure reasons (normalised) and their counts.
    var failures: [String: Int] = [:]
    var elapsed: Double = 0
    /// From the start of the TCP connect to the `subscribed` reply, nanoseconds.
    var latency = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
}

extension LoadGenerator {
    /// Opens `count` plain TCP connections (at most `concurrency` connecting at once), holds them until all are
    /// open, then closes them: the kernel's and the server's accept path without HTTP or WebSocket.
    static func tcpConnect(
        count: Int,
        concurrency: Int,
        loops: [any EventLoop],
        address: SocketAddress,
        deadline: ContinuousClock.Instant
    ) async -> (opened: Int, elapsed: Double) {
        let start = ContinuousClock.now
        let channels = await withTaskGroup(of: (any Channel)?.self) { group in
            var next = 0
            func add() {
                let loop = loops[next % loops.count]
                next += 1
                group.addTask {
                    try? await ClientBootstrap(group: loop).connectTimeout(.seconds(10)).connect(to: address).get()
                }
            }
            while next < min(count, concurrency) { add() }
            var channels: [any Channel] = []
            for await channel in group {
                if let channel { channels.append(channel) }
                if next < count && ContinuousClock.now < deadline { add() }
            }
            return channels
        }
        let elapsed = Report.seconds(of: ContinuousClock.now - start)
        for channel in channels { channel.close(promise: nil) }
        return (channels.count, elapsed)
    }

    /// Connects every client with at most `concurrency` handshakes in flight; a client counts as ready once the
    /// server answered its `subscribe` with `subscribed`.
    static func connectAll(
        specs: [ClientSpec],
        concurrency: Int,
        loops: [any EventLoop],
        registries: [NIOLoopBound<LoopRegistry>],
        plan: Plan,
        address: SocketAddress,
        hostHeader: String,
        deadline: ContinuousClock.Instant
    ) async -> SetupResult {
        let start = ContinuousClock.now
        var result = SetupResult()
        await withTaskGroup(of: (Int, Result<UInt64, SetupFailure>).self) { group in
            var next = 0
            func add() {
                let spec = specs[next]
                let loopIndex = next % loops.count
                next += 1
                let loop = loops[loopIndex]
                let registry = registries[loopIndex]
                group.addTask {
                    let began = NIODeadline.now().uptimeNanoseconds
                    let ready = loop.makePromise(of: Void.self)
                    let path =
                        switch plan.target {
                        case .realtime: spec.isAdmin ? "/ws/admin" : "/ws/events"
                        case .nchan: "/sub?id=" + plan.nchanChannel
                        }
                    let bootstrap = ClientBootstrap(group: loop)
                        .connectTimeout(.seconds(10))
                        .channelInitializer { channel in
                            channel.eventLoop.makeCompletedFuture {
                                let state = ClientState(
                                    spec: spec,
                                    ready: ready,
                                    events: plan.eventCount,
                                    lanes: plan.lanes
                                )
                                state.channel = channel
                                let loopRegistry = registry.value
                                loopRegistry.clients.append(state)
                                let boundState = NIOLoopBound(state, eventLoop: channel.eventLoop)
                                state.readyTimeout = channel.eventLoop.scheduleTask(in: .seconds(15)) {
                                    let state = boundState.value
                                    state.failReady("no subscribed reply within 15 s (stage: \(state.stage))")
                                }
                                let upgrader = NIOWebSocketClientUpgrader(
                                    maxFrameSize: 1 << 16,
                                    automaticErrorHandling: true,
                                    upgradePipelineHandler: { channel, _ in
                                        channel.eventLoop.makeCompletedFuture {
                                            try channel.pipeline.syncOperations.addHandler(
                                                LoadClientHandler(state: boundState.value, registry: registry.value)
                                            )
                                        }
                                    }
                                )
                                // The server's `connected` frame often arrives in the same read as the 101
                                // response: forward what the HTTP decoder holds after the upgrade, do not drop it.
                                try channel.pipeline.syncOperations.addHTTPClientHandlers(
                                    leftOverBytesStrategy: .forwardBytes,
                                    withClientUpgrade: (
                                        upgraders: [upgrader],
                                        completionHandler: { context in
                                            context.pipeline.syncOperations.removeHandler(
                                                name: UpgradeRequestHandler.name,
                                                promise: nil
                                            )
                                        }
                                    )
                                )
                                try channel.pipeline.syncOperations.addHandler(
                                    UpgradeRequestHandler(
                                        path: path,
                                        token: spec.token,
                                        hostHeader: hostHeader,
                                        state: state
                                    ),
                                    name: UpgradeRequestHandler.name
                                )
                            }
                        }
                    do {
                        _ = try await bootstrap.connect(to: address).get()
                    } catch {
                        return (spec.index, .failure(SetupFailure(reason: "connect: \(error)")))
                    }
                    do {
                        try await ready.futureResult.get()
                        return (spec.index, .success(NIODeadline.now().uptimeNanoseconds - began))
                    } catch let error as SetupFailure {
                        return (spec.index, .failure(error))
                    } catch {
                        return (spec.index, .failure(SetupFailure(reason: "\(error)")))
                    }
                }
            }
            while next < min(specs.count, concurrency) { add() }
            for await (index, outcome) in group {
                switch outcome {
                case .success(let nanos):
                    result.ready += 1
                    result.readyIndexes.insert(index)
                    _ = result.latency.record(nanos)
                case .failure(let failure):
                    result.failures[Self.normalise(failure.reason), default: 0] += 1
                }
                if next < specs.count && ContinuousClock.now < deadline { add() }
            }
        }
        result.elapsed = Report.seconds(of: ContinuousClock.now - start)
        return result
    }

    /// Shortens a failure reason so that similar failures are counted together.
    static func normalise(_ reason: String) -> String {
        String(reason.prefix(120))
    }
}
