import RealtimeCore
import Synchronization

/// A Lua script run with `EVALSHA`: loaded once with `SCRIPT LOAD`, its SHA1 cached, and loaded again when Redis
/// answers `NOSCRIPT` (after a restart, a `SCRIPT FLUSH`, or on a cluster node that has not seen it yet: the load
/// goes to the node that serves the script's first key, the one that answered `NOSCRIPT`).
final class RedisScript: Sendable {
    let source: String
    private let sha = Mutex<String?>(nil)

    init(_ source: String) { self.source = source }

    /// Runs the script with `keys` and `arguments`; one round trip once loaded.
    func run(on client: RedisClient, keys: [String], arguments: [String]) async throws(RealtimeError) -> RESPValue {
        try await run(on: client, keys: keys) { command in
            for argument in arguments { command.append(argument) }
        }
    }

    /// Runs the script with `keys` and the arguments `appendArguments` adds (binary ones too), on the pooled
    /// connection `affinity` chooses when given (see ``RedisClient/send(_:affinity:)``).
    func run(
        on client: RedisClient,
        keys: [String],
        affinity: Int? = nil,
        appendArguments: (inout RedisCommand) -> Void
    ) async throws(RealtimeError) -> RESPValue {
        for attempt in 0..<2 {
            let digest = try await loadedSHA(on: client, routedBy: keys.first, reload: attempt > 0)
            var command = RedisCommand("EVALSHA", digest, String(keys.count))
            for key in keys { command.append(key) }
            appendArguments(&command)
            do {
                if let affinity { return try await client.send(command, affinity: affinity) }
                return try await client.send(command)
            } catch {
                guard (error.underlying as? RedisServerError)?.code == "NOSCRIPT", attempt == 0 else { throw error }
            }
        }
        throw RealtimeError(.internalError, "Redis keeps forgetting a script")
    }

    private func loadedSHA(
        on client: RedisClient,
        routedBy key: String?,
        reload: Bool
    ) async throws(RealtimeError) -> String {
        if !reload, let known = sha.withLock({ $0 }) { return known }
        let reply = try await client.send(
            RedisCommand("SCRIPT", "LOAD", source),
            routedBy: key.map { Array($0.utf8)[...] }
        )
        guard let digest = reply.string else {
            throw RealtimeError(.protocolViolation, "SCRIPT LOAD returned \(reply)")
        }
        sha.withLock { $0 = digest }
        return digest
    }
}
