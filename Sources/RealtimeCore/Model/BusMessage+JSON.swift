/// The JSON form of bus messages, shared by every backend that carries them as bytes (Redis pub/sub).
///
/// Format (version 1):
/// `{"v":1,"origin":"srv_…","route":"user:u1","kind":"event","event":{…}}`, with `kind` one of `event`,
/// `notification` and `control`.
extension BusMessage {
    /// Encodes the message as compact JSON.
    public func jsonBytes() -> [UInt8] {
        var object: JSONObject = [
            "v": 1,
            "origin": .string(origin.rawValue),
            "route": .string(route.description),
        ]
        switch payload {
        case .event(let event):
            object["kind"] = "event"
            object["event"] = .object(event.jsonObject)
        case .notification(let notification):
            object["kind"] = "notification"
            object["notification"] = .object(notification.jsonObject)
        case .control(let command):
            object["kind"] = "control"
            object["control"] = .object(command.jsonObject)
        }
        return JSONWriter.bytes(.object(object))
    }

    /// Decodes a message from its JSON form.
    public init(jsonBytes bytes: some Collection<UInt8>, limits: JSONParser.Limits = .init()) throws(RealtimeError) {
        let value: JSONValue
        do {
            value = try JSONParser(limits: limits).parse(bytes)
        } catch {
            throw RealtimeError(.protocolViolation, "bus message is not valid JSON", underlying: error)
        }
        guard value["v"]?.intValue == 1 else { throw RealtimeError(.protocolViolation, "unknown bus message version") }
        guard let origin = value["origin"]?.stringValue, let routeText = value["route"]?.stringValue,
            let route = BusRoute(routeText), let kind = value["kind"]?.stringValue
        else { throw RealtimeError(.protocolViolation, "bus message lacks origin, route or kind") }
        let payload: BusPayload
        switch kind {
        case "event":
            guard let object = value["event"]?.objectValue, let event = RealtimeEvent(jsonObject: object) else {
                throw RealtimeError(.protocolViolation, "bus message has an invalid event")
            }
            payload = .event(event)
        case "notification":
            guard let object = value["notification"]?.objectValue,
                let notification = RealtimeNotification(jsonObject: object)
            else { throw RealtimeError(.protocolViolation, "bus message has an invalid notification") }
            payload = .notification(notification)
        case "control":
            guard let object = value["control"]?.objectValue, let command = ControlCommand(jsonObject: object) else {
                throw RealtimeError(.protocolViolation, "bus message has an invalid control command")
            }
            payload = .control(command)
        default:
            throw RealtimeError(.protocolViolation, "unknown bus message kind")
        }
        self.init(origin: ServerID(origin), route: route, payload: payload)
    }
}

extension EventScope {
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

extension RealtimeEvent {
    /// The event as a JSON object (the `event` member of the bus format).
    public var jsonObject: JSONObject {
        var object: JSONObject = [
            "id": .string(id),
            "type": .string(type.rawValue),
            "timestamp": .int(timestamp.millisecondsSinceEpoch),
            "data": .object(data),
            "scope": scope.jsonValue,
        ]
        if let userID { object["userId"] = .string(userID) }
        if let sessionID { object["sessionId"] = .string(sessionID) }
        return object
    }

    /// Decodes ``jsonObject``; `nil` if a member is missing or has the wrong type.
    public init?(jsonObject object: JSONObject) {
        guard let id = object["id"]?.stringValue, let typeText = object["type"]?.stringValue,
            let type = EventType(validating: typeText), let millis = object["timestamp"]?.intValue,
            let data = object["data"]?.objectValue, let scope = EventScope(json: object["scope"])
        else { return nil }
        let userID = object["userId"]?.stringValue
        let sessionID = object["sessionId"]?.stringValue
        if object["userId"].map({ !$0.isNull && $0.stringValue == nil }) == true { return nil }
        if object["sessionId"].map({ !$0.isNull && $0.stringValue == nil }) == true { return nil }
        self.init(
            id: id,
            type: type,
            userID: userID,
            sessionID: sessionID,
            timestamp: Timestamp(millisecondsSinceEpoch: millis),
            data: data,
            scope: scope
        )
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
