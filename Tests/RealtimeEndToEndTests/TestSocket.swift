// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOPosix
import RealtimeCore
import Synchronization

struct TestTimeout: Error, CustomStringConvertible {
    var description: String
}

/// Bytes received on a socket, with waiters woken on every change (no polling).
final class ByteInbox: Sendable {
    private struct State {
        /// A slice, so that consuming from the front is O(1).
        var bytes: ArraySlice<UInt8> = []
        var closed = false
        var generation = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiter = 0
    }

    private let state = Mutex(State())

    func append(_ bytes: some Sequence<UInt8>) {
        let waiters = state.withLock { state in
            state.bytes.append(contentsOf: bytes)
            state.generation += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    func close() {
        let waiters = state.withLock { state in
            state.closed = true
            state.generation += 1
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Runs `parse` on the buffered bytes until it returns a value, waiting for more bytes in between.
    /// `parse` gets whether the peer closed; it may consume bytes.
    func take<T: Sendable>(
        timeout: Duration,
        _ what: String,
        _ parse: @Sendable (inout ArraySlice<UInt8>, Bool) throws -> T?
    ) async throws -> T {
        let deadline = ContinuousClock.now + timeout
        while true {
            let (value, generation, closed) = try state.withLock { state in
                (try parse(&state.bytes, state.closed), state.generation, state.closed)
            }
            if let value { return value }
            if closed { throw TestTimeout(description: "socket closed while waiting for \(what)") }
            guard ContinuousClock.now < deadline else { throw TestTimeout(description: "no \(what) within \(timeout)") }
            try await waitForChange(after: generation, until: deadline)
        }
    }

    private func waitForChange(after generation: Int, until deadline: ContinuousClock.Instant) async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                let id = self.state.withLock { state -> Int in
                    state.nextWaiter += 1
                    return state.nextWaiter
                }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.generation != generation || Task.isCancelled { return true }
                            state.waiters[id] = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
                    waiter?.resume()
                }
                return true
            }
            group.addTask {
                try? await Task.sleep(until: deadline)
                return false
            }
            _ = try await group.next()
            group.cancelAll()
        }
    }
}

private final class InboxHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    let inbox: ByteInbox
    let firstBytes: [UInt8]
    init(_ inbox: ByteInbox, firstBytes: [UInt8]) {
        self.inbox = inbox
        self.firstBytes = firstBytes
    }

    func channelActive(context: ChannelHandlerContext) {
        if !firstBytes.isEmpty {
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: firstBytes)), promise: nil)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        inbox.append(buffer.readableBytesView)
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// An HTTP response as read off the socket.
struct HTTPReply: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    func json() throws -> JSONValue { try JSONParser().parse(body) }
}

/// A WebSocket frame as read off the socket.
struct WSFrame: Sendable, Equatable {
    var fin: Bool
    var opcode: UInt8
    var payload: [UInt8]

    var text: String { String(decoding: payload, as: UTF8.self) }
    /// For a close frame: the status code, if any.
    var closeCode: UInt16? {
        payload.count >= 2 ? UInt16(payload[0]) << 8 | UInt16(payload[1]) : nil
    }
    var closeReason: String { String(decoding: payload.dropFirst(2), as: UTF8.self) }
}

/// A raw TCP client on loopback that speaks HTTP/1.1 and WebSocket frames by hand, so tests control every
/// byte (bad frames, bad UTF-8, oversize frames) and see every frame (pings, close codes).
final class TestSocket: Sendable {
    let channel: any Channel
    let inbox: ByteInbox

    private init(channel: any Channel, inbox: ByteInbox) {
        self.channel = channel
        self.inbox = inbox
    }

