// SPDX-License-Identifier: Apache-2.0

import RealtimeCore

/// How events are published in one phase of a run.
enum PublishMode: String, Sendable, CaseIterable {
    /// Every publisher lane sends its events back to back, one request in flight per lane.
    case burst
    /// Events are due at a fixed rate (`--rate` per second) across all lanes.
    case rate
    /// Like `burst`, but every request carries `--batch-size` events through `POST /api/v1/events/batch`
    /// (realtime-server only: Nchan's HTTP publisher takes one message per request).
    case batch
}

/// Which server the generator drives: the same clients, the same plan and the same verdict for both.
enum LoadTarget: String, Sendable, CaseIterable {
    /// `realtime-server`: authenticated `/ws/events` clients that subscribe, events through `POST /api/v1/events`.
    case realtime
    /// Nchan (nginx + `libnginx-mod-nchan`) as the reference: WebSocket subscribers on `/sub?id=<channel>`, the
    /// event frame (the exact JSON `realtime-server` would send) published as the body of `POST /pub?id=<channel>`.
    /// Every event goes to every subscriber: Nchan has no per-user scope here.
    case nchan
}

/// Who receives what: the whole publishing plan, fixed before the first event is sent, so every client can tell
/// an expected delivery from a leak, and the end of the run can count losses exactly.
struct Plan: Sendable {
    struct Phase: Sendable {
        let mode: PublishMode
        /// The global sequence numbers of this phase's events.
        let range: Range<Int>
    }

    /// A random tag carried in every event's `data`, so events of other runs or of the hub itself are told apart.
    let runID: String
    let phases: [Phase]
    /// For each sequence number: `-1` for an event to everyone, otherwise the index of the user it is addressed to.
    let targets: [Int32]
    /// HTTP connections publishing in parallel; sequence number `s` of a phase starting at `p` goes through lane
    /// `(s - p) % lanes`, and order is only guaranteed within a lane.
    let lanes: Int
    /// Whether the clients' patterns match the event type (the same patterns for every client).
    let patternsMatch: Bool
    let eventType: String
    /// `"lgRun":"<runID>"`, searched for in every event frame.
    let marker: [UInt8]
    let target: LoadTarget
    /// The Nchan channel id (`target == .nchan`).
    let nchanChannel: String
    /// The size every delivered event frame is padded to (0: no padding).
    let frameBytes: Int

    var eventCount: Int { targets.count }

    init(
        runID: String,
        modes: [PublishMode],
        eventsPerPhase: Int,
        userPercent: Int,
        users: Int,
        lanes: Int,
        eventType: String,
        patterns: [EventPattern],
        seed: UInt64,
        target: LoadTarget = .realtime,
        nchanChannel: String = "",
        frameBytes: Int = 0
    ) {
        self.runID = runID
        self.target = target
        self.nchanChannel = nchanChannel
        self.frameBytes = frameBytes
        self.lanes = lanes
        self.eventType = eventType
        self.patternsMatch = patterns.contains { $0.matches(EventType(eventType)) }
        self.marker = Array("\"lgRun\":\"\(runID)\"".utf8)
        var phases: [Phase] = []
        var targets: [Int32] = []
        targets.reserveCapacity(modes.count * eventsPerPhase)
        var random = SplitMix64(seed: seed)
        for mode in modes {
            let start = targets.count
            for _ in 0..<eventsPerPhase {
                if users > 0 && Int(random.next() % 100) < userPercent {
                    targets.append(Int32(random.next() % UInt64(users)))
                } else {
                    targets.append(-1)
                }
            }
            phases.append(Phase(mode: mode, range: start..<targets.count))
        }
        self.phases = phases
        self.targets = targets
    }

