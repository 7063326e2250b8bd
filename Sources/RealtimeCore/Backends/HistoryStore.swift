/// Keeps a bounded, recent history of what each route delivered, so a client that reconnects (to any server) can
/// be sent what it missed, and is told when that is not possible.
///
/// A store holds one ``HistoryStream`` per user, one for administrators and one for everyone. Every message
/// appended to a stream gets the next ``StreamPosition``: the stream's epoch and an offset that starts at 1 and
/// grows by exactly 1 per append, so a reader sees a gap as a missing offset. Streams are bounded by
/// ``HistoryLimits`` (entries and age) and forgotten when idle; when a stream's history is lost (the backend was
/// flushed or restarted without persistence, the stream was forgotten), it starts again under a new epoch, and a
/// position from the old epoch reads as ``HistoryUnavailableReason/epochChanged``.
///
/// Entries are ``BusMessage``s: what the bus carries is what a replay delivers, with the event's scope and type
/// for the same visibility checks as live delivery. A store decides how to keep them (the in-memory store keeps
/// the values, the Redis store the sealed bus payload, checked again when read).
///
/// To publish a message and record it with one call, so that the order subscribers hear a stream's messages in
/// is the order of their offsets, use ``EventBus/publish(_:recordingIn:)``.
public protocol HistoryStore: Sendable {
    /// Appends a message to the stream of its route (``HistoryStream/init(_:)``) and returns its position.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a route without history (control, server) or a control
    ///   payload; ``RealtimeError/Code/limitExceeded`` for a message larger than
    ///   ``HistoryConfiguration/maxEntryBytes``; ``RealtimeError/Code/backendUnavailable`` when the backend fails.
    func append(_ message: BusMessage) async throws(RealtimeError) -> StreamPosition

    /// Reads the entries after `position` (exclusive: the first entry returned has offset `position.offset + 1`),
    /// oldest first, at most `limit` of them.
    ///
    /// Answers ``HistoryRead/unavailable(_:current:)`` instead of a page when the entries after `position` cannot
    /// all be read: the position belongs to another epoch, some of those entries were trimmed, or the offset was
    /// never issued in this epoch. A page is never partial without saying so: its ``HistoryPage/isComplete`` is
    /// false when `limit` cut it (read again after its last entry). Offset 0 reads from the start of the epoch.
    ///
    /// Reading creates the stream's epoch if the stream is new (so the position it reports stays valid for the
    /// first append) and counts as use: a stream is forgotten only when neither appended to nor read for
    /// ``HistoryConfiguration/retention``.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a negative offset, an offset above
    ///   ``StreamPosition/maxOffset``, an epoch longer than ``StreamPosition/maxEpochBytes`` or a limit out of
    ///   range; ``RealtimeError/Code/backendUnavailable`` when the backend fails.
    func read(
        _ stream: HistoryStream,
        after position: StreamPosition,
        limit: HistoryReadLimit
    ) async throws(RealtimeError) -> HistoryRead

    /// The stream's current position: its epoch and the offset of its last entry (0 before the first). Creates
    /// the epoch of a new stream, like ``read(_:after:limit:)``.
    func position(of stream: HistoryStream) async throws(RealtimeError) -> StreamPosition

    /// Removes entries now, beyond what the configured ``HistoryLimits`` keep: all but the newest `maxEntries`
    /// (when given) and those appended more than `maxAge` ago (when given). The epoch and the offsets stay: the
    /// next append continues the numbering, and a read from a removed position answers
    /// ``HistoryUnavailableReason/trimmed``.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a negative `maxEntries` or `maxAge`.
    func trim(_ stream: HistoryStream, maxEntries: Int?, maxAge: Duration?) async throws(RealtimeError)

    /// Ends the stream's epoch: forgets its entries, so that the next append or read starts a new epoch and every
    /// position issued so far reads as ``HistoryUnavailableReason/epochChanged``. Resetting a stream the store does
    /// not know is not an error.
    ///
    /// The hub calls it for each stream whose messages it had to publish without recording them (the store
    /// failed): a reader recovering from an earlier position would otherwise be given a replay without them and
    /// told it is complete.
    ///
    /// - Throws: ``RealtimeError/Code/backendUnavailable`` when the backend fails (the hub tries again later).
    func reset(_ stream: HistoryStream) async throws(RealtimeError)

    /// The backend's health.
    func healthCheck() async -> ComponentHealth
}

extension HistoryStore {
    public func healthCheck() async -> ComponentHealth { .healthy }
}

/// One stream of history: the routes whose messages a client may need again.
public enum HistoryStream: Hashable, Sendable, CustomStringConvertible {
    /// What one user's connections receive (``BusRoute/user(_:)``).
    case user(String)
    /// What administrator connections receive (``BusRoute/admins``), including every user's events.
    case admins
    /// What every connection receives (``BusRoute/everyone``).
    case everyone

    /// The stream of a bus route; `nil` for the routes that have none (``BusRoute/control``,
    /// ``BusRoute/server(_:)``).
    public init?(_ route: BusRoute) {
        switch route {
        case .user(let id): self = .user(id)
        case .admins: self = .admins
        case .everyone: self = .everyone
        case .control, .server: return nil
        }
    }

    /// The stream `message` is recorded in.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a route without history or a control command.
    package init(recording message: BusMessage) throws(RealtimeError) {
        guard let stream = HistoryStream(message.route) else {
            throw RealtimeError(.invalidArgument, "the \(message.route) route keeps no history")
        }
        if case .control = message.payload {
            throw RealtimeError(.invalidArgument, "control commands are not recorded in history")
        }
        self = stream
    }

