// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
public import HummingbirdCore
public import Logging
import NIOConcurrencyHelpers
public import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket
public import RealtimeCore

/// A Hummingbird server channel that serves HTTP/1.1 through the application's router and upgrades WebSocket
/// requests that the hub accepts.
///
/// Every `Upgrade: websocket` request is decided by ``RealtimeHub/authorizeUpgrade(_:)`` before the handshake:
/// a rejection is answered with the hub's HTTP status, `Retry-After` and JSON body, and never reaches the
/// WebSocket layer. (hummingbird-websocket's `HTTP1WebSocketUpgradeChannel` answers every refused upgrade with a
/// bare 400, which is why this channel configures NIO's upgrader itself.) Requests without an upgrade go to the
/// router. Accepted connections are driven by a ``RealtimeWebSocketHandler`` in the channel pipeline.
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

    /// What the upgrade negotiation ended with.
    enum Negotiated: Sendable {
        case http(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case rejected(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, UpgradeRejection)
        case webSocket
    }

    public struct Value: ServerChildChannelValue {
        let negotiated: EventLoopFuture<Negotiated>
        public let channel: any Channel
    }

    /// The outcome of `shouldUpgrade`, handed from the upgrader's callbacks to the pipeline setup of the same
    /// channel.
    enum Decision: Sendable {
        case none
        case accepted(UpgradeTicket)
        case rejected(UpgradeRejection)
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

    /// The name of the ``HTTPHeadLimitHandler`` in the pipeline (removed on upgrade).
    static let headLimitHandlerName = "realtime.http-head-limits"

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.eventLoop.makeCompletedFuture {
            let decision = NIOLockedValueBox(Decision.none)
            let hub = self.hub
            // First in the pipeline: bounds the request head before the HTTP parser buffers any of it.
            try channel.pipeline.syncOperations.addHandler(
                HTTPHeadLimitHandler(limits: hub.configuration.http) { reason, peer in
                    Task { await hub.reportHTTPViolation(reason: reason, peer: peer) }
                },
                name: Self.headLimitHandlerName
            )
            let upgrader = NIOTypedWebSocketServerUpgrader<Negotiated>(
                maxFrameSize: max(hub.configuration.limits.maxFrameBytes, 125),
                enableAutomaticErrorHandling: true,
                shouldUpgrade: { channel, head in
                    let promise = channel.eventLoop.makePromise(of: HTTPHeaders?.self)
                    let request = UpgradeRequest(
                        uri: head.uri,
                        headers: head.headers.map { ($0.name, $0.value) },
                        remoteAddress: channel.remoteAddress?.ipAddress ?? ""
                    )
                    promise.completeWithTask {
                        switch await hub.authorizeUpgrade(request) {
                        case .accept(let ticket):
                            decision.withLockedValue { $0 = .accepted(ticket) }
                            return HTTPHeaders()
                        case .reject(let rejection):
                            decision.withLockedValue { $0 = .rejected(rejection) }
                            return nil
                        }
                    }
                    return promise.futureResult
                },
                upgradePipelineHandler: { [configuration] channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        guard case .accepted(let ticket) = decision.withLockedValue({ $0 }) else {
                            throw ChannelError.inappropriateOperationForState
                        }
                        // WebSocket frames follow: no more HTTP heads to bound.
                        channel.pipeline.syncOperations.removeHandler(name: Self.headLimitHandlerName, promise: nil)
                        // No NIOAsyncChannel and no task per connection: the handler drives the hub connection
                        // from the event loop (see Architecture.md, "The host's per-connection cost").
                        try channel.pipeline.syncOperations.addHandler(
                            RealtimeWebSocketHandler(
                                hub: hub,
                                ticket: ticket,
                                closeTimeout: configuration.closeTimeout,
                                pingPayload: configuration.pingPayload,
                                writeTimeout: configuration.writeTimeout,
                                logger: logger
                            )
                        )
                        return Negotiated.webSocket
                    }
                }
            )
            let http1 = self.configuration.http1
            let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration<Negotiated>(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try channel.pipeline.syncOperations.addHandlers(http1.additionalChannelHandlers())
                        try channel.pipeline.syncOperations.addHandler(
                            HTTPConnectionStateHandler(
                                idleTimeout: http1.idleTimeout.map { Duration($0) },
                                logger: logger
                            )
                        )
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        if case .rejected(let rejection) = decision.withLockedValue({ $0 }) {
                            return Negotiated.rejected(asyncChannel, rejection)
                        }
                        return Negotiated.http(asyncChannel)
                    }
                }
            )
            var pipelineConfiguration = NIOUpgradableHTTPServerPipelineConfiguration<Negotiated>(
                upgradeConfiguration: upgradeConfiguration
            )
            pipelineConfiguration.enablePipelining = false
            pipelineConfiguration.enableErrorHandling = false
            pipelineConfiguration.enableResponseHeaderValidation = false
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldSize = http1.httpDecoder.maxHeaderFieldSize
            pipelineConfiguration.decoderConfiguration.maxHeaderListSize = http1.httpDecoder.maxHeaderListSize
            pipelineConfiguration.decoderConfiguration.maxHeaderFieldCount = http1.httpDecoder.maxHeaderFieldCount
            let negotiated = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: pipelineConfiguration
            )
            // After the HTTP parser: a request it refuses is answered with 400 (by the head-limit handler).
            try channel.pipeline.syncOperations.addHandler(HTTPParserErrorHandler())
            return Value(negotiated: negotiated, channel: channel)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.negotiated.get() {
            case .http(let asyncChannel):
                await handleHTTP(asyncChannel: asyncChannel, logger: logger)
            case .rejected(let asyncChannel, let rejection):
                await Self.writeRejection(rejection, to: asyncChannel, logger: logger)
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

    /// Answers a refused upgrade: the hub's status, `Retry-After` for 429/503, and the JSON error body.
    static func writeRejection(
        _ rejection: UpgradeRejection,
        to asyncChannel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>,
        logger: Logger
    ) async {
        let body = ByteBuffer(string: rejection.jsonBody)
        var fields: HTTPFields = [
            .contentType: "application/json; charset=utf-8",
            .contentLength: String(body.readableBytes),
            .connection: "close",
        ]
        if let seconds = rejection.retryAfterSeconds { fields[.retryAfter] = String(seconds) }
        if rejection.status == 401 { fields[.wwwAuthenticate] = #"Bearer realm="realtime""# }
        let head = HTTPResponse(status: .init(code: rejection.status), headerFields: fields)
        do {
            try await asyncChannel.executeThenClose { _, outbound in
                try await outbound.write(contentsOf: [.head(head), .body(body), .end(nil)])
            }
        } catch {
            logger.trace("could not write the upgrade rejection", metadata: ["error.type": "\(error)"])
        }
    }
}

extension HTTPServerBuilder {
    /// HTTP/1.1 with WebSocket upgrades decided by `hub`: the router answers plain HTTP requests, the hub's
    /// endpoints (``HubConfiguration/eventsPath``, ``HubConfiguration/adminPath``) upgrade when the hub accepts
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
