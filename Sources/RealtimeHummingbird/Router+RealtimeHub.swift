// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
public import Hummingbird
import NIOCore
public import Prometheus
public import RealtimeCore

/// What ``Hummingbird/RouterMethods/addRealtimeHub(_:options:)`` adds besides the health routes.
public struct RealtimeRouteOptions: Sendable {
    /// Verifies the bearer tokens of the HTTP publishing API. `nil` leaves the API out.
    public var apiTokenVerifier: (any TokenVerifier)?
    /// Whether a verified identity may use the publishing API. Default: administrators, and tokens with the
    /// role `service`.
    public var mayPublish: @Sendable (VerifiedIdentity) -> Bool
    /// Where the publishing API lives. Default `/api/v1`.
    public var apiPrefix: String
    /// The largest request body the API reads. Default 64 KiB.
    public var maxBodyBytes: Int
    /// The registry `GET /metrics` renders in the Prometheus text format; `nil` leaves the route out.
    public var metrics: PrometheusCollectorRegistry?

    public init(
        apiTokenVerifier: (any TokenVerifier)? = nil,
        mayPublish: @escaping @Sendable (VerifiedIdentity) -> Bool = { $0.isAdmin || $0.roles.contains("service") },
        apiPrefix: String = "/api/v1",
        maxBodyBytes: Int = 64 * 1024,
        metrics: PrometheusCollectorRegistry? = nil
    ) {
        self.apiTokenVerifier = apiTokenVerifier
        self.mayPublish = mayPublish
        self.apiPrefix = apiPrefix
        self.maxBodyBytes = maxBodyBytes
        self.metrics = metrics
    }
}

extension RouterMethods {
    /// Adds a hub's HTTP routes:
    ///
    /// - `GET /ws/health`: ``HubHealth/jsonObject``, 200 when healthy, 503 otherwise;
    /// - `GET /health/live` (always 200 while the process serves) and `GET /health/ready` (503 while draining or
    ///   unhealthy);
    /// - `GET` on the hub's WebSocket paths without an upgrade: 426 with a JSON error;
    /// - `GET /metrics` when ``RealtimeRouteOptions/metrics`` is set;
    /// - the publishing API under ``RealtimeRouteOptions/apiPrefix`` when
    ///   ``RealtimeRouteOptions/apiTokenVerifier`` is set (see `Documentation/HTTP-API.md`).
    ///
    /// The WebSocket upgrades themselves are served by the server channel:
    /// ``HummingbirdCore/HTTPServerBuilder/realtimeHub(_:configuration:)``.
    @discardableResult
    public func addRealtimeHub(_ hub: RealtimeHub, options: RealtimeRouteOptions = .init()) -> Self {
        get("/ws/health") { _, _ -> Response in
            let health = await hub.healthCheck()
            return jsonResponse(health.healthy ? .ok : .serviceUnavailable, .object(health.jsonObject))
        }
        get("/health/live") { _, _ -> Response in
            jsonResponse(.ok, ["status": "alive", "serverId": .string(hub.serverID.rawValue)])
        }
        get("/health/ready") { _, _ -> Response in
            let health = await hub.healthCheck()
            let ready = health.healthy && !health.draining
            return jsonResponse(
                ready ? .ok : .serviceUnavailable,
                [
                    "ready": .bool(ready), "draining": .bool(health.draining),
                    "status": .string(health.status.rawValue),
                ]
            )
        }
        for path in [hub.configuration.eventsPath, hub.configuration.adminPath] {
            get(RouterPath(path)) { _, _ -> Response in
                APIError(
                    status: .upgradeRequired,
                    code: "upgrade_required",
                    message: "this endpoint speaks WebSocket; send an Upgrade: websocket request",
                    headers: [.upgrade: "websocket"]
                ).response
            }
        }
        if let registry = options.metrics {
            get("/metrics") { _, _ -> Response in
                var buffer = ByteBuffer()
                buffer.writeBytes(registry.emitToBuffer())
                return Response(
                    status: .ok,
                    headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: .init(byteBuffer: buffer)
                )
            }
        }
        if let verifier = options.apiTokenVerifier {
            PublishingAPI(hub: hub, verifier: verifier, options: options).register(on: self)
        }
        return self
    }
}
