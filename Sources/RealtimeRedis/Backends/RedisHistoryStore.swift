public import RealtimeCore
import Synchronization

/// A ``HistoryStore`` on Redis Streams, shared by every server of a cluster.
///
/// Each stream is two keys with one hash tag, so everything of one stream lives on one Redis Cluster slot:
///
/// | stream | entries (a Redis stream) | meta (a hash: `e` epoch, `o` last offset) |
/// |---|---|---|
/// | a user's | `<prefix>h:{u:<userId>}:s` | `<prefix>h:{u:<userId>}:m` |
/// | administrators' | `<prefix>h:{admins}:s` | `<prefix>h:{admins}:m` |
/// | everyone's | `<prefix>h:{everyone}:s` | `<prefix>h:{everyone}:m` |
///
/// An entry's id is its offset (`<offset>-0`); its fields are `d`, the bus payload sealed with the cluster
/// secret exactly as `RedisEventBus` publishes it (so a replayed entry is checked like a live message, and
/// whoever can write to Redis cannot forge history), and `t`, the append time in milliseconds. Appends trim with
/// `XADD … MAXLEN ~ <maxEntries>` (whole stream nodes, so Redis may keep a few more; reads hide them) and set the
/// entries' TTL to the maximum age and the meta's to the retention; reads renew the meta's TTL. The epoch is a
/// random token set with the first append or read: a stream whose meta is gone (flushed, restarted without
/// persistence, expired, evicted) starts a new epoch, deleting entries left without their meta.
///
/// `RedisEventBus.publish(_:recordingIn:)` with a store on the same client and secret appends and publishes in one
/// script: one round trip, and every server hears a stream's messages in offset order.
public final class RedisHistoryStore: HistoryStore, Sendable {
    public let configuration: HistoryConfiguration
    /// The prefix of every key (and, as for the bus, of every channel).
    public let prefix: String
    let client: RedisClient
    let signer: BusSigner
    private let now: @Sendable () -> Timestamp
    private let refusedEntries = Atomic<Int>(0)
    /// Fresh epochs are this store's random token and a count: unique without a system call per append.
    private let epochToken = RandomID.hex(bytes: 8)
    private let epochCount = Atomic<UInt64>(0)
    /// The append script's fixed arguments, formatted once: per kind of stream its entries kept and maximum age in
    /// ms, and the retention in ms.
    private let userArguments: (maxEntries: String, maxAge: String)
    private let sharedArguments: (maxEntries: String, maxAge: String)
    private let retentionArgument: String

    /// - Parameters:
    ///   - client: the Redis client.
    ///   - clusterSecret: the secret the cluster's `RedisEventBus` seals messages with (at least 16 bytes).
    ///   - prefix: the prefix of every key; the bus's prefix, so entries are sealed for the bus's channels.
    ///   - configuration: limits per stream.
    ///   - now: the wall clock stamping entries and deciding their age.
    /// - Throws: ``RealtimeError/Code/invalidConfiguration`` for a secret shorter than 16 bytes or an invalid
    ///   configuration.
    public init(
        client: RedisClient,
        clusterSecret: some Collection<UInt8>,
        prefix: String = "rthub:",
        configuration: HistoryConfiguration = HistoryConfiguration(),
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) throws(RealtimeError) {
        guard clusterSecret.count >= 16 else {
            throw RealtimeError(.invalidConfiguration, "the cluster secret must have at least 16 bytes")
        }
        try configuration.validate()
        self.client = client
        self.signer = BusSigner(secret: Array(clusterSecret))
        self.prefix = prefix
        self.configuration = configuration
        self.now = now
        func arguments(_ limits: HistoryLimits) -> (maxEntries: String, maxAge: String) {
            (String(limits.maxEntries), String(max(1, limits.maxAge.milliseconds)))
        }
        userArguments = arguments(configuration.userStreams)
        sharedArguments = arguments(configuration.sharedStreams)
        retentionArgument = String(configuration.retention.milliseconds)
    }

    /// The bus channel of `route`, which entries are sealed for (the bus's ``RedisEventBus/channel(for:)``).
    func channel(for route: BusRoute) -> String {
        RedisEventBus.channel(for: route, prefix: prefix, sharded: client.usesShardedPubSub)
    }

