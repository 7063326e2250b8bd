// The specification's integration API: typed publishing helpers and notifications (with the offline queue).

import Logging
import Synchronization

extension RealtimeHub {
    // MARK: The specification's integration API

    private func publish(
        category: String,
        _ type: EventType,
        userID: String?,
        sessionID: String?,
        data: JSONObject,
        scope: EventScope? = nil
    ) async throws(RealtimeError) -> PublishReceipt {
        guard type.category == category else {
            throw RealtimeError(.invalidArgument, "'\(type.rawValue.prefix(64))' is not a \(category).* event type")
        }
        return try await publish(
            RealtimeEvent(type: type, userID: userID, sessionID: sessionID, data: data, scope: scope)
        )
    }

    /// Publishes an `authentication.*` event about a user.
    @discardableResult
    public func publishAuthenticationEvent(
        _ type: EventType,
        userID: String,
        sessionID: String? = nil,
        data: JSONObject = [:]
    ) async throws(RealtimeError) -> PublishReceipt {
        try await publish(category: "authentication", type, userID: userID, sessionID: sessionID, data: data)
    }

    /// Publishes a `security.*` event about a user.
    @discardableResult
    public func publishSecurityEvent(
        _ type: EventType,
        userID: String,
        sessionID: String? = nil,
        data: JSONObject = [:]
    ) async throws(RealtimeError) -> PublishReceipt {
        try await publish(category: "security", type, userID: userID, sessionID: sessionID, data: data)
    }

    /// Publishes a `session.*` event about a user.
    @discardableResult
    public func publishSessionEvent(
        _ type: EventType,
        userID: String,
        sessionID: String,
        data: JSONObject = [:]
    ) async throws(RealtimeError) -> PublishReceipt {
        try await publish(category: "session", type, userID: userID, sessionID: sessionID, data: data)
    }

    /// Publishes an `admin.*` event (administrators only).
    @discardableResult
    public func publishAdminEvent(
        _ type: EventType,
        userID: String? = nil,
        data: JSONObject = [:]
    ) async throws(RealtimeError) -> PublishReceipt {
        try await publish(category: "admin", type, userID: userID, sessionID: nil, data: data, scope: .admins)
    }

    /// Publishes a `system.*` event. Without a scope, ``HubConfiguration/scopePolicy`` decides: by default
    /// `system.maintenance.*` goes to everyone and every other `system.*` event (errors, performance) to
    /// administrators only; pass ``EventScope/everyone`` to broadcast one.
    @discardableResult
    public func publishSystemEvent(
        _ type: EventType,
        data: JSONObject = [:],
        scope: EventScope? = nil
    ) async throws(RealtimeError) -> PublishReceipt {
        try await publish(category: "system", type, userID: nil, sessionID: nil, data: data, scope: scope)
    }

    /// Sends a notification (no subscription needed).
    ///
    /// With a history store, a notification to administrators or to everyone follows the history rules of events:
    /// it is recorded in the `admins` or `everyone` stream before it is delivered, carries its `position`, and a
    /// reconnecting client recovers it. A user notification is not recorded: when the user has no connection
    /// anywhere, it waits in ``HubBackends/offlineNotifications`` for the user's next connection.
    ///
    /// A notification to a user id that ``IdentifierPolicy`` refuses (no connection can have it) is not sent: it
    /// could reach a user whose id is canonically equivalent. The receipt then counts no delivery and
    /// `publishedToCluster` is false, and a warning is logged.
    @discardableResult
    public func send(_ notification: RealtimeNotification) async -> PublishReceipt {
        if case .user(let userID) = notification.target, let problem = IdentifierPolicy.problem(with: userID) {
            logger.warning("notification not sent: its user id \(problem)")
            return PublishReceipt(id: notification.id, localDeliveries: 0, publishedToCluster: false)
        }
        counters.notificationsSent.add(1, ordering: .relaxed)
        let message = BusMessage(
            origin: serverID,
            route: Self.routes(for: notification.target)[0],
            payload: .notification(notification)
        )
        let local: Int
        var published = true
        let recordable = message.route == .admins || message.route == .everyone
        if let history = backends.historyStore, recordable {
            do {
                let recorded = try await backends.eventBus.publish([message], recordingIn: history)
                local = deliverLocally(notification, position: recorded.count == 1 ? recorded[0].position : nil)
            } catch {
                counters.historyFailures.add(1, ordering: .relaxed)
                logger.warning(
                    "history record failed; sending the notification without a position",
                    metadata: ["realtime.error": "\(error)"]
                )
                // Before and after, as for events (see RealtimeHub+HistoryResets).
                await resetStreams(of: [message])
                local = deliverLocally(notification)
                published = await publishNotification(message)
                await resetStreams(of: [message])
            }
        } else {
            local = deliverLocally(notification)
            published = await publishNotification(message)
        }
        var receipt = PublishReceipt(id: notification.id, localDeliveries: local, publishedToCluster: published)
        if case .user(let userID) = notification.target, local == 0, let offline = backends.offlineNotifications {
            receipt.offline = await keepIfOffline(notification, for: userID, in: offline)
        }
        return receipt
    }

