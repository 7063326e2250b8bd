// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
public import Hummingbird
public import NIOCore
public import Prometheus
public import RealtimeCore

/// What ``Hummingbird/RouterMethods/addRealtimeHub(_:options:)`` adds besides the health routes.
public struct RealtimeRouteOptions: Sendable {
    /// Verifies the bearer tokens of the HTTP publishing API. `nil` leaves the API out.
    public var apiTokenVerifier: (any TokenVerifier)?
    /// Whether a verified identity may take an action of the API (each route is one ``RealtimeAPIAction``); a
    /// refusal is `403 forbidden`. Default: ``defaultAuthorization``.
    public var authorize: @Sendable (VerifiedIdentity, RealtimeAPIAction) -> Bool
    /// Where the publishing API lives. Default `/api/v1`.
    public var apiPrefix: String
    /// The largest request body the API reads. Default 64 KiB.
    public var maxBodyBytes: Int
    /// The most events one `POST /events/batch` may hold (at most `RealtimeHub.maxEventsPerBatch`). Default 100.
    public var maxBatchEvents: Int
    /// The largest body `POST /events/batch` reads. Default 1 MiB.
    public var maxBatchBodyBytes: Int
    /// The registry `GET /metrics` renders in the Prometheus text format; `nil` leaves the route out.
    public var metrics: PrometheusCollectorRegistry?
    /// Whether every path the router does not know is answered with the hub's JSON error envelope (`404 not_found`),
    /// not only those under the hub's prefixes (`/ws/`, `/health/`, the API's). Set it when the router serves the
    /// hub alone, as `realtime-server` does; the default `false` leaves other paths to the host's own error handling.
    public var jsonErrorsOnEveryPath: Bool

    public init(
        apiTokenVerifier: (any TokenVerifier)? = nil,
        authorize: @escaping @Sendable (VerifiedIdentity, RealtimeAPIAction) -> Bool = defaultAuthorization,
        apiPrefix: String = "/api/v1",
        maxBodyBytes: Int = 64 * 1024,
        maxBatchEvents: Int = 100,
        maxBatchBodyBytes: Int = 1024 * 1024,
        metrics: PrometheusCollectorRegistry? = nil,
        jsonErrorsOnEveryPath: Bool = false
    ) {
        self.jsonErrorsOnEveryPath = jsonErrorsOnEveryPath
        self.maxBatchEvents = maxBatchEvents
        self.maxBatchBodyBytes = maxBatchBodyBytes
        self.apiTokenVerifier = apiTokenVerifier
        self.authorize = authorize
        self.apiPrefix = apiPrefix
        self.maxBodyBytes = maxBodyBytes
        self.metrics = metrics
    }

    /// Administrators may take every action; tokens with the role `service` every action but the listings
    /// (``RealtimeAPIAction/isListing``: a service may publish and revoke, not list who is connected).
    public static let defaultAuthorization: @Sendable (VerifiedIdentity, RealtimeAPIAction) -> Bool = {
        identity,
        action in
        identity.isAdmin || (!action.isListing && identity.roles.contains("service"))
    }
}

