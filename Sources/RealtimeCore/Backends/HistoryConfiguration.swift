/// How much history a ``HistoryStore`` keeps per stream.
public struct HistoryLimits: Sendable, Hashable {
    /// The newest entries kept; older ones are trimmed (at least 1).
    public var maxEntries: Int
    /// Entries older than this are trimmed; a stream with no append for this long holds no readable entry.
    public var maxAge: Duration

    public init(maxEntries: Int, maxAge: Duration) {
        self.maxEntries = maxEntries
        self.maxAge = maxAge
    }
}

/// The history kept for reconnecting clients: what a ``HistoryStore`` is built with.
///
/// The defaults suit a service with 100,000 users whose clients reconnect after network blips, deploys or
/// crashes (recovery, not an archive): 100 events or 1 hour per user stream, 1,000 events or 10 minutes for the
/// administrators' and everyone's streams, positions remembered for 24 hours, 64 KiB per entry, and 64 MiB in all
/// for ``InMemoryHistoryStore``. `Documentation/Configuration.md` lists the environment variables.
public struct HistoryConfiguration: Sendable, Hashable {
    /// Whether hosts that build their backends from the configuration create a history store
    /// (`WEBSOCKET_HISTORY_ENABLED`; `realtime-server` does). A hub records no history without a store in its
    /// ``HubBackends/historyStore``.
    public var enabled = true
    /// Limits of each user's stream (`WEBSOCKET_HISTORY_SIZE`, `WEBSOCKET_HISTORY_TTL`).
    public var userStreams = HistoryLimits(maxEntries: 100, maxAge: .seconds(3600))
    /// Limits of the administrators' and everyone's streams (`WEBSOCKET_HISTORY_SHARED_SIZE`,
    /// `WEBSOCKET_HISTORY_SHARED_TTL`).
    public var sharedStreams = HistoryLimits(maxEntries: 1000, maxAge: .seconds(600))
    /// How long a stream that is neither appended to nor read keeps its epoch and last offset
    /// (`WEBSOCKET_HISTORY_RETENTION`); then it is forgotten and starts again under a new epoch. At least the
    /// largest `maxAge`, so a client that missed nothing during a quiet spell still recovers.
    public var retention: Duration = .seconds(86_400)
    /// The largest entry accepted (`WEBSOCKET_HISTORY_MAX_ENTRY_BYTES`): the event's frame, or the notification's,
    /// in UTF-8 bytes (``entryBytes(of:)``), the same measure in every store. The hub refuses to publish an event
    /// whose frame is larger (`invalid_argument`, nothing published), since no recovery could replay it.
    public var maxEntryBytes = 64 * 1024
    /// The most memory ``InMemoryHistoryStore`` uses for all streams together, in estimated bytes
    /// (`WEBSOCKET_HISTORY_MEMORY_LIMIT`); the least recently used streams lose their entries first, then are
    /// forgotten. Redis bounds its memory with the per-stream limits and its own `maxmemory`.
    public var memoryLimitBytes = 64 * 1024 * 1024
    /// How much one reconnecting client is replayed, and how many replays a server runs at once.
    public var recovery = RecoveryLimits()

    public init() {}

    /// The limits of `stream`.
    public func limits(for stream: HistoryStream) -> HistoryLimits {
        stream.isShared ? sharedStreams : userStreams
    }

    /// Checks values that cannot be expressed by types alone.
    public func validate() throws(RealtimeError) {
        func fail(_ message: String) -> RealtimeError { RealtimeError(.invalidConfiguration, "history: \(message)") }
        for (name, limits) in [("userStreams", userStreams), ("sharedStreams", sharedStreams)] {
            guard limits.maxEntries >= 1 else { throw fail("\(name).maxEntries must be at least 1") }
            guard limits.maxAge >= .milliseconds(1) else { throw fail("\(name).maxAge must be at least 1 ms") }
            guard retention >= limits.maxAge else { throw fail("retention must be at least \(name).maxAge") }
        }
        guard maxEntryBytes >= 256 else { throw fail("maxEntryBytes must be at least 256") }
        guard memoryLimitBytes >= 4 * maxEntryBytes else {
            throw fail("memoryLimitBytes must hold at least four entries of maxEntryBytes")
        }
        guard (1...HistoryReadLimit.maximumEntries).contains(recovery.maxEvents) else {
            throw fail("recovery.maxEvents must be 1 to \(HistoryReadLimit.maximumEntries)")
        }
        guard recovery.maxBytes >= maxEntryBytes else { throw fail("recovery.maxBytes must be at least maxEntryBytes") }
        guard recovery.maxConcurrent >= 1, recovery.maxWaiting >= 0 else {
            throw fail("recovery.maxConcurrent must be at least 1 and recovery.maxWaiting at least 0")
        }
    }

