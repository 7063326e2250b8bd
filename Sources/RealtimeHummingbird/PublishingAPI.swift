// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import NIOCore
import RealtimeCore

/// The HTTP publishing API (`Documentation/HTTP-API.md`): JSON in and out. Its routes run behind
/// ``RealtimeAuthenticationMiddleware`` (the hub's admission policy, then ``RealtimeRouteOptions/authorize``),
/// which puts the admitted identity in the request context.
struct PublishingAPI: Sendable {
    let hub: RealtimeHub
    let options: RealtimeRouteOptions

    /// The API's routes (`Documentation/HTTP-API.md`), each with its audit action and target.
    func routes<Context: RealtimeIdentityRequestContext>(_: Context.Type) -> [RealtimeRoute<Context>] {
        var routes: [RealtimeRoute<Context>] = [
            route(.post, "/events", body: true, .publishEvent, .event) { _, body throws(APIError) in
                try await publishEvent(body)
            },
            route(
                .post,
                "/events/batch",
                body: true,
                maxBodyBytes: options.maxBatchBodyBytes,
                .publishEvents,
                .fixed("batch")
            ) { _, body throws(APIError) in
                try await publishEvents(body)
            },
        ]
        // The notification targets: one user, everyone (broadcast), administrators.
        let targets: [(String, RealtimeAPIAction)] = [
            ("user", .notifyUser), ("broadcast", .notifyBroadcast), ("admin", .notifyAdmin),
        ]
        for (target, action) in targets {
            let audited: AuditTarget = target == "user" ? .body("userId", "user") : .fixed(target)
            routes.append(
                route(.post, "/notifications/" + target, body: true, action, audited) {
                    _,
                    body throws(APIError) in try await notify(target, body)
                }
            )
        }
        routes += [
            route(.post, "/sessions/:sessionID/revoke", .revokeSession, .path("sessionID", "session")) {
                context,
                body throws(APIError) in
                try await revoke(try identifier(try pathParameter(context, "sessionID"), "sessionId"), body)
            },
            route(.post, "/sessions", body: true, .createSession, .body("sessionId", "session")) {
                _,
                body throws(APIError) in try await createSession(body)
            },
            route(.delete, "/sessions/:sessionID", .endSession, .path("sessionID", "session")) {
                context,
                body throws(APIError) in
                try await endSession(try identifier(try pathParameter(context, "sessionID"), "sessionId"), body)
            },
            route(.post, "/users/:userID/revoke", .revokeUser, .path("userID", "user")) {
                context,
                body throws(APIError) in
                try await revokeUser(try identifier(try pathParameter(context, "userID"), "userId"), body)
            },
            route(.post, "/users/:userID/disconnect", .disconnectUser, .path("userID", "user")) {
                context,
                body throws(APIError) in
                try await disconnect(try identifier(try pathParameter(context, "userID"), "userId"), body)
            },
            route(.get, "/stats", .readStats, .none) { _, _ throws(APIError) in
                (.ok, .object(await hub.stats().jsonObject))
            },
        ]
        return routes
    }

    /// What an audit record of a route names as its target.
    enum AuditTarget: Sendable {
        case none
        /// A fixed target (`broadcast`, `admin`).
        case fixed(String)
        /// `<kind>:<value>` of a path parameter.
        case path(String, String)
        /// `<kind>:<value>` of a string field of the body.
        case body(String, String)
        /// `event:<type>`, with `@<userId>` when the event names a user.
        case event

        func resolve<Context: RequestContext>(_ context: Context, _ body: Fields) -> String? {
            switch self {
            case .none: return nil
            case .fixed(let target): return target
            case .path(let name, let kind):
                return context.parameters.get(name).map { kind + ":" + (percentDecoded($0) ?? $0) }
            case .body(let name, let kind):
                return body.object[name]?.stringValue.map { kind + ":" + $0 }
            case .event:
                guard let type = body.object["type"]?.stringValue else { return nil }
                return "event:" + type + (body.object["userId"]?.stringValue.map { "@" + $0 } ?? "")
            }
        }
    }

