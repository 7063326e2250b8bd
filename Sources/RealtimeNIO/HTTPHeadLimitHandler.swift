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
/// - A request the HTTP parser refuses is answered with `400` the same way (``MalformedRequest``).
///
/// Each refusal except the quiet close is reported to the hub (``RealtimeHub/reportHTTPViolation(reason:peer:)``).
/// The handler removes itself when the connection is upgraded to a WebSocket.
final class HTTPHeadLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
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

    /// How long the client must be quiet, after a refusal, before the socket is closed.
    static let lingerQuietTime = TimeAmount.milliseconds(50)
    /// The longest a refused connection stays open, however much the client still sends.
    static let lingerLimit = TimeAmount.seconds(1)

    private var scanner: HTTPHeadScanner
    private let headerReadTimeout: TimeAmount
    private let report: @Sendable (_ reason: String, _ peer: String) -> Void
    private var headTimer: Scheduled<Void>?
    private var quietTimer: Scheduled<Void>?
    private var limitTimer: Scheduled<Void>?
    private var refused = false
    private var headsAtTimerStart = 0

    init(limits: HubConfiguration.HTTPLimits, report: @escaping @Sendable (_ reason: String, _ peer: String) -> Void) {
        self.scanner = HTTPHeadScanner(
            limits: .init(
                maxRequestLineBytes: limits.maxRequestLineBytes,
                maxHeaderBytes: limits.maxHeaderBytes,
                maxHeaderFieldBytes: limits.maxHeaderFieldBytes
            )
        )
        self.headerReadTimeout = TimeAmount(limits.headerReadTimeout)
        self.report = report
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startHeadTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startHeadTimer(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        cancelTimers()
    }

    func channelInactive(context: ChannelHandlerContext) {
        cancelTimers()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else {
            // Read and dropped; the socket closes once the client is quiet.
            startQuietTimer(context: context)
            return
        }
        let buffer = unwrapInboundIn(data)
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
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
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

    // MARK: Timers

    private func startHeadTimer(context: ChannelHandlerContext) {
        cancelHeadTimer()
        headsAtTimerStart = scanner.completedHeads
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        headTimer = context.eventLoop.scheduleTask(in: headerReadTimeout) {
            let (handler, context) = loopBound.value
            handler.headTimedOut(context: context)
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
        refuse(
            context: context,
            status: "408 Request Timeout",
            code: "request_timeout",
            message: "the request head did not arrive within \(headerReadTimeout.nanoseconds / 1_000_000) ms",
            reason: "header_timeout"
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
        quietTimer?.cancel()
        quietTimer = nil
        limitTimer?.cancel()
        limitTimer = nil
    }

    // MARK: Refusal

    /// Answers with `status` and a JSON error, shuts the output, and drops the rest of the input until the
    /// client is quiet.
    private func refuse(context: ChannelHandlerContext, status: String, code: String, message: String, reason: String) {
        refused = true
        cancelHeadTimer()
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
        report(reason, context.channel.remoteAddress?.ipAddress ?? "")
    }
}

/// Sits after the HTTP parser: a request the parser refuses (``HTTPParserError``) is answered with `400` and a
/// JSON error by ``HTTPHeadLimitHandler``, which writes below the HTTP encoder, instead of leaving the client
/// waiting for a response that never comes.
final class HTTPParserErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? HTTPParserError {
            context.pipeline.fireUserInboundEventTriggered(
                error == .headerOverflow ? HTTPHeadLimitHandler.MalformedRequest.tooManyHeaderFields : .init()
            )
            return
        }
        // NIO's WebSocket upgrader found no single `Sec-WebSocket-Key`, or no single `Sec-WebSocket-Version: 13`. Left
        // alone, the error reaches the end of the pipeline and the connection closes without an answer. (Its other
        // error, `unsupportedWebSocketTarget`, is the hub's refusal, answered by `UpgradeRejectionResponder`.)
        if let error = error as? NIOWebSocketUpgradeError, error == .invalidUpgradeHeader {
            context.pipeline.fireUserInboundEventTriggered(
                HTTPHeadLimitHandler.MalformedRequest(
                    message: "a WebSocket upgrade needs one Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
                )
            )
            return
        }
        context.fireErrorCaught(error)
    }
}