    /// The keys of a stream: its entries and its meta, with one hash tag.
    public func keys(of stream: HistoryStream) -> (entries: String, meta: String) {
        let tag: String
        switch stream {
        case .user(let id): tag = "u:\(id)"
        case .admins: tag = "admins"
        case .everyone: tag = "everyone"
        }
        return ("\(prefix)h:{\(tag)}:s", "\(prefix)h:{\(tag)}:m")
    }

    public func append(_ message: BusMessage) async throws(RealtimeError) -> StreamPosition {
        let stream = try HistoryStream(recording: message)
        _ = try configuration.checkedEntryBytes(of: message)
        let channel = self.channel(for: message.route)
        let payload = signer.seal(channel: channel, body: RedisBusCodec.encode(message, alsoAdmins: false))
        let positions = try await record(payload, in: [stream], publishingOn: nil)
        return positions[0]
    }

    /// What a sealed entry may add to its message's ``HistoryConfiguration/entryBytes(of:)``: the bus header
    /// (origin, route, scope, instants, positions; ids are at most 256 bytes) and the seal.
    static let envelopeAllowance = 4096

    /// Appends a sealed bus payload to `streams` and, when `channel` is given, publishes it there with the
    /// positions it got, in one script. Returns one position per stream. The caller checked the message against
    /// ``HistoryConfiguration/maxEntryBytes``; the payload is bounded here once more, with ``envelopeAllowance``.
    func record(
        _ payload: [UInt8],
        in streams: [HistoryStream],
        publishingOn channel: String?,
        affinity: Int? = nil
    ) async throws(RealtimeError) -> [StreamPosition] {
        let limit = configuration.maxEntryBytes + Self.envelopeAllowance
        guard payload.count <= limit else {
            throw RealtimeError(
                .limitExceeded,
                "a history entry of \(payload.count) bytes exceeds the limit of \(limit)"
            )
        }
        var keys: [String] = []
        keys.reserveCapacity(2 * streams.count)
        for stream in streams {
            let (entries, meta) = self.keys(of: stream)
            keys.append(entries)
            keys.append(meta)
        }
        let time = now().millisecondsSinceEpoch
        let script = client.usesShardedPubSub ? RedisHistoryScripts.appendSharded : RedisHistoryScripts.append
        let reply = try await script.run(on: client, keys: keys, affinity: affinity) { command in
            command.append(bytes: payload)
            command.append(channel ?? "")
            command.append(time)
            for stream in streams {
                let limits = stream.isShared ? sharedArguments : userArguments
                command.append(limits.maxEntries)
                command.append(limits.maxAge)
                command.append(retentionArgument)
                command.append(freshEpoch())
            }
        }
        guard let values = reply.array, values.count == 2 * streams.count else {
            throw RealtimeError(.protocolViolation, "the history append script returned \(reply)")
        }
        return try stride(from: 0, to: values.count, by: 2).map { index throws(RealtimeError) in
            guard let epoch = values[index].string, let offset = values[index + 1].int else {
                throw RealtimeError(.protocolViolation, "the history append script returned \(reply)")
            }
            return StreamPosition(epoch: epoch, offset: offset)
        }
    }

    public func read(
        _ stream: HistoryStream,
        after position: StreamPosition,
        limit: HistoryReadLimit
    ) async throws(RealtimeError) -> HistoryRead {
        try position.validate()
        try limit.validate()
        let window = HistoryWindow(limits: configuration.limits(for: stream), now: now())
        let (current, entries) = try await fetch(
            stream,
            epoch: position.epoch,
            from: position.offset + 1,
            count: limit.maxEntries
        )
        let candidates = entries.map { candidate(from: $0, in: stream) }
        return window.read(after: position, current: current, limit: limit, candidates: candidates)
    }

    public func position(of stream: HistoryStream) async throws(RealtimeError) -> StreamPosition {
        try await fetch(stream, epoch: "", from: 1, count: 0).current
    }

    public func trim(_ stream: HistoryStream, maxEntries: Int?, maxAge: Duration?) async throws(RealtimeError) {
        try HistoryWindow.checkTrim(maxEntries: maxEntries, maxAge: maxAge)
        let cutoff = maxAge.map { String((now() - $0).millisecondsSinceEpoch) }
        _ = try await RedisHistoryScripts.trim.run(
            on: client,
            keys: [keys(of: stream).entries],
            arguments: [maxEntries.map { String($0) } ?? "", cutoff ?? ""]
        )
    }

