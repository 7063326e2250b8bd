public import NIOCore

/// A Redis reply (RESP2, which is what Redis speaks to hiredis 0.14).
///
/// hiredis's reader parses the bytes; every reply tree is converted into this enum at once and the C objects are
/// freed, so no C type outlives the read path.
public enum RESPValue: Sendable, Hashable {
    /// A status reply such as `+OK`.
    case simpleString(String)
    /// An error reply such as `-ERR unknown command`.
    case error(String)
    case integer(Int64)
    /// A bulk string (binary-safe): its bytes are the buffer's readable bytes.
    ///
    /// The buffer is a slice of one buffer shared by the replies that arrived in the same read (no copy per reply);
    /// keeping it keeps that buffer. ``bytes`` and ``string`` copy it out.
    case bulkString(ByteBuffer)
    /// A null bulk string or a null array.
    case null
    case array([RESPValue])

    /// The value as text: a simple or bulk string (bulk strings decoded as UTF-8) or an integer.
    public var string: String? {
        switch self {
        case .simpleString(let text): return text
        case .bulkString(let buffer): return String(buffer: buffer)
        case .integer(let value): return String(value)
        case .error, .null, .array: return nil
        }
    }

    /// The value as an integer: an integer reply or a string holding a decimal integer.
    public var int: Int64? {
        switch self {
        case .integer(let value): return value
        case .simpleString, .bulkString: return string.flatMap { Int64($0) }
        case .error, .null, .array: return nil
        }
    }

    /// The elements of an array reply.
    public var array: [RESPValue]? {
        if case .array(let elements) = self { return elements }
        return nil
    }

    /// The bytes of a bulk or simple string (a copy).
    public var bytes: [UInt8]? {
        switch self {
        case .bulkString(let buffer): return Array(buffer.readableBytesView)
        case .simpleString(let text): return Array(text.utf8)
        case .error, .integer, .null, .array: return nil
        }
    }

    /// The bytes of a bulk string, without a copy.
    public var buffer: ByteBuffer? {
        if case .bulkString(let buffer) = self { return buffer }
        return nil
    }

    /// Whether this is the null reply.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}
