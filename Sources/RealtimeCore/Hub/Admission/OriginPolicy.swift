/// Which browser origins may open connections.
///
/// Browsers always send `Origin` on a WebSocket upgrade; other clients (servers, CLIs, mobile apps) usually
/// don't. The rule for a missing `Origin` is ``allowMissingOrigin`` (allowed by default, because a
/// cross-site attack needs a browser, and a browser always sends the header). Outside development mode an
/// empty allow-list therefore refuses every browser while still admitting non-browser clients.
public struct OriginPolicy: Sendable, Hashable {
    /// Exact origins (`https://app.example.com`) and wildcard-subdomain origins (`https://*.example.com`,
    /// which matches `https://a.example.com` and `https://a.b.example.com` but not `https://example.com`).
    public var allowedOrigins: [String]
    /// Allow `http(s)://localhost`, `127.0.0.1` and `[::1]` on any port (development mode).
    public var allowLocalhost: Bool
    /// Allow upgrade requests without an `Origin` header.
    public var allowMissingOrigin: Bool
    /// Skip the check entirely. Only for development.
    public var disabled: Bool

    public init(
        allowedOrigins: [String] = [],
        allowLocalhost: Bool = false,
        allowMissingOrigin: Bool = true,
        disabled: Bool = false
    ) {
        self.allowedOrigins = allowedOrigins
        self.allowLocalhost = allowLocalhost
        self.allowMissingOrigin = allowMissingOrigin
        self.disabled = disabled
    }

    /// Whether an upgrade request with this `Origin` header (or none) is allowed.
    public func allows(_ origin: String?) -> Bool {
        if disabled { return true }
        guard let origin, !origin.isEmpty else { return allowMissingOrigin }
        guard let parsed = ParsedOrigin(origin) else { return false }
        if allowLocalhost, parsed.isLocalhost { return true }
        for allowed in allowedOrigins {
            if allowed == "*" { return true }
            guard let pattern = ParsedOrigin(allowed, allowWildcard: true) else { continue }
            if pattern.matches(parsed) { return true }
        }
        return false
    }
}

private struct ParsedOrigin {
    var scheme: String
    var host: String
    var port: Int
    var wildcard: Bool

    init?(_ text: String, allowWildcard: Bool = false) {
        var text = text.lowercased()
        while text.hasSuffix("/") { text.removeLast() }
        if text.hasPrefix("https://") {
            scheme = "https"
        } else if text.hasPrefix("http://") {
            scheme = "http"
        } else {
            return nil
        }
        var rest = String(text.dropFirst(scheme.count + 3))
        guard !rest.isEmpty, !rest.contains("/"), !rest.contains("@"), !rest.contains("?") else { return nil }
        let defaultPort = scheme == "https" ? 443 : 80
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            host = String(rest[...close])
            let after = rest[rest.index(after: close)...]
            if after.isEmpty {
                port = defaultPort
            } else {
                guard after.first == ":", let value = Int(after.dropFirst()), (1...65535).contains(value) else {
                    return nil
                }
                port = value
            }
            wildcard = false
            return
        }
        if let colon = rest.lastIndex(of: ":") {
            guard let value = Int(rest[rest.index(after: colon)...]), (1...65535).contains(value) else { return nil }
            port = value
            rest = String(rest[..<colon])
        } else {
            port = defaultPort
        }
        wildcard = false
        if rest.hasPrefix("*.") {
            guard allowWildcard else { return nil }
            wildcard = true
            rest.removeFirst(2)
        }
        guard !rest.isEmpty, !rest.contains("*") else { return nil }
        host = rest
    }

    var isLocalhost: Bool { host == "localhost" || host == "127.0.0.1" || host == "[::1]" }

    func matches(_ origin: ParsedOrigin) -> Bool {
        guard scheme == origin.scheme, port == origin.port else { return false }
        if wildcard { return origin.host.hasSuffix("." + host) }
        return host == origin.host
    }
}
