import CoreMetrics
import Logging
import Synchronization

extension RealtimeHub {
    /// Sends a reply to the client's own request. Replies bypass the queue bound (the inbound rate limit
    /// bounds them already) but never outlive a close.
    func reply(_ core: ConnectionCore, _ text: String) {
        _ = core.queue.enqueue(.text(text), force: true)
    }

    func replyError(
        _ core: ConnectionCore,
        _ code: ProtocolErrorCode,
        _ message: String,
        id: JSONValue?,
        retryAfter: Duration? = nil
    ) {
        reply(core, WireProtocol.error(code, message, id: id, retryAfter: retryAfter))
    }

    /// Counts a protocol error; closes with 1008 when a connection sends too many. Returns whether it was closed.
    @discardableResult
    func protocolError(_ core: ConnectionCore) -> Bool {
        counters.protocolErrors.add(1, ordering: .relaxed)
        let count = core.state.withLock { $0.protocolErrors.record(now: .now, window: .seconds(60)) }
        if count > configuration.limits.maxProtocolErrorsPerMinute {
            // The client's own bad requests: their error replies go out before the close frame.
            close(core, .policyViolation, reason: "too many invalid messages", flush: true)
            return true
        }
        return false
    }

    func handleBinary(size: Int, on core: ConnectionCore) {
        core.state.withLock { $0.lastActivity = .now }
        replyError(core, .unsupportedFrame, "binary frames are not supported; send JSON text frames", id: nil)
        protocolError(core)
    }

    func handleInbound(_ text: String, on core: ConnectionCore) async {
        let now = ContinuousClock.now
        let (closed, decision) = core.state.withLock { connection in
            connection.lastActivity = now
            return (
                connection.closeCode != nil,
                connection.messageLimiter.consume(now: now, policy: configuration.rateLimits.messagesPerConnection)
            )
        }
        if closed { return }
        counters.messagesReceived.add(1, ordering: .relaxed)
        counters.receivedCounter.increment()
        guard decision.allowed else {
            await messageRateLimited(core, retryAfter: decision.retryAfter)
            return
        }
        let parsed = WireProtocol.parse(text, limits: configuration.limits)
        let id: JSONValue?
        let message: ClientMessage
        switch parsed {
        case .failure(let error):
            replyError(core, error.code, error.message, id: error.id)
            protocolError(core)
            return
        case .success(let value):
            (id, message) = value
        }
        guard let identity = core.identity else {
            // Waiting for first-message authentication: only `auth` and `ping`.
            switch message {
            case .auth(let token): await authenticate(core, token: token, id: id)
            case .ping:
                reply(
                    core,
                    WireProtocol.message("pong", id: id, payload: ["timestamp": .string(Timestamp.now().iso8601)])
                )
            default:
                replyError(core, .notAuthenticated, "send an auth message first", id: id)
                protocolError(core)
            }
            return
        }
        switch message {
        case .subscribe(let raw, let recover):
            await subscribe(core, identity: identity, raw, recover: recover, id: id)
        case .unsubscribe(let raw): await unsubscribe(core, identity: identity, raw, id: id)
        case .ping:
            reply(core, WireProtocol.message("pong", id: id, payload: ["timestamp": .string(Timestamp.now().iso8601)]))
        case .getSubscriptions:
            let patterns = state.withLock { $0.patterns(of: core.id) }
            reply(
                core,
                WireProtocol.message(
                    "subscriptions",
                    id: id,
                    payload: ["eventTypes": .array(patterns.map { .string($0.rawValue) })]
                )
            )
        case .refreshToken(let token): await refreshToken(core, current: identity, token: token, id: id)
        case .auth:
            replyError(core, .alreadyAuthenticated, "this connection is already authenticated", id: id)
        }
    }

    private func messageRateLimited(_ core: ConnectionCore, retryAfter: Duration) async {
        counters.rateLimitedMessages.add(1, ordering: .relaxed)
        let limits = configuration.rateLimits
        let violations = core.state.withLock { $0.violations.record(now: .now, window: limits.abuseWindow) }
        guard violations >= limits.violationsBeforeBlock else {
            replyError(core, .rateLimited, "too many messages; slow down", id: nil, retryAfter: retryAfter)
            return
        }
        let addressKey = core.remoteAddress.rateLimitKey
        admission.block(addressKey)
        // After the `rate_limited` replies already queued, so the client sees why (the queue is bounded).
        close(core, .rateLimited, reason: "message rate limit exceeded repeatedly", flush: true)
        logger.notice(
            "connection closed and address blocked for rate-limit abuse",
            metadata: ["realtime.connection.id": "\(core.id)", "realtime.remote": "\(addressKey)"]
        )
        let identity = core.identity
        await publishResolvedEvent(
            RealtimeEvent(
                type: .securityRateLimitExceeded,
                userID: identity?.userID,
                sessionID: identity?.sessionID,
                data: [
                    "connectionId": .string(core.id.rawValue),
                    "address": .string(addressKey),
                    "violations": .int(Int64(violations)),
                    "blockedForSeconds": .int(limits.blockDuration.milliseconds / 1000),
                    "serverId": .string(serverID.rawValue),
                ]
            )
        )
    }

