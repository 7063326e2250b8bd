extension InMemoryEventBus: HistoryRecordingEventBus {
    /// With an ``InMemoryHistoryStore``, appends each message to its stream and publishes it under the bus's lock:
    /// every subscription hears a stream's messages in offset order. `nil` for any other store.
    public func recordAndPublish(
        _ messages: [BusMessage],
        in history: any HistoryStore
    ) async throws(RealtimeError) -> [BusMessage]? {
        guard let store = history as? InMemoryHistoryStore else { return nil }
        return try publish(messages) { (messages: inout [BusMessage]) throws(RealtimeError) in
            try store.record(&messages)
        }
    }
}
