import DequeModule
import NIOCore
import RealtimeCore

/// What a ``RedisConnection`` writes to its channel: one encoded command and, unless it is fire-and-forget, the
/// promise for its reply.
struct RedisOutbound: Sendable {
    var bytes: ByteBuffer
    var promise: EventLoopPromise<RESPValue>?
}

/// The channel handler of one Redis connection: writes encoded commands, feeds the bytes read to hiredis's reader,
/// and completes the pending promises in FIFO order (Redis answers pipelined commands in the order it received
/// them).
///
/// On a pub/sub connection, `message` pushes are not replies: they go to `onPush` on the event loop, while
/// subscribe/unsubscribe confirmations still complete the promises of the commands that asked for them.
///
/// Not `Sendable`: lives on its channel's event loop.
final class RESPChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var promise: EventLoopPromise<RESPValue>
        var deadline: NIODeadline
    }

    private let parser = RESPParser()
    private var pending = Deque<Pending>()
    /// How many entries at the front of `pending` already failed with a timeout; their replies are discarded.
    private var expiredAtFront = 0
    private let commandTimeout: TimeAmount
    private let onPush: (@Sendable (RESPValue) -> Void)?
    private var sweep: RepeatedTask?

    init(commandTimeout: Duration, onPush: (@Sendable (RESPValue) -> Void)?) {
        self.commandTimeout = .nanoseconds(max(1_000_000, commandTimeout.milliseconds * 1_000_000))
        self.onPush = onPush
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // One timer per connection, not per command: deadlines in the FIFO are monotonic (one timeout for all), so
        // each tick fails the expired prefix and stops at the first live entry.
        let interval = TimeAmount.nanoseconds(max(5_000_000, min(100_000_000, commandTimeout.nanoseconds / 4)))
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            handler.value.failExpired()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        sweep = nil
        failAll(RealtimeError(.backendUnavailable, "Redis connection closed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        if let reply = outbound.promise {
            pending.append(Pending(promise: reply, deadline: .now() + commandTimeout))
        }
        context.write(wrapOutboundOut(outbound.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        do {
            try buffer.withUnsafeReadableBytes { bytes throws(RealtimeError) in try parser.feed(bytes) }
            while let value = try parser.next() {
                route(value)
            }
        } catch {
            // The stream can't be resynchronised after a malformed reply: fail everything and close.
            failAll(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RealtimeError(.backendUnavailable, "Redis connection lost"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RealtimeError(.backendUnavailable, "Redis connection failed", underlying: error))
        context.close(promise: nil)
    }

    private func route(_ value: RESPValue) {
        if let onPush, Self.isPush(value) {
            onPush(value)
            return
        }
        guard let first = pending.popFirst() else {
            // A reply nobody waits for: a push on a pub/sub connection (e.g. a confirmation of a fire-and-forget
            // command), or a protocol slip, which we ignore rather than mismatch later replies.
            onPush?(value)
            return
        }
        if expiredAtFront > 0 {
            expiredAtFront -= 1
            return
        }
        first.promise.succeed(value)
    }

    private static func isPush(_ value: RESPValue) -> Bool {
        guard case .array(let elements) = value, let kind = elements.first?.bytes else { return false }
        return kind == Array("message".utf8) || kind == Array("pmessage".utf8)
    }

    private func failExpired() {
        let now = NIODeadline.now()
        var index = expiredAtFront
        while index < pending.count, pending[index].deadline <= now {
            pending[index].promise.fail(
                RealtimeError(.timeout, "Redis did not answer within \(commandTimeout.nanoseconds / 1_000_000) ms")
            )
            index += 1
        }
        expiredAtFront = index
    }

    private func failAll(_ error: RealtimeError) {
        let failed = pending
        pending.removeAll()
        for (index, entry) in failed.enumerated() where index >= expiredAtFront {
            entry.promise.fail(error)
        }
        expiredAtFront = 0
    }
}
