// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Vapor

extension RoutesBuilder {
    /// `POST /api/v1/events` with `{"type": "security.suspicious.activity", "userId": "u1", "data": {…}}`: publishes
    /// one event, for tokens of administrators or with the role `service`. A small subset of the Hummingbird
    /// host's HTTP API (`Documentation/HTTP-API.md`), admitted the same way (`RealtimeHub.authenticateRequest`) and
    /// with its body read the same way (`RealtimeEvent(request:)`).
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
            // Read exactly as the Hummingbird host's API reads it (RealtimeCore's `RequestFields`): the same fields,
            // the same refusals, e.g. a `userId` or `scope` of the wrong type is refused, never dropped.
            let event: RealtimeEvent
            do throws(RequestFieldError) {
                event = try RealtimeEvent(request: RequestFields(object))
            } catch {
                return .error(.badRequest, error.code, error.message)
            }
            do throws(RealtimeError) {
                return .json(.accepted, try await hub.publish(event).json)
            } catch {
                // The Hummingbird host's answers: the hub's refusals are the client's to fix (400, 403, 429); only a
                // backend's failure is a 503.
                let answer = error.httpAnswer
                return .error(HTTPResponseStatus(statusCode: answer.status), answer.code, answer.message)
            }
        }
    }
}
