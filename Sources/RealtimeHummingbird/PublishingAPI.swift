// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import NIOCore
import RealtimeCore

/// The HTTP publishing API (`Documentation/HTTP-API.md`): JSON in and out. Its routes run behind
/// ``RealtimeAuthenticationMiddleware`` (the hub's admission policy, then ``RealtimeRouteOptions/mayPublish``),
/// which puts the admitted identity in the request context.
struct PublishingAPI: Sendable {
    let hub: RealtimeHub
    let options: RealtimeRouteOptions

    /// The event categories the API accepts (the catalogue's: `authentication`, `security`, `session`,
    /// `admin`, `system`, `presence`).
    static let categories: Set<String> = Set(EventType.catalogue.map { String($0.category) })

    /// The API's routes (`Documentation/HTTP-API.md`).
    func routes<Context: RealtimeIdentityRequestContext>(_: Context.Type) -> [RealtimeRoute<Context>] {
        let prefix = options.apiPrefix
        var routes: [RealtimeRoute<Context>] = [
            .init(.post, prefix + "/events") { request, context in
                await respond(request, context, bodyRequired: true) { (body: Fields) throws(APIError) in
                    try await publishEvent(body)
                }
            },
            .init(.post, prefix + "/events/batch") { request, context in
                await respond(request, context, bodyRequired: true, maxBodyBytes: options.maxBatchBodyBytes) {
                    (body: Fields) throws(APIError) in
                    try await publishEvents(body)
                }
            },
        ]
        // The notification targets: one user, everyone (broadcast), administrators.
        for target in ["user", "broadcast", "admin"] {
            routes.append(
                .init(.post, prefix + "/notifications/" + target) { request, context in
                    await respond(request, context, bodyRequired: true) { (body: Fields) throws(APIError) in
                        try await notify(target, body)
                    }
                }
            )
        }
        routes += [
            .init(.post, prefix + "/sessions/:sessionID/revoke") { request, context in
                await respond(request, context, bodyRequired: false) { (body: Fields) throws(APIError) in
                    let sessionID = try pathParameter(context, "sessionID")
                    return try await revoke(sessionID, body)
                }
            },
            .init(.post, prefix + "/users/:userID/disconnect") { request, context in
                await respond(request, context, bodyRequired: false) { (body: Fields) throws(APIError) in
                    let userID = try pathParameter(context, "userID")
                    return try await disconnect(userID, body)
                }
            },
            .init(.get, prefix + "/stats") { request, context in
                await respond(request, context, bodyRequired: false) { (_: Fields) throws(APIError) in
                    (.ok, .object(await hub.stats().jsonObject))
                }
            },
        ]
        return routes
    }

    // MARK: Plumbing

    /// Reads and parses the body of a request the authentication middleware admitted, runs `handle`, and turns
    /// every failure into a JSON error. Fails closed: a request with no identity in its context is refused.
    private func respond<Context: RealtimeIdentityRequestContext>(
        _ request: Request,
        _ context: Context,
        bodyRequired: Bool,
        maxBodyBytes: Int? = nil,
        _ handle: (Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    ) async -> Response {
        do throws(APIError) {
            guard context.verifiedIdentity != nil else {
                throw APIError(
                    status: .internalServerError,
                    code: "internal_error",
                    message: "the request was not authenticated"
                )
            }
            let body = try await readBody(request, required: bodyRequired, limit: maxBodyBytes ?? options.maxBodyBytes)
            let (status, value) = try await handle(body)
            return jsonResponse(status, value)
        } catch {
            return error.response
        }
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
        switch error.code {
        case .invalidArgument: APIError(status: .badRequest, code: "invalid_argument", message: error.message)
        case .notFound: APIError(status: .notFound, code: "not_found", message: error.message)
        case .limitExceeded: APIError(status: .tooManyRequests, code: "limit_exceeded", message: error.message)
        case .userRequired: APIError(status: .badRequest, code: "user_required", message: error.message)
        case .backendUnavailable, .timeout, .shutDown:
            APIError(status: .serviceUnavailable, code: error.code.rawValue, message: error.message)
        default: APIError(status: .internalServerError, code: "internal_error", message: "the request failed")
        }
    }

    private static func receipt(_ receipt: PublishReceipt) -> JSONValue {
        [
            "id": .string(receipt.id),
            "localDeliveries": .int(Int64(receipt.localDeliveries)),
            "publishedToCluster": .bool(receipt.publishedToCluster),
        ]
    }

    // MARK: Endpoints

    /// `POST /events`: answers once the event is queued for this server's connections and handed to the bus (the
    /// sockets are written afterwards).
    private func publishEvent(_ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue) {
        let event = try Self.event(from: body)
        do {
            return (.accepted, Self.receipt(try await hub.publish(event)))
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
                events.append(try Self.event(from: Fields(object: object)))
            } catch {
                throw APIError(status: error.status, code: error.code, message: "events[\(index)]: \(error.message)")
            }
        }
        do {
            let receipts = try await hub.publish(events)
            return (.accepted, ["receipts": .array(receipts.map(Self.receipt))])
        } catch {
            throw Self.failure(error)
        }
    }

