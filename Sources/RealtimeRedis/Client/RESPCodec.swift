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

/// Parses replies with hiredis's reader (`redisReaderFeed` / `redisReaderGetReply`) and turns each complete reply
/// into a ``RESPValue``.
///
/// The reader is created with hiredis's object-function hooks pointed at a byte tape (see `shim.h`): hiredis's
/// parser appends each element of a reply there instead of allocating a `redisReply` and a string per element,
/// and the tape is decoded once the reply is complete. No C object outlives the read path.
///
/// Not `Sendable`: owned by one channel handler and used only on its event loop.
package final class RESPParser {
    private let reader: UnsafeMutablePointer<redisReader>
    private let tape: UnsafeMutablePointer<chiredis_tape>

    /// The tape's memory is kept between replies up to this size; a larger reply's is given back.
    private static let keptTapeBytes = 1 << 20

    package init() {
        guard let reader = chiredis_tape_reader_create(), let tape = chiredis_reader_tape(reader) else {
            fatalError("hiredis could not allocate a reply reader")
        }
        self.reader = reader
        self.tape = tape
        // Keep up to 1 MiB of read buffer between feeds instead of hiredis's 16 KiB, so large pipelined batches
        // don't re-allocate it each time.
        chiredis_reader_set_max_buffer(reader, 1 << 20)
    }

    deinit { chiredis_tape_reader_free(reader) }

    /// Hands bytes to the reader.
    package func feed(_ bytes: UnsafeRawBufferPointer) throws(RealtimeError) {
        guard !bytes.isEmpty else { return }
        if chiredis_reader_feed(reader, bytes.baseAddress, bytes.count) != REDIS_OK {
            throw protocolError()
        }
    }

    /// The next complete reply, or `nil` if more bytes are needed.
    package func next() throws(RealtimeError) -> RESPValue? {
        switch chiredis_tape_reader_next(reader) {
        case 1:
            defer { chiredis_tape_clear(tape, Self.keptTapeBytes) }
            guard let base = tape.pointee.bytes else { throw protocolError() }
            let records = UnsafeRawBufferPointer(start: base, count: tape.pointee.count)
            var offset = 0
            let value = Self.decode(records, at: &offset)
            guard offset == records.count else {
                throw RealtimeError(.protocolViolation, "malformed Redis reply: inconsistent reply tape")
            }
            return value
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

    /// Decodes the element whose record starts at `offset` (and, for an array, its elements after it), moving
    /// `offset` past them. The tape was written by hiredis's parser for one complete reply, so every record is
    /// whole; the bounds are still checked (a record that does not fit decodes as `.null` and ends the walk).
    private static func decode(_ records: UnsafeRawBufferPointer, at offset: inout Int) -> RESPValue {
        let header = Int(CHIREDIS_TAPE_HEADER)
        guard offset + header <= records.count else {
            offset = records.count + 1
            return .null
        }
        let type = Int32(records[offset])
        let value = records.loadUnaligned(fromByteOffset: offset + 1, as: Int64.self)
        offset += header
        switch type {
        case REDIS_REPLY_STRING, REDIS_REPLY_STATUS, REDIS_REPLY_ERROR:
            let length = Int(value)
            guard length >= 0, length <= records.count - offset else {
                offset = records.count + 1
                return .null
            }
            let bytes = UnsafeRawBufferPointer(rebasing: records[offset..<(offset + length)])
            offset += length
            switch type {
            case REDIS_REPLY_STRING: return .bulkString(Array(bytes))
            case REDIS_REPLY_STATUS: return .simpleString(String(decoding: bytes, as: UTF8.self))
            default: return .error(String(decoding: bytes, as: UTF8.self))
            }
        case REDIS_REPLY_INTEGER:
            return .integer(value)
        case REDIS_REPLY_ARRAY:
            // Each element takes at least a header, which bounds the count by what the tape holds.
            let count = Int(value)
            guard count >= 0, count <= (records.count - offset) / header else {
                offset = records.count + 1
                return .null
            }
            var elements = [RESPValue]()
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(decode(records, at: &offset)) }
            return .array(elements)
        default:
            return .null
        }
    }
}
