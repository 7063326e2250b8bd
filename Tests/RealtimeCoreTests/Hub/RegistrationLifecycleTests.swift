import Testing

@testable import RealtimeCore

/// The registry lifecycle of one connection, transition by transition.
@Suite struct RegistrationLifecycleTests {
    typealias Lifecycle = RegistrationLifecycle

    @Test func registersThenUnregistersOnClose() {
        var action = Lifecycle.Action.none
        var started = false
        var lifecycle = Lifecycle()
        #expect(lifecycle.isSettled)
        started = lifecycle.startRegistering()
        #expect(started)
        #expect(lifecycle.phase == .registering(closeRequested: false))
        action = lifecycle.registerSucceeded()
        #expect(action == .none)
        #expect(lifecycle.isRegistered)
        action = lifecycle.close()
        #expect(action == .unregister)
        #expect(lifecycle.phase == .unregistering)
        action = lifecycle.close()
        #expect(action == .none, "a second close never unregisters twice")
        lifecycle.unregisterFinished()
        #expect(lifecycle.isSettled)
        action = lifecycle.close()
        #expect(action == .none)
    }

    @Test func aCloseDuringTheWriteUnregistersOnceTheWriteCompletes() {
        var action = Lifecycle.Action.none
        var started = false
        var lifecycle = Lifecycle()
        started = lifecycle.startRegistering()
        #expect(started)
        action = lifecycle.close()
        #expect(action == .none, "no unregister may overtake the register in flight")
        #expect(lifecycle.phase == .registering(closeRequested: true))
        action = lifecycle.close()
        #expect(action == .none)
        action = lifecycle.registerSucceeded()
        #expect(action == .unregister)
        #expect(lifecycle.phase == .unregistering)
        lifecycle.unregisterFinished()
        #expect(lifecycle.isSettled)
    }

    @Test func aRefusedWriteLeavesNothingToRemove() {
        var action = Lifecycle.Action.none
        var started = false
        var open = Lifecycle()
        started = open.startRegistering()
        #expect(started)
        open.registerRefused()
        #expect(open.isSettled)

        var closed = Lifecycle()
        started = closed.startRegistering()
        #expect(started)
        action = closed.close()
        #expect(action == .none)
        closed.registerRefused()
        #expect(closed.isSettled)
        action = closed.close()
        #expect(action == .none)
    }

    @Test func aFailedWriteCountsAsWritten() {
        var action = Lifecycle.Action.none
        var started = false
        var open = Lifecycle()
        started = open.startRegistering()
        #expect(started)
        action = open.registerFailed()
        #expect(action == .none)
        #expect(open.isRegistered)
        action = open.close()
        #expect(action == .unregister)

        var closed = Lifecycle()
        started = closed.startRegistering()
        #expect(started)
        action = closed.close()
        #expect(action == .none)
        action = closed.registerFailed()
        #expect(action == .unregister)
        #expect(closed.phase == .unregistering)
    }

    @Test func reRegistersOnlyALiveRegistration() {
        var action = Lifecycle.Action.none
        var started = false
        var lifecycle = Lifecycle()
        started = lifecycle.startRegistering()
        #expect(started)
        started = lifecycle.startRegistering()
        #expect(!started, "one write at a time")
        action = lifecycle.registerSucceeded()
        #expect(action == .none)
        // The store lost the record: the heartbeat writes it again, and the client leaves meanwhile.
        started = lifecycle.startRegistering()
        #expect(started)
        action = lifecycle.close()
        #expect(action == .none)
        action = lifecycle.registerSucceeded()
        #expect(action == .unregister)
        started = lifecycle.startRegistering()
        #expect(!started, "never re-register while the removal is in flight")
        lifecycle.unregisterFinished()
        #expect(lifecycle.isSettled)
    }

    @Test func removingTheServerSettlesRecordsAndRemovesWritesInFlight() {
        var action = Lifecycle.Action.none
        var started = false
        var registered = Lifecycle()
        started = registered.startRegistering()
        #expect(started)
        action = registered.registerSucceeded()
        #expect(action == .none)
        registered.serverRemoved()
        #expect(registered.isSettled)

        var writing = Lifecycle()
        started = writing.startRegistering()
        #expect(started)
        writing.serverRemoved()
        action = writing.registerSucceeded()
        #expect(action == .unregister)

        var removing = Lifecycle()
        started = removing.startRegistering()
        #expect(started)
        action = removing.registerSucceeded()
        #expect(action == .none)
        action = removing.close()
        #expect(action == .unregister)
        removing.serverRemoved()
        #expect(removing.phase == .unregistering)
    }

    @Test func transitionsOutOfTurnChangeNothing() {
        var action = Lifecycle.Action.none
        var started = false
        var lifecycle = Lifecycle()
        action = lifecycle.registerSucceeded()
        #expect(action == .none)
        action = lifecycle.registerFailed()
        #expect(action == .none)
        lifecycle.registerRefused()
        lifecycle.unregisterFinished()
        #expect(lifecycle.isSettled)
        started = lifecycle.startRegistering()
        #expect(started)
        lifecycle.unregisterFinished()
        #expect(lifecycle.phase == .registering(closeRequested: false))
    }
}
