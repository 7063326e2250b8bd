/// The hub's local registry: active connections, their patterns and the indexes that route events to them.
/// Lives inside the hub's `Mutex`; every method runs with the lock held and never suspends.
struct HubState: Sendable {
    struct Slot: Sendable {
        let core: ConnectionCore
        let userID: String
        let sessionID: String?
        let isAdmin: Bool
        var patterns = ConnectionPatterns()
        /// The last `session.revoked` event given to the connection, so a revocation's close does not queue its
        /// notice a second time (see ``HubState/deliverNotice(_:frames:to:effects:)``).
        var lastRevocationNotice: NoticeMark?
    }

    private(set) var slots: [Slot?] = []
    /// What fan-out reads per recipient, in a dense array parallel to `slots` (reading a whole `Slot` would
    /// retain and release a dozen references per delivery).
    private(set) var fanOutEntries: [FanOutEntry] = []

    struct FanOutEntry: Sendable {
        var stamp: UInt64 = 0
        var isAdmin = false
        var userID = ""
        var queue: OutboundQueue?
        /// The connection is recovering: its live frames go to its seam in ``HubState/seams``.
        var recovering = false
        /// The connection recovered and may still hear, late, live copies of what its replay delivered: they are
        /// dropped by position (``HubState/trails``).
        var trailing = false
    }

    /// Who may see one event, decided once per event rather than once per recipient.
    enum Visibility {
        case adminsOnly
        case everyone
        case user(String)

        init(_ event: RealtimeEvent) {
            if event.type.isAdminOnly {
                self = .adminsOnly
                return
            }
            switch event.scope {
            case .admins: self = .adminsOnly
            case .everyone: self = .everyone
            case .user(let userID): self = .user(userID)
            }
        }
    }
    private var freeSlots: [Int] = []
    private(set) var slotByID: [ConnectionID: Int] = [:]
    private(set) var userSlots: [String: [Int]] = [:]
    private var sessionSlots: [String: [Int]] = [:]
    private(set) var adminSlots: Set<Int> = []
    private var everyoneIndex = PatternIndex()
    private var adminIndex = PatternIndex()
    private var stamp: UInt64 = 0
    /// The seams of recovering connections, by slot index (see ``RecoverySeam``).
    private var seams: [Int: RecoverySeam] = [:]
    /// After a recovery, by slot index: per stream, the last position its replay reached. The bus may deliver a
    /// message to this server after the replay read it from history (history is written when a message is
    /// published, live delivery follows the bus): such a late copy, at or below the position, was delivered
    /// already. A stream's entry goes with its first live message past it (the bus delivers a stream in offset
    /// order).
    private var trails: [Int: [HistoryStream: StreamPosition]] = [:]
    /// Match keys of recently delivered event types (building one allocates its segments and prefixes), bounded.
    private var matchKeys: [EventType: MatchKey] = [:]

    /// Connections accepted but not yet activated (tickets, first-message authentication), counted against the
    /// server-wide limit.
    var reserved: [ConnectionID: Reservation] = [:]
    /// Connections the hub closed whose registry entry the run loop still has to remove.
    var closedCores: [ConnectionID: ConnectionCore] = [:]

    struct Reservation: Sendable {
        var since: ContinuousClock.Instant
        let core: ConnectionCore
    }
    /// Connections waiting for their `auth` message.
    var awaitingAuth: [ConnectionID: ConnectionCore] = [:]
    /// The registry lifecycle of every connection that holds a record in the connection store or is writing or
    /// removing one; settled lifecycles are dropped. The heartbeat's reconciliation removes records of this
    /// server that have no entry here.
    private(set) var registrations: [ConnectionID: RegistrationLifecycle] = [:]
    var draining = false
    /// User and session revocations applied here lately, checked at activation (see ``RecentRevocations``).
    var recentRevocations = RecentRevocations()
    /// User and admin routes whose bus interest must change: `true` to add, `false` to remove.
    var pendingInterest: [BusRoute: Bool] = [:]
    /// History streams whose epoch must still be ended (their reset failed; see `RealtimeHub+HistoryResets`), each
    /// with the generation it was last owed at.
    var pendingHistoryResets: [HistoryStream: Int] = [:]
    var nextHistoryResetGeneration = 0
    /// The last reset failed: publishes owe their resets instead of trying them.
    var historyResetsFailing = false

