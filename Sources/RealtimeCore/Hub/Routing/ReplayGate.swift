import DequeModule
import Synchronization

/// The admission rule of recoveries on one server: at most `maxRunning` replays at once, the next ones wait in
/// arrival order, at most `maxWaiting` of them; beyond that a recovery is refused (the client is told
/// `recovered: false`, reason `busy`). A reconnect storm thus costs the server a bounded number of concurrent
/// history reads and a bounded queue of waiting connections, and live delivery keeps its share of the CPU.
///
/// A pure value (the ``ReplayGate`` runs it under a lock) so its rules are tested without tasks.
struct ReplayGateState: Sendable {
    enum EnterAction: Equatable {
        case run
        case wait
        case refuse
    }

    let maxRunning: Int
    let maxWaiting: Int
    private(set) var running = 0
    private(set) var waiting = Deque<UInt64>()

    init(maxRunning: Int, maxWaiting: Int) {
        self.maxRunning = max(1, maxRunning)
        self.maxWaiting = max(0, maxWaiting)
    }

    /// A recovery (`waiter`) asks to run.
    mutating func enter(_ waiter: UInt64) -> EnterAction {
        if running < maxRunning && waiting.isEmpty {
            running += 1
            return .run
        }
        guard waiting.count < maxWaiting else { return .refuse }
        waiting.append(waiter)
        return .wait
    }

    /// A running recovery ended; returns the waiter that runs in its place, if any.
    mutating func leave() -> UInt64? {
        if let next = waiting.popFirst() { return next }
        running = max(0, running - 1)
        return nil
    }

    /// A waiter gave up (its task was cancelled); whether it was still waiting.
    mutating func cancel(_ waiter: UInt64) -> Bool {
        guard let index = waiting.firstIndex(of: waiter) else { return false }
        waiting.remove(at: index)
        return true
    }
}

/// Runs ``ReplayGateState`` for tasks: ``enter()`` suspends a waiting recovery until a running one ``leave()``s.
final class ReplayGate: Sendable {
    private struct State: ~Copyable {
        var rules: ReplayGateState
        var continuations: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state: Mutex<State>

    init(maxRunning: Int, maxWaiting: Int) {
        state = Mutex(State(rules: ReplayGateState(maxRunning: maxRunning, maxWaiting: maxWaiting)))
    }

    /// Waits for a slot; false when refused (too many waiting) or cancelled while waiting. Call ``leave()`` after
    /// a true answer.
    func enter() async -> Bool {
        let waiter = state.withLock { state in
            state.nextWaiter += 1
            return state.nextWaiter
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let answer: Bool? = state.withLock { state in
                    switch state.rules.enter(waiter) {
                    case .run: return true
                    case .refuse: return false
                    case .wait:
                        state.continuations[waiter] = continuation
                        return nil
                    }
                }
                if let answer { continuation.resume(returning: answer) }
            }
        } onCancel: {
            // A cancellation before the waiter queued finds nothing: the waiter then waits for its turn, which
            // comes (every running recovery is bounded), and its recovery finds the connection closed.
            let continuation = state.withLock { state in
                state.rules.cancel(waiter) ? state.continuations.removeValue(forKey: waiter) : nil
            }
            continuation?.resume(returning: false)
        }
    }

    /// Ends a recovery that ``enter()`` let run.
    func leave() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            guard let waiter = state.rules.leave() else { return nil }
            return state.continuations.removeValue(forKey: waiter)
        }
        next?.resume(returning: true)
    }

    /// Recoveries running and waiting now.
    var load: (running: Int, waiting: Int) {
        state.withLock { ($0.rules.running, $0.rules.waiting.count) }
    }
}