    /// The route whose messages the stream records.
    public var route: BusRoute {
        switch self {
        case .user(let id): return .user(id)
        case .admins: return .admins
        case .everyone: return .everyone
        }
    }

    /// Whether the stream is shared by many connections (``admins``, ``everyone``), as opposed to one user's.
    public var isShared: Bool {
        if case .user = self { return false }
        return true
    }

    public var description: String { route.description }
}

/// Where an entry sits in its stream: the stream's epoch and the entry's offset.
///
/// Offsets start at 1 in every epoch and grow by 1 per append; offset 0 is the position before the first entry.
/// The epoch is an opaque token that changes whenever the stream's history is lost, so an old position is never
/// mistaken for a position of the new history. Positions are only meaningful for the stream that issued them.
public struct StreamPosition: Hashable, Sendable, CustomStringConvertible {
    /// The stream's incarnation (a random token, at most ``maxEpochBytes`` bytes).
    public var epoch: String
    /// The entry's offset within the epoch.
    public var offset: Int64

    /// The largest offset: 2^53 − 1, so an offset survives a JSON number in every client (JavaScript's doubles).
    public static let maxOffset: Int64 = (1 << 53) - 1
    /// The longest epoch a store accepts in a position it is given.
    public static let maxEpochBytes = 64

    public init(epoch: String, offset: Int64) {
        self.epoch = epoch
        self.offset = offset
    }

    /// `epoch:offset`.
    public var description: String { "\(epoch):\(offset)" }

    /// Checks a position received from outside (a client's last position) before a store reads from it.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a negative offset, an offset above ``maxOffset`` or an
    ///   epoch longer than ``maxEpochBytes``.
    public func validate() throws(RealtimeError) {
        guard offset >= 0 else {
            throw RealtimeError(.invalidArgument, "a stream offset cannot be negative (got \(offset))")
        }
        guard offset <= Self.maxOffset else {
            throw RealtimeError(.invalidArgument, "a stream offset cannot exceed \(Self.maxOffset) (got \(offset))")
        }
        guard epoch.utf8.count <= Self.maxEpochBytes else {
            throw RealtimeError(.invalidArgument, "a stream epoch has at most \(Self.maxEpochBytes) bytes")
        }
    }
}

/// One entry read back from a ``HistoryStore``.
public struct HistoryEntry: Sendable {
    /// The entry's position (also set as the message's ``BusMessage/position``).
    public var position: StreamPosition
    /// When it was appended, by the appending server's clock.
    public var timestamp: Timestamp
    /// What was appended.
    public var message: BusMessage

    public init(position: StreamPosition, timestamp: Timestamp, message: BusMessage) {
        self.position = position
        self.timestamp = timestamp
        self.message = message
        self.message.position = position
    }
}

/// How much one ``HistoryStore/read(_:after:limit:)`` returns.
public struct HistoryReadLimit: Sendable, Hashable {
    /// The most entries (1 to ``maximumEntries``).
    public var maxEntries: Int
    /// The most bytes of entries, as the store counts them (at least 1). A page always holds at least one entry
    /// when one is readable, however large, so a reader always progresses.
    public var maxBytes: Int

    /// The largest ``maxEntries`` a store accepts.
    public static let maximumEntries = 10_000

    public init(maxEntries: Int = 100, maxBytes: Int = 1 << 20) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    /// Checks the limit before a store reads.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a count outside 1...``maximumEntries`` or a byte count
    ///   below 1.
    public func validate() throws(RealtimeError) {
        guard (1...Self.maximumEntries).contains(maxEntries) else {
            throw RealtimeError(
                .invalidArgument,
                "a history read takes 1 to \(Self.maximumEntries) entries (got \(maxEntries))"
            )
        }
        guard maxBytes >= 1 else {
            throw RealtimeError(.invalidArgument, "a history read needs a positive byte limit (got \(maxBytes))")
        }
    }
}

/// The entries of a stream after a position, as far as one read goes.
public struct HistoryPage: Sendable {
    /// Entries in offset order, contiguous, the first one right after the position read from.
    public var entries: [HistoryEntry]
    /// The stream's position when it was read (its epoch and last offset).
    public var current: StreamPosition
    /// Whether ``entries`` reach ``current``; false when the read limit cut the page (read again after the last
    /// entry).
    public var isComplete: Bool

    public init(entries: [HistoryEntry], current: StreamPosition, isComplete: Bool) {
        self.entries = entries
        self.current = current
        self.isComplete = isComplete
    }
}

/// Why the entries after a position cannot be read.
public enum HistoryUnavailableReason: String, Sendable, Hashable {
    /// The position's epoch is not the stream's: its history was lost since (or the position is another
    /// stream's, or made up).
    case epochChanged = "epoch_changed"
    /// Entries after the position were removed (count or age limits, the memory bound, a trim, a lost backend
    /// key).
    case trimmed
    /// The position's offset is beyond the stream's last offset: it was never issued in this epoch.
    case ahead
    /// An entry after the position could not be read back (it failed its integrity check or did not decode).
    case unreadable
}

/// The answer of ``HistoryStore/read(_:after:limit:)``.
public enum HistoryRead: Sendable {
    /// Every entry after the position, up to the read limit.
    case page(HistoryPage)
    /// The entries after the position cannot all be read; `current` is the stream's position now, from which a
    /// client that resynchronised by other means can continue.
    case unavailable(HistoryUnavailableReason, current: StreamPosition)
}
