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
    @discardableResult
    public func send(_ notification: RealtimeNotification) async -> PublishReceipt {
        counters.notificationsSent.add(1, ordering: .relaxed)
        let local = deliverLocally(notification)
        let route: BusRoute
        switch notification.target {
        case .user(let userID): route = .user(userID)
        case .admins: route = .admins
        case .everyone: route = .everyone
        }
        var published = true
        do {
            try await backends.eventBus.publish(
                BusMessage(origin: serverID, route: route, payload: .notification(notification))
            )
        } catch {
            published = false
            counters.busPublishFailures.add(1, ordering: .relaxed)
            logger.warning("bus publish failed", metadata: ["realtime.error": "\(error)"])
        }
        if case .user(let userID) = notification.target, local == 0, let offline = backends.offlineNotifications {
            await keepIfOffline(notification, for: userID, in: offline)
        }
        return PublishReceipt(id: notification.id, localDeliveries: local, publishedToCluster: published)
    }

    /// Queues a user notification when the user has no connection anywhere (checked after the live publish, so a
    /// connection that registers meanwhile either received it live or finds it queued).
    private func keepIfOffline(
        _ notification: RealtimeNotification,
        for userID: String,
        in offline: any OfflineNotificationStore
    ) async {
        do {
            guard try await backends.connectionStore.count(.user(userID)) == 0 else { return }
            _ = try await offline.enqueue(notification, for: userID)
        } catch {
            logger.warning("offline notification not kept", metadata: ["realtime.error": "\(error)"])
        }
    }

    /// Delivers the notifications queued while the user had no connection to `core` (once, cluster-wide: the store
    /// hands them to one taker).
    func deliverOfflineNotifications(to core: ConnectionCore, userID: String) async {
        guard let offline = backends.offlineNotifications else { return }
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
