import NIOCore
import NIOEmbedded
import RealtimeCore
import Synchronization
import Testing

@testable import RealtimeNIO

/// `HTTPHeadLimitHandler`'s header-read timeout and refusals on an `EmbeddedEventLoop`, whose clock moves only when
/// the test says. (`EmbeddedChannel` closes fully on `close(mode: .output)`, so the lingering close after a refusal
/// is left to the socket tests in `RequestLimitTests`.)
@Suite struct HTTPHeadLimitHandlerTests {
    /// A connected channel with the handler, its loop and the violations it reported.
    final class Harness {
        let loop = EmbeddedEventLoop()
        let channel: EmbeddedChannel
        let violations = Violations()

        /// The reasons the handler reported, in order.
        final class Violations: Sendable {
            let reasons = Mutex<[String]>([])
        }

        var reports: [String] { violations.reasons.withLock { $0 } }

        init(
            gate: HTTPHeadLimitHandler.ConnectionGate? = nil,
            timeout: Duration = .milliseconds(300),
            bodyTimeout: Duration = .milliseconds(500),
            idleTimeout: Duration = .seconds(60),
            maxHeaderFieldBytes: Int = 8 * 1024,
            shutdownGrace: Duration = .milliseconds(250)
        ) throws {
            var limits = HubConfiguration.HTTPLimits()
            limits.headerReadTimeout = timeout
            limits.bodyReadTimeout = bodyTimeout
            limits.idleTimeout = idleTimeout
            limits.maxHeaderFieldBytes = maxHeaderFieldBytes
            limits.shutdownGrace = shutdownGrace
            channel = EmbeddedChannel(loop: loop)
            let violations = self.violations
            try channel.pipeline.syncOperations.addHandler(
                HTTPHeadLimitHandler(limits: limits, gate: gate) { reason, _ in
                    violations.reasons.withLock { $0.append(reason) }
                }
            )
            try channel.pipeline.syncOperations.addHandler(QuiesceRecorder(events: passedOn))
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9)).wait()
        }

        /// What passed the handler, in order: `read` for each read, `quiesce` for the shutdown event.
        let passedOn = QuiesceRecorder.Events()
        var passed: [String] { passedOn.list.withLock { $0 } }

        /// The server starts its graceful shutdown (what NIO's `ServerQuiescingHelper` sends every connection).
        func quiesce() { channel.pipeline.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent()) }

        func send(_ text: String) throws {
            try channel.writeInbound(channel.allocator.buffer(string: text))
        }

        /// What the handler wrote back, as text (nil when it wrote nothing).
        func reply() throws -> String? {
            try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) }
        }

        func advance(_ milliseconds: Int64) { loop.advanceTime(by: .milliseconds(milliseconds)) }

        /// The server answers (a write through the handler, as the HTTP encoder's would be), and the answer is read.
        func answer() throws {
            try channel.writeAndFlush(channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\n\r\n")).wait()
            #expect(try reply() == "HTTP/1.1 200 OK\r\n\r\n")
        }
    }

    @Test func aConnectionThatSendsNothingIsClosedQuietlyAtTheTimeout() throws {
        let harness = try Harness()
        harness.advance(299)
        #expect(harness.channel.isActive)
        harness.advance(1)
        #expect(!harness.channel.isActive)
        #expect(try harness.reply() == nil)
        #expect(harness.reports.isEmpty)
    }

    /// The flaky socket test's case, without the race: bytes that keep coming do not extend the deadline of the
    /// first request, counted from the connection's start.
    @Test func aTrickledHeadGets408AtTheTimeoutAndIsReported() throws {
        let harness = try Harness()
        for byte in "GET /ws/health HTTP/1.1\r\nHost: slow\r\nX-Slow: ".utf8.prefix(14) {
            try harness.send(String(UnicodeScalar(byte)))
            harness.advance(20)
        }
        // 280 ms in: still reading.
        #expect(try harness.reply() == nil)
        harness.advance(19)
        #expect(try harness.reply() == nil)
        harness.advance(1)
        let reply = try #require(try harness.reply())
        #expect(reply.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(reply.contains("Connection: close\r\n"))
        #expect(reply.contains(#""code":"request_timeout""#))
        #expect(reply.contains("the request head did not arrive within 300 ms"))
        #expect(harness.reports == ["header_timeout"])
        // Nothing the client still sends reaches the HTTP parser (what came before the refusal did, as it came).
        var passed = ""
        while let buffer = try harness.channel.readInbound(as: ByteBuffer.self) { passed += String(buffer: buffer) }
        #expect(passed == "GET /ws/health")
        try? harness.send("more")
        #expect(try harness.channel.readInbound(as: ByteBuffer.self) == nil)
    }

    @Test func aHeadThatCompletesInTimeIsPassedOnAndTheTimerStops() throws {
        let harness = try Harness()
        try harness.send("GET /ws/health HTTP/1.1\r\n")
        harness.advance(200)
        try harness.send("Host: a\r\n\r\n")
        harness.advance(1_000)
        #expect(harness.channel.isActive)
        #expect(try harness.reply() == nil)
        var passed = ""
        while let buffer = try harness.channel.readInbound(as: ByteBuffer.self) { passed += String(buffer: buffer) }
        #expect(passed == "GET /ws/health HTTP/1.1\r\nHost: a\r\n\r\n")
        // The next request's head has its own deadline, from its first byte.
        try harness.send("GET /ws/health HTTP/1.1\r\n")
        harness.advance(299)
        #expect(try harness.reply() == nil)
        harness.advance(1)
        #expect(try harness.reply()?.hasPrefix("HTTP/1.1 408 ") == true)
    }

    @Test func aHeaderLineOverItsLimitGets431AtOnce() throws {
        let harness = try Harness(maxHeaderFieldBytes: 64)
        try harness.send("GET / HTTP/1.1\r\nX-Big: " + String(repeating: "b", count: 100))
        let reply = try #require(try harness.reply())
        #expect(reply.hasPrefix("HTTP/1.1 431 Request Header Fields Too Large\r\n"))
        #expect(reply.contains(#""code":"header_too_large""#))
        #expect(harness.reports == ["header_too_large"])
    }

    /// Fuzz: a POST whose body never came, or came a byte every few seconds, held its socket forever.
    @Test func aBodyThatDoesNotArriveInTimeGets408AndIsReported() throws {
        let harness = try Harness()
        try harness.send("POST /api/v1/events HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nab")
        // Bytes that keep coming do not extend the body's deadline, counted from the end of its head.
        for _ in 0..<4 {
            harness.advance(100)
            try harness.send("c")
        }
        harness.advance(99)
        #expect(try harness.reply() == nil)
        harness.advance(1)
        let reply = try #require(try harness.reply())
        #expect(reply.hasPrefix("HTTP/1.1 408 Request Timeout\r\n"))
        #expect(reply.contains("the request body did not arrive within 500 ms"))
        #expect(harness.reports == ["body_timeout"])
    }

    @Test func aBodyThatCompletesInTimeStopsItsTimerAndTheNextBodyHasItsOwn() throws {
        let harness = try Harness()
        try harness.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        harness.advance(400)
        try harness.send("cd")
        harness.advance(400)
        #expect(try harness.reply() == nil)
        // A chunked body, pipelined behind a complete request: its own deadline from its head's end.
        try harness.send("POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n")
        harness.advance(499)
        #expect(try harness.reply() == nil)
        harness.advance(1)
        #expect(try harness.reply()?.hasPrefix("HTTP/1.1 408 ") == true)
        #expect(harness.reports == ["body_timeout"])
    }

    /// Fuzz: keep-alive connections idle after a request were never closed; 230 of them from one address took a
    /// server with 200 file descriptors down.
    @Test func aKeepAliveConnectionIdleBetweenRequestsIsClosedQuietly() throws {
        let harness = try Harness(idleTimeout: .seconds(5))
        try harness.send("GET /ws/health HTTP/1.1\r\nHost: a\r\n\r\n")
        harness.advance(1_000)
        // The response is activity: the idle time counts from its write.
        try harness.channel.writeAndFlush(harness.channel.allocator.buffer(string: "HTTP/1.1 200 OK\r\n\r\n")).wait()
        #expect(try harness.reply() == "HTTP/1.1 200 OK\r\n\r\n")
        harness.advance(4_999)
        #expect(harness.channel.isActive)
        harness.advance(1)
        #expect(!harness.channel.isActive)
        #expect(try harness.reply() == nil)
        #expect(harness.reports.isEmpty)
    }

    /// Before its first byte a connection has the header-read timeout, even when the idle timeout is shorter (a
    /// loaded machine's client that sends late is not idle; the socket test raced on this).
    @Test func theIdleTimeoutStartsAfterTheFirstRequest() throws {
        let harness = try Harness(timeout: .seconds(10), idleTimeout: .seconds(1))
        harness.advance(5_000)
        #expect(harness.channel.isActive)
        try harness.send("GET /ws/health HTTP/1.1\r\nHost: a\r\n\r\n")
        try harness.answer()
        harness.advance(999)
        #expect(harness.channel.isActive)
        harness.advance(1)
        #expect(!harness.channel.isActive)
    }

    /// A request read and not yet answered is the server's work, not an idle connection, however long it takes (a
    /// `/ws/health` slower than the 300 ms idle timeout of a socket test was cut off on a loaded machine). A stray
    /// CRLF after the answer starts no request and does not keep the connection from being idle.
    @Test func aRequestNotYetAnsweredIsNotIdle() throws {
        let harness = try Harness(timeout: .seconds(10), idleTimeout: .seconds(1))
        try harness.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        harness.advance(60_000)
        #expect(harness.channel.isActive)
        try harness.answer()
        try harness.send("\r\n")
        harness.advance(999)
        #expect(harness.channel.isActive)
        harness.advance(1)
        #expect(!harness.channel.isActive)
        #expect(harness.reports.isEmpty)
    }

    @Test func theIdleTimeoutNeverCutsARequestBeingRead() throws {
        let harness = try Harness(timeout: .seconds(20), bodyTimeout: .seconds(20), idleTimeout: .seconds(5))
        try harness.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        harness.advance(10_000)
        #expect(harness.channel.isActive)
        try harness.send("cd")
        try harness.answer()
        harness.advance(4_999)
        #expect(harness.channel.isActive)
        harness.advance(500)
        #expect(!harness.channel.isActive)
        #expect(harness.reports.isEmpty)
    }

    @Test func aConnectionPastItsAddressBoundGets429AtOnceAndTheCountFollowsTheConnections() throws {
        let open = Mutex(0)
        let gate = HTTPHeadLimitHandler.ConnectionGate(
            started: { _ in
                open.withLock { count in
                    guard count < 1 else { return false }
                    count += 1
                    return true
                }
            },
            ended: { _ in open.withLock { $0 -= 1 } },
            limit: 1
        )
        let first = try Harness(gate: gate)
        #expect(open.withLock { $0 } == 1)
        let second = try Harness(gate: gate)
        let reply = try #require(try second.reply())
        #expect(reply.hasPrefix("HTTP/1.1 429 Too Many Requests\r\n"))
        #expect(reply.contains(#""code":"too_many_connections""#))
        #expect(second.reports.isEmpty, "not a violation")
        #expect(open.withLock { $0 } == 1)
        try first.channel.close().wait()
        #expect(open.withLock { $0 } == 0)
        let third = try Harness(gate: gate)
        #expect(try third.reply() == nil)
        #expect(open.withLock { $0 } == 1)
        // Removed (the connection became a WebSocket): uncounted once, not again at its close.
        try third.channel.pipeline.syncOperations.removeHandler(
            try third.channel.pipeline.syncOperations.handler(type: HTTPHeadLimitHandler.self)
        ).wait()
        #expect(open.withLock { $0 } == 0)
        try third.channel.close().wait()
        #expect(open.withLock { $0 } == 0)
    }
}

