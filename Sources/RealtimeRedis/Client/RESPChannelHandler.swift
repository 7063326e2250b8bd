import DequeModule
import NIOCore
import RealtimeCore

/// Who waits for the reply (or replies) of one request.
enum ReplyWaiter: Sendable {
    /// NIO code (handshake, canary, publish-queue flush) waits on a promise.
    case promise(EventLoopPromise<RESPValue>)
    /// An `async` caller waits on a continuation, resumed straight from the event loop (no extra hop to register
    /// a future callback).
    case continuation(UnsafeContinuation<RESPValue, any Error>)
    /// A pipeline of `count` commands resumes once, with every reply.
    case batch(count: Int, UnsafeContinuation<[RESPValue], any Error>)
    /// A `SUNSUBSCRIBE` of `channel`: on a pub/sub connection its reply looks like the `sunsubscribe` push Redis
    /// sends unasked when a slot moves, so only a `sunsubscribe` of this channel at the front is taken as its reply.
    case unsubscribe(channel: [UInt8], EventLoopPromise<RESPValue>)

    func fail(_ error: RealtimeError) {
        switch self {
        case .promise(let promise): promise.fail(error)
        case .continuation(let continuation): continuation.resume(throwing: error)
        case .batch(_, let continuation): continuation.resume(throwing: error)
        case .unsubscribe(_, let promise): promise.fail(error)
        }
    }
}

/// What a ``RedisConnection`` writes to its channel: encoded commands and, in order, who waits for their replies.
struct RedisOutbound: Sendable {
    var bytes: ByteBuffer
    var waiters: [ReplyWaiter]
}

