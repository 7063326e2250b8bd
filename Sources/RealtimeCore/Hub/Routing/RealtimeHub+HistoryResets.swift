import Logging
import Synchronization

/// Streams whose messages went out without positions, and why each one's epoch is ended.
///
/// When the history store cannot record a publish (Redis out of memory, a failover, a script error), the hub still
/// delivers it, without a position: delivery beats history. A client that was away then would, on reconnecting, be
/// replayed the stream without that message and told `recovered: true`. So before such messages are published,
/// the hub ends the epoch of every stream they belong to (``HistoryStore/reset(_:)``): a recovery from an earlier
/// position then answers `recovered: false`, and the client resynchronises from its own source of truth. A reset
/// that fails is remembered (at most ``maxPendingHistoryResets`` streams) and tried again at every server heartbeat.
extension RealtimeHub {
    /// The most streams the hub remembers to reset while the history store fails; more are logged as an error and
    /// counted (`server.history.resetsLost`).
    static let maxPendingHistoryResets = 10_000

    /// Ends the epoch of every stream of `messages` (those with history), before they are published without
    /// positions. Stops at the first failure and remembers the rest: the store is failing.
    func resetStreams(of messages: some Sequence<BusMessage>) async {
        var streams: [HistoryStream] = []
        var seen: Set<HistoryStream> = []
        for message in messages {
            guard let stream = HistoryStream(message.route), seen.insert(stream).inserted else { continue }
            streams.append(stream)
        }
        await reset(streams)
    }

    /// Tries the resets that failed again (the run loop, after each server heartbeat).
    func retryHistoryResets() async {
        let pending = state.withLock { state -> [HistoryStream] in
            defer { state.pendingHistoryResets = [] }
            return Array(state.pendingHistoryResets)
        }
        guard !pending.isEmpty else { return }
        await reset(pending)
    }

    private func reset(_ streams: [HistoryStream]) async {
        guard let history = backends.historyStore, !streams.isEmpty else { return }
        var done = 0
        var failure: RealtimeError?
        for stream in streams {
            do {
                try await history.reset(stream)
                done += 1
            } catch {
                failure = error
                break
            }
        }
        counters.historyResets.add(done, ordering: .relaxed)
        guard let failure else { return }
        let (lost, pending) = state.withLock { state -> (Int, Int) in
            var lost = 0
            for stream in streams[done...] where !state.pendingHistoryResets.contains(stream) {
                if state.pendingHistoryResets.count < Self.maxPendingHistoryResets {
                    state.pendingHistoryResets.insert(stream)
                } else {
                    lost += 1
                }
            }
            return (lost, state.pendingHistoryResets.count)
        }
        logger.warning(
            "could not end the epoch of a stream published without positions; trying again at the next heartbeat",
            metadata: ["realtime.error": "\(failure)", "realtime.count": "\(pending)"]
        )
        if lost > 0 {
            counters.historyResetsLost.add(lost, ordering: .relaxed)
            logger.error(
                "too many streams waiting for an epoch reset; a client recovering on them may be told its replay is complete without the messages published meanwhile",
                metadata: ["realtime.count": "\(lost)"]
            )
        }
    }
}