    /// Throws ``RealtimeError/Code/invalidArgument`` when `notification` goes to a stream with history (administrators
    /// or everyone, with a history store) and its frame is larger than a history entry may be
    /// (``HistoryConfiguration/maxEntryBytes``). ``send(_:)`` delivers such a notification without a position, which
    /// no recovery can replay and no client can see missing; a caller that can refuse it (the HTTP API answers `400`)
    /// asks this first. Events are checked by ``publish(_:)-(RealtimeEvent)`` itself.
    public func checkHistoryEntry(of notification: RealtimeNotification) throws(RealtimeError) {
        guard backends.historyStore != nil else { return }
        switch notification.target {
        case .admins, .everyone: break
        case .user: return
        }
        let bytes = WireProtocol.notification(notification).utf8.count
        let limit = configuration.history.maxEntryBytes
        guard bytes <= limit else {
            throw RealtimeError(.invalidArgument, Self.tooLargeForHistory("notification", bytes: bytes, limit: limit))
        }
    }

    /// Hands a notification to the bus; false (counted, logged) when it failed.
    private func publishNotification(_ message: BusMessage) async -> Bool {
        do {
            try await backends.eventBus.publish(message)
            return true
        } catch {
            counters.busPublishFailures.add(1, ordering: .relaxed)
            logger.warning("bus publish failed", metadata: ["realtime.error": "\(error)"])
            return false
        }
    }

    /// Queues a user notification when the user has no connection anywhere (checked after the live publish, so a
    /// connection that registers meanwhile either received it live or finds it queued). Returns `nil` when the user
    /// has a connection somewhere.
    private func keepIfOffline(
        _ notification: RealtimeNotification,
        for userID: String,
        in offline: any OfflineNotificationStore
    ) async -> OfflineDisposition? {
        do {
            guard try await backends.connectionStore.count(.user(userID)) == 0 else { return nil }
            let result = try await offline.enqueue(notification, for: userID)
            counters.offline(.kept(displaced: result.displaced))
            return .kept(queued: result.queued)
        } catch {
            logger.warning("offline notification not kept", metadata: ["realtime.error": "\(error)"])
            if error.code == .limitExceeded {
                counters.offline(.tooLarge)
                return .notKept(reason: error.message)
            }
            counters.offline(.storeFailed)
            return .notKept(reason: "the offline notification store failed (\(error.code.rawValue))")
        }
    }

    /// Delivers the notifications queued while the user had no connection to `core`, a `/ws/events` connection
    /// (once, cluster-wide: the store hands them to one taker).
    func deliverOfflineNotifications(to core: ConnectionCore, userID: String) async {
        // The user's app connects on `/ws/events`: an admin console the user opens first must not take them
        // (fuzz: olga's kept notification went, once, to her `/ws/admin` connection, and her app never saw it).
        guard core.endpoint == .events, let offline = backends.offlineNotifications else { return }
        let queued: [RealtimeNotification]
        do {
            queued = try await offline.take(for: userID)
        } catch {
            logger.warning("offline notifications not read", metadata: ["realtime.error": "\(error)"])
            return
        }
        for notification in queued {
            // Bounded by the store's per-user limit.
            _ = core.queue.enqueue(.text(WireProtocol.notification(notification)), force: true)
        }
    }

    /// Sends a notification to every connection of one user.
    @discardableResult
    public func sendUserNotification(
        userID: String,
        level: NotificationLevel,
        title: String,
        message: String,
        data: JSONObject = [:]
    ) async -> PublishReceipt {
        await send(
            RealtimeNotification(level: level, title: title, message: message, data: data, target: .user(userID))
        )
    }

    /// Sends a notification to every connection.
    @discardableResult
    public func sendBroadcastNotification(
        level: NotificationLevel,
        title: String,
        message: String,
        data: JSONObject = [:]
    ) async -> PublishReceipt {
        await send(RealtimeNotification(level: level, title: title, message: message, data: data, target: .everyone))
    }

    /// Sends a notification to every administrator connection.
    @discardableResult
    public func sendAdminNotification(
        level: NotificationLevel,
        title: String,
        message: String,
        data: JSONObject = [:]
    ) async -> PublishReceipt {
        await send(RealtimeNotification(level: level, title: title, message: message, data: data, target: .admins))
    }
}
