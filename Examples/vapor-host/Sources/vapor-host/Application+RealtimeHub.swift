// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket
import RealtimeCore
import RealtimeNIO
import Vapor

// The glue between Vapor and the hub. The hub decides every upgrade in a route handler, so a refusal is an
// ordinary Vapor response (status, Retry-After, JSON body); an accepted upgrade is Vapor's own 101 path with an
// `Upgrader` that puts RealtimeNIO's connection handler on the channel, the handler every host shares (bounded
// outbound queue, slow-consumer close, read back-pressure, close handshake, write-stall timeout).

extension RoutesBuilder {
    /// Serves the hub's WebSocket endpoints (`HubConfiguration.eventsPath` and `adminPath`) and `GET /health`.
    func addRealtimeHub(_ hub: RealtimeHub, pipeline: RealtimeHubPipelineConfiguration = .init()) {
        for path in [hub.configuration.eventsPath, hub.configuration.adminPath] {
            on(.GET, path.pathComponents) { request async -> Response in
                await RealtimeHubUpgrader.respond(to: request, hub: hub, pipeline: pipeline)
            }
        }
        on(.GET, "health") { _ async -> Response in
            let health = await hub.healthCheck()
            return .json(health.healthy ? .ok : .serviceUnavailable, .object(health.jsonObject))
        }
    }
}

/// Vapor's upgrade hook: after the 101, NIO's WebSocket codec and a `RealtimeWebSocketHandler` for the ticket the
/// hub issued.
struct RealtimeHubUpgrader: Upgrader {
    let hub: RealtimeHub
    let ticket: UpgradeTicket
    let pipeline: RealtimeHubPipelineConfiguration
    let logger: Logger

    /// Answers a request on one of the hub's WebSocket paths: 426 unless it is a WebSocket handshake, the hub's
    /// refusal, or 101 with this upgrader.
    static func respond(
        to request: Request,
        hub: RealtimeHub,
        pipeline: RealtimeHubPipelineConfiguration
    ) async -> Response {
        // Checked before the hub is asked, so a malformed handshake holds no ticket: a request that asks for no
        // WebSocket gets 426, a handshake RFC 6455 does not let a server accept gets 400 (the Hummingbird host's
        // rules, `WebSocketHandshake`; seventh probe: HEAD, HTTP/1.0 and short or non-base64 keys got 101 here).
        let headers = request.headers
        guard headers[canonicalForm: "upgrade"].contains(where: { $0.lowercased() == "websocket" }) else {
            let response = Response.error(
                .upgradeRequired,
                "upgrade_required",
                "send a WebSocket handshake (version 13)"
            )
            response.headers.replaceOrAdd(name: .upgrade, value: "websocket")
            response.headers.replaceOrAdd(name: "Sec-WebSocket-Version", value: "13")
            return response
        }
        let head = HTTPRequestHead(
            version: request.version,
            method: request.method,
            uri: request.url.string,
            headers: headers
        )
        if let problem = WebSocketHandshake.problem(head) {
            return .error(.badRequest, "bad_request", problem)
        }
        let upgrade = UpgradeRequest(
            uri: request.url.string,
            headers: headers.map { ($0.name, $0.value) },
            // The socket's peer; forwarding headers are the hub's to judge (`HubConfiguration.clientAddress`).
            remoteAddress: request.remoteAddress?.ipAddress ?? ""
        )
        switch await hub.authorizeUpgrade(upgrade) {
        case .reject(let rejection):
            return .refusal(rejection)
        case .accept(let ticket):
            let response = Response(status: .switchingProtocols)
            response.upgrader = RealtimeHubUpgrader(
                hub: hub,
                ticket: ticket,
                pipeline: pipeline,
                logger: request.logger
            )
            return response
        }
    }

    func applyUpgrade(req: Request, res: Response) -> any HTTPServerProtocolUpgrader {
        NIOWebSocketServerUpgrader(
            maxFrameSize: max(ticket.maxFrameBytes, 125),
            automaticErrorHandling: true,
            // The hub has decided already; a ticket that never connects is released after
            // `HubConfiguration.upgradeTicketTimeout`.
            shouldUpgrade: { channel, _ in channel.eventLoop.makeSucceededFuture([:]) },
            upgradePipelineHandler: { [hub, ticket, pipeline, logger] channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        RealtimeWebSocketHandler(
                            hub: hub,
                            ticket: ticket,
                            closeTimeout: pipeline.closeTimeout,
                            pingPayload: pipeline.pingPayload,
                            writeTimeout: pipeline.writeTimeout,
                            logger: logger
                        )
                    )
                }
            }
        )
    }
}

extension Response {
    /// A JSON response.
    static func json(_ status: HTTPResponseStatus, _ value: JSONValue) -> Response {
        Response(
            status: status,
            headers: ["Content-Type": "application/json; charset=utf-8"],
            body: .init(string: value.description)
        )
    }

    /// The JSON error envelope of the hub's hosts: `{"error":{"code":…,"message":…}}`.
    static func error(_ status: HTTPResponseStatus, _ code: String, _ message: String) -> Response {
        .json(status, ["error": ["code": .string(code), "message": .string(message)]])
    }

    /// The hub's refusal of an upgrade or an API request, as RealtimeNIO answers it: the status, `Retry-After`
    /// for 429 and 503, `WWW-Authenticate` for 401, and the JSON error body.
    static func refusal(_ rejection: AdmissionRejection) -> Response {
        var headers: HTTPHeaders = ["Content-Type": "application/json; charset=utf-8"]
        if let seconds = rejection.retryAfterSeconds { headers.add(name: "Retry-After", value: String(seconds)) }
        if let challenge = rejection.wwwAuthenticate { headers.add(name: "WWW-Authenticate", value: challenge) }
        return Response(
            status: HTTPResponseStatus(statusCode: rejection.status),
            headers: headers,
            body: .init(string: rejection.jsonBody)
        )
    }
}
