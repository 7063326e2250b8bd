/// Polls `condition` until it holds or `timeout` passes (for things with no event to await, such as a reconnect
/// after its backoff or a key's expiry).
///
/// The default timeout is a hang guard, not a timing requirement: it is generous because CI runs every suite in
/// parallel on two cores. A test that asserts a deadline passes it explicitly (e.g. `timeout: .seconds(2)`).
/// Poll only for states that last: a transient state (a connection down for one 10 ms backoff) can be missed
/// between two polls; observe what it leaves behind instead (a reconnect counter, a new client id).
public func eventually(
    timeout: Duration = .seconds(20),
    _ condition: () async throws -> Bool
) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}
