/// The user-wide revocations this server applied recently, so that a connection admitted just before a revocation
/// (its admission read the session store before the revocation was written) but activated after the revocation's
/// control message was applied is refused at activation rather than kept. Held in ``HubState`` and read under its
/// lock with the routing indexes, so for each connection either the activation or the revocation comes first: a
/// connection activated first is closed by the revocation, one activated later is refused here.
///
/// An entry is kept for the longest time an admitted connection may take to activate (the upgrade ticket's timeout,
/// twice over), after which the session store's record decides alone. At most ``maxEntries`` users are held; past
/// that the entries closest to their end are dropped first (revocations come from administrators, not outsiders).
struct RecentUserRevocations: Sendable {
    struct Entry: Sendable, Hashable {
        /// Tokens of the user issued before this are refused.
        var issuedBefore: Timestamp
        /// When the entry is forgotten.
        var until: ContinuousClock.Instant
    }

    static let maxEntries = 10_000

    private(set) var entries: [String: Entry] = [:]

    /// Records a revocation of `userID`'s tokens issued before `issuedBefore`, kept until `until` (the later of each
    /// when the user has an entry).
    mutating func note(_ userID: String, issuedBefore: Timestamp, until: ContinuousClock.Instant) {
        if entries[userID] == nil && entries.count >= Self.maxEntries {
            sweep(now: until - .seconds(86_400 * 365))
            if entries.count >= Self.maxEntries, let earliest = entries.min(by: { $0.value.until < $1.value.until }) {
                entries[earliest.key] = nil
            }
        }
        let earlier = entries[userID]
        entries[userID] = Entry(
            issuedBefore: max(issuedBefore, earlier?.issuedBefore ?? issuedBefore),
            until: max(until, earlier?.until ?? until)
        )
    }

    /// Whether a connection with `identity` must be refused at `now`: its user has an entry and the token was issued
    /// before it, or does not say when.
    func refuses(_ identity: VerifiedIdentity, now: ContinuousClock.Instant) -> Bool {
        guard let entry = entries[identity.userID], entry.until > now else { return false }
        return Admission.isRevoked(issuedAt: identity.issuedAt, before: entry.issuedBefore)
    }

    /// Forgets the entries whose time has passed.
    mutating func sweep(now: ContinuousClock.Instant) {
        entries = entries.filter { $0.value.until > now }
    }
}