    var activeCount: Int { slotByID.count }
    /// Entries in the pattern indexes (for tests: churn must not leave residue).
    var indexEntryCount: Int { everyoneIndex.entryCount + adminIndex.entryCount }
    var occupancy: Int { slotByID.count + reserved.count }
    var localUserCount: Int { userSlots.count }

    // MARK: Registration

    /// Runs one transition of a connection's registry lifecycle, dropping the lifecycle once it settled.
    mutating func updateRegistration<Result>(
        _ id: ConnectionID,
        _ transition: (inout RegistrationLifecycle) -> Result
    ) -> Result {
        var lifecycle = registrations[id] ?? RegistrationLifecycle()
        let result = transition(&lifecycle)
        registrations[id] = lifecycle.isSettled ? nil : lifecycle
        return result
    }

    /// The server removed all its records at once: see ``RegistrationLifecycle/serverRemoved()``.
    mutating func serverRemovedRegistrations() {
        for id in Array(registrations.keys) { updateRegistration(id) { $0.serverRemoved() } }
    }

    mutating func activate(_ core: ConnectionCore, identity: VerifiedIdentity) {
        let slot = Slot(
            core: core,
            userID: identity.userID,
            sessionID: identity.sessionID,
            isAdmin: core.endpoint == .admin
        )
        let index: Int
        let fanOutEntry = FanOutEntry(isAdmin: slot.isAdmin, userID: identity.userID, queue: core.queue)
        if let free = freeSlots.popLast() {
            index = free
            slots[index] = slot
            fanOutEntries[index] = fanOutEntry
        } else {
            index = slots.count
            slots.append(slot)
            fanOutEntries.append(fanOutEntry)
        }
        slotByID[core.id] = index
        if userSlots[identity.userID] == nil { noteInterest(.user(identity.userID), true) }
        userSlots[identity.userID, default: []].append(index)
        if let sessionID = identity.sessionID { sessionSlots[sessionID, default: []].append(index) }
        if slot.isAdmin {
            if adminSlots.isEmpty { noteInterest(.admins, true) }
            adminSlots.insert(index)
        }
    }

    /// Removes a connection from every index. Returns its core if it was active.
    @discardableResult
    mutating func deactivate(_ id: ConnectionID) -> ConnectionCore? {
        guard let index = slotByID.removeValue(forKey: id), let slot = slots[index] else { return nil }
        for pattern in slot.patterns.ordered {
            everyoneIndex.remove(pattern, slot: index)
            if slot.isAdmin { adminIndex.remove(pattern, slot: index) }
        }
        userSlots[slot.userID]?.removeAll { $0 == index }
        if userSlots[slot.userID]?.isEmpty == true {
            userSlots[slot.userID] = nil
            noteInterest(.user(slot.userID), false)
        }
        if let sessionID = slot.sessionID {
            sessionSlots[sessionID]?.removeAll { $0 == index }
            if sessionSlots[sessionID]?.isEmpty == true { sessionSlots[sessionID] = nil }
        }
        if slot.isAdmin {
            adminSlots.remove(index)
            if adminSlots.isEmpty { noteInterest(.admins, false) }
        }
        slots[index] = nil
        fanOutEntries[index] = FanOutEntry()
        seams[index] = nil
        trails[index] = nil
        freeSlots.append(index)
        return slot.core
    }

    private mutating func noteInterest(_ route: BusRoute, _ wanted: Bool) {
        // Coalesce: a remove that cancels a not-yet-applied add (or vice versa) still records the final wish;
        // the reconciler compares it with what is applied.
        pendingInterest[route] = wanted
    }

    /// Every route the bus subscription should hear beyond the fixed ones.
    var desiredInterest: Set<BusRoute> {
        var routes = Set(userSlots.keys.map { BusRoute.user($0) })
        if !adminSlots.isEmpty { routes.insert(.admins) }
        return routes
    }

