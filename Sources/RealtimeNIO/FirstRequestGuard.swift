// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOHTTP1

/// Sits between the HTTP parser and NIO's upgrade handler for a connection's first request (the only one that
/// handler looks at) and leaves the pipeline once that request's head has passed. It is the one place that judges
/// an upgrade's head before NIO's handler and the hub see it:
///
/// - a WebSocket handshake that RFC 6455 §4.2.1 does not let a server accept
///   (``RealtimeHubPipeline/handshakeProblem(_:)``: not a `GET` of HTTP/1.1, no `Connection: Upgrade`, a key that is
///   not 16 bytes in base64) is answered `400`, before any admission;
/// - an `Upgrade` header that names no `websocket` (`Upgrade: h2c`) is dropped, as RFC 9110 §7.8 lets a server do,
///   and the request is served as the plain HTTP/1.1 request it also is (NIO's handler looks for an upgrader, finds
///   none, and loses the request head on the way to the caller's handlers: a close without a byte);
/// - a WebSocket upgrade with a body (`Content-Length` above 0, or any `Transfer-Encoding`) is answered `400` (NIO's
///   handler fails the negotiation on the first body part and nothing answers).
///
/// The answers are written by ``HTTPHeadLimitHandler``; the rest of a refused request is dropped here.
final class FirstRequestGuard: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart

    private var refused = false

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

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        guard case .head(var head) = unwrapInboundIn(data) else {
            // Not a head first: NIO's upgrade handler refuses the ordering.
            context.fireChannelRead(data)
            return
        }
        if let problem = Self.problem(&head) {
            refused = true
            context.pipeline.fireUserInboundEventTriggered(HTTPHeadLimitHandler.MalformedRequest(message: problem))
            return
        }
        context.fireChannelRead(wrapInboundOut(.head(head)))
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
