// SPDX-License-Identifier: Apache-2.0

import RealtimeCore

/// The state of one WebSocket connection as ``RealtimeWebSocketHandler`` drives it: the close handshake, the
/// push-style drain of the hub's queue, the write-stall timer and the read back-pressure.
///
/// A value with no I/O: each mutating method takes an event and returns the ``Actions`` the handler performs
/// (write a close frame, drop the socket, arm or cancel a timer, forward a read, report the close). The handler
/// holds the I/O resources (the context, the timers' handles, the frame being assembled) and nothing else; the
/// unit tests drive this type directly, without sockets.
///
/// The rules it keeps:
/// - At most one close frame is sent. After the hub's close frame the client's reply is awaited for the close
///   timeout; after the client's close frame it is echoed (1005 as 1000) and the socket dropped; a protocol
///   violation sends its close code and drops the socket.
/// - After a close frame from the client nothing more is read; after the server's, only the client's close.
/// - One drain at a time: a wake-up during a drain (the flush can make the channel writable again) asks the
///   running drain for another pass. A drain that leaves frames behind because the channel is not writable arms
///   the write-stall timer; the channel becoming writable again cancels it.
/// - Reading pauses once more than ``highWatermark`` messages wait for the hub and resumes once they are down to
///   ``lowWatermark``.
/// - A client's ping is answered with a pong at once while the channel is writable; while it is not (the client
///   does not read), only one pong is owed, for the latest ping (RFC 6455 §5.5.3), written when the channel is
///   writable again, and the write-stall timer runs. A client that pings without reading cannot make the server
///   buffer pongs.
/// - The close is reported exactly once, with the code that ended the conversation: the server's close frame,
///   else the client's, else 1006.
struct WebSocketConnectionStateMachine: Sendable {
    /// More messages than this waiting for the hub pause reading from the socket.
    static let highWatermark = 8
    /// Reading resumes once the hub worked the backlog down to this many.
    static let lowWatermark = 2

    /// The connection's timers.
    enum Timer: Sendable, Hashable {
        /// Waits for the client's close frame after the server sent one.
        case closeHandshake
        /// Runs while the channel is not writable and frames (or a pong) wait to be written.
        case writeStall
    }

    /// What the handler does.
    enum Action: Sendable, Hashable {
        /// Register for the hub's outbound wake-up: the connection is active.
        case startOutbound
        /// Run a drain pass over the hub's queue now.
        case drain
        /// Write the hub's close frame in the current batch (flushed with it); the client's reply is awaited.
        case sendClose(CloseCode, reason: String)
        /// Write and flush a close frame, then drop the socket without waiting for the client's.
        case sendCloseThenDrop(CloseCode, reason: String)
        /// Close the socket.
        case dropSocket
        /// Schedule the timer; its firing is reported back as an event.
        case armTimer(Timer)
        /// Cancel the timer.
        case cancelTimer(Timer)
        /// Write and flush a pong answering the latest ping the client sent.
        case sendPong
        /// Forward a read to the channel (reading is not paused, or it resumed and a read was withheld).
        case read
        /// Withhold reads from now on, and ask for ``WebSocketConnectionStateMachine/inboundDrained(pending:)``
        /// once at most this many messages wait.
        case pauseReading(resumeAtOrBelow: Int)
        /// Tell the hub the connection is closed, with this code.
        case reportClosed(CloseCode)
    }

    /// Up to three actions, in order, stored inline: events on the per-frame paths return them without
    /// allocating.
    struct Actions: Sendable, Hashable, Sequence, ExpressibleByArrayLiteral {
        private var first: Action?
        private var second: Action?
        private var third: Action?

        init() {}

        init(arrayLiteral elements: Action...) {
            for element in elements { append(element) }
        }

        var isEmpty: Bool { first == nil }

        mutating func append(_ action: Action) {
            if first == nil {
                first = action
            } else if second == nil {
                second = action
            } else {
                precondition(third == nil, "an event yields at most three actions")
                third = action
            }
        }

        mutating func append(contentsOf actions: Actions) {
            for action in actions { append(action) }
        }

        func makeIterator() -> Iterator { Iterator(actions: self) }

