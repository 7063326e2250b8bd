// The admission policy's abuse accounting per client address: authentication failures (an alert past a
// threshold), HTTP violations and message-rate abuse (a block past a threshold), and the blocks themselves.

import Logging
import Synchronization

extension Admission {
    /// How long `addressKey` stays blocked, or `nil` when it is not.
    func blockedFor(_ addressKey: String) -> Duration? {
        let now = self.now()
        return abuse.withLock { $0.blockedFor(addressKey, now: now) }
    }

    /// Blocks `addressKey` for ``HubConfiguration/RateLimits-swift.struct/blockDuration`` (a connection of it
    /// exceeded its message rate limit repeatedly).
    func block(_ addressKey: String) {
        let now = self.now()
        abuse.withLock { $0.block(addressKey, for: configuration.rateLimits.blockDuration, now: now) }
    }

    /// Forgets addresses idle for longer than the abuse window that are not blocked.
    func sweepAbuse() {
        let now = self.now()
        abuse.withLock { $0.sweep(now: now, idle: configuration.rateLimits.abuseWindow) }
    }

    /// Counts an open plain HTTP connection of `peer`; `false` (nothing counted) when its address holds the most
    /// already. A trusted proxy, or a peer that is no IP address, is never refused.
    func httpConnectionStarted(peer: String) -> Bool {
        guard let key = httpConnectionKey(peer) else { return true }
        let limit = configuration.http.maxConnectionsPerAddress
        let admitted = openHTTPConnections.withLock { open -> Bool in
            let count = open[key, default: 0]
            guard count < limit else { return false }
            open[key] = count + 1
            return true
        }
        if !admitted { counters.increment("realtime_http_connections_refused_total", ("reason", "per_address")) }
        return admitted
    }

    /// Uncounts a connection ``httpConnectionStarted(peer:)`` admitted (upgraded to a WebSocket, or closed).
    func httpConnectionEnded(peer: String) {
        guard let key = httpConnectionKey(peer) else { return }
        openHTTPConnections.withLock { open in
            guard let count = open[key] else { return }
            open[key] = count > 1 ? count - 1 : nil
        }
    }

    /// The key `peer`'s connections are counted under; `nil` for a trusted proxy or a peer that is no IP address.
    private func httpConnectionKey(_ peer: String) -> String? {
        guard let address = IPAddress(peer), !configuration.clientAddress.isTrusted(address) else { return nil }
        return address.rateLimitKey
    }

    /// Addresses the abuse state holds.
    var trackedAddressCount: Int { abuse.withLock { $0.count } }

    /// Counts an authentication failure (`realtime_auth_failures_total{reason}`) and publishes
    /// `security.suspicious.activity` when one address fails
    /// ``HubConfiguration/RateLimits-swift.struct/authFailuresBeforeAlert`` times within the abuse window.
    func authenticationFailed(reason: String, addressKey: String, host: some AdmissionHost) async {
        counters.authFailed(reason)
        let window = configuration.rateLimits.abuseWindow
        let now = self.now()
        let count = abuse.withLock { $0.recordAuthFailure(addressKey, window: window, now: now) }
        guard count == configuration.rateLimits.authFailuresBeforeAlert else { return }
        await host.publishAdmissionEvent(
            RealtimeEvent(
                type: .securitySuspiciousActivity,
                data: [
                    "reason": "repeated_authentication_failures",
                    "address": .string(addressKey),
                    "failures": .int(Int64(count)),
                    "windowSeconds": .int(window.milliseconds / 1000),
                    "serverId": .string(configuration.serverID.rawValue),
                ],
                scope: .admins
            )
        )
    }

    /// Records an HTTP-level violation of `peer` (see ``RealtimeHub/reportHTTPViolation(reason:peer:)``): counted,
    /// and past ``HubConfiguration/RateLimits-swift.struct/violationsBeforeBlock`` within the abuse window the
    /// address is blocked and administrators get `security.suspicious.activity`. A trusted proxy is never blocked
    /// (its clients cannot be told apart).
    func httpViolation(reason: String, peer: String, host: some AdmissionHost) async {
        counters.increment("realtime_http_violations_total", ("reason", reason))
        guard let address = IPAddress(peer), !configuration.clientAddress.isTrusted(address) else { return }
        let key = address.rateLimitKey
        let limits = configuration.rateLimits
        let now = self.now()
        let count = abuse.withLock { abuse -> Int in
            let count = abuse.recordHTTPViolation(key, window: limits.abuseWindow, now: now)
            if count == limits.violationsBeforeBlock { abuse.block(key, for: limits.blockDuration, now: now) }
            return count
        }
        guard count == limits.violationsBeforeBlock else { return }
        logger.notice(
            "address blocked for repeated HTTP violations",
            metadata: ["realtime.remote": "\(key)", "realtime.reason": "\(reason)"]
        )
        await host.publishAdmissionEvent(
            RealtimeEvent(
                type: .securitySuspiciousActivity,
                data: [
                    "reason": "repeated_http_violations",
                    "lastViolation": .string(reason),
                    "address": .string(key),
                    "violations": .int(Int64(count)),
                    "blockedForSeconds": .int(limits.blockDuration.milliseconds / 1000),
                    "serverId": .string(configuration.serverID.rawValue),
                ],
                scope: .admins
            )
        )
    }
}
