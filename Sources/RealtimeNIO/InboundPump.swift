// SPDX-License-Identifier: Apache-2.0

import DequeModule
import NIOCore
import RealtimeCore
import Synchronization

/// Hands a connection's inbound messages to the hub in order, from a task that exists only while messages are
/// pending, and reports the close once the last one was handled.
///
/// It keeps the queue, which the event loop fills and the task empties; the decision to pause and resume reading
/// is the handler's state machine's: the pump only reports when the backlog fell to the level it was asked for.
final class InboundPump: Sendable {
    enum Message: Sendable {
        case text(String)
        case binary(size: Int)
    }

    fileprivate struct State: Sendable {
        var messages = Deque<Message>()
        var connection: HubConnection?
        /// Called (once) when at most `atMost` messages wait.
        var drainReport: (atMost: Int, report: @Sendable (_ pending: Int) -> Void)?
        var running = false
        /// Set when the channel is gone; reported to the hub after the running task (if any) finishes.
        var closeCode: CloseCode?
        var closeReported = false
    }

    private let state = Mutex(State())

    /// The hub activated the connection: handle what arrived meanwhile.
    func attach(_ connection: HubConnection) {
        let start = state.withLock { state -> Bool in
            state.connection = connection
            return state.startIfNeeded()
        }
        if start { startTask() }
    }

    /// Queues a message. Returns how many messages wait now, or `nil` when the channel is gone (the message is
    /// dropped).
    func enqueue(_ message: Message) -> Int? {
        let (start, pending) = state.withLock { state -> (Bool, Int?) in
            guard state.closeCode == nil else { return (false, nil) }
            state.messages.append(message)
            return (state.startIfNeeded(), state.messages.count)
        }
        if start { startTask() }
        return pending
    }

    /// Calls `report` with the number of waiting messages once at most `atMost` wait: right away if that is
    /// already so, else from the task, before it hands the hub the message that brought the backlog down. Not
    /// after ``finish(code:)``.
    func reportWhenDrained(atMost: Int, _ report: @escaping @Sendable (_ pending: Int) -> Void) {
        let now = state.withLock { state -> Int? in
            guard state.closeCode == nil else { return nil }
            if state.messages.count <= atMost { return state.messages.count }
            state.drainReport = (atMost, report)
            return nil
        }
        if let now { report(now) }
    }

    /// The channel is gone: drop pending messages and tell the hub (after the running task, if any).
    func finish(code: CloseCode) {
        let start = state.withLock { state -> Bool in
            guard state.closeCode == nil else { return false }
            state.closeCode = code
            state.messages.removeAll()
            // It captures the channel handler, which holds this pump: break the cycle.
            state.drainReport = nil
            return state.startIfNeeded()
        }
        if start { startTask() }
    }

    private func startTask() {
        Task { await self.run() }
    }

    private func run() async {
        enum Step {
            case handle(Message, HubConnection, report: (@Sendable (Int) -> Void)?, pending: Int)
            case reportClose(HubConnection, CloseCode)
            case stop
        }
        while true {
            let step: Step = state.withLock { state in
                guard let connection = state.connection else {
                    state.running = false
                    return .stop
                }
                if let message = state.messages.popFirst() {
                    let pending = state.messages.count
                    var report: (@Sendable (Int) -> Void)?
                    if let drainReport = state.drainReport, pending <= drainReport.atMost {
                        state.drainReport = nil
                        report = drainReport.report
                    }
                    return .handle(message, connection, report: report, pending: pending)
                }
                if let code = state.closeCode, !state.closeReported {
                    state.closeReported = true
                    return .reportClose(connection, code)
                }
                state.running = false
                return .stop
            }
            switch step {
            case .handle(let message, let connection, let report, let pending):
                report?(pending)
                switch message {
                case .text(let text): await connection.receive(text: text)
                case .binary(let size): await connection.receive(binaryFrameOfSize: size)
                }
            case .reportClose(let connection, let code):
                await connection.closed(code: code)
                state.withLock { $0.connection = nil }
            case .stop:
                return
            }
        }
    }
}

extension InboundPump.State {
    /// Marks the pump running when there is work and a connection to do it for; returns whether to start a task.
    fileprivate mutating func startIfNeeded() -> Bool {
        guard !running, connection != nil, !messages.isEmpty || (closeCode != nil && !closeReported) else {
            return false
        }
        running = true
        return true
    }
}
