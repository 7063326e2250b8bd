// Operator actions: disconnects, session and user revocation, the session registry, and the control commands
// every server carries out.

import Logging
import Synchronization

extension RealtimeHub {
    // MARK: Operations

    /// Closes every connection of a user on every server (close code 4011).
    public func disconnect(userID: String, reason: String = "disconnected by an operator") async throws(RealtimeError) {
        try IdentifierPolicy.require(userID, "userID")
        try await applyEverywhere(.disconnectUser(userID: userID, reason: reason))
    }

    /// Closes one connection, wherever it is.
    public func disconnect(connectionID: ConnectionID, reason: String = "disconnected by an operator")
        async throws(RealtimeError)
    {
        let command = ControlCommand.disconnectConnection(connectionID, reason: reason)
        if applyControl(command) > 0 { return }
        guard let record = try await backends.connectionStore.connection(connectionID) else {
            throw RealtimeError(.notFound, "no live connection \(connectionID)")
        }
        try await backends.eventBus.publish(
            BusMessage(origin: serverID, route: .server(record.serverID), payload: .control(command))
        )
    }

    /// Closes every connection of a session on every server (close code 4009) without revoking it.
    public func disconnect(sessionID: String, reason: String = "session ended") async throws(RealtimeError) {
        try IdentifierPolicy.require(sessionID, "sessionID")
        try await applyEverywhere(.disconnectSession(sessionID: sessionID, reason: reason))
    }

    /// Revokes a session cluster-wide: later upgrades with its tokens are refused, its user receives a
    /// `session.revoked` event, and its connections on every server are closed with 4009.
    ///
    /// - Parameters:
    ///   - sessionID: the session to revoke (the tokens' `sid` claim).
    ///   - userID: the session's user, for the event when the hub knows no user of the session (revocation-list
    ///     mode and no connection of the session anywhere); otherwise the event goes to the users the registry and
    ///     the session's connections name, whatever this says.
    ///   - retainUntil: how long to remember the revocation (the latest expiry of the session's tokens);
    ///     default ``HubConfiguration/revocationRetention`` from now.
    ///   - reason: the reason carried by the `session.revoked` event and the close frames.
    /// - Returns: whether the session was active before (in registry mode, `false` for an unknown or expired one).
    @discardableResult
    public func revoke(
        sessionID: String,
        userID: String? = nil,
        reason: String = "session revoked",
        retainUntil: Timestamp? = nil
    ) async throws(RealtimeError) -> Bool {
        try IdentifierPolicy.require(sessionID, "sessionID")
        if let userID { try IdentifierPolicy.require(userID, "userID") }
        // A registry knows the session's user; asked first, since revoking forgets the session.
        let registered = try? await backends.sessionStore.session(sessionID)
        let wasActive = try await backends.sessionStore.revoke(
            sessionID,
            retainUntil: retainUntil ?? .now() + configuration.revocationRetention
        )
        // The event goes to the users the hub knows hold the session: the registry's owner, the users of its
        // connections here, else in the cluster registry. The caller's `userID` is taken only when nothing names
        // one (revocation-list mode, no connection anywhere): a wrong one must not tell another user the session's
        // id or log them out (fuzz: gina received hank's `session.revoked`).
        var users = Set<String>()
        if let owner = registered?.userID { users.insert(owner) }
        users.formUnion(state.withLock { $0.cores(ofSession: sessionID) }.compactMap { $0.identity?.userID })
        if users.isEmpty, let records = try? await backends.connectionStore.connections(ofSession: sessionID) {
            users.formUnion(records.map(\.userID))
        }
        if let userID {
            if users.isEmpty {
                users.insert(userID)
            } else if !users.contains(userID) {
                logger.warning(
                    "a session revocation named a user the session is not known for: the event goes to its users",
                    metadata: ["realtime.session.id": "\(sessionID)", "realtime.user.id": "\(userID)"]
                )
            }
        }
        let events = users.sorted().map { user in
            RealtimeEvent(type: .sessionRevoked, userID: user, sessionID: sessionID, data: ["reason": .string(reason)])
        }
        var notices: [RevocationNotice] = []
        for event in events {
            let recorded = await publishResolvedEventsKeepingMessages(CollectionOfOne(event)).messages
            if notices.count < ControlCommand.maxNotices { notices.append(Self.notice(event, recorded)) }
        }
        // The close carries the events: a server whose connection did not get its event on the user's route yet
        // (routes may travel apart, e.g. sharded pub/sub) queues it right before the close frame.
        try await applyEverywhere(.disconnectSession(sessionID: sessionID, reason: reason, notices: notices))
        return wasActive
    }

