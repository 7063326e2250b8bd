/// The identifier of one WebSocket connection, unique across the cluster.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    /// A new random identifier, `conn_` followed by 24 hex digits (96 random bits).
    public static func random() -> ConnectionID { ConnectionID("conn_" + RandomID.hex(bytes: 12)) }
}

/// The identifier of one server (hub instance) in the cluster.
public struct ServerID: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { rawValue }

    /// A new random identifier, `srv_` followed by 16 hex digits.
    public static func random() -> ServerID { ServerID("srv_" + RandomID.hex(bytes: 8)) }
}

/// Random identifiers from the system's cryptographically secure generator.
public enum RandomID: Sendable {
    /// `bytes` random bytes as lower-case hex.
    public static func hex(bytes count: Int) -> String {
        hex(bytes: count, after: "")
    }

    /// `prefix` followed by `count` random bytes as lower-case hex, written into one string.
    private static func hex(bytes count: Int, after prefix: StaticString) -> String {
        let digits: StaticString = "0123456789abcdef"
        let length = prefix.utf8CodeUnitCount + 2 * max(0, count)
        return String(unsafeUninitializedCapacity: length) { out in
            var generator = SystemRandomNumberGenerator()
            var position = 0
            for index in 0..<prefix.utf8CodeUnitCount {
                out[position] = prefix.utf8Start[index]
                position += 1
            }
            var remaining = count
            while remaining > 0 {
                var word = generator.next() as UInt64
                for _ in 0..<min(8, remaining) {
                    out[position] = digits.utf8Start[Int(word & 0xF)]
                    out[position + 1] = digits.utf8Start[Int((word >> 4) & 0xF)]
                    position += 2
                    word >>= 8
                }
                remaining -= 8
            }
            return position
        }
    }

    /// A new event identifier, `evt_` followed by 24 hex digits.
    public static func event() -> String { hex(bytes: 12, after: "evt_") }
}
