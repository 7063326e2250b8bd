import Synchronization

/// Wakes the interest reconciler and lets `connect` wait until a user's route is heard.
final class InterestSignal: Sendable {
    private struct State {
        var requested: UInt64 = 0
        var applied: UInt64 = 0
        var waiters:
            [(generation: UInt64, deadline: ContinuousClock.Instant, continuation: CheckedContinuation<Void, Never>)] =
                []
        var wakeup: CheckedContinuation<Void, Never>?
        var wakePending = false
    }

    private let state = Mutex(State())

    /// Records that the desired interest changed; returns the generation to wait for.
    func request() -> UInt64 {
        let (generation, wakeup) = state.withLock { state -> (UInt64, CheckedContinuation<Void, Never>?) in
            state.requested += 1
            let wakeup = state.wakeup
            state.wakeup = nil
            if wakeup == nil { state.wakePending = true }
            return (state.requested, wakeup)
        }
        wakeup?.resume()
        return generation
    }

    /// Suspends the reconciler until something changed. Returns the generation it should apply up to.
    func waitForRequest() async -> UInt64 {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.wakePending || Task.isCancelled {
                        state.wakePending = false
                        return true
                    }
                    state.wakeup = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let wakeup = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.wakeup = nil }
                return state.wakeup
            }
            wakeup?.resume()
        }
        return state.withLock { $0.requested }
    }

    /// Marks everything up to `generation` applied and releases those waiting for it.
    func applied(_ generation: UInt64) {
        let ready = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.applied = max(state.applied, generation)
            let applied = state.applied
            let ready = state.waiters.filter { $0.generation <= applied }.map(\.continuation)
            state.waiters.removeAll { $0.generation <= applied }
            return ready
        }
        for continuation in ready { continuation.resume() }
    }

    /// Waits until `generation` is applied, at most two seconds, and only while a subscription is running.
    func waitUntilApplied(_ generation: UInt64, whileRunning running: Bool) async {
        guard running else { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.applied >= generation { return true }
                state.waiters.append((generation, .now + .seconds(2), continuation))
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    /// Releases waiters past their deadline (the bus is slow or down: don't hold connections hostage).
    func expireWaiters(now: ContinuousClock.Instant, all: Bool = false) {
        let expired = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let expired = state.waiters.filter { all || $0.deadline <= now }.map(\.continuation)
            state.waiters.removeAll { all || $0.deadline <= now }
            return expired
        }
        for continuation in expired { continuation.resume() }
    }
}

/// A one-shot signal that ends ``RealtimeHub/run()``.
final class StopSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.fired = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    var fired: Bool { state.withLock { $0.fired } }

    func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = state.withLock { state -> Bool in
                if state.fired { return true }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
    }
}
