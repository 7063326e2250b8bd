import DequeModule
import Synchronization

/// A ``HistoryStore`` in process memory: a bounded ring buffer per stream, a bound on all streams together, and
/// idle streams forgotten.
///
/// - Each stream keeps its newest ``HistoryLimits/maxEntries`` entries; entries past ``HistoryLimits/maxAge`` are
///   invisible at once and removed on the stream's next use.
/// - All streams together stay under ``HistoryConfiguration/memoryLimitBytes``, counted as an estimate (per entry
///   its slot in the ring buffer, its encoded size and allocation headers — an event is kept as its encoded frame
///   and decoded again on read; a notification is kept decoded too, counted twice its encoded size; a fixed
///   overhead per stream): past it, the least recently used stream loses its oldest entries first, and is
///   forgotten once it has none.
/// - A stream neither appended to nor read for ``HistoryConfiguration/retention`` is forgotten.
/// - Every stream gets a random epoch when it is created, so a position from a forgotten stream or from an
///   earlier process (the store restarted) reads as ``HistoryUnavailableReason/epochChanged``.
///
/// Several hubs in one process share one store, like the servers of a cluster share Redis. With an
/// ``InMemoryEventBus``, ``EventBus/publish(_:recordingIn:)`` records and publishes in one step.
public final class InMemoryHistoryStore: HistoryStore {
    public let configuration: HistoryConfiguration
    private let now: @Sendable () -> Timestamp
    private let state = Mutex(HistoryState())

    deinit {
        state.withLock { $0.unlinkAll() }
    }

    /// Creates an empty store.
    /// - Parameters:
    ///   - configuration: limits per stream and in all.
    ///   - now: the wall clock stamping entries and deciding their age (tests pass a manual clock).
    /// - Throws: ``RealtimeError/Code/invalidConfiguration`` for an invalid configuration.
    public init(
        configuration: HistoryConfiguration = HistoryConfiguration(),
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) throws(RealtimeError) {
        try configuration.validate()
        self.configuration = configuration
        self.now = now
    }

    public func append(_ message: BusMessage) async throws(RealtimeError) -> StreamPosition {
        try record(message)
    }

    /// Appends `message` to its stream at once (``append(_:)`` without suspending).
    package func record(_ message: BusMessage) throws(RealtimeError) -> StreamPosition {
        var messages = [message]
        try record(&messages)
        guard let position = messages[0].position else {
            throw RealtimeError(.invalidArgument, "the \(message.route) route keeps no history")
        }
        return position
    }

    /// Appends, in order and under one acquisition of the store's lock, every message of `messages` whose route has
    /// a ``HistoryStream``, setting its ``BusMessage/position`` (the others get none): the bus's single step. Each append is what ``append(_:)`` does (old entries past their age removed, the memory bound enforced
    /// sparing the stream appended to).
    ///
    /// - Throws: when a message cannot be recorded (a control command, an entry over
    ///   ``HistoryConfiguration/maxEntryBytes``); then none is (every entry is checked before the first append).
    package func record(_ messages: inout [BusMessage]) throws(RealtimeError) {
        let now = self.now()
        let configuration = self.configuration
        var sizes: [Int?] = []
        sizes.reserveCapacity(messages.count)
        for message in messages {
            sizes.append(HistoryStream(message.route) == nil ? nil : try configuration.checkedEntryBytes(of: message))
        }
        state.withLock { state in
            state.sweep(now: now, retention: configuration.retention)
            for index in messages.indices {
                guard let stream = HistoryStream(messages[index].route), let bytes = sizes[index] else {
                    messages[index].position = nil
                    continue
                }
                let window = HistoryWindow(limits: configuration.limits(for: stream), now: now)
                state.append(&messages[index], bytes: bytes, to: stream, window: window)
                state.evict(toFit: configuration.memoryLimitBytes, sparing: stream)
            }
        }
    }

