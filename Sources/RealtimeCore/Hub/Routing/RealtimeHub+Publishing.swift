import CoreMetrics
import Logging
import Synchronization

/// What happened to a published event or notification.
public struct PublishReceipt: Sendable, Hashable {
    /// The event or notification id.
    public var id: String
    /// Connections on this server it was queued for.
    public var localDeliveries: Int
    /// Whether it was handed to the bus for the other servers. `false` means only this server's clients got it
    /// (the bus is down; a Redis bus queues it for later itself).
    public var publishedToCluster: Bool
    /// For a notification to a user who had no connection anywhere, with an offline store: whether it was kept for
    /// the user's next connection. `nil` otherwise (the user is connected somewhere, it is an event or not a user's
    /// notification, or the host keeps no offline notifications).
    public var offline: OfflineDisposition? = nil
}

/// Whether a notification to a user with no connection anywhere waits for the user's next connection
/// (``PublishReceipt/offline``).
public enum OfflineDisposition: Sendable, Hashable {
    /// Kept: `queued` notifications wait for the user now, this one included.
    case kept(queued: Int)
    /// Not kept, and why: larger than ``OfflineNotificationLimits/maxNotificationBytes``, or the store failed.
    case notKept(reason: String)
}

extension RealtimeHub {
    static func routes(for scope: EventScope) -> [BusRoute] {
        switch scope {
        case .user(let userID): return [.user(userID), .admins]
        case .admins: return [.admins]
        case .everyone: return [.everyone]
        }
    }

    /// Whether `route` is one of ``routes(for:)`` of `scope`, without building the list.
    static func scope(_ scope: EventScope, allows route: BusRoute) -> Bool {
        switch (scope, route) {
        case (.user(let userID), .user(let routeUserID)): return userID == routeUserID
        case (.user, .admins), (.admins, .admins), (.everyone, .everyone): return true
        default: return false
        }
    }

    /// Publishes an event to every connection in the cluster that subscribed to it and may see it.
    ///
    /// An event that names no user and has no explicit scope is scoped by the configuration's
    /// ``HubConfiguration/scopePolicy`` (by default: administrators only, except `system.maintenance.*`
    /// announcements; `authentication.*` and `session.*` events are refused). Give
    /// ``EventScope/everyone`` explicitly to broadcast anything else.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for an ill-formed type or a user-scoped event whose
    ///   `userID` disagrees with its scope; ``RealtimeError/Code/userRequired`` for an event that the scope
    ///   policy refuses without a user; ``RealtimeError/Code/forbidden`` for a type only the hub emits
    ///   (``EventType/isReservedForTheHub``: audit and presence).
    @discardableResult
    public func publish(_ event: RealtimeEvent) async throws(RealtimeError) -> PublishReceipt {
        let resolved = CollectionOfOne(try validatedForPublishing(event))
        let encoded = Self.encode(resolved, origin: serverID)
        if let problem = historyEntryProblem(encoded) { throw RealtimeError(.invalidArgument, problem.message) }
        return await publishEncoded(resolved, encoded).receipts[0]
    }

    /// Why one of `messages` cannot be recorded in history (an event whose frame is larger than
    /// ``HistoryConfiguration/maxEntryBytes``), with the index of its event; `nil` when all can, or without history.
    /// Checked before anything is published: an event that no recovery could replay would be a gap no client can see.
    private func historyEntryProblem(
        _ encoded: (messages: [BusMessage], routeCounts: [Int])
    ) -> (eventIndex: Int, message: String)? {
        guard backends.historyStore != nil else { return nil }
        let limit = configuration.history.maxEntryBytes
        var start = 0
        for (eventIndex, count) in encoded.routeCounts.enumerated() {
            defer { start += count }
            // The routes of one event carry the same frame.
            guard count > 0, let bytes = try? HistoryConfiguration.entryBytes(of: encoded.messages[start]) else {
                continue
            }
            if bytes > limit { return (eventIndex, Self.tooLargeForHistory("event", bytes: bytes, limit: limit)) }
        }
        return nil
    }

    /// The refusal of a message whose frame of `bytes` is larger than a history entry may be.
    static func tooLargeForHistory(_ kind: String, bytes: Int, limit: Int) -> String {
        "the \(kind)'s frame of \(bytes) bytes is larger than a history entry may be (\(limit) bytes, "
            + "WEBSOCKET_HISTORY_MAX_ENTRY_BYTES): no recovery could replay it; nothing was sent"
    }

