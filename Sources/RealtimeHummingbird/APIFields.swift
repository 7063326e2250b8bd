// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import RealtimeCore

/// Typed access to the fields of a JSON request body: `RequestFields` (RealtimeCore, shared with every host), its
/// refusals as `400` answers.
struct Fields: Sendable {
    let fields: RequestFields
    var object: JSONObject { fields.object }

    init(object: JSONObject) { fields = RequestFields(object) }

    func string(_ name: String, required: Bool = false) throws(APIError) -> String? {
        try answering { () throws(RequestFieldError) in try fields.string(name, required: required) }
    }

    func int(_ name: String, required: Bool = false) throws(APIError) -> Int64? {
        try answering { () throws(RequestFieldError) in try fields.int(name, required: required) }
    }

    /// The string field `name` as a user or session id (``identifier(_:_:code:)``).
    func identifier(_ name: String, required: Bool = false) throws(APIError) -> String? {
        try answering { () throws(RequestFieldError) in try fields.identifier(name, required: required) }
    }

    func object(_ name: String) throws(APIError) -> JSONObject? {
        try answering { () throws(RequestFieldError) in try fields.object(name) }
    }
}

/// `body`'s value, or its refusal as a `400` answer.
func answering<Value>(_ body: () throws(RequestFieldError) -> Value) throws(APIError) -> Value {
    do {
        return try body()
    } catch {
        throw APIError(status: .badRequest, code: error.code, message: error.message)
    }
}

/// `value` as a user or session id (`IdentifierPolicy`: 1 to 256 bytes, no control characters, Unicode NFC), else
/// `400` with `code` (`invalid_field`; the listings answer for their query and path parameters with
/// `invalid_parameter`) naming `name`.
func identifier(_ value: String, _ name: String, code: String = "invalid_field") throws(APIError) -> String {
    try answering { () throws(RequestFieldError) in try RequestFields.identifier(value, named: name, code: code) }
}

/// The query parameters of an API request, read strictly: a value is percent-decoded (`+` stays `+`, as
/// Hummingbird reads it), and a malformed escape, a value that is not UTF-8 or a parameter given twice is
/// `400 invalid_parameter` naming it, instead of a value taken literally or the first of two.
struct APIQuery: Sendable {
    private let pairs: [(name: Substring, value: Substring)]

    init(_ query: String?) {
        pairs = (query ?? "").split(separator: "&").map { pair in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (parts[0], parts.count == 2 ? parts[1] : "")
        }
    }

    /// The decoded value of `name`; `nil` when the request does not name it.
    func value(_ name: String) throws(APIError) -> String? {
        let values = pairs.filter { $0.name == name }
        guard let raw = values.first?.value else { return nil }
        guard values.count == 1 else {
            throw APIError(status: .badRequest, code: "invalid_parameter", message: "\(name) is given more than once")
        }
        guard let decoded = percentDecoded(String(raw)) else {
            throw APIError(
                status: .badRequest,
                code: "invalid_parameter",
                message: "\(name) is not valid percent-encoded UTF-8"
            )
        }
        return decoded
    }
}