    public func reset(_ stream: HistoryStream) async throws(RealtimeError) {
        // Both keys have one hash tag: one command on one slot. `DEL` is allowed when Redis is out of memory,
        // which is when an append fails while publishing still works.
        let keys = keys(of: stream)
        _ = try await client.send(RedisCommand("DEL", keys.entries, keys.meta))
    }

    /// An epoch for a stream that has none (the script uses it only then).
    private func freshEpoch() -> String {
        epochToken + String(epochCount.add(1, ordering: .relaxed).newValue, radix: 16)
    }

    /// The stream's position and, when its epoch is `epoch`, up to `count` raw entries from offset `from` on.
    private func fetch(
        _ stream: HistoryStream,
        epoch: String,
        from: Int64,
        count: Int
    ) async throws(RealtimeError) -> (current: StreamPosition, entries: [RESPValue]) {
        let keys = keys(of: stream)
        let reply = try await RedisHistoryScripts.read.run(
            on: client,
            keys: [keys.entries, keys.meta],
            arguments: [
                freshEpoch(), String(configuration.retention.milliseconds), epoch, String(from),
                String(count),
            ]
        )
        guard let values = reply.array, values.count == 3, let current = values[0].string,
            let last = values[1].int, let entries = values[2].array
        else {
            throw RealtimeError(.protocolViolation, "the history read script returned \(reply)")
        }
        return (StreamPosition(epoch: current, offset: last), entries)
    }

    /// An entry of `stream` as Redis returned it (`[id, [field, value, …]]`), checked and decoded; its message is
    /// `nil` (and counted) when its seal or content does not hold, or when it does not belong to the stream.
    private func candidate(from entry: RESPValue, in stream: HistoryStream) -> HistoryWindow.Candidate {
        guard let parts = entry.array, parts.count == 2, let id = parts[0].string,
            let offset = Int64(id.prefix { $0 != "-" }), let fields = parts[1].array
        else {
            refusedEntries.add(1, ordering: .relaxed)
            return HistoryWindow.Candidate(
                offset: -1,
                timestamp: Timestamp(millisecondsSinceEpoch: 0),
                bytes: 0,
                message: nil
            )
        }
        var payload: [UInt8] = []
        var time: Int64?
        for index in stride(from: 0, to: fields.count - 1, by: 2) {
            switch fields[index].string {
            case "d": payload = fields[index + 1].bytes ?? []
            case "t": time = fields[index + 1].int
            default: break
            }
        }
        let message = time == nil ? nil : open(payload, in: stream)
        if message == nil { refusedEntries.add(1, ordering: .relaxed) }
        return HistoryWindow.Candidate(
            offset: offset,
            timestamp: Timestamp(millisecondsSinceEpoch: time ?? 0),
            bytes: payload.count,
            message: message
        )
    }

    /// The message of a sealed payload read from `stream`, if its seal holds and it belongs to the stream: a
    /// user's stream holds that user's messages, everyone's the everyone route's, and the administrators' the
    /// admins route's and the user events published for administrators too (sealed for their user's channel).
    func open(_ payload: [UInt8], in stream: HistoryStream) -> BusMessage? {
        let expected = Array(channel(for: stream.route).utf8)
        if let opened = signer.open(channel: expected, payload: payload) {
            guard let decoded = try? RedisBusCodec.decode(opened.body), decoded.message.route == stream.route else {
                return nil
            }
            return decoded.message
        }
        // The administrators' stream also holds user events sealed for their user's channel.
        guard stream == .admins, let unverified = BusSigner.unverifiedBody(payload),
            let decoded = try? RedisBusCodec.decode(unverified),
            decoded.alsoAdmins, case .user = decoded.message.route,
            signer.open(
                channel: Array(
                    channel(for: decoded.message.route).utf8
                ),
                payload: payload
            ) != nil
        else { return nil }
        var message = decoded.message
        message.route = .admins
        return message
    }

    /// Entries whose seal or content did not hold, since the store was created.
    package var refusedEntryCount: Int { refusedEntries.load(ordering: .relaxed) }

    /// The client's health, with the entries refused so far.
    public func healthCheck() async -> ComponentHealth {
        var health = await client.healthCheck()
        health.details["refusedEntries"] = .int(Int64(refusedEntryCount))
        return health
    }
}
