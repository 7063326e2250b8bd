/// An HTTP request as the host received it: a WebSocket upgrade, or a request of the host's HTTP API
/// (``RealtimeHub/authenticateRequest(_:verifier:)``).
public struct UpgradeRequest: Sendable {
    /// The request path without the query (`/ws/events`).
    public var path: String
    /// Decoded query items.
    public var queryItems: [(name: String, value: String)]
    /// Request headers (names are compared case-insensitively).
    public var headers: [(name: String, value: String)]
    /// The socket peer's IP address (`192.0.2.1`, `2001:db8::1`); a port suffix is tolerated.
    public var remoteAddress: String

    public init(
        path: String,
        queryItems: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [],
        remoteAddress: String
    ) {
        self.path = path
        self.queryItems = queryItems
        self.headers = headers
        self.remoteAddress = remoteAddress
    }

    /// Creates a request from a request target such as `/ws/events?token=abc%20def`, splitting and
    /// percent-decoding the query.
    public init(uri: String, headers: [(name: String, value: String)] = [], remoteAddress: String) {
        let parts = uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var items: [(name: String, value: String)] = []
        if parts.count == 2 {
            for pair in parts[1].split(separator: "&") {
                let keyValue = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let name = percentDecode(keyValue[0])
                let value = keyValue.count == 2 ? percentDecode(keyValue[1]) : ""
                items.append((name, value))
            }
        }
        self.init(path: String(parts.first ?? ""), queryItems: items, headers: headers, remoteAddress: remoteAddress)
    }

    /// The first value of a header.
    public func header(_ name: String) -> String? {
        let lowered = name.lowercased()
        return headers.first { $0.name.lowercased() == lowered }?.value
    }

    /// Every value of a header, in order (names compared case-insensitively).
    func headerValues(_ name: String) -> [String] {
        let lowered = name.lowercased()
        return headers.filter { $0.name.lowercased() == lowered }.map(\.value)
    }

    /// The first value of a query item.
    public func query(_ name: String) -> String? { queryItems.first { $0.name == name }?.value }
}

private func percentDecode(_ text: Substring) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(text.utf8.count)
    var iterator = text.utf8.makeIterator()
    func hex(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
    while let byte = iterator.next() {
        if byte == UInt8(ascii: "+") {
            bytes.append(UInt8(ascii: " "))
        } else if byte == UInt8(ascii: "%") {
            let high = iterator.next()
            let low = iterator.next()
            if let high, let low, let h = hex(high), let l = hex(low) {
                bytes.append(h << 4 | l)
            } else {
                bytes.append(byte)
                if let high { bytes.append(high) }
                if let low { bytes.append(low) }
            }
        } else {
            bytes.append(byte)
        }
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The hub's answer to an upgrade request.
public enum UpgradeDecision: Sendable {
    /// Finish the WebSocket handshake, then call ``RealtimeHub/connect(_:)`` with the ticket.
    case accept(UpgradeTicket)
    /// Answer with this HTTP status instead of upgrading.
    case reject(AdmissionRejection)
}

/// An accepted upgrade. The slot it holds is released if ``RealtimeHub/connect(_:)`` is not called within
/// ``HubConfiguration/upgradeTicketTimeout``.
public struct UpgradeTicket: Sendable {
    public let connectionID: ConnectionID
    public let endpoint: Endpoint
    /// The verified identity, or `nil` when the client will authenticate with its first message.
    public let identity: VerifiedIdentity?
    /// The largest frame the host should accept from this client before closing with 1009.
    public let maxFrameBytes: Int
    let core: ConnectionCore
    let userConnections: Int?
    /// When its admission started (see ``RecentRevocations``).
    let admissionStarted: ContinuousClock.Instant
}
