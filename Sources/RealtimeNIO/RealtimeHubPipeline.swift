// SPDX-License-Identifier: Apache-2.0

public import Logging
import NIOConcurrencyHelpers
public import NIOCore
public import NIOHTTP1
import NIOWebSocket
public import RealtimeCore

/// Settings of the pipeline that
/// ``NIOCore/ChannelPipeline/SynchronousOperations/configureRealtimeHubPipeline(hub:configuration:logger:notUpgrading:)``
/// installs.
///
/// The request-head limits themselves are the hub's (`HubConfiguration.http`): they bound every
/// request head on the raw bytes before the HTTP parser sees it.
public struct RealtimeHubPipelineConfiguration: Sendable {
    /// How long to wait for the client's close frame after the server sent one, before dropping the socket.
    public var closeTimeout: Duration
    /// The payload of the server's ping frames.
    public var pingPayload: String
    /// How long the channel may stay unwritable (the client stopped reading) before the socket is dropped.
    public var writeTimeout: Duration
    /// The HTTP parser's own limits, a second line behind the hub's head limits.
    public var httpDecoder: NIOHTTPDecoderLimitConfiguration

    /// Creates a configuration.
    ///
    /// - Parameters:
    ///   - closeTimeout: How long to wait for the client's close frame after the server sent one.
    ///   - pingPayload: The payload of the server's ping frames.
    ///   - writeTimeout: How long the channel may stay unwritable before the socket is dropped.
    ///   - httpDecoder: The HTTP parser's limits.
    public init(
        closeTimeout: Duration = .seconds(5),
        pingPayload: String = "hb",
        writeTimeout: Duration = .seconds(30),
        httpDecoder: NIOHTTPDecoderLimitConfiguration = .init()
    ) {
        self.closeTimeout = closeTimeout
        self.pingPayload = pingPayload
        self.writeTimeout = writeTimeout
        self.httpDecoder = httpDecoder
    }
}

/// How the first request of a connection set up with
/// ``NIOCore/ChannelPipeline/SynchronousOperations/configureRealtimeHubPipeline(hub:configuration:logger:notUpgrading:)``
/// was handled.
public enum RealtimeHubUpgradeResult<NotUpgraded: Sendable>: Sendable {
    /// The request was no WebSocket upgrade: the handlers the caller's `notUpgrading` closure added serve the
    /// connection, and this is what that closure returned.
    case notUpgraded(NotUpgraded)
    /// The hub refused the upgrade. The refusal is already being answered (the rejection's status,
    /// `Retry-After` for 429 and 503, `WWW-Authenticate` for 401, `AdmissionRejection.jsonBody`),
    /// and the connection closes once the response is written. Nothing is left to do.
    case rejected(AdmissionRejection)
    /// The connection is a WebSocket now, driven by a ``RealtimeWebSocketHandler`` at the end of the pipeline
    /// with no task of its own. Nothing is left to do.
    case webSocket
}

/// The checks of a WebSocket opening handshake, for a host that parses requests itself (Vapor) and asks the hub
/// with `RealtimeHub.authorizeUpgrade(_:)` only for a handshake a server may accept: the same rules
/// as the realtime pipeline's.
public enum WebSocketHandshake {
    /// What makes `head` not a WebSocket opening handshake that RFC 6455 §4.2.1 lets a server accept: a `GET` of
    /// HTTP/1.1 or later, a `Connection` header naming `Upgrade`, one `Sec-WebSocket-Key` that is 16 bytes in
    /// base64, and (unless `countingKeyAndVersion` is false, for a caller whose WebSocket upgrader checks them) one
    /// `Sec-WebSocket-Version: 13`. `nil` when it is one. The answer to a problem is `400 Bad Request`.
    public static func problem(_ head: HTTPRequestHead, countingKeyAndVersion: Bool = true) -> String? {
        guard head.method == .GET else { return "a WebSocket upgrade is a GET request" }
        guard head.version.major > 1 || (head.version.major == 1 && head.version.minor >= 1) else {
            return "a WebSocket upgrade needs HTTP/1.1"
        }
        guard RealtimeHubPipeline.tokens(of: "Connection", in: head.headers).contains("upgrade") else {
            return "a WebSocket upgrade needs Connection: Upgrade"
        }
        if countingKeyAndVersion {
            guard head.headers["Sec-WebSocket-Key"].count == 1, head.headers["Sec-WebSocket-Version"] == ["13"] else {
                return "a WebSocket upgrade needs one Sec-WebSocket-Key and Sec-WebSocket-Version: 13"
            }
        }
        guard let key = head.headers.first(name: "Sec-WebSocket-Key"),
            RealtimeHubPipeline.isSixteenBytesOfBase64(key)
        else {
            return "Sec-WebSocket-Key must be 16 bytes in base64"
        }
        return nil
    }
}

