// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
public import Hummingbird
import NIOCore
public import RealtimeCore

/// A request context that carries the identity ``RealtimeAuthenticationMiddleware`` admitted the request with.
public protocol RealtimeIdentityRequestContext: RequestContext {
    /// The verified identity of the request's bearer token; set by ``RealtimeAuthenticationMiddleware`` before
    /// the route handler runs, `nil` on routes without the middleware.
    var verifiedIdentity: VerifiedIdentity? { get set }
}

/// Authenticates every request through the hub's admission policy
/// (``RealtimeCore/RealtimeHub/authenticateRequest(_:verifier:)``: client address and its blocks, the per-address
/// API rate limit, the `Authorization: Bearer` token, its session, the accounting of authentication failures),
/// then asks `authorize`, and puts the identity in the context (``RealtimeIdentityRequestContext/verifiedIdentity``)
/// for the route handlers. A refusal is answered here with the JSON error envelope: the rejection's status and
/// code, `Retry-After` for 429 and 503, `WWW-Authenticate` for 401, and `403 forbidden` when `authorize` says no.
///
/// The hub's publishing API runs behind it; a host can put its own routes behind it too:
///
/// ```swift
/// let router = Router(context: RealtimeRequestContext.self)
/// router.group("/internal")
///     .add(middleware: RealtimeAuthenticationMiddleware(hub: hub, authorize: { $0.isAdmin }))
///     .get("whoami") { _, context in context.verifiedIdentity?.userID ?? "" }
/// ```
///
/// The per-address checks need the client's address: a context conforming to Hummingbird's
/// `RemoteAddressRequestContext` (``RealtimeRequestContext`` does); without one they are skipped.
public struct RealtimeAuthenticationMiddleware<Context: RealtimeIdentityRequestContext>: RouterMiddleware {
    let hub: RealtimeHub
    let verifier: (any TokenVerifier)?
    let authorize: @Sendable (VerifiedIdentity) -> Bool
    let refusal: String

    /// - Parameters:
    ///   - hub: the hub whose admission policy decides.
    ///   - verifier: the verifier of these routes' tokens, if not the hub's own.
    ///   - authorize: whether an admitted identity may use the routes (default: any).
    ///   - refusal: the message of the `403 forbidden` answered when `authorize` says no.
    public init(
        hub: RealtimeHub,
        verifier: (any TokenVerifier)? = nil,
        authorize: @escaping @Sendable (VerifiedIdentity) -> Bool = { _ in true },
        refusal: String = "this token may not use this API"
    ) {
        self.hub = hub
        self.verifier = verifier
        self.authorize = authorize
        self.refusal = refusal
    }

    public func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let peer = (context as? any RemoteAddressRequestContext)?.remoteAddress?.ipAddress ?? ""
        let admission = UpgradeRequest(
            path: request.uri.path,
            headers: request.headers.map { ($0.name.rawName, $0.value) },
            remoteAddress: peer
        )
        switch await hub.authenticateRequest(admission, verifier: verifier) {
        case .failure(let rejection):
            return APIError(rejection).response
        case .success(let identity):
            guard authorize(identity) else {
                return APIError(status: .forbidden, code: "forbidden", message: refusal).response
            }
            var context = context
            context.verifiedIdentity = identity
            return try await next(request, context)
        }
    }
}

/// The context of the hub's publishing API routes, derived from whatever context the host's router uses: its
/// client address, if the host's context knows it, and the identity the authentication middleware admitted.
struct RealtimeAPIRequestContext<Parent: RequestContext>: ChildRequestContext, RemoteAddressRequestContext,
    RealtimeIdentityRequestContext
{
    var coreContext: CoreRequestContextStorage
    let remoteAddress: SocketAddress?
    var verifiedIdentity: VerifiedIdentity?

    init(context: Parent) {
        self.coreContext = context.coreContext
        self.remoteAddress = (context as? any RemoteAddressRequestContext)?.remoteAddress
    }
}

extension APIError {
    /// The answer to a refusal of the hub's admission policy.
    init(_ rejection: AdmissionRejection) {
        var headers: HTTPFields = [:]
        if let seconds = rejection.retryAfterSeconds { headers[.retryAfter] = String(seconds) }
        if let challenge = rejection.wwwAuthenticate { headers[.wwwAuthenticate] = challenge }
        self.init(
            status: .init(code: rejection.status),
            code: rejection.code,
            message: rejection.message,
            headers: headers
        )
    }
}
