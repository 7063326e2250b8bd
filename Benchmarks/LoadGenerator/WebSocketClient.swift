// SPDX-License-Identifier: Apache-2.0

import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket
import Synchronization

/// One simulated client: who it is and how it authenticates.
struct ClientSpec: Sendable {
    let index: Int
    /// The user index (`lg-u<user>`); administrators have their own users and `user == -1`.
    let user: Int
    let isAdmin: Bool
    let token: String
}

/// Counters every event loop updates, read by the main task while it waits for deliveries.
final class SharedCounters: Sendable {
    /// First receipts of expected events, over all clients.
    let expectedReceipts = Atomic<Int>(0)
    /// Connections closed by the server (or reset) after they were ready.
    let unexpectedCloses = Atomic<Int>(0)
    init() {}
}

/// The state of one client, confined to its channel's event loop.
final class ClientState {
    enum Stage { case connecting, connected, ready, closed }

    let spec: ClientSpec
    let ready: EventLoopPromise<Void>
    var stage = Stage.connecting
    var readyCompleted = false
    var readyTimeout: Scheduled<Void>?
    var channel: (any Channel)?
    /// Set before the generator closes the connection itself.
    var closingByUs = false
    /// The close code the server sent, if any.
    var serverCloseCode: Int?
    /// One bit per sequence number: received at least once.
    var received: [UInt64]
    /// The last sequence number received per publisher lane (order is guaranteed within a lane only).
    var lastSequence: [Int]
    var duplicates = 0
    var outOfOrder = 0
    var unexpected = 0

    init(spec: ClientSpec, ready: EventLoopPromise<Void>, events: Int, lanes: Int) {
        self.spec = spec
        self.ready = ready
        self.received = Array(repeating: 0, count: (events + 63) / 64)
        self.lastSequence = Array(repeating: -1, count: lanes)
    }

    func succeedReady() {
        guard !readyCompleted else { return }
        readyCompleted = true
        stage = .ready
        readyTimeout?.cancel()
        ready.succeed(())
    }

    func failReady(_ reason: String) {
        guard !readyCompleted else { return }
        readyCompleted = true
        readyTimeout?.cancel()
        ready.fail(SetupFailure(reason: reason))
        channel?.close(promise: nil)
    }
}

/// Why a client did not become ready.
struct SetupFailure: Error, Sendable, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}

/// Everything the clients of one event loop record: no lock, no atomics on the per-frame path (but one).
final class LoopRegistry {
    let plan: Plan
    let shared: SharedCounters
    let patternsMessage: ByteBuffer
    var clients: [ClientState] = []
    /// Publish-to-receive latency in nanoseconds, per phase.
    var latency: [Histogram<UInt64>]
    /// Monotonic nanoseconds of the last expected receipt, per phase.
    var lastReceipt: [UInt64]
    var receiptsPerPhase: [Int]
    var foreignEvents = 0
    var otherMessages: [String: Int] = [:]
    var errorMessages: [String] = []
    var errorCount = 0
    var gaps = 0
    var pingsAnswered = 0
    /// Close codes sent by the server to ready clients (0: closed without a close frame).
    var closeCodes: [Int: Int] = [:]

    init(plan: Plan, shared: SharedCounters, patterns: [String]) {
        self.plan = plan
        self.shared = shared
        let list = patterns.map { "\"\($0)\"" }.joined(separator: ",")
        self.patternsMessage = ByteBuffer(
            string: #"{"type":"subscribe","id":1,"payload":{"eventTypes":["# + list + "]}}"
        )
        let histogram = Histogram<UInt64>(
            highestTrackableValue: 120_000_000_000,
            numberOfSignificantValueDigits: .three
        )
        self.latency = Array(repeating: histogram, count: plan.phases.count)
        self.lastReceipt = Array(repeating: 0, count: plan.phases.count)
        self.receiptsPerPhase = Array(repeating: 0, count: plan.phases.count)
    }

    /// Records one event frame of this run.
    func record(_ client: ClientState, sequence: Int, sentNanos: UInt64, now: UInt64) {
        guard sequence >= 0 && sequence < plan.eventCount else {
            client.unexpected += 1
            return
        }
        let word = sequence >> 6
        let bit = UInt64(1) << UInt64(sequence & 63)
        if client.received[word] & bit != 0 {
            client.duplicates += 1
            return
        }
        client.received[word] |= bit
        guard plan.expects(user: client.spec.user, isAdmin: client.spec.isAdmin, sequence: sequence) else {
            client.unexpected += 1
            return
        }
        let lane = plan.lane(of: sequence)
        if client.lastSequence[lane] > sequence {
            client.outOfOrder += 1
        } else {
            client.lastSequence[lane] = sequence
        }
        let phase = plan.phase(of: sequence)
        _ = latency[phase].record(now >= sentNanos ? now - sentNanos : 0)
        lastReceipt[phase] = max(lastReceipt[phase], now)
        receiptsPerPhase[phase] += 1
        shared.expectedReceipts.add(1, ordering: .relaxed)
    }

    func noteError(_ text: String) {
        errorCount += 1
        if errorMessages.count < 5 { errorMessages.append(text) }
    }
}