/// Records the reads and shutdown events that pass ``HTTPHeadLimitHandler``, and passes reads on.
final class QuiesceRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    final class Events: Sendable {
        let list = Mutex<[String]>([])
    }

    let events: Events

    init(events: Events) { self.events = events }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        events.list.withLock { $0.append("read") }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { events.list.withLock { $0.append("quiesce") } }
        context.fireUserInboundEventTriggered(event)
    }
}

/// Graceful shutdown: `HTTPHeadLimitHandler` holds the server's `ChannelShouldQuiesceEvent` for a connection with
/// no request under way for `shutdownGrace`, passes it on right after a request head that arrives meanwhile, and
/// closes a connection that never sent anything at the grace's end.
@Suite struct HTTPHeadLimitHandlerShutdownTests {
    typealias Harness = HTTPHeadLimitHandlerTests.Harness

    @Test func anIdleKeepAliveConnectionGetsTheEventAfterTheGrace() throws {
        let harness = try Harness(timeout: .seconds(10))
        try harness.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try harness.answer()
        harness.quiesce()
        harness.advance(249)
        #expect(harness.passed == ["read"], "held for the grace")
        harness.advance(1)
        #expect(harness.passed == ["read", "quiesce"])
        #expect(harness.channel.isActive, "closing is the HTTP handler's, behind")
    }

