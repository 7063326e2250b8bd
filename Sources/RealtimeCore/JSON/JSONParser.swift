/// Why a JSON text was refused by ``JSONParser``.
public struct JSONParseError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong.
    public enum Kind: String, Sendable, Hashable {
        case tooLarge = "too_large"
        case tooDeep = "too_deep"
        case invalidSyntax = "invalid_syntax"
        case invalidUTF8 = "invalid_utf8"
        case duplicateKey = "duplicate_key"
        case invalidNumber = "invalid_number"
        case invalidString = "invalid_string"
        case trailingData = "trailing_data"
    }

    /// What went wrong.
    public var kind: Kind
    /// Byte offset in the input where the problem was found.
    public var offset: Int

    public init(_ kind: Kind, offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String { "JSON \(kind.rawValue) at byte \(offset)" }
}

/// A strict, bounded JSON parser (RFC 8259).
///
/// It refuses anything RFC 8259 does not allow (comments, trailing commas, leading zeros, unescaped control
/// characters, invalid UTF-8, lone surrogates), inputs over ``Limits/maxBytes``, nesting deeper than
/// ``Limits/maxDepth`` (so a "JSON bomb" of nested arrays cannot exhaust the stack) and, when asked, objects
/// with a repeated member name (which token verifiers must refuse: two `exp` claims are an attack).
public struct JSONParser: Sendable {
    /// Bounds on what the parser accepts.
    public struct Limits: Sendable, Hashable {
        /// The largest input, in bytes.
        public var maxBytes: Int
        /// The deepest nesting of arrays and objects.
        public var maxDepth: Int
        /// Refuse objects that name a member twice.
        public var rejectDuplicateKeys: Bool

        public init(maxBytes: Int = 1 << 20, maxDepth: Int = 32, rejectDuplicateKeys: Bool = true) {
            self.maxBytes = maxBytes
            self.maxDepth = maxDepth
            self.rejectDuplicateKeys = rejectDuplicateKeys
        }
    }

    public var limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Parses one JSON text.
    public func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        var text = text
        return try text.withUTF8 { buffer in Result { () throws(JSONParseError) in try self.parse(bytes: buffer) } }
            .get()
    }

    /// Parses one JSON text from UTF-8 bytes.
    public func parse(_ bytes: some Collection<UInt8>) throws(JSONParseError) -> JSONValue {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(JSONParseError) in try self.parse(bytes: buffer) }
        }
        if let result { return try result.get() }
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONParseError) in try self.parse(bytes: buffer) }
        }.get()
    }

    /// Parses one JSON text from contiguous UTF-8 bytes (without the generic entry point's dispatch).
    package func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        try parse(bytes: bytes)
    }

    /// Parses one JSON text exactly as ``parse(_:)-(UnsafeBufferPointer<UInt8>)`` does (same limits, same
    /// refusals, same duplicate check), but returns a top-level object as its members in document order instead
    /// of a ``JSONObject``, so a caller that reads a few members and hashes none (a token verifier) skips
    /// building the dictionary. `nil` when the text is valid JSON but not an object.
    package func parseObjectMembers(
        _ bytes: UnsafeBufferPointer<UInt8>
    ) throws(JSONParseError) -> [JSONMember]? {
        guard bytes.count <= limits.maxBytes else { throw JSONParseError(.tooLarge, offset: limits.maxBytes) }
        var reader = Reader(bytes: bytes, limits: limits)
        reader.skipWhitespace()
        var result: [JSONMember]?
        if reader.peek() == UInt8(ascii: "{") {
            _ = try reader.parseMembers(depth: 1)  // base 0: the top-level object's members are all of them
            result = reader.members
        } else {
            _ = try reader.parseValue(depth: 0)
        }
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw JSONParseError(.trailingData, offset: reader.index) }
        return result
    }

    private func parse(bytes: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> JSONValue {
        guard bytes.count <= limits.maxBytes else { throw JSONParseError(.tooLarge, offset: limits.maxBytes) }
        var reader = Reader(bytes: bytes, limits: limits)
        reader.skipWhitespace()
        let value = try reader.parseValue(depth: 0)
        reader.skipWhitespace()
        guard reader.index == bytes.count else { throw JSONParseError(.trailingData, offset: reader.index) }
        return value
    }
}

