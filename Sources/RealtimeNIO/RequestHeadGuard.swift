// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOHTTP1

/// Sits between the HTTP parser and NIO's upgrade handler and judges request heads before NIO's handler, the hub
/// or the caller's handlers see them:
///
/// - every request: RFC 9112 §3.2's `Host` rule, a `400` for an HTTP/1.1 request without `Host` and for any request
///   with more than one (fourth fuzz: both were served); a transfer coding other than `chunked` is `501`;
/// - the first request (the only one NIO's upgrade handler looks at):
///   - a WebSocket handshake that RFC 6455 §4.2.1 does not let a server accept
///     (``RealtimeHubPipeline/handshakeProblem(_:)``: not a `GET` of HTTP/1.1, no `Connection: Upgrade`, a key that
///     is not 16 bytes in base64) is answered `400`, before any admission;
///   - an `Upgrade` header that names no `websocket` (`Upgrade: h2c`) is dropped, as RFC 9110 §7.8 lets a server do,
///     and the request is served as the plain HTTP/1.1 request it also is (NIO's handler looks for an upgrader,
///     finds none, and loses the request head on the way to the caller's handlers: a close without a byte);
///   - a WebSocket upgrade with a body (`Content-Length` above 0, or any `Transfer-Encoding`) is answered `400`
///     (NIO's handler fails the negotiation on the first body part and nothing answers).
///
/// It leaves the pipeline after a WebSocket upgrade's head (frames, not HTTP, may follow). The answers are written by
/// ``HTTPHeadLimitHandler``; the rest of a refused request is dropped here.
final class RequestHeadGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private var refused = false
    private var sawHead = false

    /// What makes `head` a request this guard answers itself; `nil` when NIO's upgrade handler can take it as it
    /// is. `head` loses an `Upgrade` header that names no `websocket`.
    static func problem(_ head: inout HTTPRequestHead) -> String? {
        let protocols = RealtimeHubPipeline.tokens(of: "Upgrade", in: head.headers)
        guard !protocols.isEmpty else { return nil }
        guard protocols.contains("websocket") else {
            head.headers.remove(name: "Upgrade")
            return nil
        }
        let lengths = head.headers["Content-Length"]
        if !head.headers["Transfer-Encoding"].isEmpty || lengths.contains(where: { $0 != "0" }) {
            return "a WebSocket upgrade has no body (Content-Length must be 0 or absent, no Transfer-Encoding)"
        }
        return RealtimeHubPipeline.handshakeProblem(head)
    }

    /// What no request may have, whichever of a connection it is: `Host` lines that break RFC 9112 §3.2 (`400`), or
    /// a transfer coding other than `chunked` (`501`, RFC 9112 §6.1: the server would read a compressed body as
    /// it is; fourth fuzz: `gzip, chunked` was accepted and its gzip ignored). `nil` when there is none.
    static func requestProblem(_ head: HTTPRequestHead) -> HTTPHeadLimitHandler.MalformedRequest? {
        let hosts = head.headers["Host"]
        if hosts.count > 1 { return .init(message: "a request has one Host header, not \(hosts.count)") }
        if hosts.isEmpty && (head.version.major, head.version.minor) >= (1, 1) {
            return .init(message: "an HTTP/1.1 request needs a Host header")
        }
        if let coding = RealtimeHubPipeline.tokens(of: "Transfer-Encoding", in: head.headers).first(where: {
            $0 != "chunked"
        }) {
            return .init(
                message: "the transfer coding '\(coding.prefix(32))' is not supported: only chunked is",
                status: "501 Not Implemented",
                code: "not_implemented",
                reason: "unsupported_transfer_coding"
            )
        }
        return nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        guard case .head(var head) = unwrapInboundIn(data) else {
            // Not a head first: NIO's upgrade handler refuses the ordering.
            context.fireChannelRead(data)
            return
        }
        let first = !sawHead
        sawHead = true
        if let problem = Self.requestProblem(head) ?? (first ? Self.problem(&head).map { .init(message: $0) } : nil) {
            refused = true
            context.pipeline.fireUserInboundEventTriggered(problem)
            return
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if first && RealtimeHubPipeline.tokens(of: "Upgrade", in: head.headers).contains("websocket") {
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }
}
