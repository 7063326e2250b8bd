/// The byte form of bus messages, shared by every backend that carries them as bytes (Redis pub/sub).
///
/// Format (version 2): a header line, a line feed, and the content.
///
/// ```text
/// [2,"srv_a","user:u1","event","user:u1",1764404572123,true]
/// {"id":"evt_…","type":"security.suspicious.activity","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{…}}
/// ```
///
/// - The header is a JSON array: version `2`, the origin server, the route (``BusRoute/description``), the kind
///   (`event`, `notification` or `control`) and, for events only, the event's scope (``EventScope/description``),
///   its timestamp in milliseconds since the epoch and whether the message also stands for the ``BusRoute/admins``
///   route (see ``EventBus/publish(_:)-([BusMessage])``). Compact JSON never contains a raw line feed, so the
///   first one ends the header.
/// - The content of an event is the `payload` object of the client's `event` message, byte for byte as clients
///   receive it inside `{"type":"event","payload":…}`: the publishing hub encodes it once for its own connections
///   and the bus, and the receiving hub delivers it without encoding it again. Its members must be `id`, `type`,
///   `userId` (optional), `sessionId` (optional), `timestamp` (the ISO 8601 form of the header's timestamp) and
///   `data`, in this order and nothing else, so what is delivered verbatim is exactly what was decoded.
/// - The content of a notification or a control command is the JSON object of ``RealtimeNotification/jsonObject``
///   or ``ControlCommand/jsonObject``.
extension BusMessage {
    /// The current format version.
    static let bodyVersion: Int64 = 2

    /// Encodes the message in the bus format.
    public func encodedBody() -> [UInt8] { encodedBody(alsoAdmins: false) }

    /// Encodes the message; `alsoAdmins` marks an event published on a user's route that also stands for the
    /// admins route.
    package func encodedBody(alsoAdmins: Bool) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: 320)
        writer.writeRaw("[2,")
        writer.write(origin.rawValue)
        writer.writeRaw(",")
        writer.write(route.description)
        switch payload {
        case .event(let event):
            writer.writeRaw(#","event","#)
            writer.write(event.scope.description)
            writer.writeRaw(",")
            writer.write(event.timestamp.millisecondsSinceEpoch)
            alsoAdmins ? writer.writeRaw(",true]\n") : writer.writeRaw(",false]\n")
            var frame = eventFrame ?? WireProtocol.event(event)
            if !WireProtocol.isEventFrame(frame) { frame = WireProtocol.event(event) }
            frame.withUTF8 { bytes in
                // The payload object: the frame without its `{"type":"event","payload":` prefix and final `}`.
                writer.writeRaw(
                    UnsafeBufferPointer(rebasing: bytes[WireProtocol.eventFramePrefixLength..<(bytes.count - 1)])
                )
            }
        case .notification(let notification):
            writer.writeRaw(#","notification"]"#)
            writer.writeRaw("\n")
            writer.write(notification.jsonObject)
        case .control(let command):
            writer.writeRaw(#","control"]"#)
            writer.writeRaw("\n")
            writer.write(command.jsonObject)
        }
        return writer.bytes
    }

    /// Decodes a message from the bus format.
    ///
    /// - Throws: ``RealtimeError/Code/protocolViolation`` for anything but a well-formed version 2 message.
    public init(encodedBody bytes: some Collection<UInt8>, limits: JSONParser.Limits = .init()) throws(RealtimeError) {
        self = try Self.decode(body: bytes, limits: limits).message
    }

    /// Decodes a message; `alsoAdmins` tells whether it also stands for the admins route.
    package static func decode(
        body bytes: some Collection<UInt8>,
        limits: JSONParser.Limits = .init()
    ) throws(RealtimeError) -> (message: BusMessage, alsoAdmins: Bool) {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Result { () throws(RealtimeError) in try decode(buffer: buffer, limits: limits) }
        }
        if let result { return try result.get() }
        let array = Array(bytes)
        return try array.withUnsafeBufferPointer { buffer in
            Result { () throws(RealtimeError) in try decode(buffer: buffer, limits: limits) }
        }.get()
    }

    private static func decode(
        buffer: UnsafeBufferPointer<UInt8>,
        limits: JSONParser.Limits
    ) throws(RealtimeError) -> (message: BusMessage, alsoAdmins: Bool) {
        func invalid(_ why: String, _ error: (any Error)? = nil) -> RealtimeError {
            RealtimeError(.protocolViolation, "bus message \(why)", underlying: error)
        }
        guard buffer.count <= limits.maxBytes else { throw invalid("is too large") }
        guard let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) else { throw invalid("lacks its header") }
        let parser = JSONParser(limits: limits)
        let header: JSONValue
        do {
            header = try parser.parse(UnsafeBufferPointer(rebasing: buffer[..<newline]))
        } catch {
            throw invalid("has an invalid header", error)
        }
        guard case .array(let fields) = header, fields.first == .int(bodyVersion) else {
            throw invalid("has an unknown version")
        }
        guard fields.count >= 4, let origin = fields[1].stringValue, let routeText = fields[2].stringValue,
            let route = BusRoute(routeText), let kind = fields[3].stringValue
        else { throw invalid("lacks origin, route or kind") }
        let content = UnsafeBufferPointer(rebasing: buffer[(newline + 1)...])
        switch kind {
        case "event":
            guard fields.count == 7, let scopeText = fields[4].stringValue, let scope = EventScope(scopeText),
                let millis = fields[5].intValue, case .bool(let alsoAdmins) = fields[6]
            else { throw invalid("has an invalid event header") }
            let members: [JSONMember]?
            do {
                members = try parser.parseObjectMembers(content)
            } catch {
                throw invalid("has an invalid event", error)
            }
            guard let members,
                let event = RealtimeEvent(
                    payloadMembers: members,
                    timestamp: Timestamp(millisecondsSinceEpoch: millis),
                    scope: scope
                )
            else { throw invalid("has an invalid event") }
            let frame = WireProtocol.eventFrame(payload: content)
            return (
                BusMessage(origin: ServerID(origin), route: route, payload: .event(event), eventFrame: frame),
                alsoAdmins
            )
        case "notification", "control":
            guard fields.count == 4 else { throw invalid("has an invalid header") }
            let value: JSONValue
            do {
                value = try parser.parse(content)
            } catch {
                throw invalid("has invalid content", error)
            }
            guard let object = value.objectValue else { throw invalid("content is not an object") }
            let payload: BusPayload
            if kind == "notification" {
                guard let notification = RealtimeNotification(jsonObject: object) else {
                    throw invalid("has an invalid notification")
                }
                payload = .notification(notification)
            } else {
                guard let command = ControlCommand(jsonObject: object) else {
                    throw invalid("has an invalid control command")
                }
                payload = .control(command)
            }
            return (BusMessage(origin: ServerID(origin), route: route, payload: payload), false)
        default:
            throw invalid("has an unknown kind")
        }
    }
}

