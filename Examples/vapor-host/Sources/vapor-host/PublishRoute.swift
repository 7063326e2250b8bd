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
                return .error(.badRequest, "invalid_event_type", "type must look like category.action")
            }
            let event = RealtimeEvent(
                type: type,
                userID: object["userId"]?.stringValue,
                data: object["data"]?.objectValue ?? [:]
            )
            do throws(RealtimeError) {
                let receipt = try await hub.publish(event)
                return .json(
                    .accepted,
                    ["id": .string(receipt.id), "localDeliveries": .int(Int64(receipt.localDeliveries))]
                )
            } catch {
                return .error(.serviceUnavailable, error.code.rawValue, error.message)
            }
        }
    }
}