/// A member of a JSON object: its name and value.
package struct JSONMember: Sendable {
    package var key: String
    package var value: JSONValue
    /// ``fingerprint(of:)`` of `key`, computed from the bytes while parsing.
    package var fingerprint: UInt64

    package init(key: String, value: JSONValue) {
        self.init(key: key, value: value, fingerprint: Self.fingerprint(of: key))
    }

    init(key: String, value: JSONValue, fingerprint: UInt64) {
        self.key = key
        self.value = value
        self.fingerprint = fingerprint
    }

    /// A hash of an ASCII name's bytes (FNV-1a, never 0), or 0 for a name with other characters. Two ASCII
    /// names with different fingerprints differ; otherwise (equal fingerprints, or a 0) only `==` decides,
    /// because Swift compares strings by canonical equivalence ("\u{212A}" == "K").
    package static func fingerprint(of name: String) -> UInt64 {
        if let hash = name.utf8.withContiguousStorageIfAvailable({ fingerprint(ofBytes: $0) }) { return hash }
        return fingerprint(ofBytes: Array(name.utf8))
    }

    static func fingerprint(ofBytes bytes: some Collection<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes {
            guard byte < 0x80 else { return 0 }
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        return hash | 1
    }
}

extension [JSONMember] {
    /// The index of the member named `name` whose ``JSONMember/fingerprint(of:)`` is `fingerprint`, searching
    /// from `start`, or `nil`.
    @inline(__always)
    func index(ofKey name: String, fingerprint: UInt64, from start: Int) -> Int? {
        withUnsafeBufferPointer { buffer -> Int? in
            var position = start
            while position < buffer.count {
                let other = buffer[position].fingerprint
                if other == fingerprint || other == 0 || fingerprint == 0, buffer[position].key == name {
                    return position
                }
                position += 1
            }
            return nil
        }
    }

    /// The value of the member named `name` (the first, if an object with duplicates was allowed), or `nil`.
    package func value(forKey name: String) -> JSONValue? {
        index(ofKey: name, fingerprint: JSONMember.fingerprint(of: name), from: 0).map { self[$0].value }
    }

    /// The members as a ``JSONObject`` of exactly their count (for a repeated name the last one wins).
    package var object: JSONObject {
        var object = JSONObject(minimumCapacity: count)
        for member in self { object[member.key] = member.value }
        return object
    }
}

private struct Reader {
    let bytes: UnsafeBufferPointer<UInt8>
    let limits: JSONParser.Limits
    var index = 0
    /// The members of the objects being parsed, innermost last: an object's members are collected here and
    /// moved into a dictionary of exactly their count when it closes (no rehashing while it grows), and one
    /// buffer serves every object of the text.
    var members: [JSONMember] = []

    init(bytes: UnsafeBufferPointer<UInt8>, limits: JSONParser.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    @inline(__always)
    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    @inline(__always)
    func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSONValue {
        guard let byte = peek() else { throw JSONParseError(.invalidSyntax, offset: index) }
        switch byte {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw JSONParseError(.invalidSyntax, offset: index)
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw JSONParseError(.invalidSyntax, offset: index) }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw JSONParseError(.invalidSyntax, offset: index + offset)
        }
        index += count
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSONValue {
        let base = try parseMembers(depth: depth)
        var object = JSONObject(minimumCapacity: members.count - base)
        // Duplicates were refused while parsing (when asked); otherwise the last one wins, as before.
        for position in base..<members.count { object[members[position].key] = members[position].value }
        members.removeSubrange(base...)
        return .object(object)
    }

    /// Parses an object and leaves its members on `members` from the returned index on.
    mutating func parseMembers(depth: Int) throws(JSONParseError) -> Int {
        guard depth <= limits.maxDepth else { throw JSONParseError(.tooDeep, offset: index) }
        index += 1  // {
        let base = members.count
        skipWhitespace()
        if peek() == UInt8(ascii: "}") {
            index += 1
            return base
        }
        if members.capacity == 0 { members.reserveCapacity(16) }
        // Names seen so far, once the object is too large for a linear duplicate search.
        var seen: Set<String>?
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw JSONParseError(.invalidSyntax, offset: index) }
            let keyOffset = index
            let (key, fingerprint) = try parseKey()
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw JSONParseError(.invalidSyntax, offset: index) }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            if limits.rejectDuplicateKeys {
                // Checked after the value, as a dictionary insert would be, so errors keep their precedence.
                if seen == nil, members.count - base < 16 {
                    if members.index(ofKey: key, fingerprint: fingerprint, from: base) != nil {
                        throw JSONParseError(.duplicateKey, offset: keyOffset)
                    }
                } else {
                    if seen == nil { seen = Set(members[base...].lazy.map(\.key)) }
                    guard seen!.insert(key).inserted else { throw JSONParseError(.duplicateKey, offset: keyOffset) }
                }
            }
            members.append(JSONMember(key: key, value: value, fingerprint: fingerprint))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "}"):
                index += 1
                return base
            default: throw JSONParseError(.invalidSyntax, offset: index)
            }
        }
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSONValue {
        guard depth <= limits.maxDepth else { throw JSONParseError(.tooDeep, offset: index) }
        index += 1  // [
        var array: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
            return .array(array)
        }
        while true {
            skipWhitespace()
            array.append(try parseValue(depth: depth))
            skipWhitespace()
            switch peek() {
            case UInt8(ascii: ","): index += 1
            case UInt8(ascii: "]"):
                index += 1
                return .array(array)
            default: throw JSONParseError(.invalidSyntax, offset: index)
            }
        }
    }

    mutating func parseNumber() throws(JSONParseError) -> JSONValue {
        let start = index
        var isInteger = true
        if peek() == UInt8(ascii: "-") { index += 1 }
        guard let first = peek(), first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw JSONParseError(.invalidNumber, offset: index)
        }
        if first == UInt8(ascii: "0") {
            index += 1
            if let next = peek(), next >= UInt8(ascii: "0"), next <= UInt8(ascii: "9") {
                throw JSONParseError(.invalidNumber, offset: index)
            }
        } else {
            skipDigits()
        }
        if peek() == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard skipDigits() > 0 else { throw JSONParseError(.invalidNumber, offset: index) }
        }
        if let e = peek(), e == UInt8(ascii: "e") || e == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if let sign = peek(), sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") { index += 1 }
            guard skipDigits() > 0 else { throw JSONParseError(.invalidNumber, offset: index) }
        }
        if isInteger, let value = integer(from: start) { return .int(value) }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        // A number too large for a double (`1e999`) is refused rather than kept as infinity, which JSON cannot
        // write (it would be sent on as `null`).
        guard let value = Double(text), value.isFinite else { throw JSONParseError(.invalidNumber, offset: start) }
        return .double(value)
    }

    /// The integer spelled by the already validated bytes `start..<index` (`-`? digits), or `nil` when it does
    /// not fit in 64 bits (it is then a double, as before). Reads the digits directly: no string is built.
    func integer(from start: Int) -> Int64? {
        var position = start
        let negative = bytes[position] == UInt8(ascii: "-")
        if negative { position += 1 }
        guard index - position <= 19 else { return nil }  // 20 digits or more never fit
        var magnitude: UInt64 = 0
        while position < index {
            magnitude = magnitude &* 10 &+ UInt64(bytes[position] &- UInt8(ascii: "0"))
            position += 1
        }
        // 19 digits are below 10^19 < 2^64, so `magnitude` did not wrap.
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? .min : -Int64(magnitude)
        }
        guard magnitude <= UInt64(Int64.max) else { return nil }
        return Int64(magnitude)
    }

    @discardableResult
    mutating func skipDigits() -> Int {
        let start = index
        while let byte = peek(), byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
        return index - start
    }

    /// A member name and its ``JSONMember/fingerprint(of:)``, hashed from the bytes when they need no
    /// unescaping and are ASCII.
    mutating func parseKey() throws(JSONParseError) -> (String, UInt64) {
        let start = index + 1
        let key = try parseString()
        // An unescaped ASCII name spans exactly its bytes, quotes excluded.
        let end = index - 1
        guard end - start == key.utf8.count, bytes[end] == UInt8(ascii: "\"") else {
            return (key, JSONMember.fingerprint(of: key))
        }
        return (key, JSONMember.fingerprint(ofBytes: UnsafeBufferPointer(rebasing: bytes[start..<end])))
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes, ASCII or valid UTF-8 up to the closing quote. One pass, three comparisons per
        // byte; the high bits of all bytes are ORed to tell ASCII.
        var high: UInt8 = 0
        let count = bytes.count
        var position = index
        while position < count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") || byte < 0x20 { break }
            high |= byte
            position += 1
        }
        index = position
        guard index < count else { throw JSONParseError(.invalidString, offset: index) }
        let stop = bytes[index]
        if stop < 0x20 { throw JSONParseError(.invalidString, offset: index) }
        let sawEscape = stop == UInt8(ascii: "\\")
        let sawNonASCII = high >= 0x80
        if !sawEscape {
            let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
            index += 1
            if sawNonASCII {
                guard let string = String(validating: slice, as: UTF8.self) else {
                    throw JSONParseError(.invalidUTF8, offset: start)
                }
                return string
            }
            // ASCII needs no validation; a short one becomes a small string with one copy (the initializer
            // below checks the ASCII bits of the small string instead of validating).
            if slice.count <= 15 {
                return String(unsafeUninitializedCapacity: slice.count) { buffer in
                    _ = buffer.initialize(from: slice)
                    return slice.count
                }
            }
            return String(decoding: slice, as: UTF8.self)
        }
        // Slow path with escapes.
        var out = [UInt8](UnsafeBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let string = String(validating: out, as: UTF8.self) else {
                    throw JSONParseError(.invalidUTF8, offset: start)
                }
                return string
            case UInt8(ascii: "\\"):
                index += 1
                guard let escaped = peek() else { throw JSONParseError(.invalidString, offset: index) }
                index += 1
                switch escaped {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"): out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var scalar = try parseHex4()
                    if scalar >= 0xD800 && scalar <= 0xDBFF {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw JSONParseError(.invalidString, offset: index) }
                        index += 2
                        let low = try parseHex4()
                        guard low >= 0xDC00 && low <= 0xDFFF else {
                            throw JSONParseError(.invalidString, offset: index)
                        }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                        throw JSONParseError(.invalidString, offset: index)
                    }
                    guard let unicode = Unicode.Scalar(scalar) else {
                        throw JSONParseError(.invalidString, offset: index)
                    }
                    out.append(contentsOf: UTF8.encode(unicode)!)
                default: throw JSONParseError(.invalidString, offset: index - 1)
                }
            default:
                if byte < 0x20 { throw JSONParseError(.invalidString, offset: index) }
                out.append(byte)
                index += 1
            }
        }
        throw JSONParseError(.invalidString, offset: index)
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw JSONParseError(.invalidString, offset: index) }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw JSONParseError(.invalidString, offset: index)
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }
}