    private func parsePatterns(_ core: ConnectionCore, _ raw: [String], id: JSONValue?) -> [EventPattern]? {
        var patterns: [EventPattern] = []
        for text in raw {
            do {
                patterns.append(try EventPattern(validating: text))
            } catch {
                let shown = text.utf8.count <= 64 ? text : String(text.prefix(64)) + "…"
                replyError(
                    core,
                    .invalidPattern,
                    "'\(shown)' is not a valid pattern (segments of a-z A-Z 0-9 _ -, '*' for one segment or, last, for everything below)",
                    id: id
                )
                protocolError(core)
                return nil
            }
        }
        return patterns
    }

    private func subscribe(
        _ core: ConnectionCore,
        identity: VerifiedIdentity,
        _ raw: [String],
        recover: JSONObject?,
        id: JSONValue?
    ) async {
        guard let patterns = parsePatterns(core, raw, id: id) else { return }
        if core.endpoint == .events {
            let adminOnly: Set<String> = ["admin", "presence"]
            if let forbidden = patterns.first(where: { $0.isConfined(to: adminOnly) }) {
                replyError(
                    core,
                    .forbiddenPattern,
                    "'\(forbidden.rawValue)' matches only events this connection may never receive",
                    id: id
                )
                return
            }
        }
        // The upgrade's `recover` parameter serves the first subscribe (one with its own `recover` replaces it).
        let fromUpgrade = core.state.withLock { state -> JSONObject? in
            defer { state.pendingRecover = nil }
            return state.pendingRecover
        }
        // Recovery: checked before anything is subscribed or read, so a refused request changes nothing.
        var request: RecoveryRequest?
        if let recover = recover ?? fromUpgrade {
            do {
                request = try RecoveryRequest(recover, endpoint: core.endpoint, userID: identity.userID, id: id)
            } catch {
                replyError(core, error.code, error.message, id: id)
                protocolError(core)
                return
            }
            let first = core.state.withLock { state in
                defer { state.recoveryRequested = true }
                return !state.recoveryRequested
            }
            guard first else {
                replyError(
                    core,
                    .recoveryRefused,
                    "a connection recovers once, in its first subscribe with recover; reconnect to recover again",
                    id: id
                )
                protocolError(core)
                return
            }
        }
        let history = backends.historyStore
        // Why this recovery cannot run, when it cannot.
        var refusal: String? = request != nil && history == nil ? "unavailable" : nil
        var gateEntered = false
        if request != nil, history != nil {
            gateEntered = await replayGate.enter()
            if !gateEntered { refusal = "busy" }
        }
        defer { if gateEntered { replayGate.leave() } }
        let recovering = gateEntered ? request : nil
        let limits = configuration.limits
        let maxSubscriptions = limits.maxSubscriptionsPerConnection
        enum Outcome {
            case added([EventPattern], all: [EventPattern])
            case tooMany(current: Int)
            case gone
        }
        let outcome: Outcome = state.withLock { state in
            let existing = state.patterns(of: core.id)
            let existingSet = Set(existing.map(\.rawValue))
            let newCount = Set(patterns.map(\.rawValue)).subtracting(existingSet).count
            guard existing.count + newCount <= maxSubscriptions else { return .tooMany(current: existing.count) }
            guard let added = state.subscribe(core.id, patterns) else { return .gone }
            if let recovering {
                // Live first: from here on, this connection's live frames are held until the replay ends.
                _ = state.beginRecovery(
                    core.id,
                    from: recovering.positions,
                    maxFrames: limits.outboundQueueFrames,
                    maxBytes: limits.outboundQueueBytes
                )
            }
            return .added(added, all: state.patterns(of: core.id))
        }
        switch outcome {
        case .gone:
            return
        case .tooMany(let current):
            replyError(
                core,
                .tooManySubscriptions,
                "a connection may hold at most \(maxSubscriptions) patterns; it holds \(current)",
                id: id
            )
            await auditAdminConnection(
                core,
                identity: identity,
                action: "subscribe",
                target: "patterns:" + patterns.map(\.rawValue).joined(separator: ","),
                outcome: .failure(code: ProtocolErrorCode.tooManySubscriptions.rawValue)
            )
        case .added(let added, let all):
            var payload: JSONObject = [
                "eventTypes": .array(added.map { .string($0.rawValue) }),
                "subscriptions": .array(all.map { .string($0.rawValue) }),
            ]
            if let refusal {
                counters.recoveries.add(1, ordering: .relaxed)
                counters.recoveriesFailed.add(1, ordering: .relaxed)
                payload["recovered"] = false
                payload["reason"] = .string(refusal)
            }
            // The first subscribe without recovery learns where the connection's streams stand, so that a later
            // recovery covers streams it has not received an event from yet.
            if let history, recovering == nil,
                core.state.withLock({ state in
                    defer { state.positionsSent = true }
                    return !state.positionsSent
                })
            {
                payload["positions"] = .object(
                    await currentPositions(of: core, userID: identity.userID, history: history)
                )
            }
            reply(core, WireProtocol.message("subscribed", id: id, payload: payload))
            if let recovering, let history {
                await replay(recovering, to: core, userID: identity.userID, history: history)
            }
            if core.endpoint == .admin && !added.isEmpty {
                await publishResolvedEvent(
                    RealtimeEvent(
                        type: .adminSubscriptionChanged,
                        userID: identity.userID,
                        sessionID: identity.sessionID,
                        data: [
                            "connectionId": .string(core.id.rawValue),
                            "added": .array(added.map { .string($0.rawValue) }),
                            "serverId": .string(serverID.rawValue),
                        ],
                        scope: .admins
                    )
                )
            }
            await auditAdminConnection(
                core,
                identity: identity,
                action: "subscribe",
                target: "patterns:" + added.map(\.rawValue).joined(separator: ",")
            )
        }
    }

