// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import HummingbirdCore
import RealtimeCore

/// The administrators' read API (`Documentation/HTTP-API.md`, "Admin API"): the cluster's live connections, all
/// of them or one user's, a page at a time. Its routes run behind ``RealtimeAuthenticationMiddleware`` with
/// ``RealtimeRouteOptions/authorize`` (by default administrators only: the listings are
/// ``RealtimeAPIAction/isListing``, and a `service` token may publish but not list who is connected).
struct AdminAPI: Sendable {
    let hub: RealtimeHub
    let options: RealtimeRouteOptions

    /// The page size when the request names none.
    static let defaultPageSize = 100

    func routes<Context: RealtimeIdentityRequestContext>(_: Context.Type) -> [RealtimeRoute<Context>] {
        let prefix = options.apiPrefix
        return [
            .init(.get, prefix + "/connections", action: .listConnections) { request, context in
                await respond(request, context, action: .listConnections) { query throws(APIError) in
                    try query.value("userId").map { (value) throws(APIError) in
                        try identifier(value, "userId", code: "invalid_parameter")
                    }
                }
            },
            .init(.get, prefix + "/users/:userID/connections", action: .listUserConnections) { request, context in
                await respond(request, context, action: .listUserConnections) { _ throws(APIError) in
                    try identifier(try pathParameter(context, "userID"), "userId", code: "invalid_parameter")
                }
            },
            .init(.get, prefix + "/users/:userID/sessions", action: .listSessions) { request, context in
                await audited(
                    await sessions(request, context),
                    request,
                    context,
                    action: .listSessions,
                    target: Self.userTarget(request, context)
                )
            },
        ]
    }

    /// `GET /users/{id}/sessions`: a registry's active sessions of the user, the earliest expiry first.
    private func sessions<Context: RealtimeIdentityRequestContext>(_ request: Request, _ context: Context) async
        -> (response: Response, errorCode: String?)
    {
        do throws(APIError) {
            guard context.verifiedIdentity != nil else {
                throw APIError(status: .internalServerError, code: "internal_error", message: "not authenticated")
            }
            let userID = try identifier(try pathParameter(context, "userID"), "userId")
            let limit = try Self.limit(APIQuery(request.uri.query), max: RealtimeHub.maxSessionListSize)
            guard hub.sessionMode == .registry else {
                throw APIError(
                    status: .conflict,
                    code: "registry_mode_required",
                    message: "the session store is in revocation-list mode (WEBSOCKET_SESSION_MODE): it knows revoked "
                        + "sessions, not active ones; GET /users/{id}/connections lists the user's connections"
                )
            }
            let records: [SessionRecord]
            do {
                records = try await hub.sessions(ofUser: userID, limit: limit)
            } catch {
                throw APIError(listing: error)
            }
            let sessions: [JSONValue] = records.map {
                ["sessionId": .string($0.sessionID), "expiresAt": .string($0.expiresAt.iso8601)]
            }
            let body: JSONValue = [
                "userId": .string(userID), "sessions": .array(sessions), "limit": .int(Int64(limit)),
            ]
            return (jsonResponse(.ok, body), nil)
        } catch {
            return (error.response, error.code)
        }
    }

    /// Reads `limit` and `cursor`, lists a page (of one user's connections when `user` names one), and turns
    /// every failure into a JSON error. Fails closed: a request with no identity in its context is refused.
    private func respond<Context: RealtimeIdentityRequestContext>(
        _ request: Request,
        _ context: Context,
        action: RealtimeAPIAction,
        user: (APIQuery) throws(APIError) -> String?
    ) async -> Response {
        let answer = await listConnections(request, context, user: user)
        return await audited(answer, request, context, action: action, target: Self.userTarget(request, context))
    }

    /// `user:<id>` of the listing's user (path or `userId` query), if it names one.
    static func userTarget<Context: RequestContext>(_ request: Request, _ context: Context) -> String? {
        if let user = context.parameters.get("userID") { return "user:" + (percentDecoded(user) ?? user) }
        return (try? APIQuery(request.uri.query).value("userId")).flatMap { $0.map { "user:" + $0 } }
    }

    /// Records `response` in the audit trail (``APIAudit``), then returns it.
    private func audited<Context: RealtimeIdentityRequestContext>(
        _ answer: (response: Response, errorCode: String?),
        _ request: Request,
        _ context: Context,
        action: RealtimeAPIAction,
        target: String?
    ) async -> Response {
        await APIAudit(hub: hub).record(
            request,
            context,
            action: action.rawValue,
            target: target,
            status: answer.response.status,
            errorCode: answer.errorCode
        )
        return answer.response
    }