    /// Publishes several events in order, as one batch: every event is checked first (nothing is published when
    /// one is refused), then all are queued for this server's connections under one acquisition of the state
    /// lock, the writers are woken once for the whole batch, and the bus gets every message in one call.
    ///
    /// Returns one receipt per event, in order, once the frames are queued for the local connections and the bus
    /// accepted the messages (the sockets are written afterwards, by the host's writers).
    ///
    /// - Throws: what ``publish(_:)-(RealtimeEvent)`` throws for the first event it refuses, with the event's
    ///   position in the message (`events[3]: …`); ``RealtimeError/Code/invalidArgument`` for more than
    ///   ``maxEventsPerBatch`` events, or for two events with the same id.
    @discardableResult
    public func publish(_ events: [RealtimeEvent]) async throws(RealtimeError) -> [PublishReceipt] {
        guard events.count <= Self.maxEventsPerBatch else {
            throw RealtimeError(
                .invalidArgument,
                "a batch holds at most \(Self.maxEventsPerBatch) events, not \(events.count)"
            )
        }
        var resolved: [RealtimeEvent] = []
        resolved.reserveCapacity(events.count)
        // An id names one event: a batch repeating one would deliver two events that clients take for one.
        var indexByID: [String: Int] = [:]
        indexByID.reserveCapacity(events.count)
        for (index, event) in events.enumerated() {
            do {
                resolved.append(try validatedForPublishing(event))
            } catch {
                throw RealtimeError(error.code, "events[\(index)]: \(error.message)")
            }
            if let first = indexByID.updateValue(index, forKey: event.id) {
                throw RealtimeError(
                    .invalidArgument,
                    "events[\(index)]: its id '\(event.id.prefix(128))' is also the id of events[\(first)]"
                )
            }
        }
        guard !resolved.isEmpty else { return [] }
        let encoded = Self.encode(resolved, origin: serverID)
        if let problem = historyEntryProblem(encoded) {
            throw RealtimeError(.invalidArgument, "events[\(problem.eventIndex)]: \(problem.message)")
        }
        return await publishEncoded(resolved, encoded).receipts
    }

    /// The most events ``publish(_:)-([RealtimeEvent])`` takes in one batch.
    public static let maxEventsPerBatch = 1000

    /// The checks of ``publish(_:)-(RealtimeEvent)``, and the scope policy applied.
    private func validatedForPublishing(_ event: RealtimeEvent) throws(RealtimeError) -> RealtimeEvent {
        guard EventType.isWellFormed(event.type.rawValue) else {
            throw RealtimeError(.invalidArgument, "'\(event.type.rawValue.prefix(64))' is not a well-formed event type")
        }
        // Subscriptions match segment by segment: `security.*` never matches a bare `security`, so such an event
        // would be accepted and reach almost nobody (seventh probe).
        guard event.type.rawValue.utf8.contains(UInt8(ascii: ".")) else {
            throw RealtimeError(
                .invalidArgument,
                "'\(event.type.rawValue.prefix(64))' has no action: an event type is category.action[.detail]"
            )
        }
        // Fuzz: a `service` token published `admin.action.revoke_user` naming another actor, and presence of a
        // user who never connected; administrators could not tell them from the hub's own.
        guard !event.type.isReservedForTheHub else {
            throw RealtimeError(
                .forbidden,
                "'\(event.type.rawValue)' is emitted by the hub only (audit and presence); record a host's own "
                    + "administrative actions with audit(_:)"
            )
        }
        // Ids follow the rule of user and session ids (fuzz: a CR LF id was accepted, and a batch with "same" and
        // "same\r\n…" passed the duplicate check).
        try IdentifierPolicy.require(event.id, "the event's id")
        if let userID = event.userID { try IdentifierPolicy.require(userID, "the event's userID") }
        if let sessionID = event.sessionID { try IdentifierPolicy.require(sessionID, "the event's sessionID") }
        if case .user(let userID) = event.scope { try IdentifierPolicy.require(userID, "the event's user scope") }
        if case .user(let userID) = event.scope, event.userID != nil, event.userID != userID {
            throw RealtimeError(.invalidArgument, "the event's userID and its user scope name different users")
        }
        return try resolvingScope(event)
    }