    @Test func aRequestThatArrivesInTheGraceIsPassedOnBeforeTheEvent() throws {
        let harness = try Harness(timeout: .seconds(10))
        try harness.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try harness.answer()
        harness.quiesce()
        harness.advance(100)
        try harness.send("POST /b HTTP/1.1\r\nHost: a\r\nContent-")
        #expect(harness.passed == ["read", "read"])
        harness.advance(1_000)
        #expect(harness.passed == ["read", "read"], "a head being read is waited for past the grace")
        try harness.send("Length: 2\r\n\r\nok")
        #expect(harness.passed == ["read", "read", "read", "quiesce"], "the event follows the completed head")
        harness.advance(10_000)
        #expect(harness.passed.count(where: { $0 == "quiesce" }) == 1, "passed on once")
    }

    @Test func aConnectionThatSentNothingIsClosedAtTheGraceUnlessARequestArrives() throws {
        let quiet = try Harness(timeout: .seconds(10))
        quiet.quiesce()
        quiet.advance(249)
        #expect(quiet.channel.isActive)
        quiet.advance(1)
        #expect(!quiet.channel.isActive, "nothing behind the parser exists yet to close it")
        #expect(quiet.passed.isEmpty)
        #expect(try quiet.reply() == nil)
        #expect(quiet.reports.isEmpty)

        // The case that held shutdowns open: the first request arrives after the event.
        let late = try Harness(timeout: .seconds(10))
        late.quiesce()
        late.advance(200)
        try late.send("GET /ws/health HTTP/1.1\r\nHost: a\r\n\r\n")
        #expect(late.passed == ["read", "quiesce"])
    }