    /// Connects; `firstBytes` are written by the event loop as soon as the connection is up, so that a server with
    /// a short header-read timeout gets them however late the test's task runs on a loaded machine (a request
    /// written after `connect` returned met a closed connection in CI: 200 ms passed in between).
    static func connect(port: Int, firstBytes: [UInt8] = []) async throws -> TestSocket {
        let inbox = ByteInbox()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(InboxHandler(inbox, firstBytes: firstBytes))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return TestSocket(channel: channel, inbox: inbox)
    }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes))
    }

    func write(_ text: String) async throws { try await write(Array(text.utf8)) }

    /// Stops (or resumes) reading from the socket, to play a client that does not keep up.
    func setReading(_ on: Bool) async throws {
        try await channel.setOption(ChannelOptions.autoRead, value: on)
        if on { channel.read() }
    }

    func close() async {
        try? await channel.close()
    }

    /// Whether the server closed the connection (waits up to `timeout`).
    func waitForEOF(timeout: Duration = .seconds(5)) async throws {
        _ = try await inbox.take(timeout: timeout, "end of stream") { bytes, closed in
            bytes.removeAll()
            return closed ? true : nil
        }
    }

    // MARK: HTTP

    /// The next response; `headOnly` for the answer to a `HEAD` request, which has no body whatever its headers say.
    func readHTTPReply(timeout: Duration = .seconds(5), headOnly: Bool = false) async throws -> HTTPReply {
        try await inbox.take(timeout: timeout, "an HTTP response") { bytes, closed in
            try Self.parseReply(&bytes, closed: closed, headOnly: headOnly)
        }
    }

    private static func parseReply(
        _ bytes: inout ArraySlice<UInt8>,
        closed: Bool,
        headOnly: Bool
    ) throws -> HTTPReply? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = bytes.firstRange(of: separator) else { return nil }
        let head = String(decoding: bytes[bytes.startIndex..<end.lowerBound], as: UTF8.self)
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: false).map(String.init)
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw TestTimeout(description: "bad status line \(head.prefix(80))")
        }
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
        }
        let bodyStart = end.upperBound
        var reply = HTTPReply(status: status, headers: headers, body: [])
        if status == 101 || headOnly {
            bytes.removeSubrange(..<bodyStart)
            return reply
        }
        if let length = reply.header("Content-Length").flatMap(Int.init) {
            guard bytes.endIndex - bodyStart >= length else { return nil }
            reply.body = Array(bytes[bodyStart..<bodyStart + length])
            bytes.removeSubrange(..<(bodyStart + length))
            return reply
        }
        if reply.header("Transfer-Encoding")?.lowercased() == "chunked" {
            var index = bodyStart
            var body: [UInt8] = []
            while true {
                guard let lineEnd = bytes[index...].firstRange(of: [13, 10]) else { return nil }
                let sizeText = String(decoding: bytes[index..<lineEnd.lowerBound], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else {
                    throw TestTimeout(description: "bad chunk size")
                }
                let dataStart = lineEnd.upperBound
                guard bytes.endIndex >= dataStart + size + 2 else { return nil }
                if size == 0 {
                    bytes.removeSubrange(..<(dataStart + 2))
                    reply.body = body
                    return reply
                }
                body.append(contentsOf: bytes[dataStart..<dataStart + size])
                index = dataStart + size + 2
            }
        }
        guard closed else { return nil }
        reply.body = Array(bytes[bodyStart...])
        bytes.removeAll()
        return reply
    }

    /// One HTTP request on a new connection (`Connection: close`).
    static func request(
        port: Int,
        _ method: String,
        _ path: String,
        headers: [(String, String)] = [],
        body: [UInt8] = []
    ) async throws -> HTTPReply {
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let socket = try await connect(port: port, firstBytes: Array(head.utf8) + body)
        defer { Task { await socket.close() } }
        return try await socket.readHTTPReply(headOnly: method == "HEAD")
    }

    // MARK: WebSocket

    /// Sends a WebSocket handshake; returns the reply (101 on success, then the socket speaks frames).
    func handshake(path: String, headers: [(String, String)] = []) async throws -> HTTPReply {
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await write(request)
        return try await readHTTPReply()
    }

    /// Encodes and sends one masked frame (or an unmasked one when `masked` is false).
    func sendFrame(opcode: UInt8, _ payload: [UInt8], fin: Bool = true, rsv: UInt8 = 0, masked: Bool = true)
        async throws
    {
        try await write(Self.frameBytes(opcode: opcode, payload, fin: fin, rsv: rsv, masked: masked))
    }

    /// The bytes of one client frame, masked unless `masked` is false.
    static func frameBytes(
        opcode: UInt8,
        _ payload: [UInt8],
        fin: Bool = true,
        rsv: UInt8 = 0,
        masked: Bool = true
    ) -> [UInt8] {
        var frame: [UInt8] = [(fin ? 0x80 : 0) | (rsv << 4) | opcode]
        let maskBit: UInt8 = masked ? 0x80 : 0
        if payload.count < 126 {
            frame.append(maskBit | UInt8(payload.count))
        } else if payload.count <= 0xFFFF {
            frame.append(maskBit | 126)
            frame.append(UInt8(payload.count >> 8))
            frame.append(UInt8(payload.count & 0xFF))
        } else {
            frame.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { frame.append(UInt8((payload.count >> shift) & 0xFF)) }
        }
        if masked {
            let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
            frame.append(contentsOf: mask)
            frame.append(contentsOf: payload.enumerated().map { $0.element ^ mask[$0.offset % 4] })
        } else {
            frame.append(contentsOf: payload)
        }
        return frame
    }

    func sendText(_ text: String) async throws { try await sendFrame(opcode: 1, Array(text.utf8)) }

    /// The next frame, whatever it is.
    func readFrame(timeout: Duration = .seconds(5)) async throws -> WSFrame {
        try await inbox.take(timeout: timeout, "a WebSocket frame") { bytes, _ in Self.parseFrame(&bytes) }
    }

    private static func parseFrame(_ bytes: inout ArraySlice<UInt8>) -> WSFrame? {
        let base = bytes.startIndex
        guard bytes.count >= 2 else { return nil }
        let fin = bytes[base] & 0x80 != 0
        let opcode = bytes[base] & 0x0F
        var length = Int(bytes[base + 1] & 0x7F)
        var offset = 2
        if length == 126 {
            guard bytes.count >= 4 else { return nil }
            length = Int(bytes[base + 2]) << 8 | Int(bytes[base + 3])
            offset = 4
        } else if length == 127 {
            guard bytes.count >= 10 else { return nil }
            length = bytes[(base + 2)..<(base + 10)].reduce(0) { $0 << 8 | Int($1) }
            offset = 10
        }
        guard bytes.count >= offset + length else { return nil }
        let frame = WSFrame(fin: fin, opcode: opcode, payload: Array(bytes[(base + offset)..<(base + offset + length)]))
        bytes.removeFirst(offset + length)
        return frame
    }

    /// The next text message as JSON, answering and skipping pings.
    func nextMessage(timeout: Duration = .seconds(5)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let frame = try await readFrame(timeout: deadline - ContinuousClock.now)
            switch frame.opcode {
            case 1: return try JSONParser().parse(frame.payload)
            case 9: try await sendFrame(opcode: 10, frame.payload)
            case 8: throw TestTimeout(description: "closed (\(frame.closeCode ?? 0) \(frame.closeReason))")
            default: continue
            }
        }
    }

    /// The next message of a type, skipping others.
    func nextMessage(type: String, timeout: Duration = .seconds(5)) async throws -> JSONValue {
        let deadline = ContinuousClock.now + timeout
        while true {
            let message = try await nextMessage(timeout: deadline - ContinuousClock.now)
            if message["type"]?.stringValue == type { return message }
        }
    }

    /// Reads until the close frame, answering pings; returns its code and reason.
    func nextClose(timeout: Duration = .seconds(5)) async throws -> (code: UInt16?, reason: String) {
        let deadline = ContinuousClock.now + timeout
        while true {
            let frame = try await readFrame(timeout: deadline - ContinuousClock.now)
            if frame.opcode == 8 { return (frame.closeCode, frame.closeReason) }
        }
    }

    /// Sends a ping message with a marker and returns every message received before its pong.
    func drainUntilPong() async throws -> [JSONValue] {
        let marker = "sync-" + RandomID.hex(bytes: 4)
        try await sendText(#"{"type":"ping","id":"\#(marker)"}"#)
        var messages: [JSONValue] = []
        while true {
            let message = try await nextMessage()
            if message["type"]?.stringValue == "pong" && message["id"]?.stringValue == marker { return messages }
            messages.append(message)
        }
    }
}
