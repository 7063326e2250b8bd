/// A subscription pattern over ``EventType``s.
///
/// - An exact type (`authentication.login.success`) matches that type.
/// - A trailing `*` matches every type below the prefix: `authentication.*` matches
///   `authentication.login.success` and `authentication.logout`, but not `authentication` itself.
/// - A `*` in the middle matches exactly one segment: `authentication.*.failure` matches
///   `authentication.login.failure`.
/// - `*` alone matches every type.
///
/// Segments are either `*` or made of `a-z A-Z 0-9 _ -`; a pattern is at most ``EventType/maxLength`` bytes
/// and ``EventType/maxSegments`` segments long.
public struct EventPattern: Hashable, Sendable, CustomStringConvertible {
    enum Segment: Hashable, Sendable {
        case literal(String)
        case wildcard
    }

    /// The pattern as the client wrote it.
    public let rawValue: String
    /// The segments before a trailing wildcard (all segments if there is none).
    let segments: [Segment]
    /// Whether the pattern ends in `*` (matches one or more further segments).
    let isPrefix: Bool

    /// Why a pattern was refused.
    public enum ValidationError: Error, Sendable, Hashable {
        case empty
        case tooLong
        case tooManySegments
        case invalidSegment(String)
    }

    /// Parses and validates a pattern.
    public init(validating rawValue: String) throws(ValidationError) {
        guard !rawValue.isEmpty else { throw .empty }
        guard rawValue.utf8.count <= EventType.maxLength else { throw .tooLong }
        let parts = rawValue.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= EventType.maxSegments else { throw .tooManySegments }
        var segments: [Segment] = []
        segments.reserveCapacity(parts.count)
        for part in parts {
            if part == "*" {
                segments.append(.wildcard)
                continue
            }
            guard !part.isEmpty, part.utf8.count <= 64, part.utf8.allSatisfy(EventType.isSegmentByte) else {
                throw .invalidSegment(String(part.prefix(64)))
            }
            segments.append(.literal(String(part)))
        }
        self.rawValue = rawValue
        if segments.last == .wildcard {
            segments.removeLast()
            self.isPrefix = true
        } else {
            self.isPrefix = false
        }
        self.segments = segments
    }

    public var description: String { rawValue }

    /// Whether the pattern is `*` (everything).
    public var matchesEverything: Bool { isPrefix && segments.isEmpty }

    /// Whether the pattern matches `type`.
    public func matches(_ type: EventType) -> Bool {
        matches(MatchKey(type))
    }

    func matches(_ key: MatchKey) -> Bool {
        let typeSegments = key.segments
        if isPrefix {
            guard typeSegments.count > segments.count else { return false }
        } else {
            guard typeSegments.count == segments.count else { return false }
        }
        for (index, segment) in segments.enumerated() {
            if case .literal(let literal) = segment, literal != typeSegments[index] { return false }
        }
        return true
    }

    /// Whether any type this pattern matches could be in the category `category` (first segment).
    func canMatch(category: String) -> Bool {
        guard let first = segments.first else { return true }
        if case .literal(let literal) = first { return literal == category }
        return true
    }

    /// Whether every type this pattern can match lies in one of `categories`.
    func isConfined(to categories: Set<String>) -> Bool {
        guard let first = segments.first, case .literal(let literal) = first else { return false }
        return categories.contains(literal)
    }
}

/// An event type split once per published event, so matching against many connections allocates nothing.
struct MatchKey: Sendable {
    let type: EventType
    /// The type's segments.
    let segments: [String]
    /// `prefixes[i]` is the type's first `i + 1` segments joined by dots.
    let prefixes: [String]

    init(_ type: EventType) {
        self.type = type
        let parts = type.rawValue.split(separator: ".", omittingEmptySubsequences: false)
        self.segments = parts.map(String.init)
        var prefixes: [String] = []
        prefixes.reserveCapacity(parts.count)
        var utf8Index = type.rawValue.startIndex
        for part in parts {
            utf8Index = part.endIndex
            prefixes.append(String(type.rawValue[..<utf8Index]))
        }
        self.prefixes = prefixes
    }
}

/// The patterns of one connection, arranged so that matching costs a few hash lookups, not one comparison
/// per pattern.
struct ConnectionPatterns: Sendable {
    /// In subscription order, for `get_subscriptions`.
    private(set) var ordered: [EventPattern] = []
    private var all: Set<String> = []
    private var matchAll = 0
    private var exact: Set<String> = []
    /// Prefix patterns without inner wildcards, keyed by their literal prefix (`a.b` for `a.b.*`).
    private var prefixes: Set<String> = []
    /// Patterns with a wildcard before the last segment (rare): matched one by one.
    private var complex: [EventPattern] = []

    var count: Int { ordered.count }
    var isEmpty: Bool { ordered.isEmpty }

    func contains(_ pattern: EventPattern) -> Bool { all.contains(pattern.rawValue) }

    /// Adds a pattern; returns false if it was there already.
    mutating func insert(_ pattern: EventPattern) -> Bool {
        guard all.insert(pattern.rawValue).inserted else { return false }
        ordered.append(pattern)
        if pattern.matchesEverything {
            matchAll += 1
        } else if let literal = pattern.literalPath {
            if pattern.isPrefix { prefixes.insert(literal) } else { exact.insert(literal) }
        } else {
            complex.append(pattern)
        }
        return true
    }

    /// Removes a pattern; returns false if it was not there.
    mutating func remove(_ pattern: EventPattern) -> Bool {
        guard all.remove(pattern.rawValue) != nil else { return false }
        ordered.removeAll { $0.rawValue == pattern.rawValue }
        if pattern.matchesEverything {
            matchAll -= 1
        } else if let literal = pattern.literalPath {
            if pattern.isPrefix { prefixes.remove(literal) } else { exact.remove(literal) }
        } else {
            complex.removeAll { $0.rawValue == pattern.rawValue }
        }
        return true
    }

    func matches(_ key: MatchKey) -> Bool {
        if matchAll > 0 { return true }
        if exact.contains(key.type.rawValue) { return true }
        if !prefixes.isEmpty {
            // A prefix pattern needs at least one segment below it: try every proper prefix of the type.
            for index in 0..<(key.prefixes.count - 1) where prefixes.contains(key.prefixes[index]) { return true }
        }
        for pattern in complex where pattern.matches(key) { return true }
        return false
    }
}

extension EventPattern {
    /// The pattern's literal segments joined by dots, if none of them is a wildcard.
    var literalPath: String? {
        var parts: [String] = []
        for segment in segments {
            guard case .literal(let literal) = segment else { return nil }
            parts.append(literal)
        }
        return parts.joined(separator: ".")
    }
}
