package import RealtimeCore

/// The body of a ``RedisEventBus`` message (the part that `BusSigner` seals), version 2: a header line, a line
/// feed, and the content.
///
/// ```text
/// [2,"srv_a","user:u1","event","user:u1",1764404572123,true]
/// {"id":"evt_…","type":"security.suspicious.activity","userId":"u1","timestamp":"2026-11-29T08:22:52.123Z","data":{…}}
/// ```
///
/// - The header is a JSON array: version `2`, the origin server, the route (``BusRoute/description``), the kind
///   (`event`, `notification` or `control`) and, for events only, the event's scope (``EventScope/description``),
///   its timestamp in milliseconds since the epoch and whether the message also stands for the
///   ``BusRoute/admins`` route (published on a user's channel for both routes, see
///   ``RedisEventBus/publish(_:)-([BusMessage])``). Compact JSON never contains a raw line feed, so the first one
///   ends the header.
/// - The content is the backend-neutral JSON form of the payload (RealtimeCore): for an event, the `payload`
///   object of the client's `event` message, byte for byte as clients receive it; for a notification or a control
///   command, ``RealtimeNotification/jsonObject`` or ``ControlCommand/jsonObject``.
///
/// Every server of a cluster must read the same version; version 1 (one JSON envelope) is refused.
package enum RedisBusCodec {
    /// The current format version.
    static let version: Int64 = 2

    /// The body of `message`; `alsoAdmins` marks an event published on a user's route that also stands for the
    /// admins route.
    package static func encode(_ message: BusMessage, alsoAdmins: Bool) -> [UInt8] {
        var writer = JSONWriter(reservingCapacity: 320)
        writer.writeRaw("[2,")
        writer.write(message.origin.rawValue)
        writer.writeRaw(",")
        writer.write(message.route.description)
        switch message.payload {
        case .event(let event):
            writer.writeRaw(#","event","#)
            writer.write(event.scope.description)
            writer.writeRaw(",")
            writer.write(event.timestamp.millisecondsSinceEpoch)
            alsoAdmins ? writer.writeRaw(",true]\n") : writer.writeRaw(",false]\n")
            message.writeEventPayload(into: &writer)
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

    /// Decodes a body; `alsoAdmins` tells whether it also stands for the admins route.
    ///
    /// - Throws: ``RealtimeError/Code/protocolViolation`` for anything but a well-formed version 2 body.
    package static func decode(
        _ bytes: some Collection<UInt8>,
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
        guard case .array(let fields) = header, fields.first == .int(version) else {
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
            let message: BusMessage?
            do {
                message = try BusMessage(
                    origin: ServerID(origin),
                    route: route,
                    scope: scope,
                    timestamp: Timestamp(millisecondsSinceEpoch: millis),
                    eventPayload: content,
                    parser: parser
                )
            } catch {
                throw invalid("has an invalid event", error)
            }
            guard let message else { throw invalid("has an invalid event") }
            return (message, alsoAdmins)
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