extension RouterMethods {
    /// Adds a hub's HTTP routes:
    ///
    /// - `GET /ws/health`: `HubHealth.jsonObject` (RealtimeCore), 200 when healthy, 503 otherwise;
    /// - `GET /health/live` (always 200 while the process serves) and `GET /health/ready` (503 while draining or
    ///   unhealthy);
    /// - `GET` on the hub's WebSocket paths without an upgrade: 426 with a JSON error;
    /// - `GET /metrics` when ``RealtimeRouteOptions/metrics`` is set;
    /// - the publishing API and the admin API (connection listings) under ``RealtimeRouteOptions/apiPrefix`` when
    ///   ``RealtimeRouteOptions/apiTokenVerifier`` is set (see `Documentation/HTTP-API.md`).
    ///
    /// Every error under the API prefix, `/ws/` and the hub's own paths is the JSON envelope
    /// `{"error":{"code":…,"message":…}}`: an unknown path is `404 not_found`, a known path with another method
    /// `405 method_not_allowed` with `Allow`. Every `GET` route answers `HEAD` as well (without a body), with or
    /// without the router's `.autoGenerateHeadEndpoints`. API requests pass ``RealtimeAuthenticationMiddleware``: the hub's
    /// admission policy (RealtimeCore's `RealtimeHub.authenticateRequest(_:verifier:)`: revoked sessions, blocked
    /// addresses, rate limits, failure accounting), then ``RealtimeRouteOptions/authorize`` with the route's
    /// ``RealtimeAPIAction``; the client address
    /// comes from a request context that conforms to `RemoteAddressRequestContext` (``RealtimeRequestContext``
    /// does), and without one the per-address checks are skipped.
    ///
    /// The WebSocket upgrades themselves are served by the server channel:
    /// ``HummingbirdCore/HTTPServerBuilder/realtimeHub(_:configuration:)``.
    @discardableResult
    public func addRealtimeHub(_ hub: RealtimeHub, options: RealtimeRouteOptions = .init()) -> Self {
        var routes: [RealtimeRoute<Context>] = [
            .init(.get, "/ws/health") { _, _ in
                let health = await hub.healthCheck()
                return jsonResponse(health.healthy ? .ok : .serviceUnavailable, .object(health.jsonObject))
            },
            .init(.get, "/health/live") { _, _ in
                jsonResponse(.ok, ["status": "alive", "serverId": .string(hub.serverID.rawValue)])
            },
            .init(.get, "/health/ready") { _, _ in
                let health = await hub.healthCheck()
                let ready = health.healthy && !health.draining
                return jsonResponse(
                    ready ? .ok : .serviceUnavailable,
                    [
                        "ready": .bool(ready), "draining": .bool(health.draining),
                        "status": .string(health.status.rawValue),
                    ]
                )
            },
        ]
        for path in [hub.configuration.eventsPath, hub.configuration.adminPath] {
            routes.append(
                .init(.get, path) { _, _ in
                    APIError(
                        status: .upgradeRequired,
                        code: "upgrade_required",
                        message: "this endpoint speaks WebSocket; send an Upgrade: websocket request",
                        headers: [.upgrade: "websocket"]
                    ).response
                }
            )
        }
        if let registry = options.metrics {
            routes.append(
                .init(.get, "/metrics") { _, _ in
                    var buffer = ByteBuffer()
                    buffer.writeBytes(registry.emitToBuffer())
                    return Response(
                        status: .ok,
                        headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: buffer)
                    )
                }
            )
        }
        var prefixes = ["/ws/", "/health/", hub.configuration.eventsPath, hub.configuration.adminPath]
        // The API's routes see their own context, derived from `Context`, with the admitted identity in it.
        typealias APIContext = RealtimeAPIRequestContext<Context>
        var apiRoutes: [RealtimeRoute<APIContext>] = []
        var adminRoutes: [RealtimeRoute<APIContext>] = []
        if options.apiTokenVerifier != nil {
            apiRoutes = PublishingAPI(hub: hub, options: options).routes(APIContext.self)
            adminRoutes = AdminAPI(hub: hub, options: options).routes(APIContext.self)
            // The API's parent too (`/api/` for `/api/v1`): an unknown version is an API error as well.
            let parent = options.apiPrefix.split(separator: "/").first.map { "/\($0)/" } ?? options.apiPrefix + "/"
            prefixes.append(parent)
        }
        // `HEAD` on every `GET` route (RFC 9110 §9.1; load balancers probe health routes with it), whatever the
        // router's options, so `Allow` can list it truthfully.
        routes += routes.compactMap(\.head)
        apiRoutes += apiRoutes.compactMap(\.head)
        adminRoutes += adminRoutes.compactMap(\.head)
        if options.jsonErrorsOnEveryPath { prefixes = ["/"] }
        // Before the routes: router middleware applies to the routes added after it, and to unmatched requests.
        let known = routes.map { ($0.method, $0.path) } + (apiRoutes + adminRoutes).map { ($0.method, $0.path) }
        _ = add(middleware: JSONErrorMiddleware<Context>(routes: known, prefixes: prefixes))
        for route in routes {
            on(RouterPath(route.path), method: route.method, use: route.handler)
        }
        if let verifier = options.apiTokenVerifier {
            let authorize = options.authorize
            for route in apiRoutes + adminRoutes {
                guard let action = route.action else { continue }
                group(context: APIContext.self)
                    .add(
                        middleware: RealtimeAuthenticationMiddleware<APIContext>(
                            hub: hub,
                            verifier: verifier,
                            authorize: { authorize($0, action) },
                            refusal: "this token may not take the action '\(action)'"
                        )
                    )
                    .on(RouterPath(route.path), method: route.method, use: route.handler)
            }
        }
        return self
    }
}

/// One route of the hub's HTTP surface.
struct RealtimeRoute<Context: RequestContext>: Sendable {
    var method: HTTPRequest.Method
    var path: String
    var handler: @Sendable (Request, Context) async throws -> Response
    /// The API action the route takes (``RealtimeRouteOptions/authorize``); `nil` for the routes outside the API.
    var action: RealtimeAPIAction?

    init(
        _ method: HTTPRequest.Method,
        _ path: String,
        action: RealtimeAPIAction? = nil,
        _ handler: @escaping @Sendable (Request, Context) async throws -> Response
    ) {
        self.method = method
        self.path = path
        self.action = action
        self.handler = handler
    }

    /// For a `GET` route, the `HEAD` route beside it: the same action and handler, the response without its body
    /// (as Hummingbird's `.autoGenerateHeadEndpoints` does, which leaves a route registered explicitly alone).
    var head: Self? {
        guard method == .get else { return nil }
        let get = handler
        return Self(.head, path, action: action) { request, context in
            try await get(request, context).createHeadResponse()
        }
    }
}

/// A Hummingbird request context that knows the client's socket address, so the hub's HTTP API can apply
/// per-address checks (blocks, rate limits, failure accounting):
/// `Router(context: RealtimeRequestContext.self, options: .autoGenerateHeadEndpoints)` (the hub's own `GET` routes
/// answer `HEAD` either way; the option does the same for the host's, as RFC 9110 §9.1 asks of a general-purpose
/// server).
/// It also carries the identity ``RealtimeAuthenticationMiddleware`` admits, for a host's own routes behind it.
public struct RealtimeRequestContext: RequestContext, RemoteAddressRequestContext, RealtimeIdentityRequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The socket peer (a trusted proxy's forwarding headers are honoured by the hub, not here).
    public let remoteAddress: SocketAddress?
    /// The identity ``RealtimeAuthenticationMiddleware`` admitted the request with; `nil` before it ran.
    public var verifiedIdentity: VerifiedIdentity?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.remoteAddress = source.channel.remoteAddress
    }
}