    /// Applies ``HubConfiguration/scopePolicy`` to an event that names no user and has no explicit scope.
    func resolvingScope(_ event: RealtimeEvent) throws(RealtimeError) -> RealtimeEvent {
        guard !event.scopeIsExplicit, event.userID == nil, !event.type.isAdminOnly else { return event }
        var event = event
        switch configuration.scopePolicy.decide(event.type) {
        case .admins: event.scope = .admins
        case .everyone: event.scope = .everyone
        case .refuse(let message): throw RealtimeError(.userRequired, message)
        }
        return event
    }

    @discardableResult
    func publishResolvedEvent(_ event: RealtimeEvent) async -> PublishReceipt {
        await publishResolvedEvents(CollectionOfOne(event))[0]
    }

    /// Publishes events whose scope is resolved, in order: each is encoded once (one JSON text, carried to the other
    /// servers, and one WebSocket frame per route shared by every local recipient of that route), all are queued
    /// for this server's connections under one acquisition of the state lock, the writers are woken after it (one
    /// job per writer thread with ``OutboundWakeCoalescer``), and the bus gets every message in one call. Returns
    /// once the frames are queued and the bus accepted the messages — never after the sockets were written.
    ///
    /// With a history store the messages are recorded first (``EventBus/publish(_:recordingIn:)``), so every
    /// frame — this server's connections' too — carries its stream position; then they are delivered locally.
    func publishResolvedEvents(_ events: some Collection<RealtimeEvent>) async -> [PublishReceipt] {
        await publishResolvedEventsKeepingMessages(events).receipts
    }

    /// ``publishResolvedEvents(_:)``, also returning the bus messages it published (one per route of each event,
    /// in order, with their stream positions when history recorded them).
    func publishResolvedEventsKeepingMessages(
        _ events: some Collection<RealtimeEvent>
    ) async -> (receipts: [PublishReceipt], messages: [BusMessage]) {
        await publishEncoded(events, Self.encode(events, origin: serverID))
    }

    /// The bus messages of `events`, one per route of each (a user-scoped event's two routes next to each other, so
    /// the bus can send them together), each carrying its event's frame, encoded once: for this server's
    /// connections and, in the bus message, for the other servers'. `routeCounts` has each event's number of routes.
    static func encode(
        _ events: some Collection<RealtimeEvent>,
        origin: ServerID
    ) -> (messages: [BusMessage], routeCounts: [Int]) {
        var messages: [BusMessage] = []
        var routeCounts: [Int] = []
        routeCounts.reserveCapacity(events.count)
        for event in events {
            let text = WireProtocol.event(event)
            let routes = routes(for: event.scope)
            for route in routes {
                messages.append(BusMessage(origin: origin, route: route, payload: .event(event), eventFrame: text))
            }
            routeCounts.append(routes.count)
        }
        return (messages, routeCounts)
    }

    /// ``publishResolvedEventsKeepingMessages(_:)`` with the events already encoded (``encode(_:origin:)``).
    private func publishEncoded(
        _ events: some Collection<RealtimeEvent>,
        _ encoded: (messages: [BusMessage], routeCounts: [Int])
    ) async -> (receipts: [PublishReceipt], messages: [BusMessage]) {
        counters.eventsPublished.add(events.count, ordering: .relaxed)
        counters.publishedCounter.increment(by: Int64(events.count))
        var messages = encoded.messages
        let routeCounts = encoded.routeCounts
        let local: [Int]
        var published = true
        var unrecorded: ArraySlice<BusMessage> = []
        if let history = backends.historyStore {
            do {
                let recorded = try await backends.eventBus.publish(messages, recordingIn: history)
                // A store that answered another shape is not trusted with positions: deliver what was published.
                if recorded.count == messages.count { messages = recorded }
            } catch {
                counters.historyFailures.add(events.count, ordering: .relaxed)
                logger.warning(
                    "history record failed; publishing without positions",
                    metadata: ["realtime.error": "\(error)"]
                )
                // Those the bus published before it failed keep their positions and are not published twice
                // (fuzz: a batch's first event reached other servers twice, once with its position, once without).
                let done = (error.underlying as? PartiallyPublished)?.published ?? []
                let kept = done.count <= messages.count ? done.count : 0
                messages.replaceSubrange(0..<kept, with: done.prefix(kept))
                if kept < messages.count {
                    // Before anyone hears them: a recovery across them must not be told it is complete.
                    unrecorded = messages[kept...]
                    await resetStreams(of: unrecorded)
                    published = await publishToBus(Array(unrecorded), events: events.count)
                }
            }
            local = deliverLocally(Self.fanOuts(events, messages, routeCounts))
            // And after: an epoch another server started meanwhile does not hold them either.
            if !unrecorded.isEmpty { await resetStreams(of: unrecorded) }
        } else {
            local = deliverLocally(Self.fanOuts(events, messages, routeCounts))
            published = await publishToBus(messages, events: events.count)
        }
        let receipts = zip(events, local).map { event, deliveries in
            PublishReceipt(id: event.id, localDeliveries: deliveries, publishedToCluster: published)
        }
        return (receipts, messages)
    }

