// SPDX-License-Identifier: Apache-2.0

import Logging
import Metrics
import NIOPosix
import RealtimeJWT
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#else
    import Darwin
#endif

/// Re-reads the key files (secret, refresh secret, PEM public key, JWK Set) on `SIGHUP` and when a periodic `stat`
/// sees one of them change (device, inode, size, modification or change time), and swaps the keys in the store
/// atomically. New files that do not load (unreadable, malformed, a weak secret outside development mode, no access
/// key, a refresh secret equal to the access secret) are refused with a log line and a metric; the previous keys
/// stay. Connections are never touched: a connection authenticated with a key that was removed lives on until its
/// token expires, and new tokens of that key are refused.
///
/// Files are read and stat'ed on NIO's thread pool, never on a cooperative thread.
///
/// Metric: `realtime_key_reloads_total` (`result`: `accepted`, `refused`).
final class KeyReloader: Service, Sendable {
    /// What a reload reads: the access keys (nil when they come from elsewhere, e.g. a JWKS URL) and the refresh
    /// keys. Runs on the thread pool; throws when the files are not usable.
    typealias Loader = @Sendable () throws -> (access: JWTKeySet?, refresh: JWTKeySet)

    private let files: [String]
    private let interval: Duration?
    private let store: JWTKeyStore
    private let load: Loader
    private let logger: Logger
    private let accepted = Counter(label: "realtime_key_reloads_total", dimensions: [("result", "accepted")])
    private let refused = Counter(label: "realtime_key_reloads_total", dimensions: [("result", "refused")])

    /// - Parameter interval: how often the files are stat'ed; nil for `SIGHUP` only.
    init(files: [String], interval: Duration?, store: JWTKeyStore, logger: Logger, load: @escaping Loader) {
        self.files = files
        self.interval = interval
        self.store = store
        self.logger = logger
        self.load = load
    }

    /// What identifies one version of a file.
    private struct FileStamp: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modified: Int64
        var changed: Int64
    }

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        let (triggers, trigger) = AsyncStream.makeStream(of: String.self, bufferingPolicy: .bufferingNewest(1))
        logger.info(
            "key files are reloaded on SIGHUP\(interval.map { " and checked every \($0)" } ?? "")",
            metadata: ["files": "\(files.joined(separator: ", "))"]
        )
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await _ in signals { trigger.yield("SIGHUP") }
                }
                if let interval = self.interval {
                    group.addTask {
                        var last = await self.stamps()
                        while (try? await Task.sleep(for: interval)) != nil {
                            let now = await self.stamps()
                            if now != last {
                                last = now
                                trigger.yield("a key file changed")
                            }
                        }
                    }
                }
                group.addTask {
                    var number = 0
                    for await reason in triggers {
                        number += 1
                        await self.reload(number: number, reason: reason)
                    }
                }
                await group.waitForAll()
            }
        }
        trigger.finish()
    }

    /// Loads the files and swaps the keys, or keeps the previous ones.
    private func reload(number: Int, reason: String) async {
        do {
            let keys = try await NIOThreadPool.singleton.runIfActive(load)
            if let access = keys.access {
                guard !access.keys.isEmpty else { throw ConfigurationError("the new files hold no access key") }
                try store.replaceKeys(access, refreshKeys: keys.refresh)
            } else {
                try store.replaceRefreshKeys(keys.refresh)
            }
            accepted.increment()
            logger.notice(
                "key reload \(number): accepted (\(reason))",
                metadata: ["accessKeys": "\(store.keys.keys.count)", "refreshKeys": "\(store.refreshKeys.keys.count)"]
            )
        } catch {
            refused.increment()
            logger.error("key reload \(number): refused (\(reason)): \(error); the previous keys stay")
        }
    }

    /// The files' current stamps (nil for a file that cannot be stat'ed), read on the thread pool.
    private func stamps() async -> [FileStamp?] {
        let files = files
        return (try? await NIOThreadPool.singleton.runIfActive { files.map(Self.stamp) }) ?? []
    }

    private static func stamp(_ path: String) -> FileStamp? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        #if canImport(Darwin)
            let (modified, changed) = (status.st_mtimespec, status.st_ctimespec)
        #else
            let (modified, changed) = (status.st_mtim, status.st_ctim)
        #endif
        return FileStamp(
            device: UInt64(status.st_dev),
            inode: UInt64(status.st_ino),
            size: Int64(status.st_size),
            modified: Int64(modified.tv_sec) * 1_000_000_000 + Int64(modified.tv_nsec),
            changed: Int64(changed.tv_sec) * 1_000_000_000 + Int64(changed.tv_nsec)
        )
    }
}
