// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import Testing

@testable import RealtimeNIO

/// The connection handler's state machine as a value: events in, actions out, no sockets.
@Suite struct WebSocketConnectionStateMachineTests {
    typealias Machine = WebSocketConnectionStateMachine

    /// A machine whose hub connection is active.
    static func connected() -> Machine {
        var machine = Machine()
        #expect(machine.hubConnected() == [.startOutbound])
        return machine
    }

    // MARK: Close handshake

    @Test func hubInitiatedCloseWaitsForTheClientsReply() {
        var machine = Self.connected()
        #expect(machine.outboundReady() == [.drain])
        #expect(
            machine.closeRequestedByHub(.goingAway, reason: "shutdown")
                == [.sendClose(.goingAway, reason: "shutdown"), .armTimer(.closeHandshake)]
        )
        #expect(machine.drainPassEnded(.finished) == false)
        // The queue ended with the close frame: the socket stays open for the client's reply.
        #expect(machine.drainEnded(.finished) == [])
        // Only the client's close frame is read now.
        #expect(!machine.acceptsFrame(isClose: false))
        #expect(machine.acceptsFrame(isClose: true))
        #expect(machine.closeFrameReceived(.normal) == [.cancelTimer(.closeHandshake), .dropSocket])
        #expect(!machine.acceptsFrame(isClose: true))
        #expect(machine.closeTimerFired() == [])
        // The server's code is the one reported.
        #expect(machine.channelInactive() == [.reportClosed(.goingAway)])
    }

    @Test func hubInitiatedCloseTimesOut() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.closeRequestedByHub(CloseCode(4001), reason: "revoked")
        _ = machine.drainEnded(.finished)
        #expect(machine.closeTimerFired() == [.dropSocket])
        // Fired once: a late second firing does nothing.
        #expect(machine.closeTimerFired() == [])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(4001))])
    }

    @Test func clientInitiatedCloseIsEchoedAndDropped() {
        var machine = Self.connected()
        #expect(machine.acceptsFrame(isClose: true))
        #expect(machine.closeFrameReceived(CloseCode(4000)) == [.sendCloseThenDrop(CloseCode(4000), reason: "")])
        // Nothing more is read after the client's close frame, not even another close.
        #expect(!machine.acceptsFrame(isClose: false))
        #expect(!machine.acceptsFrame(isClose: true))
        #expect(machine.closeFrameReceived(.normal) == [])
        // The hub's own close frame, drained later, is not sent: one close frame per direction.
        _ = machine.outboundReady()
        #expect(machine.closeRequestedByHub(.goingAway, reason: "shutdown") == [])
        // The queue finished but a close was exchanged: the pending drop is the echo's, not the drain's.
        #expect(machine.drainEnded(.finished) == [])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(4000))])
    }

    @Test func clientCloseWithoutCodeIsEchoedAsNormal() {
        var machine = Self.connected()
        #expect(machine.closeFrameReceived(CloseCode(1005)) == [.sendCloseThenDrop(.normal, reason: "")])
        // The hub hears the code the client sent: none.
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1005))])
    }

    @Test func bothSidesCloseAtOnce() {
        // The hub's close frame went out; the client's, sent before it saw ours, crosses it.
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.closeRequestedByHub(.goingAway, reason: "shutdown")
        _ = machine.drainEnded(.finished)
        #expect(machine.closeFrameReceived(.normal) == [.cancelTimer(.closeHandshake), .dropSocket])
        #expect(machine.channelInactive() == [.reportClosed(.goingAway)])

        // The client's close frame arrived first; the hub's close, queued meanwhile, is skipped.
        var other = Self.connected()
        _ = other.closeFrameReceived(.normal)
        _ = other.outboundReady()
        #expect(other.closeRequestedByHub(.goingAway, reason: "shutdown") == [])
        #expect(other.drainEnded(.finished) == [])
        #expect(other.channelInactive() == [.reportClosed(.normal)])
    }

    @Test func queueFinishedWithoutACloseFrameDropsTheSocket() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        #expect(machine.drainEnded(.finished) == [.dropSocket])
        // Nothing is drained after the queue finished.
        #expect(machine.outboundReady() == [])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1006))])
    }

    @Test func protocolViolationClosesOnce() {
        var machine = Self.connected()
        #expect(
            machine.protocolViolation(CloseCode(1002), reason: "reserved bits set")
                == [.sendCloseThenDrop(CloseCode(1002), reason: "reserved bits set")]
        )
        // Only the client's close frame is read after ours.
        #expect(!machine.acceptsFrame(isClose: false))
        #expect(machine.protocolViolation(CloseCode(1007), reason: "text is not valid UTF-8") == [])
        // A reply to the violation's close frame: no echo, the socket is being dropped anyway.
        #expect(machine.closeFrameReceived(.normal) == [.dropSocket])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1002))])
    }

    @Test func decoderRejectionRecordsTheCodeOnly() {
        var machine = Self.connected()
        machine.decoderRejectedFrame(CloseCode(1009))
        machine.decoderRejectedFrame(CloseCode(1002))
        #expect(machine.closeSent == CloseCode(1009))
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1009))])
    }

    @Test func hubRefusalClosesWith1011UnlessTheSocketIsGone() {
        var machine = Machine()
        #expect(machine.hubRefused() == [.sendCloseThenDrop(CloseCode(1011), reason: "server unavailable")])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1011))])

        var gone = Machine()
        _ = gone.channelInactive()
        #expect(gone.hubRefused() == [])
        // The hub connected after the socket went away: no writing; the pump reports the close.
        #expect(gone.hubConnected() == [])
        #expect(gone.outboundReady() == [])
    }

    @Test func abruptDisconnectReports1006() {
        var machine = Self.connected()
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1006))])
        #expect(!machine.acceptsFrame(isClose: true))
    }

    // MARK: reportClosed exactly once

    @Test func closeIsReportedExactlyOnce() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.closeRequestedByHub(.goingAway, reason: "")
        _ = machine.drainEnded(.more)
        // Both timers armed: the first inactive event cancels both and reports.
        #expect(
            machine.channelInactive()
                == [.cancelTimer(.closeHandshake), .cancelTimer(.writeStall), .reportClosed(.goingAway)]
        )
        // channelInactive and handlerRemoved both end the connection: the second changes nothing.
        #expect(machine.channelInactive() == [])
        // Events after the end do nothing either.
        #expect(machine.closeTimerFired() == [])
        #expect(machine.writeStallTimerFired() == [])
        #expect(machine.writabilityChanged(isWritable: true) == [])
        #expect(machine.closeFrameReceived(.normal) == [])
        #expect(machine.hubRefused() == [])
    }

    // MARK: Drain

    @Test func oneDrainAtATime() {
        var machine = Self.connected()
        #expect(machine.outboundReady() == [.drain])
        // A wake-up during the drain asks for another pass instead of a nested drain.
        #expect(machine.outboundReady() == [])
        #expect(machine.drainPassEnded(.idle) == true)
        // Consumed: no third pass.
        #expect(machine.drainPassEnded(.idle) == false)
        #expect(machine.drainEnded(.idle) == [])
        #expect(machine.outboundReady() == [.drain])
    }

    @Test func noExtraPassAfterTheQueueFinished() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.outboundReady()
        #expect(machine.drainPassEnded(.finished) == false)
    }

    @Test func nothingToDrainBeforeTheHubConnected() {
        var machine = Machine()
        #expect(machine.outboundReady() == [])
        #expect(machine.writabilityChanged(isWritable: true) == [])
    }

    // MARK: Write stall

    @Test func writeStallTimerRunsOnlyWhileUnwritable() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        // Frames left behind, channel not writable: arm once.
        #expect(machine.drainEnded(.more) == [.armTimer(.writeStall)])
        #expect(machine.writabilityChanged(isWritable: false) == [])
        #expect(machine.outboundReady() == [.drain])
        #expect(machine.drainEnded(.more) == [])
        // Writable again: cancel and drain.
        #expect(machine.writabilityChanged(isWritable: true) == [.cancelTimer(.writeStall), .drain])
        #expect(machine.drainEnded(.idle) == [])
        #expect(machine.writeStallTimerFired() == [])
    }

    @Test func writeStallDropsTheSocket() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.drainEnded(.more)
        #expect(machine.writeStallTimerFired() == [.dropSocket])
        #expect(machine.writeStallTimerFired() == [])
        #expect(machine.channelInactive() == [.reportClosed(CloseCode(1006))])
    }

    @Test func writableDuringADrainCancelsTheStallAndAsksForAnotherPass() {
        var machine = Self.connected()
        _ = machine.outboundReady()
        _ = machine.drainEnded(.more)
        #expect(machine.outboundReady() == [.drain])
        // The drain's flush made the channel writable: re-entered while the drain still runs.
        #expect(machine.writabilityChanged(isWritable: true) == [.cancelTimer(.writeStall)])
        #expect(machine.drainPassEnded(.more) == true)
        #expect(machine.drainPassEnded(.idle) == false)
        #expect(machine.drainEnded(.idle) == [])
    }

    // MARK: Pongs

    @Test func pingsAreAnsweredAtOnceWhileWritable() {
        var machine = Self.connected()
        #expect(machine.pingReceived() == [.sendPong])
        #expect(machine.pingReceived() == [.sendPong])
    }

    @Test func aClientThatPingsWithoutReadingIsOwedOnePongAndDroppedIfItNeverReads() {
        var machine = Self.connected()
        #expect(machine.writabilityChanged(isWritable: false) == [])
        // However many pings: one pong owed (for the latest), the stall timer armed once.
        #expect(machine.pingReceived() == [.armTimer(.writeStall)])
        for _ in 0..<1000 { #expect(machine.pingReceived() == []) }
        #expect(machine.writeStallTimerFired() == [.dropSocket])
    }

    @Test func theOwedPongGoesOutOnceTheChannelIsWritableAgain() {
        var machine = Self.connected()
        _ = machine.writabilityChanged(isWritable: false)
        _ = machine.pingReceived()
        _ = machine.pingReceived()
        #expect(machine.writabilityChanged(isWritable: true) == [.cancelTimer(.writeStall), .sendPong, .drain])
        _ = machine.drainEnded(.idle)
        #expect(machine.writabilityChanged(isWritable: true) == [.drain], "the pong was owed once")
        _ = machine.drainEnded(.idle)
        // With frames left behind as well, one stall timer covers both.
        _ = machine.writabilityChanged(isWritable: false)
        _ = machine.outboundReady()
        #expect(machine.drainEnded(.more) == [.armTimer(.writeStall)])
        #expect(machine.pingReceived() == [])
        #expect(machine.writabilityChanged(isWritable: true) == [.cancelTimer(.writeStall), .sendPong, .drain])
    }

    @Test func noPongAfterACloseFrameOrTheEnd() {
        var machine = Self.connected()
        _ = machine.writabilityChanged(isWritable: false)
        _ = machine.pingReceived()
        _ = machine.closeFrameReceived(.normal)
        #expect(machine.pingReceived() == [])
        #expect(!machine.writabilityChanged(isWritable: true).contains(.sendPong), "the close frame went last")
        _ = machine.writabilityChanged(isWritable: false)
        _ = machine.channelInactive()
        #expect(machine.writabilityChanged(isWritable: true) == [])
    }

    // MARK: Read back-pressure

    @Test func readingPausesAboveTheHighWatermarkAndResumesAtTheLowOne() {
        var machine = Self.connected()
        for pending in 1...Machine.highWatermark {
            #expect(machine.inboundQueued(pending: pending) == [])
        }
        #expect(machine.readRequested() == [.read])
        #expect(
            machine.inboundQueued(pending: Machine.highWatermark + 1)
                == [.pauseReading(resumeAtOrBelow: Machine.lowWatermark)]
        )
        // Paused once: more messages (already read) do not pause again.
        #expect(machine.inboundQueued(pending: Machine.highWatermark + 2) == [])
        // The read is withheld.
        #expect(machine.readRequested() == [])
        #expect(machine.readPaused)
        // Above the low watermark nothing resumes.
        #expect(machine.inboundDrained(pending: Machine.lowWatermark + 1) == [])
        // At it the withheld read goes out, once.
        #expect(machine.inboundDrained(pending: Machine.lowWatermark) == [.read])
        #expect(!machine.readPaused)
        #expect(machine.inboundDrained(pending: 0) == [])
        #expect(machine.readRequested() == [.read])
    }

    @Test func resumingWithoutAWithheldReadReadsNothing() {
        var machine = Self.connected()
        _ = machine.inboundQueued(pending: Machine.highWatermark + 1)
        #expect(machine.inboundDrained(pending: 0) == [])
        #expect(!machine.readPaused)
        #expect(machine.readRequested() == [.read])
    }

    @Test func readingPausesAgainAfterAResume() {
        var machine = Self.connected()
        _ = machine.inboundQueued(pending: Machine.highWatermark + 1)
        _ = machine.inboundDrained(pending: Machine.lowWatermark)
        #expect(
            machine.inboundQueued(pending: Machine.highWatermark + 1)
                == [.pauseReading(resumeAtOrBelow: Machine.lowWatermark)]
        )
    }

    // MARK: Actions

    @Test func actionsKeepTheirOrder() {
        var actions = Machine.Actions()
        #expect(actions.isEmpty)
        actions.append(.dropSocket)
        actions.append(contentsOf: [.read, .reportClosed(.normal)])
        #expect(Array(actions) == [.dropSocket, .read, .reportClosed(.normal)])
        #expect(actions == [.dropSocket, .read, .reportClosed(.normal)])
        #expect(actions != [.read, .dropSocket, .reportClosed(.normal)])
    }
}