    /// Revokes every token of a user issued until now, cluster-wide: admission (upgrades, first-message `auth`,
    /// in-band refresh, the HTTP API) refuses the user's tokens whose `iat` is earlier, and tokens without `iat`,
    /// with `session_revoked`; the user receives a `session.revoked` event (`data.scope` is `user`), and the user's
    /// connections authenticated with such tokens are closed with 4009 on every server. Tokens issued afterwards
    /// work. The revocation is kept in the ``SessionStore`` for ``HubConfiguration/revocationRetention`` (the
    /// longest token lifetime) and then forgotten, so the store stays bounded.
    ///
    /// - Returns: the instant before which the user's tokens are refused.
    /// - Throws: ``RealtimeError`` if the session store could not record the revocation (nothing was closed), or
    ///   the bus could not carry it to the other servers (it is recorded, so their admissions refuse the tokens,
    ///   and this server's connections are closed).
    @discardableResult
    public func revoke(userID: String, reason: String = "every session of the user revoked") async throws(RealtimeError)
        -> Timestamp
    {
        try IdentifierPolicy.require(userID, "userID")
        let issuedBefore = Timestamp.now()
        try await backends.sessionStore.revokeUser(
            userID,
            issuedBefore: issuedBefore,
            retainUntil: issuedBefore + configuration.revocationRetention
        )
        let event = RealtimeEvent(
            type: .sessionRevoked,
            userID: userID,
            data: ["reason": .string(reason), "scope": "user", "issuedBefore": .string(issuedBefore.iso8601)]
        )
        let recorded = await publishResolvedEventsKeepingMessages(CollectionOfOne(event)).messages
        try await applyEverywhere(
            .revokeUser(
                userID: userID,
                issuedBefore: issuedBefore,
                reason: reason,
                notice: Self.notice(event, recorded)
            )
        )
        return issuedBefore
    }

    /// Records a session (registry mode needs it before the session's tokens may connect; in revocation-list mode
    /// the store records nothing) and sends its user `session.created` (administrators see it too). Creating an
    /// active session again for its own user sets its new expiry.
    ///
    /// A revoked session stays revoked: its id cannot be created again, for any user, while the revocation is kept
    /// (``HubConfiguration/revocationRetention``, by when its tokens have expired). Reinstating it would bring back
    /// every token that names it, including the stolen ones it was revoked for; issue a new session id instead.
    ///
    /// - Throws: ``RealtimeError/Code/conflict`` when the id was revoked and its revocation is still kept, and in
    ///   registry mode when the id is an active session of another user (a session is never handed from one user
    ///   to another: end it first); ``RealtimeError/Code/invalidArgument``
    ///   for an id the ``IdentifierPolicy`` refuses; a backend's error otherwise.
    public func createSession(_ sessionID: String, userID: String, expiresAt: Timestamp) async throws(RealtimeError) {
        try IdentifierPolicy.require(sessionID, "sessionID")
        try IdentifierPolicy.require(userID, "userID")
        // Checked, then written: two creators racing for one id with different users are the auth service's own
        // bug; admission checks the owner on every token anyway (`SessionStore.isActive(_:userID:)`).
        if sessionMode == .registry, let existing = try await backends.sessionStore.session(sessionID),
            existing.userID != userID
        {
            throw RealtimeError(.conflict, "session \(sessionID) is an active session of another user; end it first")
        }
        try await backends.sessionStore.create(sessionID, userID: userID, expiresAt: expiresAt)
        await publishResolvedEvent(
            RealtimeEvent(
                type: .sessionCreated,
                userID: userID,
                sessionID: sessionID,
                data: ["expiresAt": .string(expiresAt.iso8601)]
            )
        )
    }

    /// The session store's mode (registry or revocation list).
    public var sessionMode: SessionStoreMode { backends.sessionStore.mode }

    /// The largest answer of ``sessions(ofUser:limit:)``.
    public static let maxSessionListSize = 1000

    /// A registry's active sessions of a user, the earliest expiry first.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a limit outside 1 to ``maxSessionListSize``, or when the
    ///   session store is in revocation-list mode (it records revoked sessions, not active ones: list the user's
    ///   connections instead); a backend's error otherwise.
    public func sessions(ofUser userID: String, limit: Int = 100) async throws(RealtimeError) -> [SessionRecord] {
        try IdentifierPolicy.require(userID, "userID")
        guard (1...Self.maxSessionListSize).contains(limit) else {
            throw RealtimeError(.invalidArgument, "limit must be from 1 to \(Self.maxSessionListSize)")
        }
        guard sessionMode == .registry else {
            throw RealtimeError(
                .invalidArgument,
                "the session store is in revocation-list mode: it knows revoked sessions, not active ones"
            )
        }
        return try await backends.sessionStore.sessions(ofUser: userID, limit: limit)
    }

