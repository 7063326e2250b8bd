public import RealtimeCore

/// A Redis node's address.
public struct RedisNodeAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Reads `host:port` (`[v6]:port` for an IPv6 address).
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` for anything else.
    public init(parsing text: some StringProtocol) throws(RealtimeError) {
        let text = String(text).trimmingWhitespace
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw RealtimeError(.invalidConfiguration, "the Redis node \"\(text)\" is not [address]:port")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw RealtimeError(.invalidConfiguration, "the Redis node \"\(text)\" is not host:port")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (1...65535).contains(port) else {
            throw RealtimeError(.invalidConfiguration, "the Redis node \"\(text)\" has an invalid port")
        }
        if host.isEmpty { throw RealtimeError(.invalidConfiguration, "the Redis node \"\(text)\" has no host") }
        host = host.hasPrefix("[") ? host.dropFirst() : host
        self.init(host: String(host), port: port)
    }

    /// Reads a comma-separated list of `host:port` (`REDIS_CLUSTER_NODES`); `redis://`/`rediss://` prefixes are
    /// accepted on each entry.
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` for an empty list or a bad entry.
    public static func list(parsing text: String) throws(RealtimeError) -> [RedisNodeAddress] {
        try seeds(parsing: text).nodes
    }

    /// Reads the list like ``list(parsing:)`` and says whether its entries ask for TLS: `true` when they say
    /// `rediss://`, `false` when they say `redis://`, nil when none names a scheme (bare entries follow the others).
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` for an empty list, a bad entry, credentials in an entry,
    ///   or a list that mixes `redis://` and `rediss://` (TLS is for every node or none).
    package static func seeds(parsing text: String) throws(RealtimeError) -> (nodes: [RedisNodeAddress], tls: Bool?) {
        var nodes: [RedisNodeAddress] = []
        var tls: Bool?
        for entry in text.split(separator: ",", omittingEmptySubsequences: false) {
            var entry = Substring(String(entry).trimmingWhitespace)
            for (scheme, secure) in [("redis://", false), ("rediss://", true)] where entry.hasPrefix(scheme) {
                entry = entry.dropFirst(scheme.count)
                guard tls == nil || tls == secure else {
                    throw RealtimeError(
                        .invalidConfiguration,
                        "the Redis cluster node list mixes redis:// and rediss:// entries: TLS is for every node or none"
                    )
                }
                tls = secure
            }
            if entry.hasSuffix("/") { entry = entry.dropLast() }
            guard !entry.isEmpty else {
                throw RealtimeError(.invalidConfiguration, "the Redis cluster node list \"\(text)\" has an empty entry")
            }
            guard !entry.contains("@") else {
                // Never echo the entry: it holds a password.
                throw RealtimeError(
                    .invalidConfiguration,
                    "a Redis cluster node entry holds credentials (user:password@): give them in the Redis URL "
                        + "(REDIS_URL), which every node shares"
                )
            }
            nodes.append(try RedisNodeAddress(parsing: entry))
        }
        return (nodes, tls)
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}

