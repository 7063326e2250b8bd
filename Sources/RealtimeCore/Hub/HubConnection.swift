import Synchronization

/// One accepted connection, as the host drives it.
///
/// The host writes every frame of ``outbound`` to the socket (from one task), passes each inbound text frame
/// to ``receive(text:)``, reports pongs with ``receivedPong()``, and calls ``closed(code:)`` once the socket
/// is gone (always, whoever closed it).
public final class HubConnection: Sendable {
    let hub: RealtimeHub
    let core: ConnectionCore

    init(hub: RealtimeHub, core: ConnectionCore) {
        self.hub = hub
        self.core = core
    }

    public var id: ConnectionID { core.id }
    public var endpoint: Endpoint { core.endpoint }
    /// Who the connection authenticated as (`nil` until first-message authentication succeeds).
    public var identity: VerifiedIdentity? { core.identity }
    /// The frames to write, in order. Ends after a close frame.
    public var outbound: OutboundFrames { OutboundFrames(queue: core.queue) }

    /// Handles one inbound text frame. Never throws: every problem is answered with an `error` message or,
    /// where a documented limit says so, a close frame on ``outbound``.
    public func receive(text: String) async {
        await hub.handleInbound(text, on: core)
    }

    /// Handles an inbound binary frame (the protocol is text-only: it is answered with an
    /// `unsupported_frame` error and counts as a protocol error).
    public func receive(binaryFrameOfSize size: Int) async {
        hub.handleBinary(size: size, on: core)
    }

    /// Reports a pong (or any sign of life that is not a text frame).
    public func receivedPong() {
        core.mutable.withLock { $0.lastActivity = .now }
    }

    /// Tells the hub the socket is closed. Idempotent.
    public func closed(code: CloseCode? = nil) async {
        await hub.connectionClosed(core, code: code)
    }
}