    private func listConnections<Context: RealtimeIdentityRequestContext>(
        _ request: Request,
        _ context: Context,
        user: (APIQuery) throws(APIError) -> String?
    ) async -> (response: Response, errorCode: String?) {
        do throws(APIError) {
            guard context.verifiedIdentity != nil else {
                throw APIError(status: .internalServerError, code: "internal_error", message: "not authenticated")
            }
            let query = APIQuery(request.uri.query)
            let userID = try user(query)
            let limit = try Self.limit(query)
            let cursor = try query.value("cursor")
            let page: ConnectionPage
            do {
                if let userID {
                    page = try await hub.connections(ofUser: userID, after: cursor, limit: limit)
                } else {
                    page = try await hub.connections(after: cursor, limit: limit)
                }
            } catch {
                // The limit is checked above: an invalid argument here is the cursor.
                guard error.code == .invalidArgument else { throw APIError(listing: error) }
                throw APIError(
                    status: .badRequest,
                    code: "invalid_cursor",
                    message: "cursor must be the nextCursor of a previous page of this listing"
                )
            }
            var body: JSONObject = [
                "connections": .array(page.records.map { .object(Self.json($0)) }),
                "nextCursor": page.nextCursor.map { .string($0) } ?? .null,
                "limit": .int(Int64(limit)),
            ]
            if let userID { body["userId"] = .string(userID) }
            return (jsonResponse(.ok, .object(body)), nil)
        } catch {
            return (error.response, error.code)
        }
    }

    /// The `limit` query parameter: 1 to ``RealtimeCore/RealtimeHub/maxConnectionPageSize``, default
    /// ``defaultPageSize``.
    static func limit(
        _ query: APIQuery,
        max: Int = RealtimeHub.maxConnectionPageSize
    ) throws(APIError) -> Int {
        guard let text = try query.value("limit") else { return defaultPageSize }
        guard let limit = Int(text), (1...max).contains(limit) else {
            throw APIError(
                status: .badRequest,
                code: "invalid_parameter",
                message: "limit must be a whole number from 1 to \(max), not '\(text.prefix(32))'"
            )
        }
        return limit
    }

    /// A connection as the API shows it.
    static func json(_ record: ConnectionRecord) -> JSONObject {
        [
            "connectionId": .string(record.id.rawValue),
            "serverId": .string(record.serverID.rawValue),
            "userId": .string(record.userID),
            "sessionId": record.sessionID.map { .string($0) } ?? .null,
            "admin": .bool(record.isAdmin),
            "remoteAddress": .string(record.remoteAddress),
            "origin": record.origin.map { .string($0) } ?? .null,
            "connectedAt": .string(record.connectedAt.iso8601),
        ]
    }
}

extension APIError {
    /// A backend's failure while listing: 503 when it is unavailable, 500 otherwise.
    init(listing error: RealtimeError) {
        switch error.code {
        case .backendUnavailable, .timeout, .shutDown:
            self.init(status: .serviceUnavailable, code: error.code.rawValue, message: error.message)
        default:
            self.init(status: .internalServerError, code: "internal_error", message: "the listing failed")
        }
    }
}

/// A path parameter, percent-decoded (`/users/a%40b/…` names the user `a@b`). A parameter that is not valid
/// percent-encoded UTF-8 is `400 invalid_parameter`.
func pathParameter<Context: RequestContext>(_ context: Context, _ name: String) throws(APIError) -> String {
    let raw = context.parameters.get(name) ?? ""
    guard let decoded = percentDecoded(raw), !decoded.isEmpty else {
        throw APIError(
            status: .badRequest,
            code: "invalid_parameter",
            message: "the \(name) in the path is not valid percent-encoded UTF-8"
        )
    }
    return decoded
}

/// `text` with its `%XX` escapes decoded; `nil` when an escape is malformed or the result is not UTF-8.
func percentDecoded(_ text: String) -> String? {
    guard text.utf8.contains(UInt8(ascii: "%")) else { return text }
    var bytes: [UInt8] = []
    var iterator = text.utf8.makeIterator()
    func hex(_ byte: UInt8?) -> UInt8? {
        switch byte {
        case let byte? where (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte): byte - UInt8(ascii: "0")
        case let byte? where (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte): byte - UInt8(ascii: "a") + 10
        case let byte? where (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    while let byte = iterator.next() {
        guard byte == UInt8(ascii: "%") else {
            bytes.append(byte)
            continue
        }
        guard let high = hex(iterator.next()), let low = hex(iterator.next()) else { return nil }
        bytes.append(high << 4 | low)
    }
    return String(validating: bytes, as: UTF8.self)
}
