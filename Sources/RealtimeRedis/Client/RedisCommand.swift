/// A Redis command: its name and arguments, each a binary-safe string.
///
/// ```swift
/// let reply = try await client.send(RedisCommand("SET", "greeting", "hello"))
/// ```
public struct RedisCommand: Sendable, Hashable {
    /// The arguments back to back (hiredis's formatter takes them as one buffer plus lengths).
    private(set) var storage: [UInt8]
    private(set) var lengths: [UInt]

    /// A command from text arguments, the first being the command name.
    public init(_ name: String, _ arguments: String...) {
        self.init(reservingBytes: name.utf8.count + Self.byteCount(arguments), arguments: 1 + arguments.count)
        append(name)
        for argument in arguments { append(argument) }
    }

    /// A command from text arguments, the first being the command name.
    public init(_ arguments: [String]) {
        precondition(!arguments.isEmpty, "a Redis command needs a name")
        self.init(reservingBytes: Self.byteCount(arguments), arguments: arguments.count)
        for argument in arguments { append(argument) }
    }

    /// An empty command with room for its arguments, so that appending them allocates each array once.
    private init(reservingBytes bytes: Int, arguments: Int) {
        storage = []
        storage.reserveCapacity(bytes)
        lengths = []
        lengths.reserveCapacity(arguments)
    }

    private static func byteCount(_ arguments: [String]) -> Int {
        arguments.reduce(0) { $0 + $1.utf8.count }
    }

    /// Appends a text argument.
    public mutating func append(_ argument: String) {
        let before = storage.count
        storage.append(contentsOf: argument.utf8)
        lengths.append(UInt(storage.count - before))
    }

    /// Appends a binary argument.
    public mutating func append(bytes argument: some Collection<UInt8>) {
        storage.append(contentsOf: argument)
        lengths.append(UInt(argument.count))
    }

    /// Appends an integer argument.
    public mutating func append(_ argument: Int64) { append(String(argument)) }

    /// The number of arguments including the name.
    public var count: Int { lengths.count }

    /// The command name, upper-cased.
    public var name: String {
        String(decoding: storage.prefix(Int(lengths[0])), as: UTF8.self).uppercased()
    }
}
