public import RealtimeCore
import Synchronization

/// A `ConnectionStore` that forwards every call to another one, and lets a test hold a `register` call at a
/// chosen point or lose its reply, so that something (a close, a ticket expiry, a heartbeat) happens exactly while
/// a registration is in flight — deterministically, instead of by timing luck.
///
/// ```swift
/// let store = PausingConnectionStore(InMemoryConnectionStore())
/// let hold = store.holdNextRegister(at: .afterWrite)
/// async let decision = hub.authorizeUpgrade(request)
/// try await hold.arrived()    // the record is written, the hub waits for the reply
/// // … close, expire or reconcile here …
/// hold.release()
/// ```
public final class PausingConnectionStore: ConnectionStore {
    /// Where a held `register` call waits.
    public enum Point: Sendable {
        /// Before the call reaches the store: nothing is written yet.
        case beforeWrite
        /// After the store wrote the record, before the caller gets the reply.
        case afterWrite
    }

    /// One held `register` call.
    public final class Hold: Sendable {
        private struct State {
            var released = false
            var holder: CheckedContinuation<Void, Never>?
        }

        private let state = Mutex(State())
        private let arrival = Signal()
        /// Called when a wait for the arrival failed: the store forgets the hold if no call took it yet, so the
        /// next hold a test arms applies to the next call.
        private let onAbandon: @Sendable (Hold) -> Void

        fileprivate init(onAbandon: @escaping @Sendable (Hold) -> Void) {
            self.onAbandon = onAbandon
        }

        /// Waits until the held call reached its point. If it does not within `timeout` (a hang guard, not a timing
        /// requirement), or the waiting task is cancelled (a test's time limit), releases the hold, so that nothing
        /// stays blocked behind it, and throws.
        public func arrived(timeout: Duration = .seconds(20)) async throws {
            guard await arrival.wait(timeout: timeout) else {
                release()
                onAbandon(self)
                try Task.checkCancellation()
                throw TestTimeout(description: "the held register call did not reach its point within \(timeout)")
            }
        }

        /// Lets the held call go on. Idempotent.
        public func release() {
            let holder = state.withLock { state -> CheckedContinuation<Void, Never>? in
                state.released = true
                defer { state.holder = nil }
                return state.holder
            }
            holder?.resume()
        }

        /// The store's side: reports the arrival, then waits for ``release()`` or for its task's cancellation (a
        /// test that failed and left its scope cancels the call it held, which must not stay blocked).
        fileprivate func pass() async {
            arrival.fire()
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let go = state.withLock { state -> Bool in
                        if !state.released && !Task.isCancelled { state.holder = continuation }
                        return state.released || Task.isCancelled
                    }
                    if go { continuation.resume() }
                }
            } onCancel: {
                release()
            }
        }
    }

    private struct State {
        var holds: [(point: Point, hold: Hold)] = []
        var lostReplies = 0
        var heartbeats = 0
        var failingHeartbeats = false
        var heartbeatWaiters: [(count: Int, signal: Signal)] = []
    }

    /// The store every call goes to.
    public let base: any ConnectionStore
    private let state = Mutex(State())

    public init(_ base: any ConnectionStore) {
        self.base = base
    }

    /// Holds the next `register` call at `point` until the returned hold is released. Holds apply in the order
    /// they were armed, one per call.
    public func holdNextRegister(at point: Point) -> Hold {
        let hold = Hold { [weak self] abandoned in
            self?.state.withLock { $0.holds.removeAll { $0.hold === abandoned } }
        }
        state.withLock { $0.holds.append((point, hold)) }
        return hold
    }

    /// Makes the next `register` call write the record and then fail with
    /// `RealtimeError.Code.backendUnavailable`, as when the connection to the store is lost before the reply.
    public func loseNextRegisterReply() {
        state.withLock { $0.lostReplies += 1 }
    }

    /// While `true`, every server heartbeat fails with `RealtimeError.Code.backendUnavailable` before it reaches the
    /// base store (it still counts in ``heartbeats``), as while the registry's Redis fails over.
    public func failHeartbeats(_ failing: Bool) {
        state.withLock { $0.failingHeartbeats = failing }
    }

    /// How many server heartbeats reached the store (those ``failHeartbeats(_:)`` failed included).
    public var heartbeats: Int { state.withLock { $0.heartbeats } }

    /// Waits until at least `count` server heartbeats reached the store (each hub heartbeat that succeeds reconciles
    /// its registrations right after its heartbeat call). Throws after `timeout` (a hang guard) or on cancellation.
    public func waitForHeartbeats(_ count: Int, timeout: Duration = .seconds(20)) async throws {
        let signal = Signal()
        state.withLock { state in
            if state.heartbeats >= count { signal.fire() } else { state.heartbeatWaiters.append((count, signal)) }
        }
        guard await signal.wait(timeout: timeout) else {
            try Task.checkCancellation()
            throw TestTimeout(description: "fewer than \(count) server heartbeats within \(timeout) (\(heartbeats))")
        }
    }

    public func register(
        _ record: ConnectionRecord,
        maxConnectionsPerUser: Int?
    ) async throws(RealtimeError) -> ConnectionRegistration {
        let (held, loseReply) = state.withLock { state -> ((point: Point, hold: Hold)?, Bool) in
            let held = state.holds.isEmpty ? nil : state.holds.removeFirst()
            let loseReply = state.lostReplies > 0
            if loseReply { state.lostReplies -= 1 }
            return (held, loseReply)
        }
        if let held, held.point == .beforeWrite { await held.hold.pass() }
        let outcome = try await base.register(record, maxConnectionsPerUser: maxConnectionsPerUser)
        if let held, held.point == .afterWrite { await held.hold.pass() }
        if loseReply { throw RealtimeError(.backendUnavailable, "the reply was lost (PausingConnectionStore)") }
        return outcome
    }

    public func unregister(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRemoval? {
        try await base.unregister(id)
    }

    public func connection(_ id: ConnectionID) async throws(RealtimeError) -> ConnectionRecord? {
        try await base.connection(id)
    }

    public func connections(ofUser userID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        try await base.connections(ofUser: userID)
    }

    public func connections(ofSession sessionID: String) async throws(RealtimeError) -> [ConnectionRecord] {
        try await base.connections(ofSession: sessionID)
    }

    public func connections(
        ofServer serverID: ServerID,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage {
        try await base.connections(ofServer: serverID, after: cursor, limit: limit)
    }

    public func count(_ scope: ConnectionCountScope) async throws(RealtimeError) -> Int {
        try await base.count(scope)
    }

    public func heartbeat(_ server: ServerRecord) async throws(RealtimeError) {
        let failing = state.withLock { $0.failingHeartbeats }
        if !failing { try await base.heartbeat(server) }
        let ready = state.withLock { state -> [Signal] in
            state.heartbeats += 1
            let count = state.heartbeats
            let ready = state.heartbeatWaiters.filter { $0.count <= count }.map(\.signal)
            state.heartbeatWaiters.removeAll { $0.count <= count }
            return ready
        }
        for signal in ready { signal.fire() }
        if failing { throw RealtimeError(.backendUnavailable, "the registry is failing over (test)") }
    }

    public func servers() async throws(RealtimeError) -> [ServerRecord] {
        try await base.servers()
    }

    public func removeServer(_ id: ServerID) async throws(RealtimeError) -> PurgedServer {
        try await base.removeServer(id)
    }

    public func purgeExpiredServers() async throws(RealtimeError) -> [PurgedServer] {
        try await base.purgeExpiredServers()
    }

    public func healthCheck() async -> ComponentHealth {
        await base.healthCheck()
    }
}
