public import RealtimeCore

extension RedisEventBus: HistoryRecordingEventBus {
    /// The Redis channel of `route` under `prefix` (``channel(for:)``; the history store seals entries for it). With
    /// `sharded` (a cluster) the channel carries the hash tag of the route's history stream, so it is on the same
    /// slot as the stream's keys (`h:{u:<id>}:s`, ...) and the append script can `SPUBLISH` it.
    static func channel(for route: BusRoute, prefix: String, sharded: Bool) -> String {
        guard sharded else { return "\(prefix)bus:\(route.description)" }
        if case .user(let id) = route { return "\(prefix)bus:{u:\(id)}" }
        return "\(prefix)bus:{\(route.description)}"
    }

    /// Whether `messages` are a user-scoped event's two routes (``BusRoute/user(_:)`` then ``BusRoute/admins``, same
    /// origin and event), which the bus carries as one message on the user's channel.
    static func isUserEventPair(_ messages: ArraySlice<BusMessage>) -> Bool {
        guard messages.count == 2 else { return false }
        let (user, admins) = (messages[messages.startIndex], messages[messages.startIndex + 1])
        guard case .user = user.route, admins.route == .admins, user.origin == admins.origin,
            case .event = user.payload
        else { return false }
        return user.payload == admins.payload
    }

    /// With a ``RedisHistoryStore`` on this bus's client and secret (and no publish waiting for Redis to return),
    /// records and publishes each message in one Lua script: `XADD` to its stream, then `PUBLISH` prefixed with
    /// the position, so every server hears a stream's messages in offset order. A user-scoped event's pair of
    /// routes is one script that appends to the user's and the administrators' streams and publishes once on the
    /// user's channel, carrying both positions (on Redis Cluster, where those streams are on two slots, each route is
    /// one script on its own stream and channel). Messages of routes without history are published as usual.
    /// Returns `nil` for any other store.
    ///
    /// Every message is checked against ``HistoryConfiguration/maxEntryBytes`` before the first script, so an entry
    /// too large fails the whole call with nothing published. Each message (or pair) is then one step: when a script
    /// fails (Redis), the messages before it stay published, those after it are not attempted, and the error's
    /// `underlying` is a ``PartiallyPublished`` with the messages published, so the caller does not publish them
    /// twice.
    public func recordAndPublish(
        _ messages: [BusMessage],
        in history: any HistoryStore
    ) async throws(RealtimeError) -> [BusMessage]? {
        guard let store = history as? RedisHistoryStore, store.client === client,
            store.signer.fingerprint == signer.fingerprint, store.prefix == prefix, !hasQueuedPublishes
        else { return nil }
        for message in messages where HistoryStream(message.route) != nil && !message.payload.isControl {
            _ = try store.configuration.checkedEntryBytes(of: message)
        }
        var published: [BusMessage] = []
        published.reserveCapacity(messages.count)
        do {
            try await recordAndPublish(messages, in: store, into: &published)
        } catch {
            guard !published.isEmpty else { throw error }
            throw RealtimeError(error.code, error.message, underlying: PartiallyPublished(published: published))
        }
        return published
    }

    /// ``recordAndPublish(_:in:)``'s steps, appending each message to `published` once it is.
    private func recordAndPublish(
        _ messages: [BusMessage],
        in store: RedisHistoryStore,
        into published: inout [BusMessage]
    ) async throws(RealtimeError) {
        var index = messages.startIndex
        while index < messages.endIndex {
            // On a cluster the user's and the administrators' streams live on different slots (`{u:<id>}`,
            // `{admins}`), and a script must stay on one: each route is then recorded and published on its own.
            let pair = !client.isCluster && Self.isUserEventPair(messages[index...].prefix(2))
            let message = messages[index]
            guard let stream = HistoryStream(message.route), !message.payload.isControl else {
                try await publish(message)
                published.append(message)
                index += 1
                continue
            }
            let channel = channel(for: message.route)
            let payload = signer.seal(channel: channel, body: RedisBusCodec.encode(message, alsoAdmins: pair))
            let positions = try await store.record(
                payload,
                in: pair ? [stream, .admins] : [stream],
                publishingOn: channel,
                affinity: Self.affinity(channel)
            )
            for (offset, position) in positions.enumerated() {
                var recorded = messages[index + offset]
                recorded.position = position
                published.append(recorded)
            }
            index += positions.count
        }
    }
}

