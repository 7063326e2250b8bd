import Logging
import Synchronization

/// Recovery: a reconnecting client names its last position per stream in `subscribe`'s `recover`; the hub
/// subscribes it live (holding its live frames in a ``RecoverySeam``), replays what it missed from the
/// ``HistoryStore`` with the rules of live delivery, releases the held frames without repeats, and answers with a
/// `recovered` message. See `Documentation/Protocol.md` ("Recovery").
extension RealtimeHub {
    /// The `recovery` member of the `connected` message: `null` without a history store.
    func recoveryCapability(endpoint: Endpoint, userID: String) -> JSONValue {
        guard backends.historyStore != nil else { return .null }
        let limits = configuration.history.recovery
        return [
            "streams": .array(
                RecoveryRequest.streams(endpoint: endpoint, userID: userID).map { .string($0.description) }
            ),
            "maxEvents": .int(Int64(limits.maxEvents)),
            "maxBytes": .int(Int64(limits.maxBytes)),
        ]
    }

    /// How one stream's replay ended.
    struct StreamRecovery: Sendable {
        var recovered: Bool
        /// Why not (``HistoryUnavailableReason``'s raw values, `too_many_missed`, `unavailable`, `closed`).
        var reason: String?
        var replayed: Int
        /// The stream's position when last read, if it could be read.
        var current: StreamPosition?
    }

    /// The current positions of the streams `core` reads (those that could be read), for a client to start from.
    func currentPositions(of core: ConnectionCore, userID: String, history: any HistoryStore) async -> JSONObject {
        var positions: JSONObject = [:]
        for stream in RecoveryRequest.streams(endpoint: core.endpoint, userID: userID) {
            if let position = try? await history.position(of: stream) {
                positions[stream.description] = WireProtocol.positionValue(position, in: stream)
            }
        }
        return positions
    }

    /// Replays the missed entries of every stream of `request` to `core`, whose seam was begun, then ends the seam
    /// and answers with `recovered`. Runs inside a ``ReplayGate`` slot.
    func replay(_ request: RecoveryRequest, to core: ConnectionCore, userID: String, history: any HistoryStore) async {
        let limits = configuration.history.recovery
        var budget = (events: limits.maxEvents, bytes: limits.maxBytes)
        var outcomes: [HistoryStream: StreamRecovery] = [:]
        for stream in request.positions.keys.sorted(by: { $0.description < $1.description }) {
            guard let from = request.positions[stream] else { continue }
            let outcome = await replay(stream, from: from, to: core, history: history, budget: &budget)
            if !outcome.recovered && outcome.replayed == 0 {
                _ = state.withLock { $0.withSeam(core.id) { $0.abandon(stream) } }
            }
            outcomes[stream] = outcome
        }
        let positions = await currentPositions(of: core, userID: userID, history: history)
        core.state.withLock { $0.positionsSent = true }
        let recovered = outcomes.values.allSatisfy(\.recovered)
        let replayed = outcomes.values.reduce(0) { $0 + $1.replayed }
        var streams: JSONObject = [:]
        for (stream, outcome) in outcomes {
            var entry: JSONObject = ["recovered": .bool(outcome.recovered), "replayed": .int(Int64(outcome.replayed))]
            if let reason = outcome.reason { entry["reason"] = .string(reason) }
            if let current = outcome.current { entry["position"] = WireProtocol.positionValue(current, in: stream) }
            streams[stream.description] = .object(entry)
        }
        let answer = WireProtocol.message(
            "recovered",
            payload: [
                "recovered": .bool(recovered),
                "replayed": .int(Int64(replayed)),
                "streams": .object(streams),
                "positions": .object(positions),
            ]
        )
        let answered = state.withLock { state in
            // Under the lock: no live frame can slip between the held ones and the answer.
            guard let held = state.endRecovery(core.id) else { return false }
            for frame in held { _ = core.queue.enqueue(frame, force: true) }
            _ = core.queue.enqueue(.text(answer), force: true)
            return true
        }
        // What was replayed was queued, answered or not.
        counters.eventsReplayed.add(replayed, ordering: .relaxed)
        // Closed during the replay (a revocation's close ended the seam): no answer, which would claim a recovery
        // that did not reach the client.
        guard answered else { return }
        counters.recoveries.add(1, ordering: .relaxed)
        if !recovered { counters.recoveriesFailed.add(1, ordering: .relaxed) }
        logger.debug(
            "recovery",
            metadata: [
                "realtime.connection.id": "\(core.id)",
                "realtime.recovered": "\(recovered)",
                "realtime.replayed": "\(replayed)",
            ]
        )
    }

