import NIOCore
import Testing

@testable import RealtimeRedis

/// The bus subscription's canary as a value, on a manual clock.
@Suite struct BusCanaryTests {
    static let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    static func at(_ milliseconds: Int64) -> NIODeadline { start + .milliseconds(milliseconds) }

    static func canary(countsEveryListener: Bool = true) -> BusCanary {
        BusCanary(timeout: .milliseconds(300), repliesCountEveryListener: countsEveryListener, now: start)
    }

    /// A tick at `milliseconds` with both connections up.
    static func tick(_ canary: inout BusCanary, at milliseconds: Int64) -> BusCanary.TickActions {
        canary.tick(now: at(milliseconds), subscriberConnected: true, publisherConnected: true)
    }

    @Test func aReturnedCanaryMeasuresItsRoundTripAndTheNextTickSendsAnother() {
        var canary = Self.canary()
        let first = Self.tick(&canary, at: 100)
        #expect(first == .init(send: 1))
        let resubscribe = canary.published(1, reply: .receivers(1), subscriberConnected: true)
        #expect(!resubscribe)
        let roundTrip = canary.returned(1, now: Self.at(102))
        #expect(roundTrip == .milliseconds(2))
        #expect(canary.lastReceived == Self.at(102))
        let second = Self.tick(&canary, at: 200)
        #expect(second == .init(send: 2))
        #expect(canary.stalls == 0 && !canary.stalled)
    }

    @Test func aCanaryThatDoesNotComeBackInTimeStallsAndForcesAResubscribe() {
        var canary = Self.canary()
        _ = Self.tick(&canary, at: 100)
        // Within the timeout: wait, send nothing new.
        let waiting = Self.tick(&canary, at: 400)
        #expect(waiting == .init())
        // Past it: stalled, re-subscribe, and probe again at once.
        let late = Self.tick(&canary, at: 401)
        #expect(late == .init(resubscribe: true, send: 2))
        #expect(canary.stalled && canary.stalls == 1)
        // The late first canary proves nothing; the second one clears the stall.
        let stale = canary.returned(1, now: Self.at(402))
        #expect(stale == nil)
        #expect(canary.stalled)
        let fresh = canary.returned(2, now: Self.at(403))
        #expect(fresh == .milliseconds(2))
        #expect(!canary.stalled && canary.stalls == 1)
    }

    @Test func nothingIsProbedWhileDisconnected() {
        var canary = Self.canary()
        let subscriberDown = canary.tick(now: Self.at(100), subscriberConnected: false, publisherConnected: true)
        let publisherDown = canary.tick(now: Self.at(200), subscriberConnected: true, publisherConnected: false)
        #expect(subscriberDown == .init() && publisherDown == .init())
        #expect(canary.outstanding == nil)
        // A timeout noticed while the subscriber is down counts as a stall but asks for no re-subscribe (the
        // reconnect path is already at work).
        _ = Self.tick(&canary, at: 300)
        let timedOut = canary.tick(now: Self.at(700), subscriberConnected: false, publisherConnected: true)
        #expect(timedOut == .init(resubscribe: false, send: nil))
        #expect(canary.stalls == 1)
    }

    @Test func noReceiverWhereTheCountCoversUsMeansTheSubscriptionIsGone() {
        var canary = Self.canary(countsEveryListener: true)
        _ = Self.tick(&canary, at: 100)
        let resubscribe = canary.published(1, reply: .receivers(0), subscriberConnected: true)
        #expect(resubscribe)
        #expect(canary.stalled && canary.stalls == 1 && canary.outstanding == nil)
    }

    /// Classic pub/sub on a Redis Cluster: `PUBLISH` counts only the receivers on the node it was sent to, and the
    /// subscriber may sit on another node (the message reaches it over the cluster bus). Taking that 0 for "nobody
    /// listens" re-subscribed every interval and lost the events of each window.
    @Test func noReceiverOnAClassicClusterIsNotAStall() {
        var canary = Self.canary(countsEveryListener: false)
        _ = Self.tick(&canary, at: 100)
        let resubscribe = canary.published(1, reply: .receivers(0), subscriberConnected: true)
        #expect(!resubscribe)
        #expect(!canary.stalled && canary.outstanding?.sequence == 1)
        let roundTrip = canary.returned(1, now: Self.at(101))
        #expect(roundTrip == .milliseconds(1))
        // There, only the timeout detects a broken path.
        _ = Self.tick(&canary, at: 200)
        let late = Self.tick(&canary, at: 501)
        #expect(late.resubscribe && canary.stalls == 1)
    }

    @Test func aReplyForAnotherCanaryOrWhileDisconnectedChangesNothing() {
        var canary = Self.canary()
        _ = Self.tick(&canary, at: 100)
        let otherCanary = canary.published(7, reply: .receivers(0), subscriberConnected: true)
        let disconnected = canary.published(1, reply: .receivers(0), subscriberConnected: false)
        #expect(!otherCanary && !disconnected)
        #expect(!canary.stalled && canary.outstanding?.sequence == 1)
    }

    @Test func aFailedPublishGivesTheProbeUp() {
        var canary = Self.canary()
        _ = Self.tick(&canary, at: 100)
        let resubscribe = canary.published(1, reply: .failed, subscriberConnected: true)
        #expect(!resubscribe)
        #expect(canary.outstanding == nil && !canary.stalled)
        let next = Self.tick(&canary, at: 200)
        #expect(next == .init(send: 2))
    }

    /// Sixth probe, LOW: with Redis frozen every canary publish failed at the command timeout, before the canary
    /// timeout, so the probe was given up each time and health never turned unhealthy (only `degraded`, for 8 s and
    /// more). Two failures in a row are a stall (no re-subscribe); a returned canary clears it.
    @Test func publishesThatKeepFailingAreAStall() {
        var canary = Self.canary()
        _ = Self.tick(&canary, at: 100)
        let reply1 = canary.published(1, reply: .failed, subscriberConnected: true)
        #expect(!reply1)
        #expect(!canary.stalled)
        // A publish that worked in between starts the count again.
        _ = Self.tick(&canary, at: 200)
        let delivered = canary.published(2, reply: .receivers(1), subscriberConnected: true)
        #expect(!delivered)
        let back = canary.returned(2, now: Self.at(250))
        #expect(back != nil && canary.failedPublishes == 0)
        _ = Self.tick(&canary, at: 300)
        let reply2 = canary.published(3, reply: .failed, subscriberConnected: true)
        #expect(!reply2)
        #expect(!canary.stalled)
        _ = Self.tick(&canary, at: 400)
        // A late failure of a canary no longer outstanding counts nothing.
        let reply3 = canary.published(3, reply: .failed, subscriberConnected: true)
        #expect(!reply3)
        let reply4 = canary.published(4, reply: .failed, subscriberConnected: true)
        #expect(!reply4)
        #expect(canary.stalled && canary.stalls == 1)
        _ = Self.tick(&canary, at: 500)
        let reply5 = canary.published(5, reply: .failed, subscriberConnected: true)
        #expect(!reply5)
        #expect(canary.stalls == 1, "one stall per outage")
        _ = Self.tick(&canary, at: 600)
        let roundTrip = canary.returned(6, now: Self.at(610))
        #expect(roundTrip != nil)
        #expect(!canary.stalled && canary.failedPublishes == 0)
    }
}
