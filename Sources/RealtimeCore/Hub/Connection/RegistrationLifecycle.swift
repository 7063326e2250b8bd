/// Where one connection's record in the cluster registry (the ``ConnectionStore``) stands, as a state machine
/// that returns what its caller must do. The hub keeps one per connection that holds a record or is writing one
/// (`HubState.registrations`, under the hub's lock), and drops it once it is back to ``Phase/unregistered``.
///
/// The rules it enforces, whatever order the hub's tasks run in:
/// - a record is removed at most once, and only after the write that created it returned: the hub never sends an
///   `UNREGISTER` while its `REGISTER` is in flight, so the removal cannot reach the store first and leave the
///   record behind (a `REGISTER` whose reply was lost may still land late; the server's heartbeat reconciliation
///   removes such a record);
/// - a close that lands while the record is being written (the client leaves during the upgrade, the ticket
///   expires, the server drains) is remembered, and the record is removed as soon as the write completes;
/// - a write whose outcome is unknown (a timeout, a lost connection) counts as done, so the close removes it;
/// - a re-registration (after the store lost data) never starts once the close began.
///
/// ```text
/// unregistered ──start──► registering ──succeeded / failed──► registered ──close──► unregistering
///      ▲                    │    │ ▲                            │                       │
///      │                    │    │ └─ close: remembered         └─start (re-register)─► registering
///      ├─────── refused ────┘    └─ succeeded / failed after a close ──► unregistering (action: unregister)
///      └──────────────────────────────────── unregister finished ◄──────────────────────┘
/// ```
struct RegistrationLifecycle: Sendable, Hashable {
    enum Phase: Sendable, Hashable {
        /// No record and no write in flight (the initial and the final phase).
        case unregistered
        /// A register call is in flight; `closeRequested` once the connection closed meanwhile.
        case registering(closeRequested: Bool)
        /// The record is (or, after a failed write, may be) in the store.
        case registered
        /// The unregister call is in flight.
        case unregistering
    }

    /// What the caller does after a transition.
    enum Action: Sendable, Hashable {
        case none
        /// Remove the record from the store now, then report ``unregisterFinished()``.
        case unregister
    }

    private(set) var phase: Phase = .unregistered

    /// Nothing left to track: the hub drops the entry.
    var isSettled: Bool { phase == .unregistered }

    /// Whether the record is in the store and no close began.
    var isRegistered: Bool { phase == .registered }

    /// A register call is about to start (the first registration, or a re-registration of a live connection).
    /// Returns whether to make it: not while another write or the removal is in flight.
    mutating func startRegistering() -> Bool {
        switch phase {
        case .unregistered, .registered:
            phase = .registering(closeRequested: false)
            return true
        case .registering, .unregistering:
            return false
        }
    }

    /// The register call stored the record.
    mutating func registerSucceeded() -> Action {
        guard case .registering(let closeRequested) = phase else { return .none }
        if closeRequested {
            phase = .unregistering
            return .unregister
        }
        phase = .registered
        return .none
    }

    /// The register call failed without telling whether the store applied it: treat the record as present, so
    /// that the close that follows removes it (removing an absent record is harmless).
    mutating func registerFailed() -> Action {
        registerSucceeded()
    }

    /// The store refused the record (the user's limit): nothing was written.
    mutating func registerRefused() {
        guard case .registering = phase else { return }
        phase = .unregistered
    }

    /// The connection is gone (closed, ticket expired or abandoned). Call it once the connection's close code is
    /// set, so that no registration starts afterwards.
    mutating func close() -> Action {
        switch phase {
        case .unregistered, .unregistering:
            return .none
        case .registering:
            phase = .registering(closeRequested: true)
            return .none
        case .registered:
            phase = .unregistering
            return .unregister
        }
    }

    /// The unregister call returned (removed, already absent, or failed: the server's reconciliation removes a
    /// record a failed call left behind).
    mutating func unregisterFinished() {
        guard phase == .unregistering else { return }
        phase = .unregistered
    }

    /// The server removed all its records at once (graceful shutdown): a recorded registration is gone, and a
    /// write still in flight is removed when it completes.
    mutating func serverRemoved() {
        switch phase {
        case .registered: phase = .unregistered
        case .registering: phase = .registering(closeRequested: true)
        case .unregistered, .unregistering: break
        }
    }
}