    func slot(_ id: ConnectionID) -> Slot? { slotByID[id].flatMap { slots[$0] } }

    func cores(ofUser userID: String) -> [ConnectionCore] {
        (userSlots[userID] ?? []).compactMap { slots[$0]?.core }
    }

    func cores(ofSession sessionID: String) -> [ConnectionCore] {
        (sessionSlots[sessionID] ?? []).compactMap { slots[$0]?.core }
    }

    var allCores: [ConnectionCore] { slots.compactMap { $0?.core } }
    var adminCores: [ConnectionCore] { adminSlots.compactMap { slots[$0]?.core } }

    // MARK: Subscriptions

    func patterns(of id: ConnectionID) -> [EventPattern] { slot(id)?.patterns.ordered ?? [] }

    /// Adds patterns; returns the ones that were new, or nil if the connection is not active.
    mutating func subscribe(_ id: ConnectionID, _ patterns: [EventPattern]) -> [EventPattern]? {
        guard let index = slotByID[id], var slot = slots[index] else { return nil }
        var added: [EventPattern] = []
        for pattern in patterns where slot.patterns.insert(pattern) {
            added.append(pattern)
            everyoneIndex.insert(pattern, slot: index)
            if slot.isAdmin { adminIndex.insert(pattern, slot: index) }
        }
        slots[index] = slot
        return added
    }

    mutating func unsubscribe(_ id: ConnectionID, _ patterns: [EventPattern]) -> [EventPattern]? {
        guard let index = slotByID[id], var slot = slots[index] else { return nil }
        var removed: [EventPattern] = []
        for pattern in patterns where slot.patterns.remove(pattern) {
            removed.append(pattern)
            everyoneIndex.remove(pattern, slot: index)
            if slot.isAdmin { adminIndex.remove(pattern, slot: index) }
        }
        slots[index] = slot
        return removed
    }

    // MARK: Fan-out

    /// The match key of `type`, from the cache when it is there.
    mutating func matchKey(_ type: EventType) -> MatchKey {
        if let key = matchKeys[type] { return key }
        let key = MatchKey(type)
        if matchKeys.count >= 256 { matchKeys.removeAll(keepingCapacity: true) }
        matchKeys[type] = key
        return key
    }

    /// What a fan-out leaves to do once the state lock is released: connections whose queue overflowed (to be
    /// closed as slow consumers) and queues whose consumer waits for frames (to be woken). Nothing is closed,
    /// woken or written while the lock is held.
    struct FanOutEffects {
        var overflowed: [ConnectionCore] = []
        var consumersToWake: [OutboundQueue] = []
    }

    /// Queues `frame` for every connection on `route` whose patterns match and which may see the event.
    /// Returns the number of deliveries; overflows and wake-ups are left in `effects`.
    mutating func deliver(
        _ event: RealtimeEvent,
        key: MatchKey,
        frame: OutboundFrame,
        route: BusRoute,
        position: StreamPosition? = nil,
        effects: inout FanOutEffects
    ) -> Int {
        let stamp = nextStamp()
        let visibility = Visibility(event)
        let recorded = position.map { (stream: HistoryStream(route), position: $0) }
        // A revocation's event is remembered per recipient, for the close that follows it (rare: one check per event).
        let notice = event.type == .sessionRevoked ? event.id : nil
        var delivered = 0
        switch route {
        case .user(let userID):
            guard let indexes = userSlots[userID] else { return 0 }
            for index in indexes {
                // Administrator connections receive user events through the admins route.
                guard !fanOutEntries[index].isAdmin, slots[index]?.patterns.matches(key) == true,
                    mayReceive(index, visibility)
                else { continue }
                let queued = enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
                if queued > 0, let notice { markNotice(notice, at: index, held: fanOutEntries[index].recovering) }
                delivered += queued
            }
        case .admins:
            adminIndex.forEachMatch(key) { set in
                for index in set {
                    let queued = enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
                    if queued > 0, let notice { markNotice(notice, at: index, held: fanOutEntries[index].recovering) }
                    delivered += queued
                }
            }
        case .everyone:
            everyoneIndex.forEachMatch(key) { set in
                for index in set where mayReceive(index, visibility) {
                    delivered += enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
                }
            }
        case .control, .server:
            break
        }
        return delivered
    }