/// Which primary serves each of the 16,384 slots: a value built from `CLUSTER SLOTS`, patched by `MOVED`.
package struct RedisClusterTopology: Sendable, Hashable {
    /// The primaries, in the order `CLUSTER SLOTS` listed them first.
    package private(set) var primaries: [RedisNodeAddress]
    /// For each slot, the index in ``primaries`` of its owner, or -1 when no node serves it.
    private var owners: [Int16]

    package init(primaries: [RedisNodeAddress] = [], owners: [Int16]? = nil) {
        self.primaries = primaries
        self.owners = owners ?? Array(repeating: -1, count: RedisHashSlot.count)
    }

    /// Parses a `CLUSTER SLOTS` reply: `[[start, end, [ip, port, id, …], replicas…], …]`. An empty ip means the
    /// node that answered (`answeredBy`).
    package init(clusterSlots reply: RESPValue, answeredBy: RedisNodeAddress) throws(RealtimeError) {
        self.init()
        guard let ranges = reply.array else {
            throw RealtimeError(.protocolViolation, "CLUSTER SLOTS returned \(reply)")
        }
        for range in ranges {
            guard let fields = range.array, fields.count >= 3, let start = fields[0].int, let end = fields[1].int,
                start >= 0, end < RedisHashSlot.count, start <= end, let node = fields[2].array, node.count >= 2,
                let ip = node[0].string, let port = node[1].int, (1...65535).contains(port)
            else { throw RealtimeError(.protocolViolation, "CLUSTER SLOTS returned a malformed range: \(range)") }
            let address = RedisNodeAddress(host: ip.isEmpty || ip == "?" ? answeredBy.host : ip, port: Int(port))
            let index = Int16(self.index(of: address))
            for slot in Int(start)...Int(end) { owners[slot] = index }
        }
    }

    private mutating func index(of address: RedisNodeAddress) -> Int {
        if let index = primaries.firstIndex(of: address) { return index }
        primaries.append(address)
        return primaries.count - 1
    }

    /// The index in ``primaries`` of the node serving `slot`, or -1 when none does.
    package func ownerIndex(of slot: Int) -> Int { Int(owners[slot]) }

    /// The primary serving `slot`, if any.
    package func owner(of slot: Int) -> RedisNodeAddress? {
        let index = owners[slot]
        return index < 0 ? nil : primaries[Int(index)]
    }

    /// How many slots no node serves (a cluster with any is not usable: `cluster_state:fail`).
    package var uncoveredSlots: Int { owners.count { $0 < 0 } }

    /// The first uncovered slot ranges, for an error message (`0-99, 5461`).
    package var uncoveredDescription: String {
        var parts: [String] = []
        var slot = 0
        while slot < owners.count, parts.count < 5 {
            guard owners[slot] < 0 else {
                slot += 1
                continue
            }
            let start = slot
            while slot < owners.count, owners[slot] < 0 { slot += 1 }
            parts.append(start == slot - 1 ? "\(start)" : "\(start)-\(slot - 1)")
        }
        return parts.joined(separator: ", ")
    }

    /// Applies a `MOVED`: `slot` is now served by `address`.
    package mutating func move(slot: Int, to address: RedisNodeAddress) {
        guard (0..<RedisHashSlot.count).contains(slot) else { return }
        owners[slot] = Int16(index(of: address))
    }
}

/// What a command's reply asks the cluster client to do next: a pure decision on the reply and the attempt count,
/// unit-tested without a server.
package enum RedisClusterRedirect: Sendable, Hashable {
    /// A normal reply (or an error that is the caller's): hand it back.
    case done
    /// `MOVED <slot> <address>`: the slot lives elsewhere for good; patch the map, refresh it, retry there.
    case moved(slot: Int, to: RedisNodeAddress)
    /// `ASK <slot> <address>`: the key is being migrated; retry once there, preceded by `ASKING`, without
    /// changing the map.
    case ask(slot: Int, to: RedisNodeAddress)
    /// `TRYAGAIN` (a multi-key command during a migration) or `CLUSTERDOWN` (a failover in progress): retry the
    /// same way after a short pause, refreshing the map.
    case retryLater
    /// Too many redirects in a row: give up with this error.
    case giveUp(String)

    /// The most redirects one command follows.
    package static let maximumRedirects = 5

    /// Decides on `reply`, the `attempt`-th (0-based) answer to one command.
    package static func decide(_ reply: RESPValue, attempt: Int) -> RedisClusterRedirect {
        guard case .error(let message) = reply else { return .done }
        let words = message.split(separator: " ")
        guard let code = words.first else { return .done }
        let redirect: RedisClusterRedirect
        switch code {
        case "MOVED", "ASK":
            guard words.count >= 3, let slot = Int(words[1]), (0..<RedisHashSlot.count).contains(slot),
                let address = try? RedisNodeAddress(parsing: words[2])
            else { return .done }
            redirect = code == "MOVED" ? .moved(slot: slot, to: address) : .ask(slot: slot, to: address)
        case "TRYAGAIN", "CLUSTERDOWN":
            redirect = .retryLater
        default:
            return .done
        }
        guard attempt < maximumRedirects else {
            return .giveUp("Redis Cluster kept redirecting a command (\(maximumRedirects) times; last: \(message))")
        }
        return redirect
    }
}
