public import RealtimeCore

/// Why `verifier` refuses `token`, or nil when it accepts it: for tests of any `TokenVerifier`.
public func refusalReason(
    of token: String,
    by verifier: some TokenVerifier
) async -> TokenVerificationError.Reason? {
    do {
        _ = try await verifier.verify(token)
        return nil
    } catch {
        return error.reason
    }
}