    /// A new fan-out's stamp: a connection reached twice in one fan-out (several routes or patterns) is queued once.
    mutating func nextStamp() -> UInt64 {
        stamp &+= 1
        return stamp
    }

    /// Whether a connection may receive an event: checked for every delivery, not only when a pattern was accepted,
    /// so a wildcard granted earlier can never leak a type or a scope the connection may not see.
    @inline(__always)
    private func mayReceive(_ index: Int, _ visibility: Visibility) -> Bool {
        if fanOutEntries[index].isAdmin { return true }
        switch visibility {
        case .adminsOnly: return false
        case .everyone: return true
        case .user(let userID): return fanOutEntries[index].userID == userID
        }
    }

    /// Remembers that the `session.revoked` event `eventID` was given to the connection at `index`: queued, or only
    /// `held` in its recovery seam.
    mutating func markNotice(_ eventID: String, at index: Int, held: Bool) {
        slots[index]?.lastRevocationNotice = NoticeMark(eventID: eventID, held: held)
    }

    /// Queues `frame` for the connection at `index` once per `stamp`; a recovering connection's seam holds it
    /// instead, unless `bypassingSeam`.
    @inline(__always)
    mutating func enqueue(
        _ frame: OutboundFrame,
        at index: Int,
        stamp: UInt64,
        recorded: (stream: HistoryStream?, position: StreamPosition)?,
        bypassingSeam: Bool = false,
        effects: inout FanOutEffects
    )
        -> Int
    {
        guard fanOutEntries[index].stamp != stamp, let queue = fanOutEntries[index].queue else { return 0 }
        fanOutEntries[index].stamp = stamp
        if fanOutEntries[index].recovering && !bypassingSeam {
            return hold(frame, at: index, recorded: recorded, effects: &effects)
        }
        if fanOutEntries[index].trailing, let recorded, !passesTrail(at: index, recorded) { return 0 }
        switch queue.enqueueDeferringWake(frame) {
        case .queued: return 1
        case .queuedConsumerToWake:
            effects.consumersToWake.append(queue)
            return 1
        case .overflow:
            if let core = slots[index]?.core { effects.overflowed.append(core) }
            return 0
        case .closed: return 0
        }
    }

    // MARK: Recovery

    /// Whether fan-out on `route` delivers `event` to connection `id`: ``deliver(_:key:frame:route:position:effects:)``'s
    /// rules (route membership, patterns, visibility) for one connection, so a replay shows exactly what live
    /// delivery would have shown.
    func wouldDeliver(_ event: RealtimeEvent, key: MatchKey, route: BusRoute, to id: ConnectionID) -> Bool {
        guard let index = slotByID[id], let slot = slots[index], slot.patterns.matches(key) else { return false }
        let visibility = Visibility(event)
        switch route {
        case .user(let userID): return !slot.isAdmin && slot.userID == userID && mayReceive(index, visibility)
        case .admins: return slot.isAdmin
        case .everyone: return mayReceive(index, visibility)
        case .control, .server: return false
        }
    }

    /// Starts holding the connection's live frames in a seam. False when it is not active or already recovering.
    mutating func beginRecovery(
        _ id: ConnectionID,
        from positions: [HistoryStream: StreamPosition],
        maxFrames: Int,
        maxBytes: Int
    ) -> Bool {
        guard let index = slotByID[id], !fanOutEntries[index].recovering else { return false }
        fanOutEntries[index].recovering = true
        seams[index] = RecoverySeam(from: positions, maxFrames: maxFrames, maxBytes: maxBytes)
        return true
    }

    /// Cuts the recovery of the connection at `index` short, as its close is about to end it (``RecoverySeam/end()``).
    mutating func endSeam(at index: Int) {
        seams[index]?.end()
    }