    /// The environment variables ``HubConfiguration/init(environment:)`` reads into ``HubConfiguration/history``.
    public static let environmentVariables: [(name: String, meaning: String)] = [
        ("WEBSOCKET_HISTORY_ENABLED", "true/false: keep history for reconnecting clients (default true)"),
        ("WEBSOCKET_HISTORY_SIZE", "events kept per user stream (default 100)"),
        ("WEBSOCKET_HISTORY_TTL", "ms an event is kept in a user stream (default 3600000)"),
        ("WEBSOCKET_HISTORY_SHARED_SIZE", "events kept in the admins and everyone streams (default 1000)"),
        ("WEBSOCKET_HISTORY_SHARED_TTL", "ms an event is kept in the admins and everyone streams (default 600000)"),
        ("WEBSOCKET_HISTORY_RETENTION", "ms an unused stream keeps its epoch and offset (default 86400000)"),
        ("WEBSOCKET_HISTORY_MAX_ENTRY_BYTES", "largest history entry (default 65536)"),
        ("WEBSOCKET_HISTORY_MEMORY_LIMIT", "bytes of history the in-memory store keeps (default 67108864)"),
        ("WEBSOCKET_RECOVERY_MAX_EVENTS", "most missed events replayed to one reconnecting client (default 1000)"),
        ("WEBSOCKET_RECOVERY_MAX_BYTES", "most bytes replayed to one reconnecting client (default 4194304)"),
        ("WEBSOCKET_RECOVERY_CONCURRENCY", "replays a server runs at once (default 32)"),
        ("WEBSOCKET_RECOVERY_QUEUE", "replays waiting for their turn before more are refused (default 10000)"),
    ]

    /// Applies the `WEBSOCKET_HISTORY_*` variables that are set.
    mutating func apply(_ reader: EnvironmentReader) throws(RealtimeError) {
        if let value = try reader.bool("WEBSOCKET_HISTORY_ENABLED") { enabled = value }
        if let value = try reader.int("WEBSOCKET_HISTORY_SIZE", min: 1) { userStreams.maxEntries = value }
        if let value = try reader.milliseconds("WEBSOCKET_HISTORY_TTL") { userStreams.maxAge = value }
        if let value = try reader.int("WEBSOCKET_HISTORY_SHARED_SIZE", min: 1) { sharedStreams.maxEntries = value }
        if let value = try reader.milliseconds("WEBSOCKET_HISTORY_SHARED_TTL") { sharedStreams.maxAge = value }
        if let value = try reader.milliseconds("WEBSOCKET_HISTORY_RETENTION") { retention = value }
        if let value = try reader.int("WEBSOCKET_HISTORY_MAX_ENTRY_BYTES", min: 256) { maxEntryBytes = value }
        if let value = try reader.int("WEBSOCKET_HISTORY_MEMORY_LIMIT", min: 1024) { memoryLimitBytes = value }
        if let value = try reader.int("WEBSOCKET_RECOVERY_MAX_EVENTS", min: 1) { recovery.maxEvents = value }
        if let value = try reader.int("WEBSOCKET_RECOVERY_MAX_BYTES", min: 1024) { recovery.maxBytes = value }
        if let value = try reader.int("WEBSOCKET_RECOVERY_CONCURRENCY", min: 1) { recovery.maxConcurrent = value }
        if let value = try reader.int("WEBSOCKET_RECOVERY_QUEUE", min: 0) { recovery.maxWaiting = value }
    }
}

/// How much a reconnecting client is replayed (``HistoryConfiguration/recovery``).
///
/// A client that missed more than ``maxEvents`` events, or whose missed events exceed ``maxBytes``, is answered
/// `recovered: false` (it resynchronises from its own source of truth). At most ``maxConcurrent`` replays run at
/// once on a server; up to ``maxWaiting`` more wait for their turn, beyond that a recovery is answered
/// `recovered: false` with reason `busy`: a reconnect storm cannot exhaust the server.
public struct RecoveryLimits: Sendable, Hashable {
    /// The most events replayed to one connection, all its streams together (`WEBSOCKET_RECOVERY_MAX_EVENTS`).
    public var maxEvents = 1000
    /// The most bytes of history entries replayed to one connection (`WEBSOCKET_RECOVERY_MAX_BYTES`).
    public var maxBytes = 4 * 1024 * 1024
    /// Replays running at once on a server (`WEBSOCKET_RECOVERY_CONCURRENCY`).
    public var maxConcurrent = 32
    /// Replays waiting for a running one to end (`WEBSOCKET_RECOVERY_QUEUE`).
    public var maxWaiting = 10_000
    /// Entries read per history page.
    public var pageSize = 250

    public init() {}
}

extension HistoryConfiguration {
    /// The size a history entry of `message` counts for against ``maxEntryBytes``: its event's frame, or its
    /// notification's, in UTF-8 bytes (what a recovering client is sent), whatever a store adds around it.
    package static func entryBytes(of message: BusMessage) throws(RealtimeError) -> Int {
        // The event's frame, when the message carries it, without copying the event out of the payload.
        if let frame = message.eventFrame, case .event = message.payload { return frame.utf8.count }
        switch message.payload {
        case .event(let event): return WireProtocol.event(event).utf8.count
        case .notification(let notification): return WireProtocol.notification(notification).utf8.count
        case .control: throw RealtimeError(.invalidArgument, "control commands are not recorded in history")
        }
    }

    /// ``entryBytes(of:)``, refused with ``RealtimeError/Code/limitExceeded`` over ``maxEntryBytes``.
    package func checkedEntryBytes(of message: BusMessage) throws(RealtimeError) -> Int {
        let bytes = try Self.entryBytes(of: message)
        guard bytes <= maxEntryBytes else {
            throw RealtimeError(
                .limitExceeded,
                "a history entry of \(bytes) bytes exceeds the limit of \(maxEntryBytes)"
            )
        }
        return bytes
    }
}