    /// The event a request body describes (`POST /events`, or one item of `POST /events/batch`).
    private static func event(from body: Fields) throws(APIError) -> RealtimeEvent {
        let typeName = try body.string("type", required: true) ?? ""
        guard let type = EventType(validating: typeName) else {
            throw APIError(
                status: .badRequest,
                code: "invalid_event_type",
                message: "type must look like category.action (lower-case segments separated by dots)"
            )
        }
        guard categories.contains(String(type.category)) else {
            throw APIError(
                status: .badRequest,
                code: "unknown_category",
                message: "unknown event category '\(type.category.prefix(64))'; known: "
                    + categories.sorted().joined(separator: ", ")
            )
        }
        let userID = try body.string("userId")
        let sessionID = try body.string("sessionId")
        let data = try body.object("data") ?? [:]
        var scope: EventScope?
        switch try body.string("scope") {
        case nil: scope = nil
        case "user":
            guard let userID else {
                throw APIError(status: .badRequest, code: "invalid_field", message: "scope 'user' needs userId")
            }
            scope = .user(userID)
        case "admins": scope = .admins
        case "everyone": scope = .everyone
        case let other?:
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "scope must be user, admins or everyone, not '\(other.prefix(32))'"
            )
        }
        var event = RealtimeEvent(type: type, userID: userID, sessionID: sessionID, data: data, scope: scope)
        if let id = try body.string("id") {
            guard !id.isEmpty, id.utf8.count <= 128 else {
                throw APIError(status: .badRequest, code: "invalid_field", message: "id must be 1 to 128 bytes")
            }
            event.id = id
        }
        return event
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
            guard let userID = try body.string("userId", required: true), !userID.isEmpty else {
                throw APIError(status: .badRequest, code: "invalid_field", message: "userId must not be empty")
            }
            scope = .user(userID)
        case "admin": scope = .admins
        default: scope = .everyone
        }
        let receipt = await hub.send(
            RealtimeNotification(level: level, title: title, message: message, data: data, target: scope)
        )
        return (.accepted, Self.receipt(receipt))
    }

    private func revoke(_ sessionID: String, _ body: Fields) async throws(APIError) -> (HTTPResponse.Status, JSONValue)
    {
        let userID = try body.string("userId")
        let reason = try body.string("reason") ?? "session revoked"
        do {
            try await hub.revoke(sessionID: sessionID, userID: userID, reason: reason)
        } catch {
            throw Self.failure(error)
        }
        return (.ok, ["revoked": .string(sessionID)])
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

/// Typed access to the fields of a JSON request body.
struct Fields: Sendable {
    let object: JSONObject

    func string(_ name: String, required: Bool = false) throws(APIError) -> String? {
        switch object[name] {
        case nil, .null?:
            if required {
                throw APIError(status: .badRequest, code: "missing_field", message: "\(name) is required")
            }
            return nil
        case .string(let value)?:
            return value
        case let other?:
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "\(name) must be a string, not \(other.typeName)"
            )
        }
    }

    func object(_ name: String) throws(APIError) -> JSONObject? {
        switch object[name] {
        case nil, .null?:
            return nil
        case .object(let value)?:
            return value
        case let other?:
            throw APIError(
                status: .badRequest,
                code: "invalid_field",
                message: "\(name) must be an object, not \(other.typeName)"
            )
        }
    }
}