    /// Runs `body` on the connection's seam; `nil` when it is no longer recovering (closed).
    mutating func withSeam<Result>(_ id: ConnectionID, _ body: (inout RecoverySeam) -> Result) -> Result? {
        guard let index = slotByID[id], var seam = seams[index] else { return nil }
        let result = body(&seam)
        seams[index] = seam
        return result
    }

    /// Ends the recovery: the held frames to deliver (queue them before releasing the lock), and live delivery
    /// goes straight to the queue again. `nil` when there is nothing to answer: the connection is gone, or a close
    /// ended its seam first (``RecoverySeam/end()``).
    mutating func endRecovery(_ id: ConnectionID) -> [OutboundFrame]? {
        guard let index = slotByID[id], var seam = seams.removeValue(forKey: index) else { return nil }
        fanOutEntries[index].recovering = false
        // What the seam held is released now (or was replayed): no longer merely held.
        slots[index]?.lastRevocationNotice?.held = false
        guard !seam.isEnded else { return nil }
        let held = seam.finish()
        if !seam.reached.isEmpty {
            trails[index] = seam.reached
            fanOutEntries[index].trailing = true
        }
        return held
    }

    /// Whether a live message at `recorded` is new to a connection that recovered: false for a late copy of what
    /// its replay delivered (same stream and epoch, offset not above the replay's); the first message past the
    /// replay ends the stream's trail.
    private mutating func passesTrail(
        at index: Int,
        _ recorded: (stream: HistoryStream?, position: StreamPosition)
    ) -> Bool {
        guard let stream = recorded.stream, var floors = trails[index], let floor = floors[stream] else { return true }
        if floor.epoch == recorded.position.epoch && recorded.position.offset <= floor.offset { return false }
        floors[stream] = nil
        trails[index] = floors.isEmpty ? nil : floors
        fanOutEntries[index].trailing = !floors.isEmpty
        return true
    }

    /// A live frame for a recovering connection: held in its seam.
    private mutating func hold(
        _ frame: OutboundFrame,
        at index: Int,
        recorded: (stream: HistoryStream?, position: StreamPosition)?,
        effects: inout FanOutEffects
    ) -> Int {
        guard var seam = seams[index] else { return 0 }
        let action = seam.live(.init(frame: frame, stream: recorded?.stream, position: recorded?.position))
        seams[index] = seam
        switch action {
        case .held: return 1
        case .dropped: return 0
        case .overflow:
            if let core = slots[index]?.core { effects.overflowed.append(core) }
            return 0
        }
    }

    /// Queues a notification for every connection its target reaches (no subscription needed). With a
    /// `position` (an administrators' or everyone's notification recorded in its stream), a recovering
    /// connection's seam holds it like an event, so the replay and live delivery never both deliver it.
    mutating func deliver(
        notification frame: OutboundFrame,
        target: EventScope,
        position: StreamPosition? = nil,
        effects: inout FanOutEffects
    ) -> Int {
        let stamp = nextStamp()
        let recorded: (stream: HistoryStream?, position: StreamPosition)?
        var delivered = 0
        switch target {
        case .user(let userID):
            recorded = position.map { (.user(userID), $0) }
            for index in userSlots[userID] ?? [] {
                delivered += enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
            }
        case .admins:
            recorded = position.map { (.admins, $0) }
            for index in adminSlots {
                delivered += enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
            }
        case .everyone:
            recorded = position.map { (.everyone, $0) }
            for index in slotByID.values {
                delivered += enqueue(frame, at: index, stamp: stamp, recorded: recorded, effects: &effects)
            }
        }
        return delivered
    }

    /// Whether a notification recorded on `route` reaches connection `id` (``deliver(notification:target:position:effects:)``'s
    /// rule for one connection, for a replay): the administrators' to administrator connections, everyone's to all.
    func wouldDeliverNotification(route: BusRoute, to id: ConnectionID) -> Bool {
        guard let index = slotByID[id], slots[index] != nil else { return false }
        switch route {
        case .admins: return fanOutEntries[index].isAdmin
        case .everyone: return true
        case .user, .control, .server: return false
        }
    }
}
