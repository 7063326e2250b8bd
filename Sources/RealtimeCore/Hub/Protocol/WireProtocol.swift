/// A stable, machine-readable error code in an `error` message. Documented in `Documentation/Protocol.md`.
public struct ProtocolErrorCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(_ rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    public static let invalidJSON = ProtocolErrorCode("invalid_json")
    public static let invalidMessage = ProtocolErrorCode("invalid_message")
    public static let unknownType = ProtocolErrorCode("unknown_type")
    public static let messageTooBig = ProtocolErrorCode("message_too_big")
    public static let unsupportedFrame = ProtocolErrorCode("unsupported_frame")
    public static let invalidPattern = ProtocolErrorCode("invalid_pattern")
    public static let forbiddenPattern = ProtocolErrorCode("forbidden_pattern")
    public static let tooManySubscriptions = ProtocolErrorCode("too_many_subscriptions")
    public static let tooManyPatterns = ProtocolErrorCode("too_many_patterns")
    public static let rateLimited = ProtocolErrorCode("rate_limited")
    public static let notAuthenticated = ProtocolErrorCode("not_authenticated")
    public static let alreadyAuthenticated = ProtocolErrorCode("already_authenticated")
    public static let tokenInvalid = ProtocolErrorCode("token_invalid")
    /// A genuine token of the wrong kind (e.g. a refresh token) in `auth` or `refresh_token`.
    public static let wrongTokenType = ProtocolErrorCode("wrong_token_type")
    public static let tokenUserMismatch = ProtocolErrorCode("token_user_mismatch")
    public static let sessionInactive = ProtocolErrorCode("session_inactive")
    public static let sessionRevoked = ProtocolErrorCode("session_revoked")
    public static let unavailable = ProtocolErrorCode("unavailable")
    /// A `recover` position that is not `{epoch, offset}` with a string epoch of at most 64 bytes and an offset in
    /// 0...2^53 − 1.
    public static let invalidPosition = ProtocolErrorCode("invalid_position")
    /// A `recover` stream this connection never receives (another user's, the administrators' on `/ws/events`,
    /// an unknown name).
    public static let forbiddenStream = ProtocolErrorCode("forbidden_stream")
    /// A second `recover` on one connection (a connection recovers once, right after it connects).
    public static let recoveryRefused = ProtocolErrorCode("recovery_refused")
}

/// A message from a client.
enum ClientMessage: Sendable {
    /// Patterns, and the `recover` object when the client asks for what it missed.
    case subscribe([String], recover: JSONObject?)
    case unsubscribe([String])
    case ping
    case getSubscriptions
    case refreshToken(String)
    case auth(String)
}

/// A protocol error to report to the client.
struct WireError: Error, Sendable {
    var code: ProtocolErrorCode
    var message: String
    var id: JSONValue?
}