    /// The event of sequence number `sequence` as the server fans it out: its `data` carries the run tag, the
    /// sequence, the lane and the send time, padded so that the frame every client receives is `frameBytes` long.
    func event(sequence: Int, lane: Int, sentNanos: UInt64) -> RealtimeEvent {
        let target = targets[sequence]
        let scope: EventScope = target >= 0 ? .user("lg-u\(target)") : .everyone
        var data: JSONObject = [
            "lgRun": .string(runID),
            "lgSeq": .int(Int64(sequence)),
            "lgLane": .int(Int64(lane)),
            "lgSent": .int(Int64(sentNanos)),
        ]
        var event = RealtimeEvent(
            type: EventType(eventType),
            userID: target >= 0 ? "lg-u\(target)" : nil,
            data: data,
            scope: scope
        )
        if frameBytes > 0 {
            // `,"pad":""` is 9 bytes; the rest of the frame is measured, not guessed.
            let unpadded = RealtimeHub.encodeForBenchmark(event).utf8.count
            data["pad"] = .string(String(repeating: "x", count: max(0, frameBytes - unpadded - 9)))
            event.data = data
        }
        return event
    }

    func phase(of sequence: Int) -> Int {
        for (index, phase) in phases.enumerated() where phase.range.contains(sequence) { return index }
        return phases.count - 1
    }

    func lane(of sequence: Int) -> Int {
        (sequence - phases[phase(of: sequence)].range.lowerBound) % lanes
    }

    /// Whether a client (user index `user`, or an administrator) must receive event `sequence`, following the
    /// hub's visibility rules: its patterns match, and the event is for everyone or for its user; administrators
    /// see user-scoped events of every user.
    func expects(user: Int, isAdmin: Bool, sequence: Int) -> Bool {
        guard patternsMatch else { return false }
        if isAdmin { return true }
        let target = targets[sequence]
        return target < 0 || Int(target) == user
    }
}

/// A small deterministic generator (SplitMix64) for the plan's targets.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Byte-level scanning of server frames: the generator must keep up with the server, so it does not parse JSON.
enum FrameScan {
    /// The offset of the first occurrence of `needle` in `haystack`, if any.
    static func find(_ needle: [UInt8], in haystack: UnsafeRawBufferPointer, from start: Int = 0) -> Int? {
        let count = needle.count
        guard count > 0, haystack.count >= count else { return nil }
        let first = needle[0]
        var index = start
        let last = haystack.count - count
        while index <= last {
            if haystack[index] == first {
                var matched = 1
                while matched < count && haystack[index + matched] == needle[matched] { matched += 1 }
                if matched == count { return index }
            }
            index += 1
        }
        return nil
    }

    /// The non-negative integer right after `key` (which ends with `:`), if any.
    static func integer(after key: [UInt8], in haystack: UnsafeRawBufferPointer) -> Int? {
        guard let at = find(key, in: haystack) else { return nil }
        var index = at + key.count
        var value = 0
        var digits = 0
        while index < haystack.count, digits < 19 {
            let byte = haystack[index]
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { break }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        return digits > 0 ? value : nil
    }

    /// The value of the first `"type":"…"` member (the message type; for events the outer `event`).
    static func messageType(in haystack: UnsafeRawBufferPointer) -> String? {
        guard let at = find(typeKey, in: haystack) else { return nil }
        let start = at + typeKey.count
        var end = start
        while end < haystack.count, end - start < 64, haystack[end] != UInt8(ascii: "\"") { end += 1 }
        return String(decoding: UnsafeRawBufferPointer(rebasing: haystack[start..<end]), as: UTF8.self)
    }

    static let typeKey = Array(#""type":""#.utf8)
    static let eventPrefix = Array(#"{"type":"event","#.utf8)
    static let sequenceKey = Array(#""lgSeq":"#.utf8)
    static let sentKey = Array(#""lgSent":"#.utf8)

    static func hasPrefix(_ prefix: [UInt8], _ haystack: UnsafeRawBufferPointer) -> Bool {
        guard haystack.count >= prefix.count else { return false }
        for index in 0..<prefix.count where haystack[index] != prefix[index] { return false }
        return true
    }
}
