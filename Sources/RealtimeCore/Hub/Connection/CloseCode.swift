/// A WebSocket close code sent by the hub. Documented in `Documentation/Protocol.md`.
public struct CloseCode: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    public var description: String { String(rawValue) }

    /// 1000: normal closure (the client asked, or the host closed).
    public static let normal = CloseCode(1000)
    /// 1001: the server is shutting down; reconnect after the delay the `reconnect` message gave.
    public static let goingAway = CloseCode(1001)
    /// 1003: the client sent data the hub does not accept (used by hosts for non-text frames if they choose).
    public static let unsupportedData = CloseCode(1003)
    /// 1008: policy violation: too many invalid messages in a short time.
    public static let policyViolation = CloseCode(1008)
    /// 1009: a frame exceeded the host's maximum frame size.
    public static let messageTooBig = CloseCode(1009)
    /// 1011: an internal error in the server.
    public static let internalError = CloseCode(1011)
    /// 4001: authentication failed (first-message authentication missing, late or refused).
    public static let authenticationFailed = CloseCode(4001)
    /// 4002: the connection's token expired and was not refreshed.
    public static let tokenExpired = CloseCode(4002)
    /// 4008: the connection exceeded its message rate limit repeatedly.
    public static let rateLimited = CloseCode(4008)
    /// 4009: the connection's session was revoked.
    public static let sessionRevoked = CloseCode(4009)
    /// 4010: the client did not read fast enough and its outbound queue overflowed; resynchronise.
    public static let slowConsumer = CloseCode(4010)
    /// 4011: an operator disconnected the user or the connection.
    public static let disconnected = CloseCode(4011)
}

/// A frame for the host to write to the socket.
public enum OutboundFrame: Sendable, Hashable {
    /// A text frame with a JSON message (a reply to one connection).
    case text(String)
    /// A text frame encoded once for every recipient of a fan-out (events, notifications, gaps): write
    /// ``EncodedTextFrame/webSocketFrame`` as it is, header included; ``EncodedTextFrame/text`` is the message.
    case encodedText(EncodedTextFrame)
    /// A WebSocket ping control frame (the hub's heartbeat). Report the pong with
    /// ``HubConnection/receivedPong()``.
    case ping
    /// A close frame; the sequence ends after it and the host should close the socket.
    case close(CloseCode, reason: String)
}

extension OutboundFrame {
    /// The JSON message of a text frame (``text(_:)`` or ``encodedText(_:)``); `nil` for control frames.
    public var text: String? {
        switch self {
        case .text(let text): text
        case .encodedText(let frame): frame.text
        case .ping, .close: nil
        }
    }
}