enum WireProtocol {
    /// Parses one text frame. On failure the error carries the message's `id` when it could be read.
    static func parse(_ text: String, limits: HubConfiguration.Limits) -> Result<(JSONValue?, ClientMessage), WireError>
    {
        guard text.utf8.count <= limits.maxMessageBytes else {
            return .failure(
                WireError(
                    code: .messageTooBig,
                    message: "message is \(text.utf8.count) bytes; the limit is \(limits.maxMessageBytes)"
                )
            )
        }
        let value: JSONValue
        do {
            value = try JSONParser(limits: .init(maxBytes: limits.maxMessageBytes, maxDepth: 8)).parse(text)
        } catch {
            return .failure(WireError(code: .invalidJSON, message: "message is not valid JSON (\(error))"))
        }
        guard case .object(let object) = value else {
            return .failure(WireError(code: .invalidMessage, message: "message must be a JSON object"))
        }
        var id: JSONValue?
        if let rawID = object["id"] {
            switch rawID {
            case .string(let string) where string.utf8.count <= limits.maxMessageIDBytes: id = rawID
            case .int: id = rawID
            case .null: id = nil
            default:
                return .failure(
                    WireError(
                        code: .invalidMessage,
                        message: "id must be a string of at most \(limits.maxMessageIDBytes) bytes or an integer"
                    )
                )
            }
        }
        func fail(_ code: ProtocolErrorCode, _ message: String) -> Result<(JSONValue?, ClientMessage), WireError> {
            .failure(WireError(code: code, message: message, id: id))
        }
        guard let type = object["type"]?.stringValue else { return fail(.invalidMessage, "type must be a string") }
        let payload = object["payload"]
        if let payload, !payload.isNull, payload.objectValue == nil {
            return fail(.invalidMessage, "payload must be an object")
        }
        func patterns() -> Result<[String], WireError> {
            guard let list = payload?["eventTypes"]?.arrayValue else {
                return .failure(
                    WireError(code: .invalidMessage, message: "payload.eventTypes must be an array", id: id)
                )
            }
            guard !list.isEmpty else {
                return .failure(WireError(code: .invalidMessage, message: "payload.eventTypes is empty", id: id))
            }
            guard list.count <= limits.maxPatternsPerMessage else {
                return .failure(
                    WireError(
                        code: .tooManyPatterns,
                        message: "at most \(limits.maxPatternsPerMessage) patterns per message",
                        id: id
                    )
                )
            }
            var strings: [String] = []
            for element in list {
                guard let string = element.stringValue else {
                    return .failure(
                        WireError(code: .invalidMessage, message: "payload.eventTypes must hold strings", id: id)
                    )
                }
                strings.append(string)
            }
            return .success(strings)
        }
        func token() -> Result<String, WireError> {
            guard let token = payload?["token"]?.stringValue, !token.isEmpty else {
                return .failure(
                    WireError(code: .invalidMessage, message: "payload.token must be a non-empty string", id: id)
                )
            }
            return .success(token)
        }
        switch type {
        case "subscribe":
            let recover = payload?["recover"]
            if let recover, !recover.isNull, recover.objectValue == nil {
                return fail(.invalidMessage, "payload.recover must be an object of stream positions")
            }
            return patterns().map { (id, .subscribe($0, recover: recover?.objectValue)) }
        case "unsubscribe": return patterns().map { (id, .unsubscribe($0)) }
        case "ping": return .success((id, .ping))
        case "get_subscriptions": return .success((id, .getSubscriptions))
        case "refresh_token": return token().map { (id, .refreshToken($0)) }
        case "auth": return token().map { (id, .auth($0)) }
        default:
            let shown = type.utf8.count <= 64 ? type : String(type.prefix(64)) + "…"
            return fail(.unknownType, "unknown message type '\(shown)'")
        }
    }

    // MARK: Server messages

    static func message(_ type: String, id: JSONValue? = nil, payload: JSONObject) -> String {
        var object: JSONObject = ["type": .string(type), "payload": .object(payload)]
        if let id { object["id"] = id }
        return JSONWriter.string(.object(object))
    }

    static func error(_ code: ProtocolErrorCode, _ message: String, id: JSONValue?, retryAfter: Duration? = nil)
        -> String
    {
        var payload: JSONObject = ["code": .string(code.rawValue), "message": .string(message)]
        if let retryAfter { payload["retryAfterMs"] = .int(max(1, retryAfter.milliseconds)) }
        return self.message("error", id: id, payload: payload)
    }

    /// What every `event` message starts with; the payload object follows, then a final `}`.
    static let eventFramePrefix: StaticString = #"{"type":"event","payload":"#
    static let eventFramePrefixLength = eventFramePrefix.utf8CodeUnitCount

    /// Whether `frame` has the shape ``event(_:)`` writes (its prefix, and a final `}`).
    static func isEventFrame(_ frame: String) -> Bool {
        var frame = frame
        return frame.withUTF8 { bytes in
            guard bytes.count > eventFramePrefixLength + 1, bytes.last == UInt8(ascii: "}") else { return false }
            let prefix = UnsafeBufferPointer(start: eventFramePrefix.utf8Start, count: eventFramePrefixLength)
            return bytes.prefix(eventFramePrefixLength).elementsEqual(prefix)
        }
    }

    /// The `event` message around an already encoded payload object (the bus carries the payload as clients
    /// receive it, so the receiving hub does not encode the event again).
    static func eventFrame(payload: UnsafeBufferPointer<UInt8>) -> String {
        String(unsafeUninitializedCapacity: eventFramePrefixLength + payload.count + 1) { buffer in
            guard let base = buffer.baseAddress else { return 0 }
            base.initialize(from: eventFramePrefix.utf8Start, count: eventFramePrefixLength)
            if let source = payload.baseAddress {
                (base + eventFramePrefixLength).initialize(from: source, count: payload.count)
            }
            base[eventFramePrefixLength + payload.count] = UInt8(ascii: "}")
            return eventFramePrefixLength + payload.count + 1
        }
    }

    /// The payload object of an event frame (``isEventFrame(_:)``): the frame without its prefix and final `}`; the
    /// inverse of ``eventFrame(payload:)``.
    static func eventPayload(of frame: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        UnsafeBufferPointer(rebasing: frame[eventFramePrefixLength..<(frame.count - 1)])
    }

