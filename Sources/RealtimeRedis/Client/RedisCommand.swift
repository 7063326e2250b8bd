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
        self.init([name] + arguments)
    }

    /// A command from text arguments, the first being the command name.
    public init(_ arguments: [String]) {
        precondition(!arguments.isEmpty, "a Redis command needs a name")
        storage = []
        lengths = []
        lengths.reserveCapacity(arguments.count)
        for argument in arguments { append(argument) }
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