    /// Replays one stream after `from`, page by page, within `budget`.
    private func replay(
        _ stream: HistoryStream,
        from: StreamPosition,
        to core: ConnectionCore,
        history: any HistoryStore,
        budget: inout (events: Int, bytes: Int)
    ) async -> StreamRecovery {
        let pageSize = max(1, configuration.history.recovery.pageSize)
        var outcome = StreamRecovery(recovered: false, reason: nil, replayed: 0, current: nil)
        var after = from
        var first = true
        // Messages went out on it without positions and its epoch could not be ended yet: no complete replay.
        guard !owesHistoryReset(stream) else {
            outcome.reason = "unavailable"
            return outcome
        }
        while true {
            guard core.state.withLock({ $0.closeCode == nil }) else {
                outcome.reason = "closed"
                return outcome
            }
            let limit = HistoryReadLimit(
                maxEntries: min(pageSize, max(1, budget.events)),
                maxBytes: max(1, budget.bytes)
            )
            let read: HistoryRead
            do {
                read = try await history.read(stream, after: after, limit: limit)
            } catch {
                logger.warning("history read failed during recovery", metadata: ["realtime.error": "\(error)"])
                outcome.reason = "unavailable"
                return outcome
            }
            let page: HistoryPage
            switch read {
            case .unavailable(let reason, let current):
                outcome.reason = reason.rawValue
                outcome.current = current
                return outcome
            case .page(let read):
                page = read
            }
            outcome.current = page.current
            if first {
                first = false
                // Refused before anything is replayed: never a partial replay of what is known to be too much.
                if page.current.offset - from.offset > Int64(budget.events) {
                    outcome.reason = "too_many_missed"
                    return outcome
                }
            }
            // Encoded outside the lock; filtered and queued under it, in offset order.
            let frames = page.entries.map { entry in Self.replayFrame(entry, of: stream) }
            var bytes = 0
            let delivered = state.withLock { state -> Int in
                var delivered = 0
                for item in frames {
                    guard state.withSeam(core.id, { $0.replay(stream, item.position) }) == true,
                        let frame = item.frame
                    else { continue }
                    switch item.entry {
                    case .event(let event):
                        guard state.wouldDeliver(event, key: state.matchKey(event.type), route: item.route, to: core.id)
                        else { continue }
                    case .notification:
                        guard state.wouldDeliverNotification(route: item.route, to: core.id) else { continue }
                    case nil:
                        continue
                    }
                    if core.queue.enqueue(.text(frame), force: true) == .queued {
                        if case .event(let event) = item.entry { state.replayed(event, to: core.id) }
                        delivered += 1
                        bytes += frame.utf8.count
                    }
                }
                return delivered
            }
            outcome.replayed += delivered
            budget.events -= page.entries.count
            budget.bytes -= bytes
            if page.isComplete {
                outcome.recovered = true
                return outcome
            }
            guard let last = page.entries.last, budget.events > 0, budget.bytes > 0 else {
                outcome.reason = "too_many_missed"
                return outcome
            }
            after = last.position
        }
    }

    /// What a replayed history entry is: an event, or an administrators' or everyone's notification.
    enum ReplayedEntry {
        case event(RealtimeEvent)
        case notification
    }

    /// A history entry of `stream` with the frame a client receives for it, or no frame when it is nothing the
    /// stream may hold (an event on a route its scope does not allow, a notification outside its target's stream).
    static func replayFrame(
        _ entry: HistoryEntry,
        of stream: HistoryStream
    ) -> (position: StreamPosition, entry: ReplayedEntry?, route: BusRoute, frame: String?) {
        let route = entry.message.route
        guard route == stream.route else { return (entry.position, nil, route, nil) }
        switch entry.message.payload {
        case .event(let event) where scope(event.scope, allows: route):
            return (entry.position, .event(event), route, WireProtocol.eventFrame(for: entry.message, event))
        case .notification(let notification) where routes(for: notification.target)[0] == route:
            let frame = WireProtocol.notificationFrame(notification, position: entry.position)
            return (entry.position, .notification, route, frame)
        default:
            return (entry.position, nil, route, nil)
        }
    }
}
