// SPDX-License-Identifier: Apache-2.0

import NIOCore
import NIOHTTP1
import NIOWebSocket

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