/// Names of the handlers the realtime pipeline installs.
enum RealtimeHubPipeline {
    /// What makes `head` not a WebSocket opening handshake that RFC 6455 §4.2.1 lets a server accept, beyond what
    /// NIO's upgrader checks (one `Sec-WebSocket-Key`, one `Sec-WebSocket-Version: 13`): a `GET` of HTTP/1.1 or
    /// later, a `Connection` header naming `Upgrade`, a key that is 16 bytes in base64. `nil` when it is one.
    static func handshakeProblem(_ head: HTTPRequestHead) -> String? {
        WebSocketHandshake.problem(head, countingKeyAndVersion: false)
    }

    /// The comma-separated tokens of every `name` header, without spaces and in lower case (`Connection:
    /// keep-alive, Upgrade` → `keep-alive`, `upgrade`).
    static func tokens(of name: String, in headers: HTTPHeaders) -> [String] {
        headers[name].flatMap { $0.split(separator: ",") }.map { $0.filter { $0 != " " && $0 != "\t" }.lowercased() }
    }

    /// Whether `key` is base64 of 16 bytes: 22 characters of the base64 alphabet and `==`.
    static func isSixteenBytesOfBase64(_ key: String) -> Bool {
        let bytes = Array(key.utf8)
        guard bytes.count == 24, bytes[22] == UInt8(ascii: "="), bytes[23] == UInt8(ascii: "=") else { return false }
        return bytes[..<22].allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                true
            default: false
            }
        }
    }

    /// The name of the ``HTTPHeadLimitHandler`` in the pipeline (removed on upgrade).
    static let headLimitHandlerName = "realtime.http-head-limits"

    /// The outcome of `shouldUpgrade`, handed from the upgrader's callbacks to the pipeline setup of the same
    /// channel.
    enum Decision: Sendable {
        case none
        case accepted(UpgradeTicket)
        case rejected(AdmissionRejection)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// Sets up a fresh server channel to serve HTTP/1.1 with WebSocket upgrades decided by `hub`.
    ///
    /// Call it from a server's child channel initializer, on the channel's event loop. It installs, in order:
    ///
    /// 1. the request-head limits (`HubConfiguration.http`), first of all, on the raw bytes: a
    ///    request line, header line or header block past its bound is answered `414` or `431`, a head that does
    ///    not arrive in time `408`, a request the HTTP parser refuses `400`, each with a JSON error body, and
    ///    reported to the hub (`RealtimeHub.reportHTTPViolation(reason:peer:)`);
    /// 2. NIO's HTTP/1.1 server codec and its typed upgrade handler (`NIOTypedHTTPServerUpgradeHandler`) with a
    ///    WebSocket upgrader that asks `RealtimeHub.authorizeUpgrade(_:)` before the handshake:
    ///    - accepted: the handshake completes, and a ``RealtimeWebSocketHandler`` drives the connection from
    ///      the pipeline (``RealtimeHubUpgradeResult/webSocket``);
    ///    - refused: the rejection is answered with its HTTP status, `Retry-After` and JSON body, and the
    ///      connection is closed (``RealtimeHubUpgradeResult/rejected(_:)``);
    ///    - no upgrade requested: `notUpgrading` runs, on the event loop, and adds the caller's own HTTP
    ///      handling behind NIO's HTTP/1.1 codec (`HTTPServerRequestPart` in, `HTTPServerResponsePart` out); the
    ///      buffered request is then handed to those handlers (``RealtimeHubUpgradeResult/notUpgraded(_:)``). A
    ///      request whose `Upgrade` header names no `websocket` (`h2c`) is one of these, without that header;
    ///    - a WebSocket upgrade that is malformed (not a `GET` of HTTP/1.1, no `Connection: Upgrade`, a bad
    ///      `Sec-WebSocket-Key` or version, a body) is answered `400` before the hub is asked.
    ///
    /// The upgrade decides the whole connection: the first request either upgrades or hands the connection to
    /// the caller's handlers. A request for another path upgrades only if the hub accepts it, so serve the hub's
    /// paths (`HubConfiguration.eventsPath` and `HubConfiguration.adminPath`) from
    /// here and plain HTTP from `notUpgrading`.
    ///
    /// ```swift
    /// let server = try await ServerBootstrap(group: group).bind(host: "127.0.0.1", port: 8080) { channel in
    ///     channel.eventLoop.makeCompletedFuture {
    ///         try channel.pipeline.syncOperations.configureRealtimeHubPipeline(hub: hub, logger: logger) { channel in
    ///             channel.eventLoop.makeCompletedFuture {
    ///                 try channel.pipeline.syncOperations.addHandler(MyHTTPHandler())
    ///             }
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - hub: The hub that decides upgrades and serves the WebSocket connections.
    ///   - configuration: WebSocket and HTTP parser settings.
    ///   - logger: The connection's logger.
    ///   - notUpgrading: Adds the caller's HTTP handling for a connection whose first request is no upgrade.
    /// - Returns: A future for how the first request was handled; it fails if the negotiation fails (for
    ///   example when the client closes its input during the upgrade), in which case the caller should close
    ///   the channel.
    public func configureRealtimeHubPipeline<NotUpgraded: Sendable>(
        hub: RealtimeHub,
        configuration: RealtimeHubPipelineConfiguration = .init(),
        logger: Logger,
        notUpgrading: @escaping @Sendable (any Channel) -> EventLoopFuture<NotUpgraded>
    ) throws -> EventLoopFuture<RealtimeHubUpgradeResult<NotUpgraded>> {
        typealias Result = RealtimeHubUpgradeResult<NotUpgraded>
        let decision = NIOLockedValueBox(RealtimeHubPipeline.Decision.none)
        // First in the pipeline: bounds the request head before the HTTP parser buffers any of it.
        try addHandler(
            HTTPHeadLimitHandler(
                limits: hub.configuration.http,
                gate: .init(
                    started: { hub.httpConnectionStarted(peer: $0) },
                    ended: { hub.httpConnectionEnded(peer: $0) },
                    limit: hub.configuration.http.maxConnectionsPerAddress
                )
            ) { reason, peer in
                Task { await hub.reportHTTPViolation(reason: reason, peer: peer) }
            },
            name: RealtimeHubPipeline.headLimitHandlerName
        )
        let upgrader = NIOTypedWebSocketServerUpgrader<Result>(
            maxFrameSize: max(hub.configuration.limits.maxFrameBytes, 125),
            enableAutomaticErrorHandling: true,
            shouldUpgrade: { channel, head in
                // A malformed handshake never gets here: `RequestHeadGuard` answered it.
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
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    guard case .accepted(let ticket) = decision.withLockedValue({ $0 }) else {
                        throw ChannelError.inappropriateOperationForState
                    }
                    // WebSocket frames follow: no more HTTP heads to bound.
                    channel.pipeline.syncOperations.removeHandler(
                        name: RealtimeHubPipeline.headLimitHandlerName,
                        promise: nil
                    )
                    // No NIOAsyncChannel and no task per connection: the handler drives the hub connection from
                    // the event loop (see Architecture.md, "No task per idle connection").
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
                    return Result.webSocket
                }
            }
        )
        let upgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration<Result>(
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                guard case .rejected(let rejection) = decision.withLockedValue({ $0 }) else {
                    return notUpgrading(channel).map { Result.notUpgraded($0) }
                }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpgradeRejectionResponder(rejection: rejection))
                    return Result.rejected(rejection)
                }
            }
        )
        var pipelineConfiguration = NIOUpgradableHTTPServerPipelineConfiguration<Result>(
            upgradeConfiguration: upgradeConfiguration
        )
        pipelineConfiguration.enablePipelining = false
        pipelineConfiguration.enableErrorHandling = false
        pipelineConfiguration.enableResponseHeaderValidation = false
        pipelineConfiguration.decoderConfiguration = configuration.httpDecoder
        let negotiated = try configureUpgradableHTTPServerPipeline(configuration: pipelineConfiguration)
        // Between the HTTP parser and NIO's upgrade handler: request heads judged before anyone acts on them.
        try addHandler(
            RequestHeadGuard(),
            position: .before(try handler(type: NIOTypedHTTPServerUpgradeHandler<Result>.self))
        )
        // After the HTTP parser: a request it refuses is answered with 400 (by the head-limit handler).
        try addHandler(HTTPParserErrorHandler())
        return negotiated
    }
}

/// Answers an upgrade the hub refused: the rejection's status, `Retry-After` for 429/503, `WWW-Authenticate` for
/// 401 and the JSON error body, then closes the connection. The rest of the refused request is read and dropped.
final class UpgradeRejectionResponder: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let rejection: AdmissionRejection

    init(rejection: AdmissionRejection) {
        self.rejection = rejection
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let body = context.channel.allocator.buffer(string: rejection.jsonBody)
        var headers: HTTPHeaders = [
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": String(body.readableBytes),
            "Connection": "close",
        ]
        if let seconds = rejection.retryAfterSeconds { headers.add(name: "Retry-After", value: String(seconds)) }
        if let challenge = rejection.wwwAuthenticate { headers.add(name: "WWW-Authenticate", value: challenge) }
        let head = HTTPResponseHead(
            version: .http1_1,
            status: HTTPResponseStatus(statusCode: rejection.status),
            headers: headers
        )
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { [channel = context.channel] _ in
            channel.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // The refused request's remaining parts: nothing to do with them.
    }
}
