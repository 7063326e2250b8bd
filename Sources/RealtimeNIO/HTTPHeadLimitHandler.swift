// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOHTTP1
import NIOWebSocket
import RealtimeCore

/// The first handler of every HTTP connection: enforces ``HubConfiguration/HTTPLimits`` on the raw bytes, before
/// the HTTP parser buffers anything, token parsing or an upgrade.
///
/// - A request line, header line or header block past its bound is answered at once with `414` or `431` and a
///   JSON error body; the socket's output is shut and whatever the client still sends is read and dropped
///   (never buffered), and the socket is closed once the client is quiet for ``lingerQuietTime`` or at the
///   latest after ``lingerLimit``. (Closing at once, with unread bytes, would make the kernel send a reset that
///   can destroy the response before the client reads it.)
/// - A head that is not complete within the header-read timeout (from its first byte, or from the connection's
///   start for the first request) gets `408` the same way; a connection that sent nothing is closed quietly.
/// - A body that is not complete within the body-read timeout (from the end of its head) gets `408` the same way.
/// - A keep-alive connection between requests (its last request answered) with no byte read or written for the
///   idle timeout is closed quietly (fuzz: idle keep-alive sockets were held forever, and a few hundred of them from one address
///   exhausted the server's file descriptors).
/// - A request the HTTP parser refuses is answered with `400` the same way (``MalformedRequest``).
///
/// - A connection past its address's bound of open plain HTTP connections (``ConnectionGate``) gets `429` the same
///   way, at once; it is not reported as a violation (a busy NAT is not an attack).
///
/// - At graceful shutdown (`ChannelShouldQuiesceEvent`), a connection with no request under way is not closed at
///   once: for ``HubConfiguration/HTTPLimits/shutdownGrace`` a request already on its way is still read, and the
///   event is passed on right after its head (Hummingbird's connection handler then closes the connection after
///   that response, which says `Connection: close`). A head being read is waited for. Without this a request in
///   flight met a reset, and a connection that had sent nothing before the event was never told of it: it was
///   served on, keep-alive, and held the shutdown open for as long as its client kept sending.
///
/// Each refusal except the quiet close and the connection bound is reported to the hub (``RealtimeHub/reportHTTPViolation(reason:peer:)``).
/// The handler removes itself when the connection is upgraded to a WebSocket.
final class HTTPHeadLimitHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A user event that asks the handler to answer with an error and close: the HTTP parser refused the request,
    /// or it is a WebSocket upgrade NIO's upgrader cannot take. `400 bad_request` unless said otherwise.
    struct MalformedRequest: Sendable {
        var message = "the request is not valid HTTP/1.1"
        var status = "400 Bad Request"
        var code = "bad_request"
        /// The violation reported to the hub.
        var reason = "malformed_request"

        /// The HTTP parser's header-field count (`NIOHTTPDecoderLimitConfiguration.maxHeaderFieldCount`) was
        /// passed; the byte limits are this handler's own and are met first.
        static let tooManyHeaderFields = MalformedRequest(
            message: "the request has more header fields than the server accepts",
            status: "431 Request Header Fields Too Large",
            code: "headers_too_large",
            reason: "header_too_large"
        )
    }

    /// Counts the connection against its address's bound while it is plain HTTP (``RealtimeHub/httpConnectionStarted(peer:)``).
    struct ConnectionGate: Sendable {
        /// Counts a connection of the peer; `false` when its address holds the most already.
        var started: @Sendable (_ peer: String) -> Bool
        /// Uncounts a connection `started` admitted.
        var ended: @Sendable (_ peer: String) -> Void
        /// The bound, for the refusal's message.
        var limit: Int
    }

    /// At graceful shutdown, the most time a request head or body still arriving is given from then on (its read
    /// timeout, if sooner, still applies); then `408`. Without it one client trickling a body held the exit for up to
    /// the body-read timeout (eighth probe: 30 s).
    static let shutdownReadLimit = TimeAmount.seconds(3)

    /// How long the client must be quiet, after a refusal, before the socket is closed.
    static let lingerQuietTime = TimeAmount.milliseconds(50)
    /// The longest a refused connection stays open, however much the client still sends.
    static let lingerLimit = TimeAmount.seconds(1)

    private var scanner: HTTPHeadScanner
    private let headerReadTimeout: TimeAmount
    private let bodyReadTimeout: TimeAmount
    private let idleTimeout: TimeAmount
    private let report: @Sendable (_ reason: String, _ peer: String) -> Void
    private let gate: ConnectionGate?
    private var didStart = false
    /// The peer `gate` counted, uncounted when the handler goes (upgrade or close).
    private var countedPeer: String?
    private var headTimer: Scheduled<Void>?
    private var quietTimer: Scheduled<Void>?
    private var limitTimer: Scheduled<Void>?
    private var refused = false
    private var headsAtTimerStart = 0
    private var bodyTimer: Scheduled<Void>?
    /// The head whose body the body timer runs for (``HTTPHeadScanner/completedHeads`` at its start).
    private var headsAtBodyTimerStart = 0
    private var idleTimer: Scheduled<Void>?
    /// A request was read to its end and nothing was written since: the server is still working on the answer, so
    /// the connection is not idle however long that takes (a response is the server's to bound, e.g. a health check
    /// waiting on a backend). Set when a read completes a request, cleared by the next write.
    private var awaitingResponse = false
    /// The last time a byte was read or written (the event loop's clock).
    private var lastActivity = NIODeadline.uptimeNanoseconds(0)
    /// Graceful shutdown: where the server's `ChannelShouldQuiesceEvent` is.
    private var quiesce = Quiesce.notAsked
    private var graceTimer: Scheduled<Void>?
    private let shutdownGrace: TimeAmount
    private var isRemoved = false
    /// From the shutdown event on: the latest any head or body read may end (``shutdownReadLimit`` after it).
    private var shutdownReadDeadline: NIODeadline?

    private enum Quiesce {
        /// No shutdown yet.
        case notAsked
        /// Held back until a request head completes (``HTTPHeadScanner/completedHeads`` is past `heads`), or the
        /// grace ends with none being read.
        case held(heads: Int)
        /// Passed on (or the connection closed).
        case passedOn
    }

    init(
        limits: HubConfiguration.HTTPLimits,
        gate: ConnectionGate? = nil,
        report: @escaping @Sendable (_ reason: String, _ peer: String) -> Void
    ) {
        self.gate = gate
        self.scanner = HTTPHeadScanner(
            limits: .init(
                maxRequestLineBytes: limits.maxRequestLineBytes,
                maxHeaderBytes: limits.maxHeaderBytes,
                maxHeaderFieldBytes: limits.maxHeaderFieldBytes
            )
        )
        self.headerReadTimeout = TimeAmount(limits.headerReadTimeout)
        self.bodyReadTimeout = TimeAmount(limits.bodyReadTimeout)
        self.idleTimeout = TimeAmount(limits.idleTimeout)
        self.shutdownGrace = TimeAmount(limits.shutdownGrace)
        self.report = report
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { started(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        started(context: context)
        context.fireChannelActive()
    }

    private func started(context: ChannelHandlerContext) {
        guard !didStart else { return }
        didStart = true
        if let gate, let peer = context.channel.remoteAddress?.ipAddress {
            guard gate.started(peer) else {
                refuse(
                    context: context,
                    status: "429 Too Many Requests",
                    code: "too_many_connections",
                    message: "this address has \(gate.limit) open connections, the most the server keeps",
                    reason: "connections_per_address",
                    reported: false
                )
                return
            }
            countedPeer = peer
        }
        startHeadTimer(context: context)
        lastActivity = context.eventLoop.now
        startIdleTimer(context: context, deadline: lastActivity + idleTimeout)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        lastActivity = context.eventLoop.now
        awaitingResponse = false
        context.write(data, promise: promise)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isRemoved = true
        cancelTimers()
        uncount()
    }

    private func uncount() {
        if let gate, let peer = countedPeer {
            countedPeer = nil
            gate.ended(peer)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        uncount()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else {
            // Read and dropped; the socket closes once the client is quiet.
            startQuietTimer(context: context)
            return
        }
        lastActivity = context.eventLoop.now
        let buffer = unwrapInboundIn(data)
        let (headsBefore, betweenBefore) = (scanner.completedHeads, scanner.isBetweenRequests)
        if let violation = scanner.scan(buffer.readableBytesView) {
            switch violation {
            case .requestLineTooLong:
                refuse(
                    context: context,
                    status: "414 URI Too Long",
                    code: "uri_too_long",
                    message: "the request line is longer than \(scanner.limits.maxRequestLineBytes) bytes",
                    reason: "request_line_too_long"
                )
            case .headerFieldTooLong:
                refuse(
                    context: context,
                    status: "431 Request Header Fields Too Large",
                    code: "header_too_large",
                    message: "a header line is longer than \(scanner.limits.maxHeaderFieldBytes) bytes",
                    reason: "header_too_large"
                )
            case .headerBlockTooLarge:
                refuse(
                    context: context,
                    status: "431 Request Header Fields Too Large",
                    code: "headers_too_large",
                    message: "the headers are larger than \(scanner.limits.maxHeaderBytes) bytes",
                    reason: "header_too_large"
                )
            }
            return
        }
        if scanner.completedHeads != headsAtTimerStart {
            cancelHeadTimer()
        }
        if scanner.isReadingHead && headTimer == nil {
            startHeadTimer(context: context)
        }
        if scanner.isReadingBody {
            if bodyTimer == nil || headsAtBodyTimerStart != scanner.completedHeads { startBodyTimer(context: context) }
        } else {
            cancelBodyTimer()
        }
        // A request ended in these bytes (bytes between requests that start none, such as a stray CRLF, do not
        // count: they must not keep a connection from ever being idle).
        if scanner.isBetweenRequests && (!betweenBefore || scanner.completedHeads != headsBefore) {
            awaitingResponse = true
        }
        context.fireChannelRead(data)
        // After the bytes: the handlers behind the parser (set up by the first request's head) count the request
        // before they learn of the shutdown, so they close after its response instead of at once.
        if case .held(let heads) = quiesce, scanner.completedHeads > heads, !isRemoved {
            passQuiesceOn(context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent {
            quiesceRequested(context: context)
            return
        }
        guard let malformed = event as? MalformedRequest else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        guard !refused else { return }
        refuse(
            context: context,
            status: malformed.status,
            code: malformed.code,
            message: malformed.message,
            reason: malformed.reason
        )
    }

    // MARK: Graceful shutdown

    private func quiesceRequested(context: ChannelHandlerContext) {
        guard case .notAsked = quiesce else { return }
        guard !refused else {
            quiesce = .passedOn
            return
        }
        // A head or body still arriving gets at most `shutdownReadLimit` more (the timers restart, capped).
        shutdownReadDeadline = context.eventLoop.now + Self.shutdownReadLimit
        if headTimer != nil && scanner.isReadingHead { startHeadTimer(context: context) }
        if bodyTimer != nil && scanner.isReadingBody { startBodyTimer(context: context) }
        if awaitingResponse || scanner.isReadingBody {
            // A request the handlers behind know of is under way: they close after its response.
            passQuiesceOn(context: context)
            return
        }
        quiesce = .held(heads: scanner.completedHeads)
        // A head being read is waited for (its own timer bounds it); otherwise a request may be on its way.
        graceTimer = schedule(at: context.eventLoop.now + shutdownGrace, context: context) {
            $0.graceEnded(context: $1)
        }
    }

    private func graceEnded(context: ChannelHandlerContext) {
        graceTimer = nil
        guard case .held = quiesce, !scanner.isReadingHead else { return }
        if scanner.completedHeads == 0 {
            // Nothing was ever read: no handler behind the parser exists yet to tell.
            quiesce = .passedOn
            context.close(promise: nil)
        } else {
            passQuiesceOn(context: context)
        }
    }

    private func passQuiesceOn(context: ChannelHandlerContext) {
        quiesce = .passedOn
        graceTimer?.cancel()
        graceTimer = nil
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    // MARK: Timers

    /// Runs `action` on the event loop at `deadline`, with this handler and `context`.
    private func schedule(
        at deadline: NIODeadline,
        context: ChannelHandlerContext,
        _ action: @escaping (HTTPHeadLimitHandler, ChannelHandlerContext) -> Void
    ) -> Scheduled<Void> {
        let loopBound = NIOLoopBound((self, context, action), eventLoop: context.eventLoop)
        return context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context, action) = loopBound.value
            action(handler, context)
        }
    }

    /// `408 Request Timeout`: the head or the body (`part`) did not arrive within `timeout`.
    private func refuseLate(context: ChannelHandlerContext, part: String, timeout: TimeAmount, reason: String) {
        let message =
            shutdownReadDeadline == nil
            ? "the request \(part) did not arrive within \(timeout.nanoseconds / 1_000_000) ms"
            : "the server is shutting down and the request \(part) did not arrive in time"
        refuse(
            context: context,
            status: "408 Request Timeout",
            code: "request_timeout",
            message: message,
            reason: reason
        )
    }

    /// `deadline`, or the shutdown's read deadline when that is sooner.
    private func readDeadline(_ deadline: NIODeadline) -> NIODeadline {
        guard let shutdownReadDeadline else { return deadline }
        return min(deadline, shutdownReadDeadline)
    }

    private func startHeadTimer(context: ChannelHandlerContext) {
        cancelHeadTimer()
        headsAtTimerStart = scanner.completedHeads
        headTimer = schedule(at: readDeadline(context.eventLoop.now + headerReadTimeout), context: context) {
            $0.headTimedOut(context: $1)
        }
    }

    private func headTimedOut(context: ChannelHandlerContext) {
        headTimer = nil
        guard !refused, scanner.completedHeads == headsAtTimerStart else { return }
        guard scanner.isReadingHead else {
            // Nothing of a request arrived: an idle connection, closed without a word (browsers open spare ones).
            if scanner.completedHeads == 0 { context.close(promise: nil) }
            return
        }
        refuseLate(context: context, part: "head", timeout: headerReadTimeout, reason: "header_timeout")
    }

    private func startBodyTimer(context: ChannelHandlerContext) {
        cancelBodyTimer()
        headsAtBodyTimerStart = scanner.completedHeads
        bodyTimer = schedule(at: readDeadline(context.eventLoop.now + bodyReadTimeout), context: context) {
            $0.bodyTimedOut(context: $1)
        }
    }

    private func bodyTimedOut(context: ChannelHandlerContext) {
        bodyTimer = nil
        guard !refused, scanner.isReadingBody, scanner.completedHeads == headsAtBodyTimerStart else { return }
        refuseLate(context: context, part: "body", timeout: bodyReadTimeout, reason: "body_timeout")
    }

    private func cancelBodyTimer() {
        bodyTimer?.cancel()
        bodyTimer = nil
    }

    /// One timer for the whole connection, moved on lazily: when it fires early (there was activity since), it is
    /// set again for the idle timeout after the last activity, so reads and writes never touch a timer.
    private func startIdleTimer(context: ChannelHandlerContext, deadline: NIODeadline) {
        idleTimer = schedule(at: deadline, context: context) { $0.idleTimerFired(context: $1) }
    }

    private func idleTimerFired(context: ChannelHandlerContext) {
        idleTimer = nil
        guard !refused else { return }
        let deadline = lastActivity + idleTimeout
        let now = context.eventLoop.now
        // A request being read has its own timers, and so has a connection before its first byte (the header-read
        // timeout); a request read and not yet answered is the server's; a quiet connection between requests is
        // closed without a word.
        if deadline <= now && scanner.isBetweenRequests && scanner.completedHeads > 0 && !awaitingResponse {
            context.close(promise: nil)
            return
        }
        // Activity since: due at its own deadline. A request being read: looked at again a little later.
        startIdleTimer(
            context: context,
            deadline: deadline > now ? deadline : now + .nanoseconds(idleTimeout.nanoseconds / 10)
        )
    }

    private func startQuietTimer(context: ChannelHandlerContext) {
        quietTimer?.cancel()
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        quietTimer = context.eventLoop.scheduleTask(in: Self.lingerQuietTime) {
            loopBound.value.close(promise: nil)
        }
    }

    private func cancelHeadTimer() {
        headTimer?.cancel()
        headTimer = nil
    }

    private func cancelTimers() {
        cancelHeadTimer()
        cancelBodyTimer()
        idleTimer?.cancel()
        idleTimer = nil
        quietTimer?.cancel()
        quietTimer = nil
        limitTimer?.cancel()
        limitTimer = nil
        graceTimer?.cancel()
        graceTimer = nil
    }

    // MARK: Refusal

    /// Answers with `status` and a JSON error, shuts the output, and drops the rest of the input until the
    /// client is quiet.
    private func refuse(
        context: ChannelHandlerContext,
        status: String,
        code: String,
        message: String,
        reason: String,
        reported: Bool = true
    ) {
        refused = true
        cancelHeadTimer()
        cancelBodyTimer()
        let body = JSONWriter.string(["error": ["code": .string(code), "message": .string(message)]]) + "\n"
        let head =
            "HTTP/1.1 \(status)\r\nContent-Type: application/json; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        let response = context.channel.allocator.buffer(string: head + body)
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(response)).whenComplete { result in
            let context = loopBound.value
            switch result {
            case .success: context.close(mode: .output, promise: nil)
            case .failure: context.close(promise: nil)
            }
        }
        startQuietTimer(context: context)
        limitTimer = context.eventLoop.scheduleTask(in: Self.lingerLimit) {
            loopBound.value.close(promise: nil)
        }
        if reported { report(reason, context.channel.remoteAddress?.ipAddress ?? "") }
    }
}
