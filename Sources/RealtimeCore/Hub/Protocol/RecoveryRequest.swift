/// The `recover` member of a `subscribe` message, checked against what the connection may see.
///
/// ```json
/// {"type":"subscribe","payload":{"eventTypes":["security.*"],
///   "recover":{"user:u1":{"stream":"user:u1","epoch":"k3x9…","offset":42},"everyone":{"epoch":"…","offset":7}}}}
/// ```
///
/// Keys are stream names as event positions carry them; each value is a position as the client received it (its
/// `stream` member, when present, must repeat the key). A connection on the events endpoint may name only its own
/// user's stream (`user:<its user id>`) and `everyone`; an administrator connection `admins` and `everyone`: the
/// streams its live delivery reads. Anything else is refused before any history is read.
struct RecoveryRequest: Sendable, Equatable {
    /// The most streams one request names (a connection reads at most two).
    static let maxStreams = 4

    var positions: [HistoryStream: StreamPosition]

    /// The streams a connection reads live: its user's (events endpoint) or the administrators' (admin endpoint),
    /// and everyone's.
    static func streams(endpoint: Endpoint, userID: String) -> [HistoryStream] {
        endpoint == .admin ? [.admins, .everyone] : [.user(userID), .everyone]
    }

    /// Parses and checks `object`.
    ///
    /// - Throws: a ``WireError`` with ``ProtocolErrorCode/forbiddenStream`` for a stream the connection does not
    ///   read, ``ProtocolErrorCode/invalidPosition`` for a malformed position.
    init(_ object: JSONObject, endpoint: Endpoint, userID: String, id: JSONValue?) throws(WireError) {
        func fail(_ code: ProtocolErrorCode, _ message: String) -> WireError {
            WireError(code: code, message: message, id: id)
        }
        guard object.count <= Self.maxStreams else {
            throw fail(.invalidPosition, "recover names at most \(Self.maxStreams) streams")
        }
        let allowed = Self.streams(endpoint: endpoint, userID: userID)
        var positions: [HistoryStream: StreamPosition] = [:]
        for (name, value) in object {
            let shown = name.utf8.count <= 64 ? name : String(name.prefix(64)) + "…"
            guard let stream = allowed.first(where: { $0.description == name }) else {
                throw fail(.forbiddenStream, "'\(shown)' is not a stream this connection receives")
            }
            guard let position = value.objectValue else {
                throw fail(.invalidPosition, "the position of '\(shown)' must be an object {epoch, offset}")
            }
            if let named = position["stream"], named.stringValue != name {
                throw fail(.invalidPosition, "the position of '\(shown)' names another stream")
            }
            guard let epoch = position["epoch"]?.stringValue, !epoch.isEmpty else {
                throw fail(.invalidPosition, "the position of '\(shown)' needs a non-empty string epoch")
            }
            guard let offset = position["offset"]?.intValue else {
                throw fail(.invalidPosition, "the position of '\(shown)' needs an integer offset")
            }
            let parsed = StreamPosition(epoch: epoch, offset: offset)
            do {
                try parsed.validate()
            } catch {
                throw fail(.invalidPosition, error.message)
            }
            positions[stream] = parsed
        }
        self.positions = positions
    }
}
