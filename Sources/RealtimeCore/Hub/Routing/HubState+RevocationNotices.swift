/// A revocation's `session.revoked` event carried by the command that closes the session (``RevocationNotice``):
/// queued for each connection the close ends, exactly once, whichever of the event's route copy and the command
/// arrives first.
extension HubState {
    /// A `session.revoked` event given to a connection: queued, or held in its recovery seam (`held`), where it is
    /// not sent yet and is lost if the connection is closed before the recovery ends.
    struct NoticeMark: Sendable, Equatable {
        let eventID: String
        var held: Bool
    }

    /// The frames of a ``RevocationNotice``: its event on the user's route and on the administrators' route, each
    /// with its position in that route's stream (when recorded), and the same without a position (for a connection
    /// whose recovery the close cuts short).
    struct NoticeFrames {
        let userFrame: OutboundFrame
        let adminsFrame: OutboundFrame
        let userFrameWithoutPosition: OutboundFrame
        let adminsFrameWithoutPosition: OutboundFrame
    }

    /// A replayed event was queued for connection `id`: a `session.revoked` one counts as given (see
    /// ``deliverNotice(_:frames:to:effects:)``).
    mutating func replayed(_ event: RealtimeEvent, to id: ConnectionID) {
        guard event.type == .sessionRevoked, let index = slotByID[id] else { return }
        markNotice(event.id, at: index, held: false)
    }

    /// Queues a revocation's `session.revoked` event for connections its close is about to end, right before the
    /// close: for each of `cores` that live delivery would have given the event (``wouldDeliver(_:key:route:to:)``
    /// on the user's route, or the administrators' route for an administrator connection) and that has not been
    /// given it already (the event's own route may have arrived first). Returns how many were queued; a queue that
    /// overflowed is in `effects.overflowed`.
    ///
    /// A connection still recovering is closed before its replay ends: its seam is ended (its held frames, a held
    /// copy of this event among them, will not be sent, and the recovery sends no `recovered` answer), and the event
    /// goes straight to its queue without a position, so the client's stored position does not move past events the
    /// unfinished replay never delivered.
    mutating func deliverNotice(
        _ notice: RevocationNotice,
        frames: NoticeFrames,
        to cores: [ConnectionCore],
        effects: inout FanOutEffects
    ) -> Int {
        guard case .user(let userID) = notice.event.scope else { return 0 }
        let key = matchKey(notice.event.type)
        let stamp = nextStamp()
        var delivered = 0
        for core in cores {
            guard let index = slotByID[core.id], let slot = slots[index] else { continue }
            // Given already, and not merely held in a seam: once is enough.
            if let mark = slot.lastRevocationNotice, mark.eventID == notice.event.id, !mark.held { continue }
            let route: BusRoute = slot.isAdmin ? .admins : .user(userID)
            guard wouldDeliver(notice.event, key: key, route: route, to: core.id) else { continue }
            let recovering = fanOutEntries[index].recovering
            if recovering { endSeam(at: index) }
            let frame =
                switch (slot.isAdmin, recovering) {
                case (true, false): frames.adminsFrame
                case (true, true): frames.adminsFrameWithoutPosition
                case (false, false): frames.userFrame
                case (false, true): frames.userFrameWithoutPosition
                }
            let position = slot.isAdmin ? notice.adminsStreamPosition : notice.userStreamPosition
            let queued = enqueue(
                frame,
                at: index,
                stamp: stamp,
                recorded: recovering ? nil : position.map { (stream: HistoryStream(route), position: $0) },
                bypassingSeam: recovering,
                effects: &effects
            )
            if queued > 0 { markNotice(notice.event.id, at: index, held: false) }
            delivered += queued
        }
        return delivered
    }
}
