// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Vapor

extension RoutesBuilder {
    /// `POST /api/v1/events` with `{"type": "security.suspicious.activity", "userId": "u1", "data": {…}}`: publishes
    /// one event, for tokens of administrators or with the role `service`. A small subset of the Hummingbird
    /// host's HTTP API (`Documentation/HTTP-API.md`), admitted the same way: `RealtimeHub.authenticateRequest`.
    func addPublishRoute(_ hub: RealtimeHub) {
        on(.POST, "api", "v1", "events", body: .collect(maxSize: "64kb")) { request async -> Response in
            let admission = UpgradeRequest(
                uri: request.url.string,
                headers: request.headers.map { ($0.name, $0.value) },
                remoteAddress: request.remoteAddress?.ipAddress ?? ""
            )
            let identity: VerifiedIdentity
            switch await hub.authenticateRequest(admission) {
            case .success(let verified): identity = verified
            case .failure(let rejection): return .refusal(rejection)
            }
            guard identity.isAdmin || identity.roles.contains("service") else {
                return .error(.forbidden, "forbidden", "this token may not publish")
            }
            let body = request.body.data ?? ByteBuffer()
            guard
                let object = try? JSONParser(limits: .init(maxBytes: 64 * 1024, maxDepth: 16))
                    .parse(body.readableBytesView).objectValue
            else { return .error(.badRequest, "invalid_body", "send a JSON object") }
            guard let type = object["type"]?.stringValue.flatMap(EventType.init(validating:)) else {
                return .error(.badRequest, "invalid_event_type", "type must look like category.action[.detail]")
            }
            // Fields of the wrong type are refused, never dropped: a dropped `userId` or `scope` would send the
            // event to another audience than the publisher meant (seventh probe).
            let userID = object["userId"]
            let data = object["data"]
            let scopeName = object["scope"]
            guard userID == nil || userID?.stringValue != nil, data == nil || data?.objectValue != nil,
                scopeName == nil || scopeName?.stringValue != nil
            else { return .error(.badRequest, "invalid_field", "userId and scope are strings, data an object") }
            let scope: EventScope?
            switch scopeName?.stringValue {
            case nil: scope = nil
            case "admins": scope = .admins
            case "everyone": scope = .everyone
            case "user":
                guard let user = userID?.stringValue else {
                    return .error(.badRequest, "invalid_field", "scope 'user' needs userId")
                }
                scope = .user(user)
            default: return .error(.badRequest, "invalid_field", "scope must be user, admins or everyone")
            }
            let event = RealtimeEvent(
                type: type,
                userID: userID?.stringValue,
                data: data?.objectValue ?? [:],
                scope: scope
            )
            do throws(RealtimeError) {
                let receipt = try await hub.publish(event)
                return .json(
                    .accepted,
                    ["id": .string(receipt.id), "localDeliveries": .int(Int64(receipt.localDeliveries))]
                )
            } catch {
                // The hub's refusals are the client's to fix (400, 403, 429); only a backend's failure is a 503.
                let status: HTTPResponseStatus =
                    switch error.code {
                    case .invalidArgument, .userRequired: .badRequest
                    case .forbidden: .forbidden
                    case .limitExceeded: .tooManyRequests
                    case .backendUnavailable, .timeout, .shutDown: .serviceUnavailable
                    default: .internalServerError
                    }
                return .error(status, error.code.rawValue, error.message)
            }
        }
    }
}
