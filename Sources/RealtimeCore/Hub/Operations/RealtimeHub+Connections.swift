/// Listing the cluster's connections for operators (the admin API's `GET /api/v1/connections`).
extension RealtimeHub {
    /// The largest page ``connections(after:limit:)`` and ``connections(ofUser:after:limit:)`` accept.
    public static let maxConnectionPageSize = 500

    /// The store calls one page of ``connections(after:limit:)`` makes at most: a cluster of many empty or sparse
    /// servers gives a short page (with a cursor) rather than unbounded work.
    static let maxStoreCallsPerPage = 32

    /// Lists the live connections of the whole cluster, a page at a time: call it with `after: nil`, then with
    /// each page's ``ConnectionPage/nextCursor`` until that is `nil`.
    ///
    /// The listing walks the servers whose heartbeat has not expired in id order, each through
    /// ``ConnectionStore/connections(ofServer:after:limit:)``, so its guarantees are that method's: every
    /// connection registered from the first call to the last is listed at least once (a record may appear
    /// twice), connections added or removed meanwhile may or may not be, and a server that leaves the cluster
    /// between two calls is skipped. A page holds about `limit` records (a backend may return a few more,
    /// as a small Redis set comes at once) and may hold fewer while a cursor follows.
    ///
    /// - Parameters:
    ///   - cursor: `nil` for the first page, then the previous page's cursor (opaque).
    ///   - limit: the page size, 1 to ``maxConnectionPageSize``.
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a limit out of range or a cursor this method did not
    ///   return; a backend's error otherwise.
    public func connections(after cursor: String?, limit: Int) async throws(RealtimeError) -> ConnectionPage {
        try Self.checkPageSize(limit)
        var position = try cursor.map { (text: String) throws(RealtimeError) in try ClusterCursor(decoding: text) }
        let store = backends.connectionStore
        let servers = try await store.servers().map(\.id).sorted { $0.rawValue < $1.rawValue }
        var index = servers.firstIndex { $0.rawValue >= position?.server.rawValue ?? "" } ?? servers.count
        // The cursor's server is gone: continue with the next one from its start.
        if index < servers.count, servers[index] != position?.server { position = nil }
        var inner = position?.inner
        var records: [ConnectionRecord] = []
        var calls = 0
        while index < servers.count, records.count < limit, calls < Self.maxStoreCallsPerPage {
            let page = try await store.connections(ofServer: servers[index], after: inner, limit: limit - records.count)
            calls += 1
            records += page.records
            if let next = page.nextCursor {
                inner = next
            } else {
                index += 1
                inner = nil
            }
        }
        let next = index < servers.count ? ClusterCursor(server: servers[index], inner: inner).encoded : nil
        return ConnectionPage(records: records, nextCursor: next)
    }

    /// Lists one user's live connections on every server, a page at a time in connection-id order (the cursor
    /// is the last id of the previous page, opaque). The connection store returns a user's connections at once
    /// (they are bounded by ``HubConfiguration/maxConnectionsPerUser``); the page bounds the answer.
    ///
    /// - Throws: ``RealtimeError/Code/invalidArgument`` for a user id ``IdentifierPolicy`` refuses, a limit out of
    ///   range (1 to ``maxConnectionPageSize``) or a cursor this method did not return.
    public func connections(
        ofUser userID: String,
        after cursor: String?,
        limit: Int
    ) async throws(RealtimeError) -> ConnectionPage {
        try IdentifierPolicy.require(userID, "userID")
        try Self.checkPageSize(limit)
        let after = try cursor.map { (text: String) throws(RealtimeError) in try HexText.decode(text) }
        let sorted = try await backends.connectionStore.connections(ofUser: userID)
            .filter { record in after.map { record.id.rawValue > $0 } ?? true }
            .sorted { $0.id.rawValue < $1.id.rawValue }
        let page = Array(sorted.prefix(limit))
        let next = sorted.count > limit ? page.last.map { HexText.encode($0.id.rawValue) } : nil
        return ConnectionPage(records: page, nextCursor: next)
    }

    static func checkPageSize(_ limit: Int) throws(RealtimeError) {
        guard (1...maxConnectionPageSize).contains(limit) else {
            throw RealtimeError(.invalidArgument, "limit must be from 1 to \(maxConnectionPageSize), not \(limit)")
        }
    }
}

/// Where ``RealtimeHub/connections(after:limit:)`` resumes: a server, and the store's cursor within it (`nil`:
/// from its start). Written as `<hex of the server id>.<hex of the store's cursor>`.
struct ClusterCursor: Sendable, Hashable {
    var server: ServerID
    var inner: String?

    init(server: ServerID, inner: String?) {
        self.server = server
        self.inner = inner
    }

    init(decoding text: String) throws(RealtimeError) {
        let parts = text.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty else { throw HexText.invalid }
        server = ServerID(try HexText.decode(String(parts[0])))
        inner = parts[1].isEmpty ? nil : try HexText.decode(String(parts[1]))
    }

    var encoded: String { HexText.encode(server.rawValue) + "." + HexText.encode(inner ?? "") }
}

/// Opaque cursors as lower-case hex of their UTF-8 text: safe in a URL query, and checked before a backend
/// sees them.
enum HexText {
    /// The longest cursor accepted, in characters.
    static let maxLength = 1024

    static let invalid = RealtimeError(.invalidArgument, "the cursor is not one this listing returned")

    static func encode(_ text: String) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count * 2)
        for byte in text.utf8 {
            bytes.append(digits[Int(byte >> 4)])
            bytes.append(digits[Int(byte & 0xF)])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func decode(_ text: String) throws(RealtimeError) -> String {
        let utf8 = Array(text.utf8)
        guard !utf8.isEmpty, utf8.count <= maxLength, utf8.count.isMultiple(of: 2) else { throw invalid }
        func nibble(_ byte: UInt8) throws(RealtimeError) -> UInt8 {
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
            default: throw invalid
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(utf8.count / 2)
        for index in stride(from: 0, to: utf8.count, by: 2) {
            bytes.append(try nibble(utf8[index]) << 4 | nibble(utf8[index + 1]))
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw invalid }
        return decoded
    }
}
