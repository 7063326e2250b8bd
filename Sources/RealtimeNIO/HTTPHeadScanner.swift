// SPDX-License-Identifier: Apache-2.0

/// Follows the raw bytes of HTTP/1.1 requests on one connection and tells when a request head breaks a bound,
/// before any parser buffers it: the request line, one header line, or the whole header block too long.
///
/// A value type with no I/O: ``HTTPHeadLimitHandler`` feeds it every inbound byte and acts on what it returns;
/// the unit tests feed it bytes directly. It never buffers: it counts line lengths, and keeps only the framing
/// headers' values (`Content-Length`, the last `Transfer-Encoding` coding) so it can step over each request's
/// body (by length or chunk by chunk) to the next head of a keep-alive connection. A framing it cannot follow
/// (a bad `Content-Length`, a transfer coding other than `chunked`) is left to the HTTP parser, which refuses
/// it; the scanner stops judging that connection (``Phase-swift.enum/passthrough``).
struct HTTPHeadScanner: Sendable {
    struct Limits: Sendable, Hashable {
        var maxRequestLineBytes: Int
        var maxHeaderBytes: Int
        var maxHeaderFieldBytes: Int
    }

    /// A broken bound.
    enum Violation: Sendable, Hashable {
        /// The request line is longer than its limit: `414 URI Too Long`.
        case requestLineTooLong
        /// One header line is longer than its limit: `431 Request Header Fields Too Large`.
        case headerFieldTooLong
        /// The header block (or a chunked body's trailers) is larger than its limit: `431`.
        case headerBlockTooLarge
    }

    enum Phase: Sendable, Hashable {
        /// Reading a request head.
        case head
        /// Stepping over `remaining` bytes of a body with a `Content-Length`.
        case body(remaining: Int)
        /// Reading a chunk-size line of a chunked body.
        case chunkSize
        /// Stepping over a chunk's data (and the line ending after it).
        case chunkData(remaining: Int)
        /// Reading the trailer lines after the last chunk.
        case trailers
        /// No longer judging this connection (a framing the HTTP parser will refuse).
        case passthrough
        /// A bound was broken; nothing more is scanned.
        case violated(Violation)
    }

    private enum FramingHeader: Sendable, Hashable {
        case none, contentLength, transferEncoding
    }

    let limits: Limits
    private(set) var phase = Phase.head
    /// Heads completed so far on this connection.
    private(set) var completedHeads = 0
    /// Bytes of the head being read (0 between requests).
    private(set) var headBytes = 0

    // The line being read.
    private var lineBytes = 0
    private var sawRequestLine = false
    private var headerBlockBytes = 0
    // Framing of the request being read.
    private var contentLengthName = 0
    private var transferEncodingName = 0
    private var framingHeader = FramingHeader.none
    private var inName = true
    private var contentLength: Int?
    private var contentLengthInvalid = false
    private var lastCoding: [UInt8] = []
    private var sawTransferEncoding = false
    // The chunk-size line being read.
    private var chunkSize = 0
    private var chunkSizeDigits = 0
    private var chunkExtension = false

    init(limits: Limits) {
        self.limits = limits
    }

    /// Whether a head has started and is not complete (the header-read timeout runs).
    var isReadingHead: Bool {
        if case .head = phase { return headBytes > 0 }
        return false
    }

    /// Whether a head is complete and its body is not (the body-read timeout runs).
    var isReadingBody: Bool {
        switch phase {
        case .body, .chunkSize, .chunkData, .trailers: true
        case .head, .passthrough, .violated: false
        }
    }

    /// Whether the connection is between requests: no byte of a head or a body is outstanding (the idle timeout
    /// may close it).
    var isBetweenRequests: Bool {
        if case .head = phase { return headBytes == 0 }
        return false
    }

    /// Follows `bytes`; returns the violation they cause, if any. After a violation it returns it again and
    /// reads nothing more.
    mutating func scan(_ bytes: some Collection<UInt8>) -> Violation? {
        var index = bytes.startIndex
        while index != bytes.endIndex {
            switch phase {
            case .violated(let violation):
                return violation
            case .passthrough:
                return nil
            case .body(let remaining):
                let left = Self.skip(remaining, in: bytes, from: &index)
                phase = left == 0 ? .head : .body(remaining: left)
                continue
            case .chunkData(let remaining):
                // `remaining` includes the CRLF after the data.
                let left = Self.skip(remaining, in: bytes, from: &index)
                phase = left == 0 ? .chunkSize : .chunkData(remaining: left)
                continue
            case .head, .chunkSize, .trailers:
                break
            }
            let byte = bytes[index]
            index = bytes.index(after: index)
            if let violation = step(byte) {
                phase = .violated(violation)
                return violation
            }
        }
        if case .violated(let violation) = phase { return violation }
        return nil
    }

    /// Steps `index` over up to `remaining` bytes of `bytes`; returns how many are still to skip.
    private static func skip<Bytes: Collection<UInt8>>(
        _ remaining: Int,
        in bytes: Bytes,
        from index: inout Bytes.Index
    ) -> Int {
        let step = min(bytes.distance(from: index, to: bytes.endIndex), remaining)
        index = bytes.index(index, offsetBy: step)
        return remaining - step
    }

    /// One byte of a line-oriented phase.
    private mutating func step(_ byte: UInt8) -> Violation? {
        switch phase {
        case .head:
            return headByte(byte)
        case .chunkSize:
            chunkSizeByte(byte)
            return nil
        case .trailers:
            return trailerByte(byte)
        default:
            return nil
        }
    }