extension RealtimeEvent {
    /// Decodes the `payload` object of an `event` message (members in ``WireProtocol/event(_:)``'s order, nothing
    /// else); `nil` if a member is missing, misplaced, of the wrong type, or the timestamp is not `timestamp`'s.
    init?(payloadMembers members: [JSONMember], timestamp: Timestamp, scope: EventScope) {
        var index = 0
        func next(_ name: String) -> JSONValue? {
            guard index < members.count, members[index].key == name else { return nil }
            index += 1
            return members[index - 1].value
        }
        guard let id = next("id")?.stringValue, let typeText = next("type")?.stringValue,
            let type = EventType(validating: typeText)
        else { return nil }
        var userID: String?
        if let value = next("userId") {
            guard let text = value.stringValue else { return nil }
            userID = text
        }
        var sessionID: String?
        if let value = next("sessionId") {
            guard let text = value.stringValue else { return nil }
            sessionID = text
        }
        guard let stamp = next("timestamp")?.stringValue, stamp == timestamp.iso8601,
            let data = next("data")?.objectValue, index == members.count
        else { return nil }
        self.init(
            id: id,
            type: type,
            userID: userID,
            sessionID: sessionID,
            timestamp: timestamp,
            data: data,
            scope: scope
        )
    }
}

extension EventScope {
    /// Parses ``description`` back.
    init?(_ description: String) {
        switch description {
        case "admins": self = .admins
        case "everyone": self = .everyone
        default:
            guard description.hasPrefix("user:") else { return nil }
            self = .user(String(description.dropFirst(5)))
        }
    }

    var jsonValue: JSONValue {
        switch self {
        case .user(let id): return ["kind": "user", "userId": .string(id)]
        case .admins: return ["kind": "admins"]
        case .everyone: return ["kind": "everyone"]
        }
    }

    init?(json: JSONValue?) {
        switch json?["kind"]?.stringValue {
        case "user":
            guard let id = json?["userId"]?.stringValue else { return nil }
            self = .user(id)
        case "admins": self = .admins
        case "everyone": self = .everyone
        default: return nil
        }
    }
}

extension RealtimeNotification {
    /// The notification as a JSON object (the `notification` member of the bus format).
    public var jsonObject: JSONObject {
        [
            "id": .string(id),
            "level": .string(level.rawValue),
            "title": .string(title),
            "message": .string(message),
            "data": .object(data),
            "timestamp": .int(timestamp.millisecondsSinceEpoch),
            "target": target.jsonValue,
        ]
    }

    /// Decodes ``jsonObject``; `nil` if a member is missing or has the wrong type.
    public init?(jsonObject object: JSONObject) {
        guard let id = object["id"]?.stringValue, let levelText = object["level"]?.stringValue,
            let level = NotificationLevel(rawValue: levelText), let title = object["title"]?.stringValue,
            let message = object["message"]?.stringValue, let data = object["data"]?.objectValue,
            let millis = object["timestamp"]?.intValue, let target = EventScope(json: object["target"])
        else { return nil }
        self.init(
            id: id,
            level: level,
            title: title,
            message: message,
            data: data,
            timestamp: Timestamp(millisecondsSinceEpoch: millis),
            target: target
        )
    }
}

extension ControlCommand {
    /// The command as a JSON object (the `control` member of the bus format).
    public var jsonObject: JSONObject {
        switch self {
        case .disconnectUser(let userID, let reason):
            return ["command": "disconnect_user", "userId": .string(userID), "reason": .string(reason)]
        case .disconnectSession(let sessionID, let reason):
            return ["command": "disconnect_session", "sessionId": .string(sessionID), "reason": .string(reason)]
        case .disconnectConnection(let id, let reason):
            return [
                "command": "disconnect_connection", "connectionId": .string(id.rawValue), "reason": .string(reason),
            ]
        }
    }

    /// Decodes ``jsonObject``; `nil` if a member is missing or has the wrong type.
    public init?(jsonObject object: JSONObject) {
        guard let reason = object["reason"]?.stringValue else { return nil }
        switch object["command"]?.stringValue {
        case "disconnect_user":
            guard let id = object["userId"]?.stringValue else { return nil }
            self = .disconnectUser(userID: id, reason: reason)
        case "disconnect_session":
            guard let id = object["sessionId"]?.stringValue else { return nil }
            self = .disconnectSession(sessionID: id, reason: reason)
        case "disconnect_connection":
            guard let id = object["connectionId"]?.stringValue else { return nil }
            self = .disconnectConnection(ConnectionID(id), reason: reason)
        default:
            return nil
        }
    }
}
