/// The JSON forms of what the bus carries, for backends that carry messages as bytes. They hold no backend's
/// framing: the Redis bus's wire format (its header line, its version, its admins mark) is `RealtimeRedis`'s.
///
/// - An event travels as the `payload` object of the client's `event` message, byte for byte as clients receive it
///   inside `{"type":"event","payload":…}`: the publishing hub encodes it once for its own connections and the
///   bus, and the receiving hub delivers it without encoding it again. Its members are `id`, `type`, `userId`
///   (optional), `sessionId` (optional), `timestamp` (ISO 8601) and `data`, in this order and nothing else, so
///   what is delivered verbatim is exactly what was decoded. Its scope and its timestamp in milliseconds travel
///   beside it (``EventScope/description``, ``Timestamp/millisecondsSinceEpoch``).
/// - A notification or a control command is the JSON object of ``RealtimeNotification/jsonObject`` or
///   ``ControlCommand/jsonObject``.
extension BusMessage {
    /// For an event, writes its `payload` object as clients receive it: the carried ``eventFrame``'s when there
    /// is one, else freshly encoded. Nothing for a notification or a control command.
    package func writeEventPayload(into writer: inout JSONWriter) {
        guard case .event(let event) = payload else { return }
        var frame = eventFrame ?? WireProtocol.event(event)
        if !WireProtocol.isEventFrame(frame) { frame = WireProtocol.event(event) }
        frame.withUTF8 { bytes in writer.writeRaw(WireProtocol.eventPayload(of: bytes)) }
    }

    /// The message with its event's frame encoded (``eventFrame``), as a publishing hub hands it to the bus and the
    /// history; itself when it is no event or already carries a frame.
    package func encodingEventFrame() -> BusMessage {
        guard eventFrame == nil, case .event(let event) = payload else { return self }
        var message = self
        message.eventFrame = WireProtocol.event(event)
        return message
    }

    /// An event message decoded from the `payload` object of the client's `event` message (see above), carrying
    /// that object as its ``eventFrame`` so the receiving hub delivers it without encoding.
    ///
    /// - Returns: `nil` if a member is missing, misplaced, extra or of the wrong type, or if the `timestamp`
    ///   member is not `timestamp`'s ISO 8601 form.
    /// - Throws: the parser's error for bytes that are no JSON text within `parser`'s limits.
    package init?(
        origin: ServerID,
        route: BusRoute,
        scope: EventScope,
        timestamp: Timestamp,
        eventPayload: UnsafeBufferPointer<UInt8>,
        parser: JSONParser
    ) throws(JSONParseError) {
        guard let event = try RealtimeEvent(payload: eventPayload, timestamp: timestamp, scope: scope, parser: parser)
        else { return nil }
        self.init(
            origin: origin,
            route: route,
            payload: .event(event),
            eventFrame: WireProtocol.eventFrame(payload: eventPayload)
        )
    }

    /// An event message decoded from a whole client `event` message (an ``eventFrame`` kept earlier, e.g. by a
    /// history store), carrying that same frame. `nil` if it is no event frame or its payload does not decode.
    package init?(
        origin: ServerID,
        route: BusRoute,
        scope: EventScope,
        timestamp: Timestamp,
        eventFrame frame: String,
        parser: JSONParser
    ) {
        guard WireProtocol.isEventFrame(frame) else { return nil }
        var text = frame
        let decoded = text.withUTF8 { bytes in
            try? RealtimeEvent(
                payload: WireProtocol.eventPayload(of: bytes),
                timestamp: timestamp,
                scope: scope,
                parser: parser
            )
        }
        guard let event = decoded ?? nil else { return nil }
        self.init(origin: origin, route: route, payload: .event(event), eventFrame: frame)
    }
}

