/// An ``EventBus`` that can record messages in a ``HistoryStore`` and publish them in one indivisible step, so the
/// order in which every subscriber hears a stream's messages is the order of their offsets, whoever published
/// them.
///
/// ``EventBus/publish(_:recordingIn:)`` uses it when the bus offers it for the given store: `RedisEventBus` with a
/// `RedisHistoryStore` on the same client appends and publishes in one Lua script (one round trip), and
/// ``InMemoryEventBus`` with an ``InMemoryHistoryStore`` appends and enqueues under the bus's lock.
public protocol HistoryRecordingEventBus: EventBus {
    /// Records every message whose route has a ``HistoryStream`` in `history` and publishes all of them, each
    /// carrying its ``BusMessage/position``, as one step; returns them as published. Returns `nil`, having done
    /// nothing, when it cannot do both at once with this store (another kind of store, another connection, or
    /// publishes waiting for the backend to return); the caller then records and publishes one after the other.
    ///
    /// - Throws: when a message could not be recorded; it is not published, nor is any after it. An entry over
    ///   ``HistoryConfiguration/maxEntryBytes`` fails the call before anything is recorded. A bus that takes the
    ///   messages one step each and fails part-way (its backend) throws with a ``PartiallyPublished`` as the error's
    ///   `underlying`, naming those it published.
    func recordAndPublish(
        _ messages: [BusMessage],
        in history: any HistoryStore
    ) async throws(RealtimeError) -> [BusMessage]?
}

/// The `underlying` of a ``HistoryRecordingEventBus/recordAndPublish(_:in:)`` error after some of the messages were
/// recorded and published: those, in order, with their positions. The rest were not.
public struct PartiallyPublished: Error, Sendable {
    /// The messages recorded and published before the failure.
    public let published: [BusMessage]

    public init(published: [BusMessage]) { self.published = published }
}

extension EventBus {
    /// Records each message whose route has a ``HistoryStream`` (a user's, the administrators' or everyone's) in
    /// `history`, and publishes every message carrying its ``BusMessage/position``, so subscribers on every server
    /// learn where each live message sits in its stream. Returns the messages as published (positions set), for
    /// the publishing server's own delivery.
    ///
    /// A bus that is a ``HistoryRecordingEventBus`` for this store records and publishes in one step; then a
    /// stream's messages reach every subscriber in offset order. Otherwise each message is appended, then all are
    /// published with ``EventBus/publish(_:)-([BusMessage])``: positions are right, but two servers publishing to one
    /// stream at the same moment may be heard in the other order than their offsets, which a reader merging live
    /// messages with history must allow for (it orders by offset).
    ///
    /// - Throws: when a message could not be recorded (nothing is published then, but messages recorded before it
    ///   stay recorded; the caller may publish without history, e.g. while the backend is down) or when the
    ///   publish failed.
    public func publish(
        _ messages: [BusMessage],
        recordingIn history: any HistoryStore
    ) async throws(RealtimeError) -> [BusMessage] {
        if let bus = self as? any HistoryRecordingEventBus,
            let published = try await bus.recordAndPublish(messages, in: history)
        {
            return published
        }
        var recorded = messages
        for index in recorded.indices where HistoryStream(recorded[index].route) != nil {
            recorded[index].position = try await history.append(recorded[index])
        }
        try await publish(recorded)
        return recorded
    }
}
