#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// An IPv4 or IPv6 address.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 bytes for IPv4, 16 for IPv6 (IPv4-mapped IPv6 addresses are stored as IPv4).
    public let bytes: [UInt8]

    /// Parses a textual address (`192.0.2.1`, `2001:db8::1`, `[2001:db8::1]`, optionally with `:port` for
    /// IPv4 and bracketed IPv6).
    public init?(_ text: some StringProtocol) {
        var text = String(text).trimmingSpaces()
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            text = String(text[text.index(after: text.startIndex)..<close])
        } else if text.filter({ $0 == ":" }).count == 1, let colon = text.firstIndex(of: ":") {
            text = String(text[..<colon])  // IPv4 with port
        }
        if let zone = text.firstIndex(of: "%") { text = String(text[..<zone]) }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let raw = withUnsafeBytes(of: &v6) { Array($0) }
        if raw[0..<10].allSatisfy({ $0 == 0 }) && raw[10] == 0xFF && raw[11] == 0xFF {
            bytes = Array(raw[12..<16])
        } else {
            bytes = raw
        }
    }

    public var isIPv4: Bool { bytes.count == 4 }

    public var description: String {
        if isIPv4 { return bytes.map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for index in stride(from: 0, to: 16, by: 2) {
            groups.append(String(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1]), radix: 16))
        }
        return groups.joined(separator: ":")
    }

    /// The key under which per-IP limits count this address: the address itself for IPv4, its /64 network for
    /// IPv6 (one host usually owns a whole /64 and could otherwise rotate addresses to dodge limits).
    public var rateLimitKey: String {
        if isIPv4 { return description }
        var groups: [String] = []
        for index in stride(from: 0, to: 8, by: 2) {
            groups.append(String(UInt16(bytes[index]) << 8 | UInt16(bytes[index + 1]), radix: 16))
        }
        return groups.joined(separator: ":") + "::/64"
    }
}

/// A network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`), or a single address.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let prefixLength: Int

    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let first = parts.first, let address = IPAddress(first) else { return nil }
        let maxLength = address.bytes.count * 8
        if parts.count == 2 {
            guard let length = Int(parts[1]), (0...maxLength).contains(length) else { return nil }
            prefixLength = length
        } else {
            prefixLength = maxLength
        }
        self.address = address
    }

    public func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var remaining = prefixLength
        for index in 0..<address.bytes.count where remaining > 0 {
            let bits = min(8, remaining)
            let mask: UInt8 = bits == 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if address.bytes[index] & mask != other.bytes[index] & mask { return false }
            remaining -= bits
        }
        return true
    }

    public var description: String { "\(address)/\(prefixLength)" }
}

/// Works out the client's address from the socket peer and, behind trusted proxies, the forwarding headers.
///
/// The socket address is used unless it belongs to a configured trusted proxy. Then `Forwarded` (RFC 7239) or
/// else `X-Forwarded-For` is read from the right, skipping trusted proxies; the first untrusted address is the
/// client. Headers from an untrusted peer are ignored, so a client cannot choose its own address.
public struct ClientAddressResolver: Sendable, Hashable {
    public var trustedProxies: [IPNetwork]

    public init(trustedProxies: [IPNetwork] = []) {
        self.trustedProxies = trustedProxies
    }

    func isTrusted(_ address: IPAddress) -> Bool { trustedProxies.contains { $0.contains(address) } }

    /// The client address, or `nil` if the peer address cannot be parsed.
    public func resolve(peer: String, headers: [(name: String, value: String)]) -> IPAddress? {
        guard let peerAddress = IPAddress(peer) else { return nil }
        guard isTrusted(peerAddress) else { return peerAddress }
        var chain: [String] = []
        let forwarded = headers.filter { $0.name.lowercased() == "forwarded" }
        if !forwarded.isEmpty {
            for header in forwarded {
                for element in header.value.split(separator: ",") {
                    for pair in element.split(separator: ";") {
                        let keyValue = pair.split(separator: "=", maxSplits: 1)
                        guard keyValue.count == 2, keyValue[0].trimmingSpaces().lowercased() == "for" else { continue }
                        var value = keyValue[1].trimmingSpaces()
                        if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 {
                            value = String(value.dropFirst().dropLast())
                        }
                        chain.append(value)
                    }
                }
            }
        } else {
            for header in headers where header.name.lowercased() == "x-forwarded-for" {
                chain.append(contentsOf: header.value.split(separator: ",").map { $0.trimmingSpaces() })
            }
        }
        var client = peerAddress
        for entry in chain.reversed() {
            guard let address = IPAddress(entry) else { return client }  // garbage: stop at the last good hop
            client = address
            if !isTrusted(address) { return address }
        }
        return client
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