    private func unsubscribe(_ core: ConnectionCore, identity: VerifiedIdentity, _ raw: [String], id: JSONValue?) async
    {
        guard let patterns = parsePatterns(core, raw, id: id) else { return }
        let result = state.withLock { state -> ([EventPattern], [EventPattern])? in
            guard let removed = state.unsubscribe(core.id, patterns) else { return nil }
            return (removed, state.patterns(of: core.id))
        }
        guard let (removed, all) = result else { return }
        reply(
            core,
            WireProtocol.message(
                "unsubscribed",
                id: id,
                payload: [
                    "eventTypes": .array(removed.map { .string($0.rawValue) }),
                    "subscriptions": .array(all.map { .string($0.rawValue) }),
                ]
            )
        )
        await auditAdminConnection(
            core,
            identity: identity,
            action: "unsubscribe",
            target: "patterns:" + removed.map(\.rawValue).joined(separator: ",")
        )
    }

    /// First-message authentication: the admission policy's first-message path (verification, session,
    /// privilege, the user's rate limit and connection slot), then activation. A refusal closes the connection
    /// with the reason's close code; a token of the wrong kind is told first, as `refresh_token` tells it.
    private func authenticate(_ core: ConnectionCore, token: String, id: JSONValue?) async {
        switch await admission.admit(.firstMessage(token: token, on: core), host: self) {
        case .failure(let rejection):
            let tellFirst = rejection.reason == .wrongTokenType
            if tellFirst { replyError(core, rejection.reason.protocolErrorCode, rejection.message, id: id) }
            close(core, rejection.reason.closeCode, reason: rejection.message, flush: tellFirst)
        case .success(let admitted):
            guard let identity = admitted.identity else { return }
            await activate(
                core,
                identity: identity,
                userConnections: admitted.userConnections ?? 1,
                admissionStarted: admitted.startedAt,
                replyID: id
            )
        }
    }

    /// An in-band `refresh_token`: the admission policy's refresh path (verification, session, privilege); the
    /// new token must name the connection's user and session.
    private func refreshToken(_ core: ConnectionCore, current: VerifiedIdentity, token: String, id: JSONValue?) async {
        switch await admission.admit(.refresh(token: token, on: core), host: self) {
        case .failure(let rejection):
            replyError(
                core,
                rejection.reason.protocolErrorCode,
                rejection.message,
                id: id,
                retryAfter: rejection.retryAfter
            )
            await auditAdminConnection(
                core,
                identity: current,
                action: "refresh_token",
                outcome: .failure(code: rejection.code)
            )
        case .success(let admitted):
            guard let identity = admitted.identity else { return }
            guard identity.userID == current.userID, identity.sessionID == current.sessionID else {
                replyError(
                    core,
                    .tokenUserMismatch,
                    "the new token must belong to the same user and session as the connection",
                    id: id
                )
                return
            }
            core.state.withLock {
                $0.identity = identity
                $0.warnedExpiry = false
            }
            reply(
                core,
                WireProtocol.message(
                    "token_refreshed",
                    id: id,
                    payload: ["expiresAt": identity.expiresAt.map { .string($0.iso8601) } ?? .null]
                )
            )
            await auditAdminConnection(core, identity: identity, action: "refresh_token")
            // To the user's connections and administrators: a refresh they did not make is worth seeing.
            await publishResolvedEvent(
                RealtimeEvent(
                    type: .authenticationTokenRefresh,
                    userID: identity.userID,
                    sessionID: identity.sessionID,
                    data: [
                        "connectionId": .string(core.id.rawValue), "serverId": .string(serverID.rawValue),
                        "expiresAt": identity.expiresAt.map { .string($0.iso8601) } ?? .null,
                    ]
                )
            )
        }
    }
}