    /// Each event with its messages (one per route), cut from `messages` by `routeCounts`.
    private static func fanOuts(
        _ events: some Collection<RealtimeEvent>,
        _ messages: [BusMessage],
        _ routeCounts: [Int]
    ) -> [EventFanOut] {
        var start = 0
        return zip(events, routeCounts).map { event, count in
            defer { start += count }
            return EventFanOut(event: event, messages: messages[start..<(start + count)])
        }
    }

    /// Hands messages to the bus; false (counted, logged) when it failed.
    private func publishToBus(_ messages: [BusMessage], events: Int) async -> Bool {
        do {
            try await backends.eventBus.publish(messages)
            return true
        } catch {
            counters.busPublishFailures.add(events, ordering: .relaxed)
            logger.warning("bus publish failed", metadata: ["realtime.error": "\(error)"])
            return false
        }
    }

    /// One event on its way to this server's connections: the messages of its routes (with their stream positions,
    /// when recorded).
    struct EventFanOut {
        let event: RealtimeEvent
        let messages: ArraySlice<BusMessage>
    }

    /// Delivers `event`, published on the routes of `messages` (with their stream positions, when recorded), to
    /// this server's connections (the bus path). One frame per route, shared by every recipient of that route.
    func deliverLocally(_ event: RealtimeEvent, _ messages: some Collection<BusMessage>) -> Int {
        deliverLocally(CollectionOfOne(EventFanOut(event: event, messages: ArraySlice(messages))))[0]
    }

    /// Queues each event's frames for every local connection it reaches, in order, under one acquisition of the
    /// state lock; then, with the lock released, wakes the writers and closes the connections that overflowed.
    /// Returns the deliveries per event.
    func deliverLocally(_ fanOuts: some Collection<EventFanOut>) -> [Int] {
        // Frames are encoded before the lock is taken: one per event, and one more per route that carries a stream
        // position (the position differs per stream).
        let framed = fanOuts.map { fanOut in
            var unpositioned: OutboundFrame?
            return (
                event: fanOut.event,
                routes: fanOut.messages.map { message in
                    let frame: OutboundFrame
                    if message.position == nil, let shared = unpositioned {
                        frame = shared
                    } else {
                        frame = .encodedText(
                            EncodedTextFrame(text: WireProtocol.eventFrame(for: message, fanOut.event))
                        )
                        if message.position == nil { unpositioned = frame }
                    }
                    return (message: message, frame: frame)
                }
            )
        }
        var effects = HubState.FanOutEffects()
        let deliveries = state.withLock { state in
            framed.map { item in
                let key = state.matchKey(item.event.type)
                var delivered = 0
                for (message, frame) in item.routes {
                    delivered += state.deliver(
                        item.event,
                        key: key,
                        frame: frame,
                        route: message.route,
                        position: message.position,
                        effects: &effects
                    )
                }
                return delivered
            }
        }
        finishFanOut(delivered: deliveries.reduce(0, +), effects: effects)
        return deliveries
    }

    /// What a fan-out leaves for after the state lock: wake the writers, count, close the slow consumers.
    private func finishFanOut(delivered: Int, effects: HubState.FanOutEffects) {
        for queue in effects.consumersToWake { queue.wakeConsumer() }
        account(delivered: delivered, overflowed: effects.overflowed)
    }

