// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import RealtimeCore

/// The audit trail of the HTTP API: every request the authentication middleware admitted is recorded with
/// ``RealtimeCore/RealtimeHub/audit(_:)`` once it is answered: a log line, and for every request but a `GET` an
/// `admin.action.<action>` event to administrators (reads are logged only: the admin console polls them). The actor
/// is the token's `sub`; the token itself is never recorded.
struct APIAudit: Sendable {
    let hub: RealtimeHub

    /// Records one answered request.
    ///
    /// - Parameters:
    ///   - action: the route's action (`publish_event`, `revoke_user`, …).
    ///   - target: what the request acted on, as far as it was read before the answer (`user:alice`).
    ///   - status: the answer's status; 4xx and 5xx are failures with `errorCode`.
    func record<Context: RealtimeIdentityRequestContext>(
        _ request: Request,
        _ context: Context,
        action: String,
        target: String?,
        status: HTTPResponse.Status,
        errorCode: String?
    ) async {
        guard let identity = context.verifiedIdentity else { return }
        let peer = (context as? any RemoteAddressRequestContext)?.remoteAddress?.ipAddress ?? ""
        let headers = request.headers.map { (name: $0.name.rawName, value: $0.value) }
        let address = hub.configuration.clientAddress.resolve(peer: peer, headers: headers)?.description ?? peer
        await hub.audit(
            AuditRecord(
                actor: identity.userID,
                action: action,
                target: target,
                outcome: status.code < 400 ? .success : .failure(code: errorCode ?? "http_\(status.code)"),
                clientAddress: address.isEmpty ? nil : address,
                channel: .http,
                details: [
                    "method": .string(request.method.rawValue), "path": .string(String(request.uri.path.prefix(256))),
                    "status": .int(Int64(status.code)),
                ],
                announce: request.method != .get
            )
        )
    }
}
