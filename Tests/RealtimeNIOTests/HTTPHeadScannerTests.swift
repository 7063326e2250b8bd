// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import RealtimeNIO

/// The head scanner as a value: bytes in, verdicts out, no sockets.
@Suite struct HTTPHeadScannerTests {
    static let limits = HTTPHeadScanner.Limits(maxRequestLineBytes: 64, maxHeaderBytes: 128, maxHeaderFieldBytes: 48)

    /// Feeds `text` in pieces of `step` bytes; returns the first violation.
    static func scan(_ text: String, step: Int = .max, scanner: inout HTTPHeadScanner) -> HTTPHeadScanner.Violation? {
        let bytes = Array(text.utf8)
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start &+ step)
            if let violation = scanner.scan(bytes[start..<end]) { return violation }
            start = end
        }
        return nil
    }

    static func scan(_ text: String, step: Int = .max) -> (HTTPHeadScanner.Violation?, HTTPHeadScanner) {
        var scanner = HTTPHeadScanner(limits: limits)
        let violation = scan(text, step: step, scanner: &scanner)
        return (violation, scanner)
    }

    @Test(arguments: [1, 7, Int.max])
    func requestLineAtAndPastItsLimit(step: Int) {
        let line = "GET /" + String(repeating: "a", count: 64 - "GET / HTTP/1.1".utf8.count) + " HTTP/1.1"
        #expect(line.utf8.count == 64)
        let (fits, scanner) = Self.scan(line + "\r\nHost: x\r\n\r\n", step: step)
        #expect(fits == nil)
        #expect(scanner.completedHeads == 1)
        #expect(!scanner.isReadingHead)
        let (tooLong, _) = Self.scan("GET /a" + line + "\r\n", step: step)
        #expect(tooLong == .requestLineTooLong)
        // Judged before the line ends: nothing past the bound needs to arrive.
        let (early, _) = Self.scan(String(repeating: "G", count: 65), step: step)
        #expect(early == .requestLineTooLong)
    }

    @Test(arguments: [1, 5, Int.max])
    func headerLineAndHeaderBlock(step: Int) {
        let field = "X-A: " + String(repeating: "v", count: 48 - 5)
        #expect(Self.scan("GET / HTTP/1.1\r\n\(field)\r\n\r\n", step: step).0 == nil)
        #expect(Self.scan("GET / HTTP/1.1\r\n\(field)v\r\n\r\n", step: step).0 == .headerFieldTooLong)
        // Four lines of 40 bytes (42 with CRLF): each fits, together they pass 128.
        let line = "X-B: " + String(repeating: "w", count: 35) + "\r\n"
        #expect(Self.scan("GET / HTTP/1.1\r\n" + line + line + line + "\r\n", step: step).0 == nil)
        #expect(
            Self.scan("GET / HTTP/1.1\r\n" + line + line + line + line + "\r\n", step: step).0 == .headerBlockTooLarge
        )
    }

    @Test func aViolationSticks() {
        var scanner = HTTPHeadScanner(limits: Self.limits)
        #expect(Self.scan(String(repeating: "G", count: 100), scanner: &scanner) == .requestLineTooLong)
        #expect(Self.scan("\r\n\r\n", scanner: &scanner) == .requestLineTooLong)
    }

    @Test func leadingEmptyLinesAreIgnoredAndBareLineFeedsEndLines() {
        let (violation, scanner) = Self.scan("\r\n\r\nGET / HTTP/1.1\nHost: x\n\n")
        #expect(violation == nil)
        #expect(scanner.completedHeads == 1)
    }

    @Test(arguments: [1, 3, Int.max])
    func bodiesAreSkippedByLength(step: Int) {
        // The body is far larger than any limit and looks like header lines: it is not judged.
        let body = String(repeating: "Y: " + String(repeating: "z", count: 60) + "\r\n", count: 10)
        let text =
            "POST / HTTP/1.1\r\ncontent-LENGTH: \(body.utf8.count)\r\n\r\n\(body)"
            + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        let (violation, scanner) = Self.scan(text, step: step)
        #expect(violation == nil)
        #expect(scanner.completedHeads == 2)
        // And the next head after a body is judged again.
        let (next, _) = Self.scan(
            text + "GET / HTTP/1.1\r\nX: " + String(repeating: "q", count: 60) + "\r\n",
            step: step
        )
        #expect(next == .headerFieldTooLong)
    }

    @Test(arguments: [1, 4, Int.max])
    func chunkedBodiesAreSkippedChunkByChunk(step: Int) {
        let data = String(repeating: "d", count: 200)
        let text =
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"
            + "c8;name=value\r\n\(data)\r\n" + "A\r\n0123456789\r\n" + "0\r\nX-Trailer: 1\r\n\r\n"
            + "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
        let (violation, scanner) = Self.scan(text, step: step)
        #expect(violation == nil)
        #expect(scanner.completedHeads == 2)
        #expect(scanner.phase == .head)
        // Trailers are bounded like header lines.
        let (trailer, _) = Self.scan(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: \(String(repeating: "t", count: 60))\r\n\r\n",
            step: step
        )
        #expect(trailer == .headerFieldTooLong)
    }

    @Test func framingTheParserWillRefuseIsLeftToIt() {
        #expect(Self.scan("POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n").1.phase == .passthrough)
        #expect(Self.scan("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n").1.phase == .passthrough)
        #expect(
            Self.scan("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").1.phase == .passthrough
        )
        #expect(
            Self.scan("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").1.phase == .passthrough
        )
        // A header whose name only starts like a framing header is not one.
        let (_, scanner) = Self.scan("POST / HTTP/1.1\r\nContent-Lengthy: 5\r\nX-Content-Length: 7\r\n\r\n")
        #expect(scanner.phase == .head)
    }

    @Test func theHeadTimerFollowsTheHead() {
        var scanner = HTTPHeadScanner(limits: Self.limits)
        #expect(!scanner.isReadingHead)
        _ = Self.scan("GET / HT", scanner: &scanner)
        #expect(scanner.isReadingHead)
        _ = Self.scan("TP/1.1\r\nContent-Length: 3\r\n\r\nab", scanner: &scanner)
        #expect(!scanner.isReadingHead)
        #expect(scanner.phase == .body(remaining: 1))
        _ = Self.scan("c", scanner: &scanner)
        #expect(scanner.phase == .head)
        #expect(!scanner.isReadingHead)
        _ = Self.scan("G", scanner: &scanner)
        #expect(scanner.isReadingHead)
        #expect(scanner.headBytes == 1)
    }
}
