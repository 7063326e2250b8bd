// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import RealtimeCore

/// The checks of the command line, before anything connects.
extension LoadGenerator {
    func validate() throws {
        guard ["127.0.0.1", "::1", "localhost"].contains(host) else {
            throw ValidationError("--host must be 127.0.0.1, ::1 or localhost: this tool only drives loopback servers")
        }
        guard (1...65535).contains(port) else { throw ValidationError("--port must be 1 to 65535") }
        guard (1...10_000).contains(clients) else { throw ValidationError("--clients must be 1 to 10000") }
        guard (0...100).contains(admins) else { throw ValidationError("--admins must be 0 to 100") }
        if let users, !(1...clients).contains(users) { throw ValidationError("--users must be 1 to --clients") }
        guard (0...1_000_000).contains(events) else { throw ValidationError("--events must be 0 to 1000000") }
        guard (clients + admins) * events * modes.count <= 4_000_000_000 else {
            throw ValidationError("--clients × --events × modes is too large to track (at most 4e9)")
        }
        guard !modes.isEmpty, modes.count <= 4 else { throw ValidationError("give 1 to 4 --mode") }
        guard (1...1_000_000).contains(rate) else { throw ValidationError("--rate must be 1 to 1000000") }
        guard (0...100).contains(userPercent) else { throw ValidationError("--user-percent must be 0 to 100") }
        if let publishPort, !(1...65535).contains(publishPort) {
            throw ValidationError("--publish-port must be 1 to 65535")
        }
        if publishPort != nil, target == .nchan { throw ValidationError("--publish-port is for --target realtime") }
        guard (1...64).contains(publishers) else { throw ValidationError("--publishers must be 1 to 64") }
        guard (1...100).contains(batchSize) else { throw ValidationError("--batch-size must be 1 to 100") }
        guard (1...5000).contains(connectConcurrency) else {
            throw ValidationError("--connect-concurrency must be 1 to 5000")
        }
        guard (0...10_000).contains(tcpReference) else { throw ValidationError("--tcp-reference must be 0 to 10000") }
        guard (0...600).contains(settle), (1...600).contains(drainTimeout), (1...3600).contains(duration) else {
            throw ValidationError("--settle 0…600, --drain-timeout 1…600, --duration 1…3600 seconds")
        }
        if let threads, !(1...64).contains(threads) { throw ValidationError("--threads must be 1 to 64") }
        guard !patterns.isEmpty, patterns.count <= 50 else { throw ValidationError("give 1 to 50 --pattern") }
        for pattern in patterns {
            do { _ = try EventPattern(validating: pattern) } catch {
                throw ValidationError("--pattern '\(pattern)' is not a valid pattern")
            }
        }
        guard EventType.isWellFormed(eventType) else { throw ValidationError("--event-type is not well-formed") }
        guard (0...65536).contains(frameBytes) else { throw ValidationError("--frame-bytes must be 0 to 65536") }
        guard serverPID.count <= 64 else { throw ValidationError("give at most 64 --server-pid") }
        guard !label.isEmpty, label.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
            throw ValidationError("--label: letters, digits, '-', '_' and '.' only")
        }
        if target == .nchan {
            guard let nchanChannel, !nchanChannel.isEmpty, nchanChannel.count <= 64,
                nchanChannel.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" })
            else { throw ValidationError("--target nchan needs --nchan-channel (1 to 64 letters, digits, - or _)") }
            guard !modes.contains(.batch) else {
                throw ValidationError(
                    "--target nchan: Nchan's publisher takes one message per request (no --mode batch)"
                )
            }
            guard admins == 0, userPercent == 0 else {
                throw ValidationError(
                    "--target nchan: every event goes to every subscriber (--admins 0 --user-percent 0)"
                )
            }
        }
    }
}
