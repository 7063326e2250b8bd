import Logging
import Synchronization

/// Streams whose messages went out without positions, and why each one's epoch is ended.
///
/// When the history store cannot record a publish (Redis out of memory, a failover, a script error), the hub still
/// delivers it, without a position: delivery beats history. A client that was away then would, on reconnecting, be
/// replayed the stream without that message and told `recovered: true`. So the hub ends the epoch of every stream
/// such messages belong to (``HistoryStore/reset(_:)``) before it publishes them (a recovery that reads the stream
/// before that ran before the message existed, and its client gets the message live) and again once they are
/// published (an epoch another server started meanwhile does not contain them either). A recovery from an earlier
/// position then answers `recovered: false`, and the client resynchronises from its own source of truth.
///
/// A reset that fails is owed: the stream is kept in `HubState.pendingHistoryResets` (at most
/// ``maxPendingHistoryResets``) until a reset of it succeeds, tried again at every run-loop tick and once more when
/// the hub drains; a recovery on this server answers `unavailable` for an owed stream. While resets fail, a publish
/// does not wait for another one: its streams join the owed ones.
extension RealtimeHub {
    /// The most streams the hub remembers to reset while the history store fails; more are logged as an error and
    /// counted (`server.history.resetsLost`).
    static let maxPendingHistoryResets = 10_000

    /// Ends the epoch of every stream of `messages` (those with history): before they are published without
    /// positions, and again after.
    func resetStreams(of messages: some Sequence<BusMessage>) async {
        var streams: [HistoryStream] = []
        var seen: Set<HistoryStream> = []
        for message in messages {
            guard let stream = HistoryStream(message.route), seen.insert(stream).inserted else { continue }
            streams.append(stream)
        }
        guard backends.historyStore != nil, !streams.isEmpty else { return }
        let (now, lost) = state.withLock { state -> ([(HistoryStream, Int)], Int) in
            // The store is failing: owe them all instead of waiting for another failure.
            guard state.historyResetsFailing else { return (streams.map { ($0, -1) }, 0) }
            return ([], owe(streams[...], in: &state))
        }
        report(lost: lost)
        await attempt(now)
    }

    /// Tries the owed resets again (the run loop, every tick; the drain, once).
    func retryHistoryResets() async {
        let owed = state.withLock { state in state.pendingHistoryResets.map { ($0.key, $0.value) } }
        guard !owed.isEmpty else { return }
        await attempt(owed)
    }

    /// Whether this server owes `stream` a reset (a recovery on it cannot be told it is complete).
    func owesHistoryReset(_ stream: HistoryStream) -> Bool {
        state.withLock { $0.pendingHistoryResets[stream] != nil }
    }

    /// Resets each stream in order, stopping at the first failure; `generation` is the stream's entry in the owed
    /// ones when it came from there (-1 otherwise): it is settled only if no publish owed it again meanwhile.
    private func attempt(_ streams: [(stream: HistoryStream, generation: Int)]) async {
        guard let history = backends.historyStore, !streams.isEmpty else { return }
        var done = 0
        var failure: RealtimeError?
        for (stream, _) in streams {
            do {
                try await history.reset(stream)
                done += 1
            } catch {
                failure = error
                break
            }
        }
        counters.historyResets.add(done, ordering: .relaxed)
        let (lost, owedNow) = state.withLock { state -> (Int, Int) in
            for (stream, generation) in streams[..<done] where generation >= 0 {
                if state.pendingHistoryResets[stream] == generation { state.pendingHistoryResets[stream] = nil }
            }
            state.historyResetsFailing = failure != nil
            let lost = failure == nil ? 0 : owe(streams[done...].map(\.stream)[...], in: &state)
            return (lost, state.pendingHistoryResets.count)
        }
        guard let failure else { return }
        logger.warning(
            "could not end the epoch of a stream published without positions; trying again",
            metadata: ["realtime.error": "\(failure)", "realtime.count": "\(owedNow)"]
        )
        report(lost: lost)
    }

    /// Counts and logs streams that did not fit in the owed resets.
    private func report(lost: Int) {
        guard lost > 0 else { return }
        counters.historyResetsLost.add(lost, ordering: .relaxed)
        logger.error(
            "too many streams waiting for an epoch reset; a client recovering on them may be told its replay is complete without the messages published meanwhile",
            metadata: ["realtime.count": "\(lost)"]
        )
    }

    /// Adds `streams` to the owed resets (a new generation for one already owed); returns how many did not fit.
    private func owe(_ streams: ArraySlice<HistoryStream>, in state: inout HubState) -> Int {
        var lost = 0
        for stream in streams {
            if state.pendingHistoryResets[stream] != nil
                || state.pendingHistoryResets.count < Self.maxPendingHistoryResets
            {
                state.nextHistoryResetGeneration += 1
                state.pendingHistoryResets[stream] = state.nextHistoryResetGeneration
            } else {
                lost += 1
            }
        }
        return lost
    }
}