    /// One route of the API under ``RealtimeRouteOptions/apiPrefix``: its body read (required or not), `handle` run
    /// on it, the answer audited as `action` on `target`.
    private func route<Context: RealtimeIdentityRequestContext>(
        _ method: HTTPRequest.Method,
        _ path: String,
        body bodyRequired: Bool = false,
        maxBodyBytes: Int? = nil,
        _ action: RealtimeAPIAction,
        _ target: AuditTarget,
        _ handle: @escaping @Sendable (Context, Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    ) -> RealtimeRoute<Context> {
        .init(method, options.apiPrefix + path, action: action) { request, context in
            await respond(
                request,
                context,
                bodyRequired: bodyRequired,
                action: action.rawValue,
                target: target,
                maxBodyBytes: maxBodyBytes
            ) {
                (body: Fields) throws(APIError) in try await handle(context, body)
            }
        }
    }

    // MARK: Plumbing

    /// Reads and parses the body of a request the authentication middleware admitted, runs `handle`, and turns
    /// every failure into a JSON error. Fails closed: a request with no identity in its context is refused.
    ///
    /// Every answer is recorded in the audit trail (``APIAudit``) as `action` on `target` (computed from the body,
    /// or from an empty one when the body could not be read).
    private func respond<Context: RealtimeIdentityRequestContext>(
        _ request: Request,
        _ context: Context,
        bodyRequired: Bool,
        action: String,
        target: AuditTarget,
        maxBodyBytes: Int? = nil,
        _ handle: (Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    ) async -> Response {
        var body = Fields(object: [:])
        var status = HTTPResponse.Status.internalServerError
        var errorCode: String?
        var response: Response
        do throws(APIError) {
            guard context.verifiedIdentity != nil else {
                throw APIError(
                    status: .internalServerError,
                    code: "internal_error",
                    message: "the request was not authenticated"
                )
            }
            body = try await readBody(request, required: bodyRequired, limit: maxBodyBytes ?? options.maxBodyBytes)
            let (answer, value) = try await handle(body)
            (status, errorCode, response) = (answer, nil, jsonResponse(answer, value))
        } catch {
            (status, errorCode, response) = (error.status, error.code, error.response)
        }
        await APIAudit(hub: hub).record(
            request,
            context,
            action: action,
            target: target.resolve(context, body),
            status: status,
            errorCode: errorCode
        )
        return response
    }

    private func readBody(_ request: Request, required: Bool, limit: Int) async throws(APIError) -> Fields {
        let tooLarge = APIError(
            status: .contentTooLarge,
            code: "payload_too_large",
            message: "the body is larger than \(limit) bytes"
        )
        if let length = request.headers[.contentLength].flatMap(Int.init), length > limit { throw tooLarge }
        var bytes: [UInt8] = []
        do {
            for try await buffer in request.body {
                guard bytes.count + buffer.readableBytes <= limit else { throw tooLarge }
                bytes.append(contentsOf: buffer.readableBytesView)
            }
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(status: .badRequest, code: "bad_body", message: "the body could not be read")
        }
        if bytes.isEmpty {
            guard !required else {
                throw APIError(status: .badRequest, code: "missing_body", message: "a JSON object body is required")
            }
            return Fields(object: [:])
        }
        let contentType = request.headers[.contentType]?.lowercased() ?? ""
        let mediaType = contentType.split(separator: ";").first.map { String($0.filter { !$0.isWhitespace }) } ?? ""
        guard mediaType == "application/json" else {
            throw APIError(
                status: .unsupportedMediaType,
                code: "unsupported_media_type",
                message: "send Content-Type: application/json"
            )
        }
        let value: JSONValue
        do {
            value = try JSONParser(limits: .init(maxBytes: limit, maxDepth: 16)).parse(bytes)
        } catch {
            throw APIError(status: .badRequest, code: "invalid_json", message: "the body is not valid JSON (\(error))")
        }
        guard case .object(let object) = value else {
            throw APIError(status: .badRequest, code: "invalid_body", message: "the body must be a JSON object")
        }
        return Fields(object: object)
    }

    private static func failure(_ error: RealtimeError) -> APIError {
        let answer = error.httpAnswer
        return APIError(status: .init(code: answer.status), code: answer.code, message: answer.message)
    }

    // MARK: Endpoints

    /// `POST /events`: answers once the event is queued for this server's connections and handed to the bus (the
    /// sockets are written afterwards).
    private func publishEvent(_ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue) {
        let event = try Self.event(from: body)
        do {
            return (.accepted, try await hub.publish(event).json)
        } catch {
            throw Self.failure(error)
        }
    }

    /// `POST /events/batch`: `{"events": [event, …]}`, at most ``RealtimeRouteOptions/maxBatchEvents``; every
    /// event is checked before any is published, and a refused one is named by its index (`events[2]: …`).
    private func publishEvents(_ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue) {
        guard case .array(let items)? = body.object["events"] else {
            throw APIError(
                status: .badRequest,
                code: body.object["events"] == nil ? "missing_field" : "invalid_field",
                message: "events must be an array of event objects"
            )
        }
        let limit = min(options.maxBatchEvents, RealtimeHub.maxEventsPerBatch)
        guard !items.isEmpty, items.count <= limit else {
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "events must hold 1 to \(limit) events, not \(items.count)"
            )
        }
        var events: [RealtimeEvent] = []
        events.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            do throws(APIError) {
                guard case .object(let object) = item else {
                    throw APIError(status: .badRequest, code: "invalid_field", message: "must be an object")
                }
                // Each event within the size of a single `POST /events` body, as its JSON text: a batch is a way
                // to send several events at once, not larger ones.
                let size = JSONWriter.bytes(item).count
                guard size <= options.maxBodyBytes else {
                    throw APIError(
                        status: .contentTooLarge,
                        code: "payload_too_large",
                        message: "the event is \(size) bytes of JSON, more than \(options.maxBodyBytes)"
                    )
                }
                events.append(try Self.event(from: Fields(object: object)))
            } catch {
                throw APIError(status: error.status, code: error.code, message: "events[\(index)]: \(error.message)")
            }
        }
        do {
            let receipts = try await hub.publish(events)
            return (.accepted, ["receipts": .array(receipts.map(\.json))])
        } catch {
            throw Self.failure(error)
        }
    }