        struct Iterator: IteratorProtocol {
            fileprivate var actions: Actions
            fileprivate var index = 0

            mutating func next() -> Action? {
                defer { index += 1 }
                switch index {
                case 0: return actions.first
                case 1: return actions.second
                case 2: return actions.third
                default: return nil
                }
            }
        }
    }

    // Lifecycle.
    private(set) var isConnected = false
    private(set) var isInactive = false
    private var closeReported = false

    // Close handshake.
    private(set) var closeSent: CloseCode?
    private(set) var closeReceived: CloseCode?
    private var closeTimerArmed = false

    // Writing.
    private var outboundFinished = false
    private var draining = false
    private var drainAgain = false
    private var writeStallTimerArmed = false
    /// Whether the channel takes more writes. It follows `channelWritabilityChanged`, which NIO fires synchronously
    /// when a write crosses the high-water mark and when a flush falls below the low one, so the handler's drain
    /// reads it instead of asking the channel before every pass.
    private(set) var isWritable = true
    /// A ping arrived while the channel was not writable: one pong is owed.
    private var pongOwed = false

    // Reading.
    private(set) var readPaused = false
    private var readPending = false

    private var closeExchanged: Bool { closeSent != nil || closeReceived != nil }

    // MARK: Lifecycle

    /// The hub activated the connection.
    mutating func hubConnected() -> Actions {
        guard !isInactive else { return [] }
        isConnected = true
        return [.startOutbound]
    }

    /// The hub could not activate the accepted upgrade (it expired, or the server is going away).
    mutating func hubRefused() -> Actions {
        guard !isInactive else { return [] }
        return fail(CloseCode(1011), reason: "server unavailable")
    }

    /// The channel is gone (inactive, or the handler removed). Reports the close once.
    mutating func channelInactive() -> Actions {
        guard !isInactive else { return [] }
        isInactive = true
        var actions = Actions()
        if closeTimerArmed {
            closeTimerArmed = false
            actions.append(.cancelTimer(.closeHandshake))
        }
        if writeStallTimerArmed {
            writeStallTimerArmed = false
            actions.append(.cancelTimer(.writeStall))
        }
        if !closeReported {
            closeReported = true
            actions.append(.reportClosed(closeSent ?? closeReceived ?? CloseCode(1006)))
        }
        return actions
    }

    // MARK: Writing

    /// The hub has frames waiting, or the channel became writable: drain, unless a drain is running (then it
    /// goes round once more) or there is nothing to drain for.
    mutating func outboundReady() -> Actions {
        guard isConnected, !outboundFinished, !isInactive else { return [] }
        if draining {
            drainAgain = true
            return []
        }
        draining = true
        drainAgain = false
        return [.drain]
    }

    /// A drain pass ended with `result`. Returns whether to run another pass right away: a wake-up came in
    /// during the pass and the queue is not finished.
    mutating func drainPassEnded(_ result: OutboundDrainResult) -> Bool {
        guard draining, drainAgain, result != .finished else { return false }
        drainAgain = false
        return true
    }

    /// The drain is over, with the last pass's `result`.
    mutating func drainEnded(_ result: OutboundDrainResult) -> Actions {
        draining = false
        drainAgain = false
        switch result {
        case .finished:
            outboundFinished = true
            // The hub ended the queue without a close frame (it was told the socket closed): drop it.
            return closeExchanged ? [] : [.dropSocket]
        case .more:
            // Not writable: resume when the channel is writable again; drop the socket if that never comes.
            guard !writeStallTimerArmed, !isInactive else { return [] }
            writeStallTimerArmed = true
            return [.armTimer(.writeStall)]
        case .idle:
            return []
        }
    }

    /// The hub's queue handed over its close frame. Sends it and awaits the client's reply, unless a close frame
    /// already went either way (then the frame is skipped).
    mutating func closeRequestedByHub(_ code: CloseCode, reason: String) -> Actions {
        guard !closeExchanged else { return [] }
        closeSent = code
        closeTimerArmed = true
        return [.sendClose(code, reason: reason), .armTimer(.closeHandshake)]
    }

