/// The one rule for user and session ids, wherever they enter: token claims (admission), published events, the
/// hub's operator calls, and hosts' HTTP APIs.
///
/// An id is 1 to ``maxBytes`` UTF-8 bytes, has no control characters and is in Unicode Normalization Form C.
/// The last matters for isolation: Swift compares `String`s by canonical equivalence, so `"Kate"` and `"\u{212A}ate"`
/// (KELVIN SIGN) are the same dictionary key, and without the rule a token for one would receive the other's events,
/// notifications and history. Two different ids that are both in NFC are never canonically equivalent, so with every
/// id in NFC, string equality is byte equality. Every ASCII id is in NFC.
public enum IdentifierPolicy {
    /// The longest user or session id, in UTF-8 bytes.
    public static let maxBytes = 256

    /// Why `id` cannot be a user or session id, or `nil` when it can.
    public static func problem(with id: String) -> String? {
        if id.isEmpty { return "is empty" }
        if id.utf8.count > maxBytes { return "is longer than \(maxBytes) bytes" }
        var isASCII = true
        for scalar in id.unicodeScalars {
            if scalar.properties.generalCategory == .control { return "contains control characters" }
            if !scalar.isASCII { isASCII = false }
        }
        // `_nfcCodeUnits` is the standard library's public NFC form (the one its comparisons use; swift-foundation's
        // normalization calls it too).
        if !isASCII && !id.utf8.elementsEqual(id._nfcCodeUnits) { return "is not in Unicode Normalization Form C" }
        return nil
    }

    /// Throws ``RealtimeError/Code/invalidArgument`` naming `name` when `id` cannot be a user or session id.
    static func require(_ id: String, _ name: String) throws(RealtimeError) {
        if let problem = problem(with: id) {
            throw RealtimeError(.invalidArgument, "\(name) \(problem)")
        }
    }
}
