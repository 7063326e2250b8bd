// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// The text the run prints at the end.
struct Report {
    private(set) var text = ""

    mutating func line(_ line: String) {
        if !text.isEmpty { text += "\n" }
        text += line
    }

    mutating func append(_ more: String) { text += more }

    static func seconds(of duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func seconds(_ value: Double) -> String {
        value < 10 ? String(format3(value)) + " s" : String(Int(value.rounded())) + " s"
    }

    static func rate(_ count: Int, _ seconds: Double) -> String {
        guard seconds > 0 else { return "n/a" }
        let value = Double(count) / seconds
        return value >= 10_000 ? grouped(Int(value.rounded())) : format3(value)
    }

    /// Nanoseconds as µs or ms.
    static func duration(_ nanos: UInt64) -> String {
        if nanos < 1_000_000 { return format3(Double(nanos) / 1000) + " µs" }
        if nanos < 10_000_000_000 { return format3(Double(nanos) / 1_000_000) + " ms" }
        return format3(Double(nanos) / 1e9) + " s"
    }

    static func bytes(_ value: Double) -> String {
        value < 10_240 ? "\(Int(value.rounded())) B" : format3(value / 1024) + " KiB"
    }

    /// Three decimals, no digit grouping (machine-readable lines), without Foundation.
    static func plain(_ value: Double) -> String {
        guard value.isFinite else { return "nan" }
        let thousandths = Int((abs(value) * 1000).rounded())
        var fraction = String(thousandths % 1000)
        while fraction.count < 3 { fraction = "0" + fraction }
        return (value < 0 ? "-" : "") + "\(thousandths / 1000).\(fraction)"
    }

    /// Three significant digits, without Foundation.
    static func format3(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        if value >= 1000 { return grouped(Int(value.rounded())) }
        let decimals = value >= 100 ? 0 : value >= 10 ? 1 : 2
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = Int((value * scale).rounded())
        if decimals == 0 { return String(scaled) }
        let integer = scaled / Int(scale)
        var fraction = String(scaled % Int(scale))
        while fraction.count < decimals { fraction = "0" + fraction }
        return "\(integer).\(fraction)"
    }

    static func grouped(_ value: Int) -> String {
        var digits = String(value)
        var result = ""
        while digits.count > 3 {
            result = "," + digits.suffix(3) + result
            digits.removeLast(3)
        }
        return digits + result
    }
}

/// Per-client verdicts summed over the clients of one or all event loops.
struct ClientTotals: Sendable {
    var clients = 0
    var lost = 0
    var clientsWithLoss = 0
    var duplicates = 0
    var outOfOrder = 0
    var unexpected = 0
    var gaps = 0
    var errors = 0
    var pings = 0
    var foreignEvents = 0
    var closeCodes: [Int: Int] = [:]
    var other: [String: Int] = [:]
    var errorSamples: [String] = []

    /// Reports the verdict; returns the failures it found (losses, duplicates, reordering, leaks, closes).
    func report(closedByServer: Int, into report: inout Report) -> [String] {
        report.line(
            "verdict over \(clients) ready clients: lost \(lost) (in \(clientsWithLoss) clients), "
                + "duplicated \(duplicates), out of order \(outOfOrder), unexpected \(unexpected); "
                + "closed by the server \(closedByServer)"
                + (closeCodes.isEmpty
                    ? ""
                    : " (codes "
                        + closeCodes.sorted { $0.key < $1.key }.map { "\($0)×\($1)" }.joined(separator: ", ")
                        + ")")
        )
        report.line(
            "  other messages: gaps \(gaps), errors \(errors), pings answered \(pings), "
                + "foreign events \(foreignEvents)"
                + (other.isEmpty
                    ? "" : ", " + other.sorted { $0.key < $1.key }.map { "\($0) \($1)" }.joined(separator: ", "))
        )
        if !errorSamples.isEmpty {
            report.line("  first errors: " + errorSamples.prefix(3).joined(separator: " | "))
        }
        var failures: [String] = []
        if lost > 0 { failures.append("\(lost) messages lost") }
        if duplicates > 0 { failures.append("\(duplicates) messages duplicated") }
        if outOfOrder > 0 { failures.append("\(outOfOrder) messages out of order") }
        if unexpected > 0 { failures.append("\(unexpected) messages delivered to clients that may not see them") }
        if closedByServer > 0 { failures.append("\(closedByServer) connections closed by the server") }
        return failures
    }

    mutating func add(_ part: ClientTotals) {
        clients += part.clients
        lost += part.lost
        clientsWithLoss += part.clientsWithLoss
        duplicates += part.duplicates
        outOfOrder += part.outOfOrder
        unexpected += part.unexpected
        gaps += part.gaps
        errors += part.errors
        pings += part.pings
        foreignEvents += part.foreignEvents
        closeCodes.merge(part.closeCodes, uniquingKeysWith: +)
        other.merge(part.other, uniquingKeysWith: +)
        errorSamples += part.errorSamples
    }
}

extension LoopRegistry {
    /// Compares what each ready client received with what it had to receive (`accepted` events it may see).
    func totals(readyIndexes: Set<Int>, accepted: [UInt64]) -> ClientTotals {
        var totals = ClientTotals()
        // Expected bits of a client: everyone-events plus its user's events (administrators: all), if accepted.
        var everyone = [UInt64](repeating: 0, count: accepted.count)
        var perUser: [Int32: [Int]] = [:]
        if plan.patternsMatch {
            for sequence in 0..<plan.eventCount {
                let target = plan.targets[sequence]
                if target < 0 {
                    everyone[sequence >> 6] |= UInt64(1) << UInt64(sequence & 63)
                } else {
                    perUser[target, default: []].append(sequence)
                }
            }
        }
        for client in clients where readyIndexes.contains(client.spec.index) {
            totals.clients += 1
            var lost = 0
            for word in 0..<accepted.count {
                var expected = everyone[word]
                if client.spec.isAdmin && plan.patternsMatch { expected = ~0 }
                expected &= accepted[word]
                lost += (expected & ~client.received[word]).nonzeroBitCount
            }
            if !client.spec.isAdmin {
                for sequence in perUser[Int32(client.spec.user)] ?? [] {
                    let bit = UInt64(1) << UInt64(sequence & 63)
                    if accepted[sequence >> 6] & bit != 0 && client.received[sequence >> 6] & bit == 0 { lost += 1 }
                }
            }
            totals.lost += lost
            if lost > 0 { totals.clientsWithLoss += 1 }
            totals.duplicates += client.duplicates
            totals.outOfOrder += client.outOfOrder
            totals.unexpected += client.unexpected
        }
        totals.gaps = gaps
        totals.errors = errorCount
        totals.pings = pingsAnswered
        totals.foreignEvents = foreignEvents
        totals.closeCodes = closeCodes
        totals.other = otherMessages
        totals.errorSamples = errorMessages
        return totals
    }

    /// Closes every client's socket (the server sees the peer go away).
    func closeAll() {
        for client in clients {
            client.closingByUs = true
            guard let channel = client.channel, channel.isActive else { continue }
            channel.close(promise: nil)
        }
    }
}
