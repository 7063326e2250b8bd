/// A request body refused for its content: a client error (HTTP `400`) with the HTTP API's error code and a message
/// that names the field (`Documentation/HTTP-API.md`).
public struct RequestFieldError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `missing_field`, `invalid_field`, `invalid_event_type` or `unknown_category` (or the `code` a caller passed to
    /// ``RequestFields/identifier(_:named:code:)``, e.g. `invalid_parameter` for a path or query parameter).
    public var code: String
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}

/// The fields of a JSON request body, read strictly: a field that is absent or `null` is `nil` (or
/// `missing_field` when required), a field of another type is `invalid_field` naming what it should be, never
/// dropped: a dropped `userId` or `scope` would send an event to another audience than its publisher meant.
///
/// Every host reads its HTTP API's bodies with it (the Hummingbird host's API, the Vapor example's publish route),
/// so that one request gets one answer whichever framework serves it.
public struct RequestFields: Sendable {
    public let object: JSONObject

    public init(_ object: JSONObject) { self.object = object }

    public func string(_ name: String, required: Bool = false) throws(RequestFieldError) -> String? {
        try field(name, required: required, "a string") { if case .string(let value) = $0 { value } else { nil } }
    }

    public func int(_ name: String, required: Bool = false) throws(RequestFieldError) -> Int64? {
        try field(name, required: required, "a whole number") { if case .int(let value) = $0 { value } else { nil } }
    }

    public func object(_ name: String) throws(RequestFieldError) -> JSONObject? {
        try field(name, required: false, "an object") { if case .object(let value) = $0 { value } else { nil } }
    }

    /// The string field `name` as a user or session id (``identifier(_:named:code:)``).
    public func identifier(_ name: String, required: Bool = false) throws(RequestFieldError) -> String? {
        guard let value = try string(name, required: required) else { return nil }
        return try Self.identifier(value, named: name)
    }

    /// `value` as a user or session id (``IdentifierPolicy``: 1 to 256 bytes, no control characters, Unicode NFC),
    /// else `code` (`invalid_field`; `invalid_parameter` for a path or query parameter) naming `name`.
    public static func identifier(
        _ value: String,
        named name: String,
        code: String = "invalid_field"
    ) throws(RequestFieldError) -> String {
        if let problem = IdentifierPolicy.problem(with: value) {
            throw RequestFieldError(code: code, message: "\(name) \(problem)")
        }
        return value
    }

    private func field<Value>(
        _ name: String,
        required: Bool,
        _ kind: String,
        _ extract: (JSONValue) -> Value?
    ) throws(RequestFieldError) -> Value? {
        switch object[name] {
        case nil, .null?:
            if required { throw RequestFieldError(code: "missing_field", message: "\(name) is required") }
            return nil
        case let value?:
            guard let extracted = extract(value) else {
                throw RequestFieldError(
                    code: "invalid_field",
                    message: "\(name) must be \(kind), not \(value.typeName)"
                )
            }
            return extracted
        }
    }
}

extension RealtimeEvent {
    /// The event categories a publish request may use: the catalogue's (`authentication`, `security`, `session`,
    /// `admin`, `system`, `presence`).
    public static let publishableCategories: Set<String> = Set(EventType.catalogue.map { String($0.category) })

    /// The event a publish request describes: the body of `POST /api/v1/events`, or one item of
    /// `POST /api/v1/events/batch` (`Documentation/HTTP-API.md`). `type` is required and of a publishable category;
    /// `userId`, `sessionId` (identifiers), `data` (an object), `scope` (`user`, which needs `userId`, `admins` or
    /// `everyone`) and `id` (1 to 128 bytes) are optional.
    public init(request fields: RequestFields) throws(RequestFieldError) {
        let typeName = try fields.string("type", required: true) ?? ""
        guard let type = EventType(validating: typeName) else {
            throw RequestFieldError(
                code: "invalid_event_type",
                message: "type must look like category.action[.detail]: 1 to 8 segments of a-z A-Z 0-9 _ - "
                    + "separated by dots, at most 200 bytes"
            )
        }
        let categories = Self.publishableCategories
        guard categories.contains(String(type.category)) else {
            throw RequestFieldError(
                code: "unknown_category",
                message: "unknown event category '\(type.category.prefix(64))'; known: "
                    + categories.sorted().joined(separator: ", ")
            )
        }
        let userID = try fields.identifier("userId")
        let sessionID = try fields.identifier("sessionId")
        let data = try fields.object("data") ?? [:]
        let scope: EventScope?
        switch try fields.string("scope") {
        case nil: scope = nil
        case "user":
            guard let userID else {
                throw RequestFieldError(code: "invalid_field", message: "scope 'user' needs userId")
            }
            scope = .user(userID)
        case "admins": scope = .admins
        case "everyone": scope = .everyone
        case let other?:
            throw RequestFieldError(
                code: "invalid_field",
                message: "scope must be user, admins or everyone, not '\(other.prefix(32))'"
            )
        }
        self.init(type: type, userID: userID, sessionID: sessionID, data: data, scope: scope)
        if let id = try fields.string("id") {
            guard !id.isEmpty, id.utf8.count <= 128 else {
                throw RequestFieldError(code: "invalid_field", message: "id must be 1 to 128 bytes")
            }
            self.id = id
        }
    }
}

extension RealtimeError {
    /// How an HTTP API answers this refusal of a hub operation it called (`Documentation/HTTP-API.md`): the status
    /// and the error code. The hub's refusals are the client's to fix (`400`, `403`, `404`, `409`, `429`); a backend
    /// that failed or a server shutting down is `503`; anything else is `500 internal_error`, with a message that
    /// reveals nothing.
    public var httpAnswer: (status: Int, code: String, message: String) {
        switch code {
        case .invalidArgument: (400, "invalid_argument", message)
        case .userRequired: (400, "user_required", message)
        case .forbidden: (403, "forbidden", message)
        case .notFound: (404, "not_found", message)
        case .conflict: (409, "conflict", message)
        case .limitExceeded: (429, "limit_exceeded", message)
        case .backendUnavailable, .timeout, .shutDown: (503, code.rawValue, message)
        default: (500, "internal_error", "the request failed")
        }
    }
}

extension PublishReceipt {
    /// The receipt as the HTTP API answers a publish: `id`, `localDeliveries`, `publishedToCluster` and, for a
    /// notification to a user, `offline` (`{"kept": true, "queued": n}` or `{"kept": false, "reason": …}`).
    public var json: JSONValue {
        var object: JSONObject = [
            "id": .string(id),
            "localDeliveries": .int(Int64(localDeliveries)),
            "publishedToCluster": .bool(publishedToCluster),
        ]
        switch offline {
        case .kept(let queued)?: object["offline"] = ["kept": true, "queued": .int(Int64(queued))]
        case .notKept(let reason)?: object["offline"] = ["kept": false, "reason": .string(reason)]
        case nil: break
        }
        return .object(object)
    }
}