    func account(delivered: Int, overflowed: [ConnectionCore]) {
        if delivered > 0 {
            counters.eventsDelivered.add(delivered, ordering: .relaxed)
            counters.deliveredCounter.increment(by: Int64(delivered))
        }
        if !overflowed.isEmpty {
            counters.eventsDropped.add(overflowed.count, ordering: .relaxed)
            counters.droppedCounter.increment(by: Int64(overflowed.count))
            for core in overflowed {
                close(core, .slowConsumer, reason: "outbound queue overflow; reconnect and resynchronise")
            }
        }
    }

    /// Delivers a notification to this server's connections; `position` is its place in the stream of its target
    /// (administrators' and everyone's notifications, when recorded), carried in its frame.
    func deliverLocally(_ notification: RealtimeNotification, position: StreamPosition? = nil) -> Int {
        let frame = OutboundFrame.encodedText(
            EncodedTextFrame(text: WireProtocol.notificationFrame(notification, position: position))
        )
        var effects = HubState.FanOutEffects()
        let delivered = state.withLock {
            $0.deliver(notification: frame, target: notification.target, position: position, effects: &effects)
        }
        finishFanOut(delivered: delivered, effects: effects)
        return delivered
    }

    // MARK: The bus

    func handle(_ delivery: BusDelivery) {
        switch delivery {
        case .gap(let from, let to):
            counters.gaps.add(1, ordering: .relaxed)
            runtime.withLock { $0.lastGap = (from, to) }
            // A revocation applied by another server in the gap never reached this one: check again what the
            // connections were admitted with (fuzz: a revoked session's socket on a server cut off from Redis kept
            // receiving events until its token expired).
            revalidationContinuation.yield()
            let frame = OutboundFrame.encodedText(
                EncodedTextFrame(
                    text: WireProtocol.message(
                        "gap",
                        payload: [
                            "from": .string(from.iso8601),
                            "to": .string(to.iso8601),
                            "reason":
                                "Events from other servers may have been missed in this window; refetch what matters.",
                        ]
                    )
                )
            )
            let cores = state.withLock { $0.allCores }
            var overflowed: [ConnectionCore] = []
            for core in cores where core.queue.enqueue(frame) == .overflow { overflowed.append(core) }
            account(delivered: 0, overflowed: overflowed)
        case .message(let message):
            guard message.origin != serverID else { return }
            counters.busMessagesReceived.add(1, ordering: .relaxed)
            switch message.payload {
            case .event(let event):
                // Only the routes the event's scope allows: a message on the wrong route is not delivered
                // beyond what its scope permits (and `mayReceive` checks each recipient again).
                guard Self.scope(event.scope, allows: message.route) else {
                    logger.warning("bus event on a route its scope does not allow; dropped")
                    return
                }
                _ = deliverLocally(event, CollectionOfOne(message))
                let latency = Timestamp.now() - event.timestamp
                if latency >= .zero { counters.deliveryLatency.recordNanoseconds(latency.milliseconds * 1_000_000) }
            case .notification(let notification):
                // A position only counts on the route of the notification's own stream.
                let onItsRoute = Self.routes(for: notification.target).first == message.route
                _ = deliverLocally(notification, position: onItsRoute ? message.position : nil)
            case .control(let command):
                applyControl(command)
            }
        }
    }
}

extension RealtimeHub {
    /// Benchmark hook: delivers `event` to this server's connections as `publish` does, without the bus.
    package func deliverLocallyForBenchmark(_ event: RealtimeEvent) -> Int {
        deliverLocally(
            event,
            Self.routes(for: event.scope).map { BusMessage(origin: serverID, route: $0, payload: .event(event)) }
        )
    }

    /// Test hook: entries in the pattern indexes.
    package var patternIndexEntryCount: Int { state.withLock { $0.indexEntryCount } }

    /// Benchmark hook: empties every outbound queue; returns how many frames were dropped.
    package func discardQueuedFramesForBenchmark() -> Int {
        state.withLock { $0.allCores }.reduce(0) { $0 + $1.queue.discardQueued() }
    }

    /// Benchmark hook: the JSON text of an event message, as every recipient receives it.
    package static func encodeForBenchmark(_ event: RealtimeEvent) -> String { WireProtocol.event(event) }
}
