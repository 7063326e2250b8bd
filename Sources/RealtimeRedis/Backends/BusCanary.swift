import NIOCore

/// The canary of one bus subscription, as a value: a message the subscription publishes to its own server channel
/// every interval, which must come back through Redis within the timeout. The subscription feeds it the ticks, the
/// `PUBLISH` replies and the returned canaries; it answers with what to do (send the next canary, re-subscribe).
///
/// Two signals mean the pub/sub path is broken: a canary that does not come back within ``timeout`` (checked on the
/// next tick), and a `PUBLISH` reply saying nobody listens on the channel — but the second only where that count
/// covers the subscriber (``repliesCountEveryListener``): on one node, and with sharded pub/sub (`SPUBLISH` goes to
/// the shard the subscriber is connected to). With classic pub/sub on a Redis Cluster, `PUBLISH` counts only the
/// receivers connected to the node it was sent to, while the message travels the cluster bus to every other node;
/// a subscriber on another node gets it although the reply is 0, so there only the timeout counts.
struct BusCanary: Sendable {
    /// How long a canary may take to come back.
    let timeout: TimeAmount
    /// Whether a `PUBLISH`/`SPUBLISH` reply of 0 proves that our own subscriber does not listen.
    let repliesCountEveryListener: Bool

    private(set) var sequence: UInt64 = 0
    /// The canary in flight: its sequence number and when it was sent.
    private(set) var outstanding: (sequence: UInt64, sentAt: NIODeadline)?
    private(set) var lastRoundTrip: TimeAmount?
    private(set) var lastReceived: NIODeadline?
    let startedAt: NIODeadline
    /// Set when a canary did not come back (or Redis said nobody listens); cleared by the next good canary.
    private(set) var stalled = false
    private(set) var stalls = 0
    /// Canary publishes that failed in a row (an error or a command timeout: a frozen or overloaded Redis).
    private(set) var failedPublishes = 0
    /// After this many failed publishes in a row the path counts as stalled (health unhealthy), without a
    /// re-subscribe: the subscriber is not shown to be broken, but nothing can be published. One failure alone
    /// proves nothing (a pool reconnecting); with Redis frozen the second comes about two command timeouts in.
    static let failedPublishesToStall = 2

    init(timeout: TimeAmount, repliesCountEveryListener: Bool, now: NIODeadline) {
        self.timeout = timeout
        self.repliesCountEveryListener = repliesCountEveryListener
        startedAt = now
    }

    /// What a tick asks for: force the subscriber to re-subscribe (the outstanding canary timed out while it was
    /// connected), and/or publish canary `send`.
    struct TickActions: Equatable {
        var resubscribe = false
        var send: UInt64?
    }

    /// One interval has passed. `subscriberConnected`/`publisherConnected`: whether the pub/sub connection and the
    /// publishing pool are up (nothing is probed while either is down: the reconnect path reports that outage).
    mutating func tick(now: NIODeadline, subscriberConnected: Bool, publisherConnected: Bool) -> TickActions {
        var actions = TickActions()
        if let outstanding, now - outstanding.sentAt > timeout {
            self.outstanding = nil
            markStalled()
            actions.resubscribe = subscriberConnected
        }
        guard outstanding == nil, subscriberConnected, publisherConnected else { return actions }
        sequence += 1
        outstanding = (sequence, now)
        actions.send = sequence
        return actions
    }

    /// What Redis answered to the canary's publish.
    enum PublishReply: Equatable {
        /// The number of receivers Redis counted.
        case receivers(Int)
        /// An error or a connection failure: this probe proves nothing by itself (see ``failedPublishesToStall``).
        case failed
    }

    /// Redis answered the publish of canary `sequence`; returns true when the subscriber must re-subscribe (Redis
    /// says nobody listens on our own channel, where that count covers our subscriber, while we think we do).
    mutating func published(_ sequence: UInt64, reply: PublishReply, subscriberConnected: Bool) -> Bool {
        switch reply {
        case .receivers(let count):
            failedPublishes = 0
            guard count == 0, repliesCountEveryListener, subscriberConnected,
                outstanding?.sequence == sequence
            else { return false }
            outstanding = nil
            markStalled()
            return true
        case .failed:
            guard outstanding?.sequence == sequence else { return false }
            outstanding = nil
            failedPublishes += 1
            if failedPublishes == Self.failedPublishesToStall { markStalled() }
            return false
        }
    }

    /// Canary `sequence` came back at `now`; returns its round trip, or nil for one that is not outstanding (late,
    /// or already given up).
    mutating func returned(_ sequence: UInt64, now: NIODeadline) -> TimeAmount? {
        guard let outstanding, outstanding.sequence == sequence else { return nil }
        self.outstanding = nil
        let roundTrip = now - outstanding.sentAt
        lastRoundTrip = roundTrip
        lastReceived = now
        stalled = false
        failedPublishes = 0
        return roundTrip
    }

    private mutating func markStalled() {
        stalled = true
        stalls += 1
    }
}