extension BusPayload {
    var isControl: Bool {
        if case .control = self { return true }
        return false
    }
}

/// The form of a message published together with its history positions:
/// `@<epoch>:<offset>[,<epoch>:<offset>]\n<sealed payload>`. The first position is the one in the stream of the
/// channel's route; a user event published for administrators too carries its position in the administrators'
/// stream second. Positions are outside the seal (Redis assigns them, in the same script that publishes): whoever
/// can write to Redis could alter them, as it could drop or repeat messages, but cannot forge a message.
enum RecordedPayload {
    private static let marker = UInt8(ascii: "@")
    /// The longest prefix: the marker, two positions of the longest epoch and offset, their comma.
    private static let maxPrefixBytes = 1 + 2 * (StreamPosition.maxEpochBytes + 1 + 16) + 1

    /// The prefix of a message published with `positions` (at most two: the channel's stream's, then the
    /// administrators'); empty for none. The append script writes the same form. Empty as well when a position is
    /// one ``split(_:)`` would refuse (a custom store's epoch with `:`, `,` or a line break, or longer than
    /// `StreamPosition.maxEpochBytes`): the message then goes out without positions rather than be refused by every
    /// receiver.
    static func prefix(_ positions: [StreamPosition]) -> [UInt8] {
        guard !positions.isEmpty, positions.count <= 2, positions.allSatisfy(isCarried) else { return [] }
        var prefix: [UInt8] = [marker]
        for (index, position) in positions.prefix(2).enumerated() {
            if index > 0 { prefix.append(UInt8(ascii: ",")) }
            prefix.append(contentsOf: position.epoch.utf8)
            prefix.append(UInt8(ascii: ":"))
            prefix.append(contentsOf: String(position.offset).utf8)
        }
        prefix.append(UInt8(ascii: "\n"))
        return prefix
    }

    /// Whether `position` survives the prefix form: what ``split(_:)`` accepts.
    private static func isCarried(_ position: StreamPosition) -> Bool {
        let epoch = position.epoch.utf8
        return !epoch.isEmpty && epoch.count <= StreamPosition.maxEpochBytes
            && !epoch.contains { $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\n") }
            && (0...StreamPosition.maxOffset).contains(position.offset)
    }

    /// The positions and the sealed payload of `payload`: no positions and the payload itself when it carries
    /// none, `nil` when its positions are malformed.
    static func split(_ payload: [UInt8]) -> (positions: [StreamPosition], sealed: [UInt8])? {
        guard payload.first == marker else { return ([], payload) }
        guard let newline = payload.prefix(maxPrefixBytes + 1).firstIndex(of: UInt8(ascii: "\n")) else { return nil }
        var positions: [StreamPosition] = []
        for part in payload[1..<newline].split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false) {
            guard let colon = part.firstIndex(of: UInt8(ascii: ":")) else { return nil }
            let epoch = part[part.startIndex..<colon]
            let digits = part[(colon + 1)...]
            guard !epoch.isEmpty, epoch.count <= StreamPosition.maxEpochBytes, !digits.isEmpty, digits.count <= 16,
                digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                let offset = Int64(String(decoding: digits, as: UTF8.self)), offset <= StreamPosition.maxOffset
            else { return nil }
            positions.append(StreamPosition(epoch: String(decoding: epoch, as: UTF8.self), offset: offset))
        }
        guard positions.count <= 2 else { return nil }
        return (positions, Array(payload[(newline + 1)...]))
    }
}