    public func read(
        _ stream: HistoryStream,
        after position: StreamPosition,
        limit: HistoryReadLimit
    ) async throws(RealtimeError) -> HistoryRead {
        try position.validate()
        try limit.validate()
        let (window, current, entries) = using(stream) { state, window in
            let record = state.use(stream, window: window)
            let current = StreamPosition(epoch: record.epoch, offset: record.last)
            return (window, current, state.entries(of: record, after: position.offset, count: limit.maxEntries))
        }
        // Events are decoded from their frames here, outside the store's lock, and only as far as the read goes.
        let parser = JSONParser(limits: .init(maxBytes: configuration.maxEntryBytes, maxDepth: StoredContent.maxDepth))
        let candidates = entries.lazy.map { entry in
            HistoryWindow.Candidate(
                offset: entry.offset,
                timestamp: entry.timestamp,
                bytes: entry.bytes,
                message: entry.content.message(parser: parser)
            )
        }
        return window.read(after: position, current: current, limit: limit, candidates: candidates)
    }

    public func position(of stream: HistoryStream) async throws(RealtimeError) -> StreamPosition {
        using(stream) { state, window in
            let record = state.use(stream, window: window)
            return StreamPosition(epoch: record.epoch, offset: record.last)
        }
    }

    /// Runs `body` on the state under the lock, after forgetting unused streams and before enforcing the memory
    /// bound (sparing `stream`), with the window of `stream` at the current time.
    private func using<Result: Sendable>(
        _ stream: HistoryStream,
        _ body: (inout HistoryState, HistoryWindow) -> Result
    ) -> Result {
        let now = self.now()
        let configuration = self.configuration
        let window = HistoryWindow(limits: configuration.limits(for: stream), now: now)
        return state.withLock { state in
            state.sweep(now: now, retention: configuration.retention)
            let result = body(&state, window)
            state.evict(toFit: configuration.memoryLimitBytes, sparing: stream)
            return result
        }
    }

    public func trim(_ stream: HistoryStream, maxEntries: Int?, maxAge: Duration?) async throws(RealtimeError) {
        try HistoryWindow.checkTrim(maxEntries: maxEntries, maxAge: maxAge)
        let now = self.now()
        state.withLock { state in
            state.trim(stream, keeping: maxEntries, removingUpTo: maxAge.map { now - $0 })
        }
    }

    public func reset(_ stream: HistoryStream) async throws(RealtimeError) {
        state.withLock { state in
            guard let record = state.streams[stream] else { return }
            state.forget(record, reason: .reset)
        }
    }

    /// Counts and sizes, for health and tests.
    package var statistics:
        (streams: Int, entries: Int, bytes: Int, evictedEntries: Int, forgottenStreams: Int, resetStreams: Int)
    {
        state.withLock { state in
            (
                state.streams.count, state.entryCount, state.totalBytes, state.evictedEntries,
                state.forgottenStreams, state.resetStreams
            )
        }
    }

    /// Forgets the streams unused for ``HistoryConfiguration/retention`` now (the store also does it on every
    /// call).
    package func sweep() {
        let now = self.now()
        let retention = configuration.retention
        state.withLock { $0.sweep(now: now, retention: retention) }
    }

    /// Healthy, with the number of streams and entries, the estimated bytes against the limit, what the memory
    /// bound evicted and the idle sweep forgot, and how many streams ``reset(_:)`` ended.
    public func healthCheck() async -> ComponentHealth {
        let stats = statistics
        return ComponentHealth(
            status: .healthy,
            details: [
                "streams": .int(Int64(stats.streams)),
                "entries": .int(Int64(stats.entries)),
                "estimatedBytes": .int(Int64(stats.bytes)),
                "memoryLimitBytes": .int(Int64(configuration.memoryLimitBytes)),
                "evictedEntries": .int(Int64(stats.evictedEntries)),
                "forgottenStreams": .int(Int64(stats.forgottenStreams)),
                "resetStreams": .int(Int64(stats.resetStreams)),
            ]
        )
    }
}

/// What an entry keeps of its message.
///
/// An event that carries its encoded frame (every event a hub publishes does) is kept as that frame and the fields
/// around it; the decoded event is rebuilt on read, as the Redis store rebuilds it from its entries. So a recorded
/// event holds one allocation, the frame its connections were sent, instead of the decoded event (its data's
/// dictionaries and strings) for as long as the stream keeps it: half the memory, and a heap that does not fill
/// with small long-lived allocations. Anything else (a notification, an event without a valid frame) is kept as the
/// message.
private enum StoredContent {
    case event(origin: ServerID, route: BusRoute, scope: EventScope, timestamp: Timestamp, frame: String)
    case message(BusMessage)

