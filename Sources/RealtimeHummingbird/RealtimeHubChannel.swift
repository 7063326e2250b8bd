// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
public import RealtimeCore
import RealtimeNIO

/// A Hummingbird server channel that serves HTTP/1.1 through the application's router and upgrades WebSocket
/// requests that the hub accepts.
///
/// The channel is a thin layer over RealtimeNIO's pipeline (`configureRealtimeHubPipeline`): request-head
/// limits first, then every `Upgrade: websocket` request decided by `RealtimeHub.authorizeUpgrade(_:)` before
/// the handshake, a rejection answered with the hub's HTTP status, `Retry-After` and JSON body, and accepted
/// connections driven by RealtimeNIO's `RealtimeWebSocketHandler` in the channel pipeline. (hummingbird-websocket's
/// `HTTP1WebSocketUpgradeChannel` answers every refused upgrade with a bare 400, which is why this channel does
/// not use it.) What this channel adds is Hummingbird's: requests without an upgrade go to the router through
/// Hummingbird's HTTP/1.1 handling.
///
/// Build it with ``HummingbirdCore/HTTPServerBuilder/realtimeHub(_:configuration:)``.
public struct RealtimeHubChannel: ServerChildChannel, HTTPChannelHandler {
    /// Settings of the channel.
    public struct Configuration: Sendable {
        /// HTTP/1.1 settings for requests that are not upgraded.
        public var http1: HTTP1Channel.Configuration
        /// How long to wait for the client's close frame after the server sent one, before dropping the socket.
        public var closeTimeout: Duration
        /// The payload of the server's ping frames.
        public var pingPayload: String
        /// How long one frame may wait to be written before the socket is dropped: a client that stops reading
        /// entirely would otherwise hold its connection (and the hub's close frame) forever.
        public var writeTimeout: Duration

        public init(
            http1: HTTP1Channel.Configuration = .init(),
            closeTimeout: Duration = .seconds(5),
            pingPayload: String = "hb",
            writeTimeout: Duration = .seconds(30)
        ) {
            self.http1 = http1
            self.closeTimeout = closeTimeout
            self.pingPayload = pingPayload
            self.writeTimeout = writeTimeout
        }
    }

    /// What the upgrade negotiation ended with; a request that was no upgrade comes with the channel that serves
    /// the router.
    typealias Negotiated = RealtimeHubUpgradeResult<NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>>

    public struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        public let channel: any Channel
    }

    public let responder: HTTPChannelHandler.Responder
    let hub: RealtimeHub
    let configuration: Configuration

    public init(
        hub: RealtimeHub,
        configuration: Configuration = .init(),
        responder: @escaping HTTPChannelHandler.Responder
    ) {
        self.hub = hub
        self.configuration = configuration
        self.responder = responder
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let http1 = configuration.http1
            let decoder = http1.httpDecoder
            var limits = NIOHTTPDecoderLimitConfiguration()
            limits.maxHeaderFieldSize = decoder.maxHeaderFieldSize
            limits.maxHeaderListSize = decoder.maxHeaderListSize
            limits.maxHeaderFieldCount = decoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureRealtimeHubPipeline(
                hub: hub,
                configuration: RealtimeHubPipelineConfiguration(
                    closeTimeout: configuration.closeTimeout,
                    pingPayload: configuration.pingPayload,
                    writeTimeout: configuration.writeTimeout,
                    httpDecoder: limits
                ),
                logger: logger
            ) { channel in
                // Not an upgrade: Hummingbird's HTTP/1.1 handling, in front of the router.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                    try channel.pipeline.syncOperations.addHandlers(http1.additionalChannelHandlers())
                    try channel.pipeline.syncOperations.addHandler(ConnectionCloseAtShutdownHandler(hub: hub))
                    try channel.pipeline.syncOperations.addHandler(
                        HTTPConnectionStateHandler(
                            idleTimeout: http1.idleTimeout.map { Duration($0) },
                            logger: logger
                        )
                    )
                    return try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true)
                    )
                }
            }
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .notUpgraded(let asyncChannel):
                await handleHTTP(asyncChannel: asyncChannel, logger: logger)
            case .rejected:
                // Answered by the pipeline, which closes the connection after the response.
                return
            case .webSocket:
                // The handler in the pipeline does the work: no task waits for an idle WebSocket (measured at
                // ≈ 5 KiB per connection). Graceful shutdown waits in the hub's drain instead, which closes every
                // socket and waits (`shutdown.closeWait`) until the handlers report them closed.
                return
            }
        } catch let error as ChannelError where error == .inputClosed {
            logger.trace("input closed during the upgrade")
        } catch {
            logger.debug("upgrade negotiation failed", metadata: ["error.type": "\(error)"])
            // Nothing else will answer or close this connection.
            try? await value.channel.close()
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with WebSocket upgrades decided by `hub`: the router answers plain HTTP requests, the hub's
    /// endpoints (`HubConfiguration.eventsPath`, `HubConfiguration.adminPath`) upgrade when the hub accepts
    /// the request and answer its rejection otherwise.
    ///
    /// ```swift
    /// let app = Application(router: router, server: .realtimeHub(hub), configuration: …)
    /// ```
    public static func realtimeHub(
        _ hub: RealtimeHub,
        configuration: RealtimeHubChannel.Configuration = .init()
    ) -> HTTPServerBuilder {
        HTTPServerBuilder { responder in
            RealtimeHubChannel(hub: hub, configuration: configuration, responder: responder)
        }
    }
}

/// At graceful shutdown, every response from then on says `Connection: close`, and its connection closes after it: a
/// client that was not told would send its next request into the closing socket and could not know whether it was
/// served.
///
/// Shutdown begins with the hub's drain (``RealtimeCore/RealtimeHub/isDraining``), which can take seconds (it waits for
/// the WebSocket clients to close), and only then does the HTTP server send `ChannelShouldQuiesceEvent`. From the
/// drain on, this handler closes the connection itself after the response's end; from the event on, Hummingbird's
/// `HTTPConnectionStateHandler`, right behind this, does (after the response under way, or at once when none is).
/// (RealtimeNIO's head-limit handler passes the shutdown event on only once such a request's head was read.)
final class ConnectionCloseAtShutdownHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let hub: RealtimeHub
    /// The server's `ChannelShouldQuiesceEvent` arrived.
    private var shuttingDown = false
    /// A response went out with `Connection: close` because the hub was draining: the connection closes once no
    /// request is left to answer (Hummingbird's state handler closes only after the event).
    private var closeAfterResponse = false
    /// Request heads read minus responses ended: pipelined requests already read are answered before the close.
    private var requestsInProgress = 0

    init(hub: RealtimeHub) {
        self.hub = hub
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) { requestsInProgress += 1 }
        context.fireChannelRead(data)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelShouldQuiesceEvent { shuttingDown = true }
        context.fireUserInboundEventTriggered(event)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(var head):
            if !shuttingDown && !closeAfterResponse && hub.isDraining { closeAfterResponse = true }
            guard shuttingDown || closeAfterResponse else { break }
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
            return
        case .end:
            requestsInProgress = max(0, requestsInProgress - 1)
            guard closeAfterResponse && requestsInProgress == 0 else { break }
            // Closed once the response is written, so a slow reader still gets all of it.
            let written = context.eventLoop.makePromise(of: Void.self)
            if let promise { written.futureResult.cascade(to: promise) }
            let channel = context.channel
            written.futureResult.whenComplete { _ in channel.close(promise: nil) }
            context.writeAndFlush(data, promise: written)
            return
        case .body:
            break
        }
        context.write(data, promise: promise)
    }
}
