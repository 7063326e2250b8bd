import Synchronization

/// Recovery named in the upgrade URL: `/ws/events?recover=<stream>:<epoch>:<offset>,…`, for clients that know
/// their positions before they connect (issue 14, item 3).
///
/// The host hands the raw query value over with the upgrade; at activation it is parsed into the same `recover`
/// object a `subscribe` message carries and checked by the same rules (``RecoveryRequest``): only the connection's
/// own streams, well-formed positions, at most ``RecoveryRequest/maxStreams``. The connection's first `subscribe`
/// then recovers from it, exactly as if it had carried that `recover` (one that carries its own `recover` uses
/// that one instead). A malformed or forbidden value is answered with an `error` right after `connected`
/// (`invalid_position`, `forbidden_stream`); the connection stays open and its first `subscribe` does not recover.
enum RecoverQuery {
    /// The name of the query parameter.
    static let parameter = "recover"
    /// The longest value accepted (four streams of the longest user ids and epochs fit).
    static let maxBytes = 1024

    /// The `recover` object of `value` (`<stream>:<epoch>:<offset>` items separated by commas; a stream name may
    /// itself contain `:`, so each item is split at its last two). Not yet checked against the connection:
    /// ``RecoveryRequest/init(_:endpoint:userID:id:)`` does that.
    ///
    /// - Throws: a ``WireError`` with ``ProtocolErrorCode/invalidPosition`` for a value that is too long, empty,
    ///   has an item without three parts or an offset that is not written as the server writes one (decimal digits,
    ///   no sign, no leading zero), or names a stream twice.
    static func parse(_ value: String) throws(WireError) -> JSONObject {
        func fail(_ message: String) -> WireError {
            WireError(code: .invalidPosition, message: "the recover parameter: \(message)", id: nil)
        }
        guard value.utf8.count <= maxBytes else { throw fail("longer than \(maxBytes) bytes") }
        guard !value.isEmpty else { throw fail("empty; expected <stream>:<epoch>:<offset>,…") }
        var object: JSONObject = [:]
        for item in value.split(separator: ",", omittingEmptySubsequences: false) {
            guard let last = item.lastIndex(of: ":"), let middle = item[..<last].lastIndex(of: ":") else {
                throw fail("'\(item.prefix(64))' is not <stream>:<epoch>:<offset>")
            }
            let stream = String(item[..<middle])
            let epoch = String(item[item.index(after: middle)..<last])
            let digits = item[item.index(after: last)...]
            guard !stream.isEmpty else { throw fail("an item names no stream") }
            // Digits only, as the server writes positions: `Int64("+1")` would take a sign the cursor never has.
            guard !digits.isEmpty, digits.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
                digits.utf8.count == 1 || digits.utf8.first != UInt8(ascii: "0"), let offset = Int64(digits)
            else {
                throw fail("the offset of '\(stream.prefix(64))' is not a non-negative integer in decimal digits")
            }
            guard object[stream] == nil else { throw fail("'\(stream.prefix(64))' is named twice") }
            object[stream] = ["epoch": .string(epoch), "offset": .int(offset)]
        }
        return object
    }
}

extension RealtimeHub {
    /// Parses and checks the `recover` query parameter a connection was upgraded with (kept on its core by
    /// ``authorizeUpgrade(_:)``), at activation: kept for its first `subscribe`, or answered with an `error`.
    func applyRecoverQuery(to core: ConnectionCore, userID: String) {
        guard let value = core.state.withLock({ $0.recoverQuery }) else { return }
        do {
            let object = try RecoverQuery.parse(value)
            _ = try RecoveryRequest(object, endpoint: core.endpoint, userID: userID, id: nil)
            core.state.withLock {
                $0.recoverQuery = nil
                $0.pendingRecover = object
            }
        } catch {
            core.state.withLock { $0.recoverQuery = nil }
            _ = core.queue.enqueue(.text(WireProtocol.error(error.code, error.message, id: nil)), force: true)
        }
    }
}
