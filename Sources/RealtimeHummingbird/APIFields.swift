// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import RealtimeCore

/// Typed access to the fields of a JSON request body.
struct Fields: Sendable {
    let object: JSONObject

    func string(_ name: String, required: Bool = false) throws(APIError) -> String? {
        try field(name, required: required, "a string") { if case .string(let value) = $0 { value } else { nil } }
    }

    func int(_ name: String, required: Bool = false) throws(APIError) -> Int64? {
        try field(name, required: required, "a whole number") { if case .int(let value) = $0 { value } else { nil } }
    }

    /// The string field `name` as a user or session id (``identifier(_:_:code:)``).
    func identifier(_ name: String, required: Bool = false) throws(APIError) -> String? {
        try string(name, required: required).map { (value) throws(APIError) in
            try RealtimeHummingbird.identifier(value, name)
        }
    }

    func object(_ name: String) throws(APIError) -> JSONObject? {
        try field(name, required: false, "an object") { if case .object(let value) = $0 { value } else { nil } }
    }

    /// The field `name` as `extract` reads it: `nil` when absent or `null` (`400 missing_field` if `required`),
    /// `400 invalid_field` when it is not `kind`.
    private func field<Value>(
        _ name: String,
        required: Bool,
        _ kind: String,
        _ extract: (JSONValue) -> Value?
    ) throws(APIError) -> Value? {
        switch object[name] {
        case nil, .null?:
            if required {
                throw APIError(status: .badRequest, code: "missing_field", message: "\(name) is required")
            }
            return nil
        case let value?:
            guard let extracted = extract(value) else {
                throw APIError(
                    status: .badRequest,
                    code: "invalid_field",
                    message: "\(name) must be \(kind), not \(value.typeName)"
                )
            }
            return extracted
        }
    }
}

/// `value` as a user or session id (`IdentifierPolicy`: 1 to 256 bytes, no control characters, Unicode NFC), else
/// `400` with `code` (`invalid_field`; the listings answer for their query and path parameters with
/// `invalid_parameter`) naming `name`.
func identifier(_ value: String, _ name: String, code: String = "invalid_field") throws(APIError) -> String {
    if let problem = IdentifierPolicy.problem(with: value) {
        throw APIError(status: .badRequest, code: code, message: "\(name) \(problem)")
    }
    return value
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