    /// The deepest nesting a stored frame is decoded with (an event's data may nest as deep as its publisher made
    /// it; the publishing API accepts 16 levels). A deeper one reads as unreadable: the recovery answers `false`.
    static let maxDepth = 128

    init(_ message: BusMessage) {
        if case .event(let event) = message.payload, let frame = message.eventFrame, WireProtocol.isEventFrame(frame) {
            self = .event(
                origin: message.origin,
                route: message.route,
                scope: event.scope,
                timestamp: event.timestamp,
                frame: frame
            )
        } else {
            self = .message(message)
        }
    }

    /// The message, decoded from the frame for an event (`nil` if it does not decode: the read then stops there).
    func message(parser: JSONParser) -> BusMessage? {
        switch self {
        case .message(let message):
            return message
        case .event(let origin, let route, let scope, let timestamp, let frame):
            return BusMessage(
                origin: origin,
                route: route,
                scope: scope,
                timestamp: timestamp,
                eventFrame: frame,
                parser: parser
            )
        }
    }

}

/// One entry of an in-memory stream.
private struct StoredEntry {
    var offset: Int64
    var timestamp: Timestamp
    var content: StoredContent
    /// The encoded size (what reads count).
    var bytes: Int
    /// The estimated memory it takes (what the memory bound counts): its slot in the ring buffer, the encoded
    /// frame, the decoded message when it is kept too (about as large again), and their allocations' headers.
    var footprint: Int {
        switch content {
        case .event: MemoryLayout<StoredEntry>.stride + bytes + 128
        case .message: MemoryLayout<StoredEntry>.stride + 2 * bytes + 96
        }
    }
}

/// One in-memory stream, linked into the store's use order. A class, so one dictionary lookup reaches it and every
/// change is made in place; only the state's lock reaches it.
private final class StoredStream {
    /// Its key in the state's dictionary.
    let stream: HistoryStream
    let epoch: String
    var last: Int64 = 0
    var entries = Deque<StoredEntry>()
    /// Estimated memory of the stream and its entries.
    var footprint: Int
    var lastUsed: Timestamp
    /// Neighbours in use order, `older` toward the least recently used stream: references, so moving a stream in
    /// the order takes no dictionary lookup. They form cycles that ``HistoryState/forget(_:reason:)`` and
    /// ``HistoryState/unlinkAll()`` (when the store goes away) break.
    var older: StoredStream?
    var newer: StoredStream?

    init(stream: HistoryStream, epoch: String, footprint: Int, lastUsed: Timestamp) {
        self.stream = stream
        self.epoch = epoch
        self.footprint = footprint
        self.lastUsed = lastUsed
    }

    /// The estimated memory of a stream with no entry.
    static func overhead(_ stream: HistoryStream) -> Int {
        if case .user(let id) = stream { return 224 + 2 * id.utf8.count }
        return 224
    }
}

/// Every stream, in use order (a doubly linked list through the dictionary's values), with the memory they take.
private struct HistoryState {
    var streams: [HistoryStream: StoredStream] = [:]
    var oldest: StoredStream?
    var newest: StoredStream?
    var totalBytes = 0
    var entryCount = 0
    var evictedEntries = 0
    /// Streams dropped by the memory bound or the idle sweep.
    var forgottenStreams = 0
    /// Streams ended by ``InMemoryHistoryStore/reset(_:)`` (not a loss to the bound: the hub asked for it).
    var resetStreams = 0

    /// Why a stream is dropped, for the counts.
    enum ForgetReason {
        case unused
        case reset
    }