    /// `{"type":"event","payload":{…}}`, written directly (this runs once per published event).
    static func event(_ event: RealtimeEvent) -> String {
        var writer = JSONWriter(reservingCapacity: 192)
        writer.writeRaw(eventFramePrefix)
        writer.writeRaw(#"{"id":"#)
        writer.write(event.id)
        writer.writeKey("type")
        writer.write(event.type.rawValue)
        if let userID = event.userID {
            writer.writeKey("userId")
            writer.write(userID)
        }
        if let sessionID = event.sessionID {
            writer.writeKey("sessionId")
            writer.write(sessionID)
        }
        writer.writeKey("timestamp")
        writer.writeRaw("\"")
        var bytes: [UInt8] = []
        event.timestamp.appendISO8601(to: &bytes)
        writer.writeRaw(bytes)
        writer.writeRaw("\"")
        writer.writeKey("data")
        writer.write(event.data)
        writer.writeRaw("}}")
        return String(decoding: writer.bytes, as: UTF8.self)
    }

    /// The `event` message a client receives for `message`: the event's frame (the carried
    /// ``BusMessage/eventFrame`` or freshly encoded) with, when the message was recorded in history, its stream
    /// position as the payload's last member:
    ///
    /// ```json
    /// {"type":"event","payload":{"id":"evt_…","type":"…","timestamp":"…","data":{…},
    ///   "position":{"stream":"user:u1","epoch":"k3x9…","offset":42}}}
    /// ```
    ///
    /// The one place an event frame is finished: local delivery, delivery of what the bus carried and replay all
    /// call it, so a client reads the same bytes whichever way an event reached it. The position is per route (a
    /// user's event has one in the user's stream and one in the administrators' stream), so a frame is shared by
    /// every recipient of one route.
    static func eventFrame(for message: BusMessage, _ event: RealtimeEvent) -> String {
        let base = message.eventFrame ?? self.event(event)
        guard let position = message.position, let stream = HistoryStream(message.route) else { return base }
        return positioned(base, position, in: stream)
    }

    /// `base` (an ``event(_:)`` frame, ending in `}}`) with `"position":{…}` appended to its payload.
    static func positioned(_ base: String, _ position: StreamPosition, in stream: HistoryStream) -> String {
        var base = base
        return base.withUTF8 { bytes in
            var writer = JSONWriter(reservingCapacity: bytes.count + 96)
            writer.writeRaw(UnsafeBufferPointer(rebasing: bytes[..<(bytes.count - 2)]))
            writer.writeKey("position")
            writePosition(position, in: stream, into: &writer)
            writer.writeRaw("}}")
            return String(decoding: writer.bytes, as: UTF8.self)
        }
    }

    /// `{"stream":"…","epoch":"…","offset":N}`: a position as clients receive and send it back.
    static func writePosition(_ position: StreamPosition, in stream: HistoryStream, into writer: inout JSONWriter) {
        writer.writeRaw(#"{"stream":"#)
        writer.write(stream.description)
        writer.writeKey("epoch")
        writer.write(position.epoch)
        writer.writeKey("offset")
        writer.write(position.offset)
        writer.writeRaw("}")
    }

    /// A position as a JSON value (for `recovered` and `subscribed` payloads).
    static func positionValue(_ position: StreamPosition, in stream: HistoryStream) -> JSONValue {
        [
            "stream": .string(stream.description),
            "epoch": .string(position.epoch),
            "offset": .int(position.offset),
        ]
    }

    /// The `notification` message a client receives, with `position` in its payload when the notification was
    /// recorded in its target's stream (administrators' or everyone's).
    static func notificationFrame(_ notification: RealtimeNotification, position: StreamPosition?) -> String {
        guard let position, let stream = HistoryStream(RealtimeHub.routes(for: notification.target)[0]) else {
            return self.notification(notification)
        }
        return self.notification(notification, extra: ["position": positionValue(position, in: stream)])
    }

    static func notification(_ notification: RealtimeNotification, extra: JSONObject = [:]) -> String {
        var payload: JSONObject = [
            "id": .string(notification.id),
            "level": .string(notification.level.rawValue),
            "title": .string(notification.title),
            "message": .string(notification.message),
            "data": .object(notification.data),
            "timestamp": .string(notification.timestamp.iso8601),
        ]
        for (key, value) in extra { payload[key] = value }
        return message("notification", payload: payload)
    }
}