    /// The event a request body describes (`POST /events`, or one item of `POST /events/batch`).
    private static func event(from body: Fields) throws(APIError) -> RealtimeEvent {
        try answering { () throws(RequestFieldError) in try RealtimeEvent(request: body.fields) }
    }

    private func notify(_ target: String, _ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue) {
        let levelName = try body.string("level") ?? "info"
        guard let level = NotificationLevel(rawValue: levelName) else {
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "level must be one of " + NotificationLevel.allCases.map(\.rawValue).joined(separator: ", ")
            )
        }
        let title = try body.string("title", required: true) ?? ""
        let message = try body.string("message", required: true) ?? ""
        let data = try body.object("data") ?? [:]
        let scope: EventScope
        switch target {
        case "user":
            scope = .user(try body.identifier("userId", required: true) ?? "")
        case "admin": scope = .admins
        default: scope = .everyone
        }
        let notification = RealtimeNotification(level: level, title: title, message: message, data: data, target: scope)
        do throws(RealtimeError) {
            try hub.checkHistoryEntry(of: notification)
        } catch {
            throw Self.failure(error)
        }
        let receipt = await hub.send(notification)
        return (.accepted, receipt.json)
    }

    private func revoke(_ sessionID: String, _ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    {
        let userID = try body.identifier("userId")
        let reason = try body.string("reason") ?? "session revoked"
        do {
            try await hub.revoke(sessionID: sessionID, userID: userID, reason: reason)
        } catch {
            throw Self.failure(error)
        }
        return (.ok, ["revoked": .string(sessionID)])
    }

    /// The longest a session created through the API may last.
    static let maxSessionLifetime: Duration = .seconds(366 * 86_400)

    private func createSession(_ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue) {
        let sessionID = try body.identifier("sessionId", required: true) ?? ""
        let userID = try body.identifier("userId", required: true) ?? ""
        let seconds = try body.int("expiresAt", required: true) ?? 0
        let now = Timestamp.now()
        let latest = (now + Self.maxSessionLifetime).secondsSinceEpoch
        // Checked in seconds first, so no value overflows into the range.
        guard seconds > now.secondsSinceEpoch, seconds <= latest else {
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "expiresAt must be a NumericDate (seconds since the epoch) in the future and at most 366 days "
                    + "ahead"
            )
        }
        let expiresAt = Timestamp(secondsSinceEpoch: seconds)
        do {
            try await hub.createSession(sessionID, userID: userID, expiresAt: expiresAt)
        } catch {
            throw Self.failure(error)
        }
        return (
            .created,
            [
                "sessionId": .string(sessionID), "userId": .string(userID), "expiresAt": .string(expiresAt.iso8601),
                "mode": .string(hub.sessionMode.rawValue),
            ]
        )
    }

    private func endSession(_ sessionID: String, _ body: Fields) async throws(APIError) -> (
        HTTPResponse.Status, JSONValue
    ) {
        let reason = try body.string("reason") ?? "session ended"
        let wasActive: Bool
        do {
            wasActive = try await hub.revoke(sessionID: sessionID, reason: reason)
        } catch {
            throw Self.failure(error)
        }
        return (.ok, ["revoked": .string(sessionID), "wasActive": .bool(wasActive)])
    }

    private func revokeUser(_ userID: String, _ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    {
        let reason = try body.string("reason") ?? "every session of the user revoked"
        let issuedBefore: Timestamp
        do {
            issuedBefore = try await hub.revoke(userID: userID, reason: reason)
        } catch {
            throw Self.failure(error)
        }
        return (.ok, ["revokedUser": .string(userID), "issuedBefore": .string(issuedBefore.iso8601)])
    }

    private func disconnect(_ userID: String, _ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    {
        let reason = try body.string("reason") ?? "disconnected by an operator"
        do {
            try await hub.disconnect(userID: userID, reason: reason)
        } catch {
            throw Self.failure(error)
        }
        return (.ok, ["disconnected": .string(userID)])
    }
}