    private mutating func headByte(_ byte: UInt8) -> Violation? {
        if !sawRequestLine {
            // Empty lines before the request line are ignored, as HTTP parsers do.
            if lineBytes == 0 && (byte == UInt8(ascii: "\r") || byte == UInt8(ascii: "\n")) { return nil }
            headBytes += 1
            if byte == UInt8(ascii: "\n") {
                sawRequestLine = true
                lineBytes = 0
                return nil
            }
            if byte != UInt8(ascii: "\r") { lineBytes += 1 }
            return lineBytes > limits.maxRequestLineBytes ? .requestLineTooLong : nil
        }
        headBytes += 1
        headerBlockBytes += 1
        if headerBlockBytes > limits.maxHeaderBytes { return .headerBlockTooLarge }
        if byte == UInt8(ascii: "\n") {
            if lineBytes == 0 {
                finishHead()
            } else {
                finishHeaderLine()
            }
            return nil
        }
        guard byte != UInt8(ascii: "\r") else { return nil }
        lineBytes += 1
        if lineBytes > limits.maxHeaderFieldBytes { return .headerFieldTooLong }
        readFramingByte(byte)
        return nil
    }

    /// Recognises `Content-Length` and `Transfer-Encoding` by name as their bytes pass, and reads their values.
    private mutating func readFramingByte(_ byte: UInt8) {
        let lower = byte | 0x20  // ASCII letters to lower case; ':' and digits are unaffected by the match below
        if inName {
            if byte == UInt8(ascii: ":") {
                inName = false
                if contentLengthName == Self.contentLengthName.count {
                    framingHeader = .contentLength
                } else if transferEncodingName == Self.transferEncodingName.count {
                    framingHeader = .transferEncoding
                    sawTransferEncoding = true
                }
                return
            }
            contentLengthName = Self.advance(contentLengthName, Self.contentLengthName, lower)
            transferEncodingName = Self.advance(transferEncodingName, Self.transferEncodingName, lower)
            return
        }
        switch framingHeader {
        case .none:
            return
        case .contentLength:
            if byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") { return }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else {
                contentLengthInvalid = true
                return
            }
            let (value, overflow) = (contentLength ?? 0).multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = value.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            if overflow || overflow2 { contentLengthInvalid = true } else { contentLength = sum }
        case .transferEncoding:
            if byte == UInt8(ascii: ",") {
                lastCoding.removeAll(keepingCapacity: true)
            } else if byte != UInt8(ascii: " ") && byte != UInt8(ascii: "\t") && lastCoding.count < 16 {
                lastCoding.append(lower)
            }
        }
    }

    private static let contentLengthName = Array("content-length".utf8)
    private static let transferEncodingName = Array("transfer-encoding".utf8)
    private static let chunked = Array("chunked".utf8)

    /// Advances a name match by one lower-cased byte; a mismatch parks it past the end (never matches again).
    private static func advance(_ matched: Int, _ name: [UInt8], _ byte: UInt8) -> Int {
        guard matched < name.count, name[matched] == byte else { return name.count + 1 }
        return matched + 1
    }

    private mutating func finishHeaderLine() {
        lineBytes = 0
        inName = true
        framingHeader = .none
        contentLengthName = 0
        transferEncodingName = 0
    }

    private mutating func finishHead() {
        completedHeads += 1
        let chunked = sawTransferEncoding && lastCoding == Self.chunked
        if sawTransferEncoding && !chunked || contentLengthInvalid {
            phase = .passthrough
        } else if chunked {
            phase = .chunkSize
        } else if let contentLength, contentLength > 0 {
            phase = .body(remaining: contentLength)
        } else {
            phase = .head
        }
        headBytes = 0
        lineBytes = 0
        sawRequestLine = false
        headerBlockBytes = 0
        finishHeaderLine()
        contentLength = nil
        contentLengthInvalid = false
        lastCoding.removeAll(keepingCapacity: true)
        sawTransferEncoding = false
        chunkSize = 0
        chunkSizeDigits = 0
        chunkExtension = false
    }

    private mutating func chunkSizeByte(_ byte: UInt8) {
        if byte == UInt8(ascii: "\n") {
            guard chunkSizeDigits > 0 else {
                phase = .passthrough
                return
            }
            let size = chunkSize
            chunkSize = 0
            chunkSizeDigits = 0
            chunkExtension = false
            phase = size == 0 ? .trailers : .chunkData(remaining: size + 2)
            return
        }
        if chunkExtension || byte == UInt8(ascii: "\r") { return }
        if byte == UInt8(ascii: ";") {
            chunkExtension = true
            return
        }
        let digit: Int
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = Int(byte - UInt8(ascii: "A")) + 10
        default:
            phase = .passthrough
            return
        }
        chunkSizeDigits += 1
        // More than 15 hex digits could overflow; no HTTP parser accepts a chunk that large anyway.
        guard chunkSizeDigits <= 15 else {
            phase = .passthrough
            return
        }
        chunkSize = chunkSize << 4 | digit
    }

    private mutating func trailerByte(_ byte: UInt8) -> Violation? {
        headerBlockBytes += 1
        if headerBlockBytes > limits.maxHeaderBytes { return .headerBlockTooLarge }
        if byte == UInt8(ascii: "\n") {
            if lineBytes == 0 {
                phase = .head
                headerBlockBytes = 0
            }
            lineBytes = 0
            return nil
        }
        guard byte != UInt8(ascii: "\r") else { return nil }
        lineBytes += 1
        return lineBytes > limits.maxHeaderFieldBytes ? .headerFieldTooLong : nil
    }
}