    /// The stream after marking it used now (creating it under a new epoch if it is unknown), with its entries
    /// past their age removed.
    mutating func use(_ stream: HistoryStream, window: HistoryWindow) -> StoredStream {
        let record: StoredStream
        if let known = streams[stream] {
            record = known
            if newest !== record {
                unlink(record)
                link(record)
            }
            record.lastUsed = window.now
        } else {
            let overhead = StoredStream.overhead(stream)
            record = StoredStream(
                stream: stream,
                epoch: RandomID.hex(bytes: 8),
                footprint: overhead,
                lastUsed: window.now
            )
            streams[stream] = record
            totalBytes += overhead
            link(record)
        }
        while let first = record.entries.first, window.isExpired(first.timestamp) {
            removeFirstEntry(of: record)
        }
        return record
    }

    /// Appends `message` to `stream`, setting its position.
    mutating func append(
        _ message: inout BusMessage,
        bytes: Int,
        to stream: HistoryStream,
        window: HistoryWindow
    ) {
        let record = use(stream, window: window)
        let offset = record.last + 1
        message.position = StreamPosition(epoch: record.epoch, offset: offset)
        let entry = StoredEntry(offset: offset, timestamp: window.now, content: StoredContent(message), bytes: bytes)
        let footprint = entry.footprint
        record.entries.append(entry)
        record.last = offset
        record.footprint += footprint
        totalBytes += footprint
        entryCount += 1
        while record.entries.count > window.limits.maxEntries { removeFirstEntry(of: record) }
    }

    /// Up to `count` entries of `record` from `offset + 1` on (its offsets are contiguous: removals take its
    /// oldest).
    func entries(of record: StoredStream, after offset: Int64, count: Int) -> [StoredEntry] {
        guard let first = record.entries.first?.offset else { return [] }
        let start = Int(clamping: max(0, offset + 1 - first))
        guard start < record.entries.count else { return [] }
        return Array(record.entries[start..<min(record.entries.count, start + count)])
    }

    mutating func trim(_ stream: HistoryStream, keeping maxEntries: Int?, removingUpTo cutoff: Timestamp?) {
        guard let record = streams[stream] else { return }
        while let first = record.entries.first,
            record.entries.count > (maxEntries ?? Int.max) || cutoff.map({ first.timestamp <= $0 }) == true
        {
            removeFirstEntry(of: record)
        }
    }

    /// Forgets the streams unused for `retention`, least recently used first.
    mutating func sweep(now: Timestamp, retention: Duration) {
        while let record = oldest, record.lastUsed + retention <= now {
            forget(record)
        }
    }

    /// Removes entries, then streams, least recently used first, until the estimate fits `limit`. The entries of
    /// `spared` (the stream just used) go last, and its newest entry stays.
    mutating func evict(toFit limit: Int, sparing spared: HistoryStream) {
        while totalBytes > limit, let record = oldest {
            if record.stream == spared {
                // Only the stream in use is left.
                guard record.entries.count > 1 else { return }
                removeFirstEntry(of: record)
                evictedEntries += 1
            } else if !record.entries.isEmpty {
                removeFirstEntry(of: record)
                evictedEntries += 1
            } else {
                forget(record)
            }
        }
    }

    private mutating func removeFirstEntry(of record: StoredStream) {
        guard let entry = record.entries.popFirst() else { return }
        record.footprint -= entry.footprint
        totalBytes -= entry.footprint
        entryCount -= 1
    }

    mutating func forget(_ record: StoredStream, reason: ForgetReason = .unused) {
        guard streams.removeValue(forKey: record.stream) != nil else { return }
        unlink(record)
        totalBytes -= record.footprint
        entryCount -= record.entries.count
        switch reason {
        case .unused: forgottenStreams += 1
        case .reset: resetStreams += 1
        }
    }

    /// Makes `record` the most recently used.
    private mutating func link(_ record: StoredStream) {
        record.older = newest
        record.newer = nil
        if let newest { newest.newer = record } else { oldest = record }
        newest = record
    }

    private mutating func unlink(_ record: StoredStream) {
        if let older = record.older { older.newer = record.newer } else { oldest = record.newer }
        if let newer = record.newer { newer.older = record.older } else { newest = record.older }
        record.older = nil
        record.newer = nil
    }

    /// Breaks every link between streams (their reference cycles), for the store's deinitialisation.
    mutating func unlinkAll() {
        var next = oldest
        while let record = next {
            next = record.newer
            record.older = nil
            record.newer = nil
        }
        oldest = nil
        newest = nil
    }
}
