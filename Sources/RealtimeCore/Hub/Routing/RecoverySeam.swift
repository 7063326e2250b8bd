/// Joins a connection's replay of missed events to its live delivery with no duplicate and no gap: the
/// connection is subscribed live first, its live frames are held here while history is read and delivered, then
/// the held frames follow, without those history already delivered.
///
/// Why this closes the seam: every event recorded before the history read is in the read; every event published
/// after the live subscription took effect (which precedes the read) reaches the connection live and is held
/// here. The two overlap, never miss; the overlap is removed by position (same stream, same epoch, offset not
/// above the last one replayed or skipped).
///
/// A value living in the hub's `HubState` (under its lock, like all fan-out), driven by the recovery: ``live(_:)``
/// from fan-out, ``replay(_:_:)`` for each history entry in offset order, ``abandon(_:)`` for a stream whose history
/// could not be read, ``finish()`` at the end, or ``end()`` when the connection is being closed first.
struct RecoverySeam: Sendable {
    /// A live frame held during the replay.
    struct Held: Sendable {
        var frame: OutboundFrame
        var stream: HistoryStream?
        var position: StreamPosition?
    }

    enum LiveAction: Equatable {
        /// Held until ``finish()``.
        case held
        /// The hold bound was reached: the connection is a slow consumer (as when its outbound queue overflows).
        case overflow
        /// The seam was ended (``end()``): the connection is being closed, nothing more is held or delivered.
        case dropped
    }

    /// The last position replayed or skipped per stream under recovery.
    private(set) var reached: [HistoryStream: StreamPosition]
    private(set) var held: [Held] = []
    private var heldBytes = 0
    private let maxFrames: Int
    private let maxBytes: Int
    /// ``end()`` was called.
    private(set) var isEnded = false

    /// - Parameters:
    ///   - positions: the client's last position per stream to recover.
    ///   - maxFrames, maxBytes: the most live frames held (the outbound queue's bounds).
    init(from positions: [HistoryStream: StreamPosition], maxFrames: Int, maxBytes: Int) {
        reached = positions
        self.maxFrames = maxFrames
        self.maxBytes = maxBytes
    }

    /// A live frame for the connection (already filtered by its patterns and visibility), with its stream and
    /// position when it was recorded.
    mutating func live(_ held: Held) -> LiveAction {
        guard !isEnded else { return .dropped }
        let bytes = held.frame.byteCount
        guard self.held.count < maxFrames, heldBytes + bytes <= maxBytes else { return .overflow }
        self.held.append(held)
        heldBytes += bytes
        return .held
    }

    /// Whether a history entry at `position` of `stream` is to be delivered: only the one right after the
    /// stream's last position replayed (offset order, no repeat). Advances the stream's position either way
    /// when the entry is the next one, so an entry the connection may not see still counts as replayed.
    mutating func replay(_ stream: HistoryStream, _ position: StreamPosition) -> Bool {
        guard !isEnded, let last = reached[stream], last.epoch == position.epoch, position.offset == last.offset + 1
        else {
            return false
        }
        reached[stream] = position
        return true
    }

    /// The stream's history could not be read: its held frames are all delivered (nothing of it was replayed).
    mutating func abandon(_ stream: HistoryStream) {
        reached[stream] = nil
    }

    /// The connection is being closed before its recovery finished: the held frames are dropped (they would follow
    /// a replay that will not complete), and from now on nothing is held (``live(_:)`` answers ``LiveAction/dropped``)
    /// nor replayed (``replay(_:_:)`` answers false). Recovery then ends without its `recovered` answer.
    mutating func end() {
        isEnded = true
        held = []
        heldBytes = 0
    }

    /// The held frames to deliver after the replay, in arrival order, without those the replay delivered.
    mutating func finish() -> [OutboundFrame] {
        defer {
            held = []
            heldBytes = 0
        }
        return held.compactMap { item in
            if let stream = item.stream, let position = item.position, let last = reached[stream],
                last.epoch == position.epoch, position.offset <= last.offset
            {
                return nil
            }
            return item.frame
        }
    }
}
