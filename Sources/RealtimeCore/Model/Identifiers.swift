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
        var generator = SystemRandomNumberGenerator()
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(count * 2)
        var remaining = count
        while remaining > 0 {
            var word = generator.next() as UInt64
            for _ in 0..<min(8, remaining) {
                out.append(digits[Int(word & 0xF)])
                out.append(digits[Int((word >> 4) & 0xF)])
                word >>= 8
            }
            remaining -= 8
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// A new event identifier, `evt_` followed by 24 hex digits.
    public static func event() -> String { "evt_" + hex(bytes: 12) }
}