extension RealtimeEvent {
    /// Decodes the `payload` object of an `event` message (see ``init(payloadMembers:timestamp:scope:)``).
    init?(
        payload: UnsafeBufferPointer<UInt8>,
        timestamp: Timestamp,
        scope: EventScope,
        parser: JSONParser
    ) throws(JSONParseError) {
        guard let members = try parser.parseObjectMembers(payload) else { return nil }
        self.init(payloadMembers: members, timestamp: timestamp, scope: scope)
    }

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
    package init?(_ description: String) {
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
    /// The notification as a JSON object (how the bus carries it).
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
    /// The command as a JSON object (how the bus carries it). A revocation's notices are carried in `notices`
    /// (`disconnect_session`) or `notice` (`revoke_user`), only when there are any.
    public var jsonObject: JSONObject {
        switch self {
        case .disconnectUser(let userID, let reason):
            return ["command": "disconnect_user", "userId": .string(userID), "reason": .string(reason)]
        case .disconnectSession(let sessionID, let reason, let notices):
            var object: JSONObject = [
                "command": "disconnect_session", "sessionId": .string(sessionID), "reason": .string(reason),
            ]
            if !notices.isEmpty { object["notices"] = .array(notices.map { .object($0.jsonObject) }) }
            return object
        case .disconnectConnection(let id, let reason):
            return [
                "command": "disconnect_connection", "connectionId": .string(id.rawValue), "reason": .string(reason),
            ]
        case .revokeUser(let userID, let issuedBefore, let reason, let notice):
            var object: JSONObject = [
                "command": "revoke_user", "userId": .string(userID),
                "issuedBefore": .int(issuedBefore.millisecondsSinceEpoch), "reason": .string(reason),
            ]
            if let notice { object["notice"] = .object(notice.jsonObject) }
            return object
        }
    }

    /// Decodes ``jsonObject``; `nil` if a member is missing or has the wrong type, or for more than
    /// ``maxNotices`` notices.
    public init?(jsonObject object: JSONObject) {
        guard let reason = object["reason"]?.stringValue else { return nil }
        switch object["command"]?.stringValue {
        case "disconnect_user":
            guard let id = object["userId"]?.stringValue else { return nil }
            self = .disconnectUser(userID: id, reason: reason)
        case "disconnect_session":
            guard let id = object["sessionId"]?.stringValue else { return nil }
            var notices: [RevocationNotice] = []
            if let value = object["notices"] {
                guard case .array(let items) = value, items.count <= Self.maxNotices else { return nil }
                for item in items {
                    guard let notice = item.objectValue.flatMap(RevocationNotice.init(jsonObject:)) else {
                        return nil
                    }
                    notices.append(notice)
                }
            }
            self = .disconnectSession(sessionID: id, reason: reason, notices: notices)
        case "disconnect_connection":
            guard let id = object["connectionId"]?.stringValue else { return nil }
            self = .disconnectConnection(ConnectionID(id), reason: reason)
        case "revoke_user":
            guard let id = object["userId"]?.stringValue, case .int(let before)? = object["issuedBefore"] else {
                return nil
            }
            var notice: RevocationNotice?
            if let value = object["notice"] {
                guard let decoded = value.objectValue.flatMap(RevocationNotice.init(jsonObject:)) else { return nil }
                notice = decoded
            }
            self = .revokeUser(
                userID: id,
                issuedBefore: Timestamp(millisecondsSinceEpoch: before),
                reason: reason,
                notice: notice
            )
        default:
            return nil
        }
    }
}

extension RevocationNotice {
    /// The notice as a JSON object: `event` (`id`, `type`, `userId`, `sessionId`, `timestamp` in milliseconds,
    /// `scope`, `data`) and, when recorded, `userPosition` / `adminsPosition` (`epoch`, `offset`).
    var jsonObject: JSONObject {
        var event: JSONObject = [
            "id": .string(self.event.id), "type": .string(self.event.type.rawValue),
            "timestamp": .int(self.event.timestamp.millisecondsSinceEpoch),
            "scope": .string(self.event.scope.description), "data": .object(self.event.data),
        ]
        if let userID = self.event.userID { event["userId"] = .string(userID) }
        if let sessionID = self.event.sessionID { event["sessionId"] = .string(sessionID) }
        var object: JSONObject = ["event": .object(event)]
        if let position = userStreamPosition { object["userPosition"] = Self.json(position) }
        if let position = adminsStreamPosition { object["adminsPosition"] = Self.json(position) }
        return object
    }

    /// Decodes ``jsonObject``; `nil` if a member is missing or has the wrong type, or a position is invalid.
    init?(jsonObject object: JSONObject) {
        guard let event = object["event"]?.objectValue, let id = event["id"]?.stringValue,
            let type = event["type"]?.stringValue.flatMap(EventType.init(validating:)),
            case .int(let millis)? = event["timestamp"],
            let scope = event["scope"]?.stringValue.flatMap(EventScope.init(_:)),
            let data = event["data"]?.objectValue
        else { return nil }
        var userID: String?
        if let value = event["userId"] {
            guard let text = value.stringValue else { return nil }
            userID = text
        }
        var sessionID: String?
        if let value = event["sessionId"] {
            guard let text = value.stringValue else { return nil }
            sessionID = text
        }
        var positions: [StreamPosition?] = []
        for name in ["userPosition", "adminsPosition"] {
            guard let value = object[name] else {
                positions.append(nil)
                continue
            }
            guard let epoch = value["epoch"]?.stringValue, case .int(let offset)? = value["offset"] else { return nil }
            let position = StreamPosition(epoch: epoch, offset: offset)
            guard (try? position.validate()) != nil else { return nil }
            positions.append(position)
        }
        self.init(
            event: RealtimeEvent(
                id: id,
                type: type,
                userID: userID,
                sessionID: sessionID,
                timestamp: Timestamp(millisecondsSinceEpoch: millis),
                data: data,
                scope: scope
            ),
            userStreamPosition: positions[0],
            adminsStreamPosition: positions[1]
        )
    }

    private static func json(_ position: StreamPosition) -> JSONValue {
        ["epoch": .string(position.epoch), "offset": .int(position.offset)]
    }
}