/// The channel handler of one Redis connection: writes encoded commands, feeds the bytes read to hiredis's reader,
/// and completes the waiters in FIFO order (Redis answers pipelined commands in the order it received them).
///
/// On a pub/sub connection, `message`, `pmessage` and `smessage` pushes are not replies: they go to `onPush` on the
/// event loop, while subscribe/unsubscribe confirmations still complete the waiters of the commands that asked for
/// them. A `sunsubscribe` is a reply only when a `SUNSUBSCRIBE` of that channel waits at the front; otherwise it is
/// Redis telling us, unasked, that the channel's slot left the node (RESP2 gives both the same form), and a push.
///
/// Every waiter is completed exactly once: by its reply, by its timeout (its late reply is then discarded), or
/// when the connection goes away.
///
/// Not `Sendable`: lives on its channel's event loop.
final class RESPChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var waiter: ReplyWaiter
        var deadline: NIODeadline
    }

    private let parser = RESPParser()
    private var pending = Deque<Pending>()
    /// The replies collected so far for the batch at the front of `pending` (kept here rather than in its entry,
    /// so that adding one neither copies nor writes back an element of the deque).
    private var frontReplies: [RESPValue] = []
    /// How many entries at the front of `pending` already failed with a timeout; their replies are discarded.
    private var expiredAtFront = 0
    private let commandTimeout: TimeAmount
    private let onPush: (@Sendable (RESPValue) -> Void)?
    private var sweep: RepeatedTask?
    private var context: ChannelHandlerContext?
    /// When bytes last arrived.
    private var lastRead = NIODeadline.now()
    /// How long a connection may go without a single byte while a command waits past its timeout before it is
    /// taken for dead (a half-open TCP connection after a failover or a network partition) and closed.
    private var silenceLimit: TimeAmount { commandTimeout * 5 }

    init(commandTimeout: Duration, onPush: (@Sendable (RESPValue) -> Void)?) {
        self.commandTimeout = .nanoseconds(max(1_000_000, commandTimeout.milliseconds * 1_000_000))
        self.onPush = onPush
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // One timer per connection, not per command: deadlines in the FIFO are monotonic (one timeout for all), so
        // each tick fails the expired prefix and stops at the first live entry.
        let interval = TimeAmount.nanoseconds(max(5_000_000, min(100_000_000, commandTimeout.nanoseconds / 4)))
        self.context = context
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
            handler.value.failExpired()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        sweep = nil
        self.context = nil
        failAll(RealtimeError(.backendUnavailable, "Redis connection closed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let outbound = unwrapOutboundIn(data)
        let deadline = NIODeadline.now() + commandTimeout
        for waiter in outbound.waiters {
            pending.append(Pending(waiter: waiter, deadline: deadline))
        }
        context.write(wrapOutboundOut(outbound.bytes), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        lastRead = .now()
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
        if let onPush, let channel = Self.shardUnsubscribed(value) {
            var awaited = false
            if case .unsubscribe(let expected, _) = pending.first?.waiter { awaited = expected == channel }
            if !awaited {
                onPush(value)
                return
            }
        }
        guard !pending.isEmpty else {
            // A reply nobody waits for: on a pub/sub connection a push we don't track; otherwise a protocol slip,
            // which we ignore rather than mismatch later replies.
            onPush?(value)
            return
        }
        let expired = expiredAtFront > 0
        var replies: [RESPValue] = []
        if case .batch(let count, _) = pending[0].waiter {
            // A batch (even of one command) collects its replies and leaves the FIFO only with its last one.
            if frontReplies.isEmpty { frontReplies.reserveCapacity(count) }
            frontReplies.append(expired ? .null : value)
            guard frontReplies.count == count else { return }
            swap(&replies, &frontReplies)
        }
        let entry = pending.removeFirst()
        if expired {
            expiredAtFront -= 1
            return
        }
        switch entry.waiter {
        case .promise(let promise): promise.succeed(value)
        case .continuation(let continuation): continuation.resume(returning: value)
        case .batch(_, let continuation): continuation.resume(returning: replies)
        case .unsubscribe(_, let promise): promise.succeed(value)
        }
    }

    private static let messageKind = Array("message".utf8)
    private static let patternMessageKind = Array("pmessage".utf8)
    private static let shardMessageKind = Array("smessage".utf8)
    private static let shardUnsubscribeKind = Array("sunsubscribe".utf8)

    private static func isPush(_ value: RESPValue) -> Bool {
        guard case .array(let elements) = value, case .bulkString(let kind) = elements.first else { return false }
        let bytes = kind.readableBytesView
        return bytes.elementsEqual(messageKind) || bytes.elementsEqual(patternMessageKind)
            || bytes.elementsEqual(shardMessageKind)
    }

    /// The channel of a `sunsubscribe` (reply or push), nil for anything else.
    private static func shardUnsubscribed(_ value: RESPValue) -> [UInt8]? {
        guard case .array(let elements) = value, elements.count == 3, case .bulkString(let kind) = elements[0],
            kind.readableBytesView.elementsEqual(shardUnsubscribeKind)
        else { return nil }
        return elements[1].bytes
    }

    private func failExpired() {
        let now = NIODeadline.now()
        var index = expiredAtFront
        while index < pending.count, pending[index].deadline <= now {
            pending[index].waiter.fail(
                RealtimeError(.timeout, "Redis did not answer within \(commandTimeout.nanoseconds / 1_000_000) ms")
            )
            index += 1
        }
        expiredAtFront = index
        // The oldest command waits past its timeout and nothing at all was read since it was sent: after
        // `silenceLimit` the peer is taken for gone; closing fails everything in flight and the pool reconnects.
        if let oldest = pending.first, expiredAtFront > 0 {
            let silentSince = max(lastRead, oldest.deadline - commandTimeout)
            if now - silentSince > silenceLimit { context?.close(promise: nil) }
        }
    }

    private func failAll(_ error: RealtimeError) {
        let failed = pending
        let expired = expiredAtFront
        pending.removeAll()
        frontReplies = []
        expiredAtFront = 0
        for (index, entry) in failed.enumerated() where index >= expired {
            entry.waiter.fail(error)
        }
    }
}