/// Sends the upgrade request and reports a refused upgrade (the HTTP status and body).
final class UpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    static let name = "lg-upgrade-request"

    let path: String
    let token: String
    let hostHeader: String
    let state: ClientState
    var status: HTTPResponseStatus?
    var body = ""

    init(path: String, token: String, hostHeader: String, state: ClientState) {
        self.path = path
        self.token = token
        self.hostHeader = hostHeader
        self.state = state
    }

    func channelActive(context: ChannelHandlerContext) {
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: hostHeader)
        headers.add(name: "Authorization", value: "Bearer \(token)")
        headers.add(name: "Content-Length", value: "0")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Only a refused upgrade reaches this handler: a successful one removes it.
        switch unwrapInboundIn(data) {
        case .head(let head): status = head.status
        case .body(let buffer): if body.utf8.count < 300 { body += String(buffer: buffer).prefix(300) }
        case .end:
            state.failReady("HTTP \(status?.code ?? 0) \(body.prefix(200))")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        state.failReady("connection closed during the upgrade")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        state.failReady("upgrade error: \(error)")
        context.close(promise: nil)
    }
}

/// The WebSocket side of a client: answers pings, subscribes once connected, and records every event frame.
final class LoadClientHandler: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    let state: ClientState
    let registry: LoopRegistry
    var fragments: ByteBuffer?

    init(state: ClientState, registry: LoopRegistry) {
        self.state = state
        self.registry = registry
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A Nchan subscriber is subscribed by its upgrade: no `connected` / `subscribe` exchange follows.
        if registry.plan.target == .nchan {
            state.stage = .connected
            state.succeedReady()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        switch frame.opcode {
        case .text:
            if frame.fin {
                handleText(context: context, frame.unmaskedData)
            } else {
                fragments = frame.unmaskedData
            }
        case .continuation:
            guard var buffer = fragments else { return }
            var data = frame.unmaskedData
            buffer.writeBuffer(&data)
            if frame.fin {
                fragments = nil
                handleText(context: context, buffer)
            } else {
                fragments = buffer
            }
        case .ping:
            registry.pingsAnswered += 1
            send(context: context, opcode: .pong, data: frame.unmaskedData)
        case .connectionClose:
            var data = frame.unmaskedData
            let code = data.readInteger(as: UInt16.self).map(Int.init) ?? 1005
            state.serverCloseCode = code
            if !state.closingByUs {
                if state.stage == .ready {
                    registry.closeCodes[code, default: 0] += 1
                    registry.shared.unexpectedCloses.add(1, ordering: .relaxed)
                }
                state.closingByUs = true
                state.failReady("closed by the server with \(code) \(String(buffer: data).prefix(120))")
                var reply = context.channel.allocator.buffer(capacity: 2)
                reply.writeInteger(UInt16(1000))
                send(context: context, opcode: .connectionClose, data: reply)
            }
            context.close(promise: nil)
        case .binary:
            registry.otherMessages["(binary)", default: 0] += 1
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !state.closingByUs && state.stage == .ready {
            registry.closeCodes[0, default: 0] += 1
            registry.shared.unexpectedCloses.add(1, ordering: .relaxed)
        }
        state.failReady("connection closed before it was ready")
        state.stage = .closed
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        registry.noteError("channel error: \(error)")
        context.close(promise: nil)
    }

    private func send(context: ChannelHandlerContext, opcode: WebSocketOpcode, data: ByteBuffer) {
        let frame = WebSocketFrame(fin: true, opcode: opcode, maskKey: .random(), data: data)
        context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
    }

    private func handleText(context: ChannelHandlerContext, _ buffer: ByteBuffer) {
        let now = NIODeadline.now().uptimeNanoseconds
        let registry = self.registry
        let state = self.state
        enum Kind {
            case event(sequence: Int, sent: Int)
            case foreignEvent
            case other(String)
        }
        let kind: Kind = buffer.withUnsafeReadableBytes { bytes in
            if FrameScan.hasPrefix(FrameScan.eventPrefix, bytes) {
                guard FrameScan.find(registry.plan.marker, in: bytes) != nil,
                    let sequence = FrameScan.integer(after: FrameScan.sequenceKey, in: bytes),
                    let sent = FrameScan.integer(after: FrameScan.sentKey, in: bytes)
                else { return .foreignEvent }
                return .event(sequence: sequence, sent: sent)
            }
            return .other(FrameScan.messageType(in: bytes) ?? "(unknown)")
        }
        switch kind {
        case .event(let sequence, let sent):
            registry.record(state, sequence: sequence, sentNanos: UInt64(sent), now: now)
        case .foreignEvent:
            registry.foreignEvents += 1
        case .other("connected"):
            state.stage = .connected
            send(context: context, opcode: .text, data: registry.patternsMessage)
        case .other("subscribed"):
            state.succeedReady()
        case .other("error"):
            let text = String(buffer: buffer)
            registry.noteError(String(text.prefix(300)))
            state.failReady("error reply: \(text.prefix(200))")
        case .other("gap"):
            registry.gaps += 1
        case .other(let type):
            registry.otherMessages[type, default: 0] += 1
        }
    }
}