    /// The client did not answer the server's close frame in time.
    mutating func closeTimerFired() -> Actions {
        guard closeTimerArmed else { return [] }
        closeTimerArmed = false
        return [.dropSocket]
    }

    /// The channel's writability changed.
    mutating func writabilityChanged(isWritable: Bool) -> Actions {
        self.isWritable = isWritable
        guard isWritable else { return [] }
        var actions = Actions()
        if writeStallTimerArmed {
            writeStallTimerArmed = false
            actions.append(.cancelTimer(.writeStall))
        }
        if pongOwed {
            pongOwed = false
            // Nothing follows a close frame, either way.
            if !closeExchanged && !isInactive { actions.append(.sendPong) }
        }
        actions.append(contentsOf: outboundReady())
        return actions
    }

    /// The client sent a ping (the handler keeps its payload, the latest one only). Answered now while the channel
    /// is writable; otherwise one pong is owed until it is, and the write-stall timer runs.
    mutating func pingReceived() -> Actions {
        guard acceptsFrame(isClose: false) else { return [] }
        if isWritable { return [.sendPong] }
        pongOwed = true
        guard !writeStallTimerArmed else { return [] }
        writeStallTimerArmed = true
        return [.armTimer(.writeStall)]
    }

    /// The channel stayed unwritable for the write timeout: the client stopped reading.
    mutating func writeStallTimerFired() -> Actions {
        guard writeStallTimerArmed else { return [] }
        writeStallTimerArmed = false
        return [.dropSocket]
    }

    // MARK: Reading

    /// Whether an inbound frame is handled at all: nothing after the channel went inactive or the client's close
    /// frame, and after the server's close frame only the client's close frame.
    func acceptsFrame(isClose: Bool) -> Bool {
        !isInactive && closeReceived == nil && (closeSent == nil || isClose)
    }

    /// The client's close frame arrived (with `code`, 1005 when it had none).
    mutating func closeFrameReceived(_ code: CloseCode) -> Actions {
        guard acceptsFrame(isClose: true) else { return [] }
        closeReceived = code
        var actions = Actions()
        if closeTimerArmed {
            closeTimerArmed = false
            actions.append(.cancelTimer(.closeHandshake))
        }
        if closeSent == nil {
            // Echo the status code (RFC 6455 §5.5.1); 1005 and 1006 are never sent on the wire.
            actions.append(.sendCloseThenDrop(code.rawValue == 1005 ? .normal : code, reason: ""))
        } else {
            // The reply to the server's close frame: the handshake is complete.
            actions.append(.dropSocket)
        }
        return actions
    }

    /// The client broke the protocol (RFC 6455 §7.1.7): close with `code`, unless a close frame already went
    /// either way.
    mutating func protocolViolation(_ code: CloseCode, reason: String) -> Actions {
        fail(code, reason: reason)
    }

    /// NIO's frame decoder refused a frame; its own error handling sends the close frame and closes the channel.
    /// Only the close code is recorded (it is the one reported), unless a close frame already went either way.
    mutating func decoderRejectedFrame(_ code: CloseCode) {
        if !closeExchanged { closeSent = code }
    }

    private mutating func fail(_ code: CloseCode, reason: String) -> Actions {
        guard !closeExchanged else { return [] }
        closeSent = code
        return [.sendCloseThenDrop(code, reason: reason)]
    }

    // MARK: Read back-pressure

    /// The channel asks for more data.
    mutating func readRequested() -> Actions {
        guard readPaused else { return [.read] }
        readPending = true
        return []
    }

    /// A message was queued for the hub; `pending` messages wait now.
    mutating func inboundQueued(pending: Int) -> Actions {
        guard !readPaused, pending > Self.highWatermark else { return [] }
        // Too many messages wait for the hub: stop reading until it caught up.
        readPaused = true
        return [.pauseReading(resumeAtOrBelow: Self.lowWatermark)]
    }

    /// The hub worked the backlog down to `pending` messages.
    mutating func inboundDrained(pending: Int) -> Actions {
        guard readPaused, pending <= Self.lowWatermark else { return [] }
        readPaused = false
        guard readPending else { return [] }
        readPending = false
        return [.read]
    }
}
