import Logging
import NIOCore
import RealtimeCore
import Synchronization

/// The cluster half of ``RedisClient``: the slot map, one ``RedisNodePool`` per primary, routing, redirects and
/// refreshes. The decisions are values (`RedisClusterTopology`, `RedisClusterRedirect`, unit-tested); this class
/// only applies them.
final class RedisClusterRouter: Sendable {
    private struct State: ~Copyable {
        var topology: RedisClusterTopology?
        var pools: [RedisNodeAddress: RedisNodePool] = [:]
        var refreshing = false
        var refreshAgain = false
        /// The last refresh failure, for the start-up error and health.
        var lastError: String?
        /// Commands that arrived before the first slot map.
        var waiters: [EventLoopPromise<Void>] = []
        var shutDown = false
        var periodic: RepeatedTask?
        var onConnect: (@Sendable () -> Void)?
        var onChange: (@Sendable (Bool) -> Void)?
        var refreshes = 0
        /// Called after every slot map read (the sharded bus subscribers follow it).
        var topologyListeners: [Int: @Sendable () -> Void] = [:]
        var nextListener = 0
    }

    let configuration: RedisConfiguration
    let eventLoopGroup: any EventLoopGroup
    let logger: Logger
    private let state = Mutex<State>(State())

    init(configuration: RedisConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    func start(onConnect: @escaping @Sendable () -> Void, onChange: @escaping @Sendable (Bool) -> Void) {
        let interval = TimeAmount.milliseconds(max(10, configuration.clusterRefreshInterval.milliseconds))
        let periodic = eventLoopGroup.next().scheduleRepeatedTask(initialDelay: interval, delay: interval) {
            [weak self] _ in self?.refresh()
        }
        state.withLock { state in
            state.onConnect = onConnect
            state.onChange = onChange
            state.periodic = periodic
        }
        refresh()
    }

    // MARK: pools

    /// The pool of `address`, created (and connecting) on first use.
    private func pool(at address: RedisNodeAddress) -> RedisNodePool? {
        let (pool, created, hooks) = state.withLock {
            state -> (RedisNodePool?, Bool, (@Sendable () -> Void, @Sendable (Bool) -> Void)?) in
            if let pool = state.pools[address] { return (pool, false, nil) }
            guard !state.shutDown else { return (nil, false, nil) }
            let pool = RedisNodePool(
                configuration: configuration(of: address),
                eventLoopGroup: eventLoopGroup,
                logger: logger
            )
            state.pools[address] = pool
            let onConnect = state.onConnect ?? {}
            let onChange = state.onChange ?? { _ in }
            return (pool, true, (onConnect, onChange))
        }
        if created, let pool, let hooks {
            pool.start(
                onConnect: hooks.0,
                onChange: { [weak self] reconnected in
                    hooks.1(reconnected)
                    // A connection lost (a primary died, a failover began): read the slot map again.
                    if !reconnected { self?.refresh() }
                }
            )
        }
        return pool
    }

    /// The pool serving `routingKey`'s slot (any primary for `nil`), waiting for the first slot map if needed.
    private func pool(for routingKey: ArraySlice<UInt8>?) async throws(RealtimeError) -> RedisNodePool {
        let topology = try await currentTopology()
        let address: RedisNodeAddress?
        if let routingKey {
            let slot = RedisHashSlot.slot(of: routingKey)
            address = topology.owner(of: slot)
            guard address != nil else {
                refresh()
                throw RealtimeError(.backendUnavailable, "no Redis Cluster node serves slot \(slot)")
            }
        } else {
            address = anyPrimary(topology)
        }
        guard let address, let pool = pool(at: address) else {
            throw RealtimeError(.shutDown, "the Redis client was shut down")
        }
        return pool
    }

    /// The primary for commands without a key: the first one (by address) with a connection up, else the first,
    /// so one client's `PUBLISH`es all leave from one node while it lives (see `RedisCommand.routingKey`).
    private func anyPrimary(_ topology: RedisClusterTopology) -> RedisNodeAddress? {
        let pools = state.withLock { $0.pools }
        let primaries = topology.primaries.sorted { ($0.host, $0.port) < ($1.host, $1.port) }
        return primaries.first { pools[$0].map { $0.connectedCount > 0 } ?? false } ?? primaries.first
    }

    private func currentTopology() async throws(RealtimeError) -> RedisClusterTopology {
        // The common case, without a promise: the map is known.
        if let known = state.withLock({ $0.topology }) { return known }
        let loop = eventLoopGroup.any()
        let promise = loop.makePromise(of: Void.self)
        let known: RedisClusterTopology? = state.withLock { state in
            if let topology = state.topology { return topology }
            state.waiters.append(promise)
            return nil
        }
        if let known {
            promise.succeed()
            return known
        }
        let timeout = loop.scheduleTask(in: .milliseconds(max(1, configuration.connectTimeout.milliseconds))) {
            promise.fail(RealtimeError(.backendUnavailable, self.unreachableMessage))
        }
        do {
            try await promise.futureResult.get()
        } catch {
            throw RedisClient.mapped(error)
        }
        timeout.cancel()
        guard let topology = state.withLock({ $0.topology }) else {
            throw RealtimeError(.backendUnavailable, unreachableMessage)
        }
        return topology
    }

    private var unreachableMessage: String {
        let seeds = configuration.clusterNodes.map(\.description).joined(separator: ", ")
        let last = state.withLock { $0.lastError }
        return "no Redis Cluster node answered CLUSTER SLOTS (seeds: \(seeds))" + (last.map { ": \($0)" } ?? "")
    }

    // MARK: commands

    /// Sends `command` to the owner of `routingKey`'s slot, following redirects; returns the raw reply.
    func execute(
        _ command: RedisCommand,
        routingKey: ArraySlice<UInt8>?,
        affinity: Int?
    ) async throws(RealtimeError) -> RESPValue {
        var asking: RedisNodeAddress?
        var attempt = 0
        while true {
            let pool: RedisNodePool
            if let target = asking {
                guard let found = self.pool(at: target) else {
                    throw RealtimeError(.shutDown, "the Redis client was shut down")
                }
                pool = found
            } else {
                pool = try await self.pool(for: routingKey)
            }
            let reply: RESPValue
            do {
                if asking != nil {
                    let replies = try await pool.withConnection(affinity: affinity) { connection in
                        try await connection.execute([RedisCommand("ASKING"), command])
                    }
                    reply = replies[1]
                } else {
                    reply = try await pool.withConnection(affinity: affinity) { connection in
                        try await connection.execute(command)
                    }
                }
            } catch {
                if error.code == .backendUnavailable || error.code == .timeout { refresh() }
                throw error
            }
            switch RedisClusterRedirect.decide(reply, attempt: attempt) {
            case .done:
                return reply
            case .moved(let slot, let address):
                state.withLock { $0.topology?.move(slot: slot, to: address) }
                refresh()
                asking = nil
            case .ask(_, let address):
                asking = address
            case .retryLater:
                refresh()
                asking = nil
                try? await Task.sleep(for: .milliseconds(20 << min(attempt, 5)))
            case .giveUp(let message):
                throw RealtimeError(.backendUnavailable, message)
            }
            attempt += 1
        }
    }

    /// Splits `commands` by the node of their slot, runs one pipeline per node concurrently, and reassembles the
    /// replies in order; a redirected reply is sent again on its own (following the redirect).
    func pipeline(_ commands: [RedisCommand]) async throws(RealtimeError) -> [RESPValue] {
        let topology = try await currentTopology()
        // The owner of a command's slot, as an index into `topology.primaries` (-1: no key or no owner, any
        // primary). A slot no node serves goes to any primary too, whose redirect or error is then followed.
        func ownerIndex(_ command: RedisCommand) -> Int {
            guard let key = command.routingKey else { return -1 }
            return topology.ownerIndex(of: RedisHashSlot.slot(of: key))
        }
        guard let head = commands.first else { return [] }
        let first = ownerIndex(head)
        // Checked without an array of owners: the common case (one hash tag) allocates nothing for it.
        if commands.dropFirst().allSatisfy({ ownerIndex($0) == first }) {
            // Every command on one node (one hash tag): one pipeline there, without grouping or a task group.
            let address = first >= 0 ? topology.primaries[first] : anyPrimary(topology)
            guard let address else { throw RealtimeError(.backendUnavailable, "the Redis Cluster has no primary") }
            guard let pool = pool(at: address) else {
                throw RealtimeError(.shutDown, "the Redis client was shut down")
            }
            let replies: [RESPValue]
            do {
                replies = try await pool.withConnection(affinity: nil) { connection in
                    try await connection.execute(commands)
                }
            } catch {
                if error.code == .backendUnavailable || error.code == .timeout { refresh() }
                throw error
            }
            return try await followingRedirects(commands, replies)
        }
        let owners = commands.map(ownerIndex)
        let fallback = owners.contains(-1) ? anyPrimary(topology) : nil
        var groups: [RedisNodeAddress: [Int]] = [:]
        for (index, owner) in owners.enumerated() {
            let address = owner >= 0 ? topology.primaries[owner] : fallback
            guard let address else { throw RealtimeError(.backendUnavailable, "the Redis Cluster has no primary") }
            groups[address, default: []].append(index)
        }
        var pools: [(RedisNodePool, [Int])] = []
        for (address, indices) in groups {
            guard let pool = pool(at: address) else { throw RealtimeError(.shutDown, "the Redis client was shut down") }
            pools.append((pool, indices))
        }
        var replies = Array(repeating: RESPValue.null, count: commands.count)
        do {
            try await withThrowingTaskGroup(of: ([Int], [RESPValue]).self) { group in
                for (pool, indices) in pools {
                    let part = indices.map { commands[$0] }
                    group.addTask {
                        let answers = try await pool.withConnection(affinity: nil) { connection in
                            try await connection.execute(part)
                        }
                        return (indices, answers)
                    }
                }
                for try await (indices, answers) in group {
                    for (index, answer) in zip(indices, answers) { replies[index] = answer }
                }
            }
        } catch {
            let mapped = RedisClient.mapped(error)
            if mapped.code == .backendUnavailable || mapped.code == .timeout { refresh() }
            throw mapped
        }
        return try await followingRedirects(commands, replies)
    }

    /// `replies` with each redirected one replaced by its command sent again on its own, following the redirect.
    private func followingRedirects(
        _ commands: [RedisCommand],
        _ replies: [RESPValue]
    ) async throws(RealtimeError) -> [RESPValue] {
        // The common case, no error reply at all, without parsing any.
        guard replies.contains(where: { if case .error = $0 { true } else { false } }) else { return replies }
        var replies = replies
        for index in replies.indices where RedisClusterRedirect.decide(replies[index], attempt: 0) != .done {
            replies[index] = try await execute(commands[index], routingKey: commands[index].routingKey, affinity: nil)
        }
        return replies
    }

    /// The future of `command`'s raw reply on its slot's primary, without following redirects (the map is
    /// refreshed when one comes back).
    func sendFuture(_ command: RedisCommand, affinity: Int?) -> EventLoopFuture<RESPValue> {
        let topology = state.withLock { $0.topology }
        let address =
            command.routingKey.flatMap { key in topology?.owner(of: RedisHashSlot.slot(of: key)) }
            ?? topology.flatMap(anyPrimary) ?? configuration.clusterNodes.first
        guard let address, let pool = pool(at: address) else {
            return eventLoopGroup.any().makeFailedFuture(RealtimeError(.shutDown, "the Redis client was shut down"))
        }
        return pool.sendFuture(command, affinity: affinity).map { reply in
            if RedisClusterRedirect.decide(reply, attempt: 0) != .done { self.refresh() }
            return reply
        }
    }

    // MARK: topology refresh

    /// Reads the slot map again (coalesced: one refresh at a time, one more if asked meanwhile), from the known
    /// primaries first, then the seeds.
    func refresh() {
        let candidates: [RedisNodeAddress]? = state.withLock { state in
            guard !state.shutDown else { return nil }
            guard !state.refreshing else {
                state.refreshAgain = true
                return nil
            }
            state.refreshing = true
            let known = state.topology?.primaries ?? []
            let connected = known.filter { state.pools[$0].map { $0.connectedCount > 0 } ?? false }
            var seen = Set<RedisNodeAddress>()
            return (connected + known + configuration.clusterNodes).filter { seen.insert($0).inserted }
        }
        guard let candidates else { return }
        attemptRefresh(candidates, index: 0, errors: [])
    }

    private func attemptRefresh(_ candidates: [RedisNodeAddress], index: Int, errors: [String]) {
        guard index < candidates.count else {
            finishRefresh(.failure(RealtimeError(.backendUnavailable, errors.joined(separator: "; "))))
            return
        }
        let address = candidates[index]
        guard let pool = pool(at: address) else {
            finishRefresh(.failure(RealtimeError(.shutDown, "the Redis client was shut down")))
            return
        }
        pool.sendFuture(RedisCommand("CLUSTER", "SLOTS")).whenComplete { result in
            switch result {
            case .success(let reply):
                if case .error(let message) = reply {
                    self.attemptRefresh(candidates, index: index + 1, errors: errors + ["\(address): \(message)"])
                    return
                }
                do {
                    let topology = try RedisClusterTopology(clusterSlots: reply, answeredBy: address)
                    self.finishRefresh(.success(topology))
                } catch {
                    self.attemptRefresh(candidates, index: index + 1, errors: errors + ["\(address): \(error)"])
                }
            case .failure(let error):
                let message = (error as? RealtimeError)?.message ?? "\(error)"
                self.attemptRefresh(candidates, index: index + 1, errors: errors + ["\(address): \(message)"])
            }
        }
    }

    private func finishRefresh(_ result: Result<RedisClusterTopology, RealtimeError>) {
        let (waiters, again, stale): ([EventLoopPromise<Void>], Bool, [RedisNodePool]) = state.withLock { state in
            state.refreshing = false
            state.refreshes += 1
            let again = state.refreshAgain
            state.refreshAgain = false
            switch result {
            case .success(let topology):
                state.topology = topology
                state.lastError = nil
                // Pools of nodes that are neither primaries nor seeds any more are closed.
                let keep = Set(topology.primaries).union(configuration.clusterNodes)
                let stale = state.pools.filter { !keep.contains($0.key) }
                for address in stale.keys { state.pools[address] = nil }
                defer { state.waiters = [] }
                return (state.waiters, again, Array(stale.values))
            case .failure(let error):
                state.lastError = error.message
                return ([], again, [])
            }
        }
        if case .success(let topology) = result {
            for primary in topology.primaries { _ = pool(at: primary) }
            if topology.uncoveredSlots > 0 {
                logger.warning(
                    "Redis Cluster has slots no node serves",
                    metadata: ["realtime.redis.uncovered": "\(topology.uncoveredDescription)"]
                )
            }
        } else if case .failure(let error) = result {
            logger.warning("Redis Cluster slot map refresh failed", metadata: ["realtime.redis.error": "\(error)"])
        }
        for waiter in waiters { waiter.succeed() }
        if case .success = result {
            for listener in state.withLock({ Array($0.topologyListeners.values) }) { listener() }
        }
        let loop = eventLoopGroup.any()
        for pool in stale { _ = pool.shutdown(on: loop) }
        if again {
            // Asked again while this one ran (e.g. during a failover): one more, a little later.
            loop.scheduleTask(in: .milliseconds(50)) { self.refresh() }
        }
    }

    /// Calls `listener` (on an event loop, outside any lock) after every successful slot-map read.
    func addTopologyListener(_ listener: @escaping @Sendable () -> Void) -> Int {
        state.withLock { state in
            defer { state.nextListener += 1 }
            state.topologyListeners[state.nextListener] = listener
            return state.nextListener
        }
    }

    func removeTopologyListener(_ id: Int) {
        _ = state.withLock { $0.topologyListeners.removeValue(forKey: id) }
    }

    /// The current slot map (nil before the first read).
    var topology: RedisClusterTopology? { state.withLock { $0.topology } }

    /// The configuration of a connection to `address` (the client's, with that host and port).
    func configuration(of address: RedisNodeAddress) -> RedisConfiguration {
        var node = configuration
        node.host = address.host
        node.port = address.port
        return node
    }

    /// How many slot-map reads have finished (successful or not).
    var refreshCount: Int { state.withLock { $0.refreshes } }

    // MARK: state

    var connectedPools: Int { state.withLock { $0.pools.values.count { $0.connectedCount > 0 } } }
    var connectedConnections: Int { state.withLock { $0.pools.values.reduce(0) { $0 + $1.connectedCount } } }

    /// The primary serving `key` in the current map.
    func owner(of key: String) -> RedisNodeAddress? {
        state.withLock { $0.topology?.owner(of: RedisHashSlot.slot(of: key)) }
    }

    func health() -> ComponentHealth {
        let (topology, pools, lastError) = state.withLock { ($0.topology, $0.pools, $0.lastError) }
        let primaries = topology?.primaries ?? []
        let up = primaries.count { pools[$0].map { $0.connectedCount > 0 } ?? false }
        let uncovered = topology?.uncoveredSlots ?? RedisHashSlot.count
        var details: JSONObject = [
            "redisConnected": .bool(up > 0),
            "cluster": .bool(true),
            "primaries": .int(Int64(primaries.count)),
            "primariesConnected": .int(Int64(up)),
            "uncoveredSlots": .int(Int64(uncovered)),
        ]
        if let lastError { details["lastError"] = .string(lastError) }
        let status: ComponentHealth.Status =
            up == 0 ? .unhealthy : (up == primaries.count && uncovered == 0) ? .healthy : .degraded
        return ComponentHealth(status: status, details: details)
    }

    /// The slot map read from the seeds, with every slot served.
    func checkReady() async throws(RealtimeError) {
        let topology = try await currentTopology()
        guard topology.uncoveredSlots == 0 else {
            throw RealtimeError(
                .backendUnavailable,
                "the Redis Cluster does not serve \(topology.uncoveredSlots) of \(RedisHashSlot.count) slots "
                    + "(\(topology.uncoveredDescription)): check CLUSTER INFO"
            )
        }
        for primary in topology.primaries {
            guard let pool = pool(at: primary) else { throw RealtimeError(.shutDown, "the Redis client was shut down") }
            let reply = try await pool.withConnection(affinity: nil) { connection in
                try await connection.execute(RedisCommand("PING"))
            }
            _ = try RedisClient.checked(reply)
        }
    }

    func subscriberConfiguration(attempt: Int) -> RedisConfiguration {
        let (topology, pools) = state.withLock { ($0.topology, $0.pools) }
        let primaries = topology?.primaries ?? []
        let connected = primaries.filter { pools[$0].map { $0.connectedCount > 0 } ?? false }
        let candidates = connected.isEmpty ? primaries + configuration.clusterNodes : connected
        var node = configuration
        if !candidates.isEmpty {
            let address = candidates[attempt % candidates.count]
            node.host = address.host
            node.port = address.port
        }
        return node
    }

    func shutdown(on loop: any EventLoop) -> EventLoopFuture<Void> {
        let (pools, waiters, periodic) = state.withLock { state in
            state.shutDown = true
            defer {
                state.pools = [:]
                state.waiters = []
                state.periodic = nil
            }
            return (Array(state.pools.values), state.waiters, state.periodic)
        }
        periodic?.cancel()
        for waiter in waiters { waiter.fail(RealtimeError(.shutDown, "the Redis client was shut down")) }
        return EventLoopFuture.andAllComplete(pools.map { $0.shutdown(on: loop) }, on: loop)
    }
}
