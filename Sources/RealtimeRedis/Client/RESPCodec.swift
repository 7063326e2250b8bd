internal import CHiredis
package import NIOCore
package import RealtimeCore

/// Encodes commands as RESP arrays of bulk strings, straight into a `ByteBuffer`.
///
/// hiredis 0.14's `redisFormatCommandArgv` formats every length with `sprintf` into a fresh `malloc`'ed buffer;
/// in the pipelined `SET` benchmark that was half of the calling threads' CPU. This encoder sizes the command
/// once and writes it in one pass; a test checks it byte for byte against hiredis's formatter
/// (``hiredisFormatted(_:)``).
package enum RESPEncoder {
    /// The number of bytes `command` takes in RESP.
    @inline(__always)
    package static func encodedSize(_ command: RedisCommand) -> Int {
        var size = 3 + decimalDigits(UInt(command.count))
        for length in command.lengths { size += 5 + decimalDigits(length) + Int(length) }
        return size
    }

    /// Appends the RESP form of `command` to `buffer`.
    package static func encode(_ command: RedisCommand, into buffer: inout ByteBuffer) {
        let size = encodedSize(command)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { output in
            command.storage.withUnsafeBytes { storage in
                guard var cursor = output.baseAddress else { return }
                cursor = writeHeader(UInt8(ascii: "*"), UInt(command.count), at: cursor)
                var offset = 0
                for length in command.lengths {
                    let count = Int(length)
                    cursor = writeHeader(UInt8(ascii: "$"), length, at: cursor)
                    if count > 0, let source = storage.baseAddress {
                        cursor.copyMemory(from: source + offset, byteCount: count)
                    }
                    (cursor + count).storeBytes(of: UInt8(ascii: "\r"), as: UInt8.self)
                    (cursor + count + 1).storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
                    cursor += count + 2
                    offset += count
                }
            }
            return size
        }
    }

    /// hiredis's own formatting of `command`, the reference the encoder is tested against.
    package static func hiredisFormatted(_ command: RedisCommand) -> [UInt8]? {
        var formatted: UnsafeMutablePointer<CChar>? = nil
        let length = command.storage.withUnsafeBytes { base in
            command.lengths.withUnsafeBufferPointer { lengths in
                chiredis_format_command(Int32(lengths.count), base.baseAddress, lengths.baseAddress, &formatted)
            }
        }
        guard length >= 0, let formatted else { return nil }
        defer { chiredis_free_command(formatted) }
        return Array(UnsafeRawBufferPointer(start: formatted, count: Int(length)))
    }

    @inline(__always)
    private static func decimalDigits(_ value: UInt) -> Int {
        var digits = 1
        var rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        return digits
    }

    /// Writes `marker`, `value` in decimal and CRLF at `cursor`; returns the position after them.
    @inline(__always)
    private static func writeHeader(_ marker: UInt8, _ value: UInt, at cursor: UnsafeMutableRawPointer)
        -> UnsafeMutableRawPointer
    {
        cursor.storeBytes(of: marker, as: UInt8.self)
        let digits = decimalDigits(value)
        var rest = value
        var position = digits
        repeat {
            (cursor + position).storeBytes(of: UInt8(ascii: "0") + UInt8(truncatingIfNeeded: rest % 10), as: UInt8.self)
            rest /= 10
            position -= 1
        } while rest > 0
        (cursor + digits + 1).storeBytes(of: UInt8(ascii: "\r"), as: UInt8.self)
        (cursor + digits + 2).storeBytes(of: UInt8(ascii: "\n"), as: UInt8.self)
        return cursor + digits + 3
    }
}

/// Parses replies with hiredis's reader (`redisReaderFeed` / `redisReaderGetReply`) and converts each reply tree
/// into a ``RESPValue`` at once, freeing the C objects.
///
/// Not `Sendable`: owned by one channel handler and used only on its event loop.
package final class RESPParser {
    private let reader: UnsafeMutablePointer<redisReader>

    package init() {
        guard let reader = redisReaderCreate() else { fatalError("hiredis could not allocate a reply reader") }
        self.reader = reader
        // Keep up to 1 MiB of read buffer between feeds instead of hiredis's 16 KiB, so large pipelined batches
        // don't re-allocate it each time.
        chiredis_reader_set_max_buffer(reader, 1 << 20)
    }

    deinit { redisReaderFree(reader) }

    /// Hands bytes to the reader.
    package func feed(_ bytes: UnsafeRawBufferPointer) throws(RealtimeError) {
        guard !bytes.isEmpty else { return }
        if chiredis_reader_feed(reader, bytes.baseAddress, bytes.count) != REDIS_OK {
            throw protocolError()
        }
    }

    /// The next complete reply, or `nil` if more bytes are needed.
    package func next() throws(RealtimeError) -> RESPValue? {
        var reply: UnsafeMutablePointer<redisReply>? = nil
        switch chiredis_reader_next(reader, &reply) {
        case 1:
            guard let reply else { return nil }
            defer { chiredis_free_reply(reply) }
            return Self.convert(reply)
        case 0:
            return nil
        default:
            throw protocolError()
        }
    }

    private func protocolError() -> RealtimeError {
        let detail = String(cString: chiredis_reader_error(reader))
        return RealtimeError(.protocolViolation, "malformed Redis reply: \(detail)")
    }

    private static func convert(_ reply: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let node = reply.pointee
        switch node.type {
        case REDIS_REPLY_STRING:
            return .bulkString(Array(UnsafeRawBufferPointer(start: node.str, count: Int(node.len))))
        case REDIS_REPLY_STATUS:
            return .simpleString(
                String(decoding: UnsafeRawBufferPointer(start: node.str, count: Int(node.len)), as: UTF8.self)
            )
        case REDIS_REPLY_ERROR:
            return .error(
                String(decoding: UnsafeRawBufferPointer(start: node.str, count: Int(node.len)), as: UTF8.self)
            )
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(node.integer))
        case REDIS_REPLY_ARRAY:
            var elements = [RESPValue]()
            elements.reserveCapacity(Int(node.elements))
            for index in 0..<Int(node.elements) {
                if let element = node.element[index] {
                    elements.append(convert(element))
                } else {
                    elements.append(.null)
                }
            }
            return .array(elements)
        default:
            return .null
        }
    }
}