    @Test func aRequestUnderWayGetsTheEventAtOnce() throws {
        let answering = try Harness(timeout: .seconds(10))
        try answering.send("GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
        answering.quiesce()
        #expect(answering.passed == ["read", "quiesce"], "awaiting its response")

        let uploading = try Harness(timeout: .seconds(10), bodyTimeout: .seconds(10))
        try uploading.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
        uploading.quiesce()
        #expect(uploading.passed == ["read", "quiesce"], "its body being read")
    }

    /// A request still arriving at the shutdown gets `shutdownReadLimit` (3 s) more, not its whole read timeout:
    /// one client trickling a body held the exit for the body-read timeout (eighth probe: 30 s).
    @Test func aRequestStillArrivingGetsAtMostTheShutdownReadLimit() throws {
        let body = try Harness(timeout: .seconds(10), bodyTimeout: .seconds(30))
        try body.send("POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nab")
        body.advance(1_000)
        body.quiesce()
        try body.send("cd")
        body.advance(2_999)
        #expect(body.channel.isActive)
        body.advance(1)
        let late = try #require(try body.reply())
        #expect(late.hasPrefix("HTTP/1.1 408"))
        #expect(late.contains("shutting down"))

        let head = try Harness(timeout: .seconds(10))
        try head.send("GET /a HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        head.quiesce()
        head.advance(2_999)
        try head.send("a")
        #expect(try head.reply() == nil)
        head.advance(1)
        #expect(try head.reply()?.hasPrefix("HTTP/1.1 408") == true)
    }

    @Test func aZeroGracePassesTheEventOnAtOnce() throws {
        let harness = try Harness(timeout: .seconds(10), shutdownGrace: .zero)
        try harness.send("GET /a HTTP/1.1\r\nHost: a\r\n\r\n")
        try harness.answer()
        harness.quiesce()
        harness.advance(0)
        #expect(harness.passed == ["read", "quiesce"])
    }
}