    /// Carries out a control command on this server, then sends it to every other server on the control route.
    private func applyEverywhere(_ command: ControlCommand) async throws(RealtimeError) {
        applyControl(command)
        try await backends.eventBus.publish(BusMessage(origin: serverID, route: .control, payload: .control(command)))
    }

    /// The notice of a published `session.revoked` event, with its positions from the messages that carried it.
    private static func notice(_ event: RealtimeEvent, _ messages: [BusMessage]) -> RevocationNotice {
        var notice = RevocationNotice(event: event)
        for message in messages {
            switch message.route {
            case .user: notice.userStreamPosition = message.position
            case .admins: notice.adminsStreamPosition = message.position
            case .everyone, .control, .server: break
            }
        }
        return notice
    }

    /// Carries out a control command on this server. Returns how many connections it closed.
    ///
    /// A revocation's notices are queued first for the connections it closes (those that did not get the event on
    /// its route yet and may see it), and those connections are closed after their queued frames, so the event
    /// reaches them before the close frame (unless the queue overflowed: then the close drops the backlog).
    @discardableResult
    func applyControl(_ command: ControlCommand) -> Int {
        let targets: [ConnectionCore]
        let code: CloseCode
        let reason: String
        var notices: [RevocationNotice] = []
        switch command {
        case .disconnectUser(let userID, let why):
            targets = state.withLock { $0.cores(ofUser: userID) }
            code = .disconnected
            reason = why
        case .disconnectSession(let sessionID, let why, let carried):
            let now = ContinuousClock.now
            let until = now + configuration.upgradeTicketTimeout * 2
            targets = state.withLock { state in
                // Under the lock of the indexes: a connection of the session admitted before this and activated
                // after it is refused at activation.
                state.recentRevocations.noteSession(sessionID, appliedAt: now, reason: why, until: until)
                return state.cores(ofSession: sessionID)
            }
            code = .sessionRevoked
            reason = why
            notices = carried
        case .revokeUser(let userID, let issuedBefore, let why, let carried):
            let now = ContinuousClock.now
            let until = now + configuration.upgradeTicketTimeout * 2
            targets = state.withLock { state in
                // Under the lock of the indexes: a connection activated after this is refused at activation.
                state.recentRevocations.noteUser(userID, issuedBefore: issuedBefore, now: now, until: until)
                return state.cores(ofUser: userID)
            }.filter { core in
                Admission.isRevoked(issuedAt: core.identity?.issuedAt, before: issuedBefore)
            }
            code = .sessionRevoked
            reason = why
            // Only a notice about this user is delivered to this user's connections.
            if let carried, carried.event.scope == .user(userID) { notices = [carried] }
        case .disconnectConnection(let id, let why):
            targets = state.withLock { state in
                state.slot(id).map { [$0.core] } ?? state.awaitingAuth[id].map { [$0] } ?? []
            }
            code = .disconnected
            reason = why
        }
        guard !notices.isEmpty, !targets.isEmpty else {
            for core in targets { close(core, code, reason: reason) }
            return targets.count
        }
        // Encoded before the lock, one frame per route, as for a live fan-out.
        let framed = notices.compactMap { notice -> (RevocationNotice, HubState.NoticeFrames)? in
            guard case .user(let userID) = notice.event.scope, notice.event.type == .sessionRevoked else { return nil }
            func frame(_ route: BusRoute, _ position: StreamPosition?) -> OutboundFrame {
                var message = BusMessage(origin: serverID, route: route, payload: .event(notice.event))
                message.position = position
                return .encodedText(EncodedTextFrame(text: WireProtocol.eventFrame(for: message, notice.event)))
            }
            let userFrame = frame(.user(userID), notice.userStreamPosition)
            let adminsFrame = frame(.admins, notice.adminsStreamPosition)
            return (
                notice,
                HubState.NoticeFrames(
                    userFrame: userFrame,
                    adminsFrame: adminsFrame,
                    userFrameWithoutPosition: notice.userStreamPosition == nil ? userFrame : frame(.user(userID), nil),
                    adminsFrameWithoutPosition: notice.adminsStreamPosition == nil ? adminsFrame : frame(.admins, nil)
                )
            )
        }
        var effects = HubState.FanOutEffects()
        let delivered = state.withLock { state in
            framed.reduce(0) { sum, item in
                sum + state.deliverNotice(item.0, frames: item.1, to: targets, effects: &effects)
            }
        }
        for queue in effects.consumersToWake { queue.wakeConsumer() }
        account(delivered: delivered, overflowed: [])
        let overflowed = Set(effects.overflowed.map(\.id))
        for core in targets {
            // After the queue (with the notice), unless it overflowed: then the backlog is dropped.
            close(core, code, reason: reason, flush: !overflowed.contains(core.id))
        }
        return targets.count
    }
}
