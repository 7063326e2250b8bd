// SPDX-License-Identifier: Apache-2.0

import Foundation

/// One message from the hub (`Documentation/Protocol.md`, "Server → client"), and the line `listen` prints for it.
struct Received {
    let type: String
    let id: String?
    let line: String

    init?(_ text: String) {
        guard let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let type = object["type"] as? String
        else { return nil }
        let payload = object["payload"] as? [String: Any] ?? [:]
        func field(_ name: String) -> String { payload[name].map { "\($0)" } ?? "-" }
        self.type = type
        self.id = object["id"] as? String
        switch type {
        case "event":
            var line = "event \(field("type"))"
            if let user = payload["userId"] as? String { line += " user=\(user)" }
            if let session = payload["sessionId"] as? String { line += " session=\(session)" }
            line += " id=\(field("id")) at \(field("timestamp")) data=\(Output.json(payload["data"] ?? [:]))"
            self.line = line
        case "notification":
            self.line = "notification \(field("level")) \"\(field("title"))\": \(field("message"))"
        case "connected":
            self.line =
                "connected: user \(field("userId")) on \(field("endpoint")) (connection \(field("connectionId")), "
                + "server \(field("serverId")), heartbeat \(field("heartbeatIntervalMs")) ms)"
        case "subscribed", "unsubscribed", "subscriptions":
            let patterns = (payload["subscriptions"] ?? payload["eventTypes"]) as? [String] ?? []
            self.line = "\(type): \(patterns.joined(separator: " "))"
        case "error":
            self.line = "error \(field("code")): \(field("message"))"
        case "reconnect":
            self.line = "reconnect: \(field("reason")) (retry after \(field("retryAfterMs")) ms)"
        case "gap":
            self.line = "gap: events from \(field("from")) to \(field("to")) may be missing (\(field("reason")))"
        default:
            self.line = "\(type): \(Output.json(payload))"
        }
    }
}

/// How `listen` prints: one line per message on standard output, problems on standard error, both unbuffered so
/// a pipe or a file sees each line at once.
enum Output {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func error(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }

    /// Compact JSON with sorted keys, for the `data` of an event and payloads printed whole.
    static func json(_ value: Any) -> String {
        guard JSONSerialization.isValidJSONObject(value),
            let data = try? JSONSerialization.data(
                withJSONObject: value,
                options: [.sortedKeys, .withoutEscapingSlashes]
            )
        else { return "\(value)" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A JSON string literal.
    static func quoted(_ string: String) -> String { json([string]).dropFirst().dropLast().description }

    /// The hub's JSON error body (`{"error":{"code":…,"message":…}}`) as `code: message`, or the body itself.
    static func describeError(_ body: String) -> String {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
            let error = object["error"] as? [String: Any], let code = error["code"] as? String
        else { return body.isEmpty ? "(no body)" : String(body.prefix(300)) }
        return "\(code): \(error["message"] as? String ?? "")"
    }

    /// A close code with its meaning in the hub's protocol (`Documentation/Protocol.md`, "Close codes").
    static func describeClose(_ code: Int?, _ reason: String) -> String {
        guard let code else { return "no close code" }
        let meanings = [
            1000: "normal", 1001: "going away: server shutting down or idle timeout", 1002: "protocol error",
            1007: "invalid UTF-8", 1008: "too many invalid messages", 1009: "message too big",
            1011: "internal error", 4001: "authentication failed", 4002: "token expired",
            4008: "rate limit exceeded", 4009: "session revoked", 4010: "slow consumer",
            4011: "disconnected by an operator",
        ]
        let meaning = meanings[code].map { " (\($0))" } ?? ""
        return "\(code)\(meaning)" + (reason.isEmpty ? "" : " \"\(reason)\"")
    }
}
