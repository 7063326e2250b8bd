/// A list of optional text fields packed into one Redis string value: each field is `<utf8 length>:<bytes>`, an
/// absent one is `-`. Binary-safe for any text (a user id may hold `:` or newlines), decoded without guessing.
///
/// `RedisConnectionStore` keeps a connection's record as one hash field in its user's hash, and the members of its
/// server and session sets as (id, user, session) lists, so a member says which user's hash holds the record.
enum RedisFieldList {
    static func encode(_ fields: [String?]) -> String {
        var out = ""
        for field in fields {
            if let field {
                out += String(field.utf8.count)
                out += ":"
                out += field
            } else {
                out += "-"
            }
        }
        return out
    }

    /// The fields of `text`, or `nil` when it is not an encoded list.
    static func decode(_ text: String) -> [String?]? {
        let bytes = Array(text.utf8)
        var fields: [String?] = []
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "-") {
                fields.append(nil)
                index += 1
                continue
            }
            var length = 0
            var digits = 0
            while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                length = length * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                index += 1
                digits += 1
                guard digits <= 9 else { return nil }
            }
            guard digits > 0, index < bytes.count, bytes[index] == UInt8(ascii: ":"),
                length <= bytes.count - index - 1
            else { return nil }
            index += 1
            fields.append(String(decoding: bytes[index..<(index + length)], as: UTF8.self))
            index += length
        }
        return fields
    }
}
