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
/// parser appends each element of a reply there instead of allocating a `redisReply` and a string per element.
/// When asked for a reply and none is queued, the parser takes every complete reply the fed bytes hold, copies their
/// records into one `ByteBuffer` and drops them from the tape (keeping the elements of a reply not complete yet);
/// `next()` then decodes them one by one, each bulk string a slice of that buffer. So the replies of one read share
/// one allocation instead of one array per bulk string, and no C object outlives the read path. The buffer is
/// reused once no reply of the previous batch holds a slice of it.
///
/// Not `Sendable`: owned by one channel handler and used only on its event loop.
package final class RESPParser {
    private let reader: UnsafeMutablePointer<redisReader>
    private let tape: UnsafeMutablePointer<chiredis_tape>
    /// The records of the replies taken off the tape and not decoded yet (all of them complete).
    private var records = ByteBuffer()
    /// How many replies `records` still holds.
    private var queued = 0
    /// The reader's error, thrown once the replies complete before it are read.
    private var failure: RealtimeError?

    /// The tape's memory, and the records buffer's, are kept between batches up to this size; a larger batch's is
    /// given back.
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

    /// The next complete reply, or `nil` if more bytes are needed. After a malformed reply, throws once the replies
    /// before it were returned.
    package func next() throws(RealtimeError) -> RESPValue? {
        if queued == 0 {
            if let failure { throw failure }
            try collect()
            if queued == 0 {
                if let failure { throw failure }
                return nil
            }
        }
        queued -= 1
        guard let value = Self.decode(&records), queued > 0 || records.readableBytes == 0 else {
            queued = 0
            throw RealtimeError(.protocolViolation, "malformed Redis reply: inconsistent reply tape")
        }
        return value
    }

    /// Moves every complete reply from the tape into `records`.
    private func collect() throws(RealtimeError) {
        var complete = 0
        var end = 0
        parsing: while true {
            switch chiredis_tape_reader_next(reader) {
            case 1:
                complete += 1
                end = tape.pointee.count
            case 0:
                break parsing
            default:
                failure = protocolError()
                break parsing
            }
        }
        guard complete > 0 else { return }
        guard let base = tape.pointee.bytes else {
            throw RealtimeError(.protocolViolation, "malformed Redis reply: inconsistent reply tape")
        }
        if records.capacity > Self.keptTapeBytes { records = ByteBuffer() }
        // Allocates only if a reply of the last batch still holds a slice of the buffer (or it is too small).
        records.clear(minimumCapacity: end)
        records.writeBytes(UnsafeRawBufferPointer(start: base, count: end))
        chiredis_tape_drop(tape, end, Self.keptTapeBytes)
        queued = complete
    }

    private func protocolError() -> RealtimeError {
        let detail = String(cString: chiredis_reader_error(reader))
        return RealtimeError(.protocolViolation, "malformed Redis reply: \(detail)")
    }

    /// Decodes the element whose record starts at the reader index of `records` (and, for an array, its elements
    /// after it), moving the reader index past them. The records were written by hiredis's parser for complete
    /// replies, so every record is whole; the bounds are still checked (`nil` when a record does not fit).
    private static func decode(_ records: inout ByteBuffer) -> RESPValue? {
        let header = Int(CHIREDIS_TAPE_HEADER)
        guard let type = records.readInteger(as: UInt8.self),
            let value = records.readInteger(endianness: .host, as: Int64.self)
        else { return nil }
        switch Int32(type) {
        case REDIS_REPLY_STRING:
            guard value >= 0, value <= records.readableBytes else { return nil }
            return records.readSlice(length: Int(value)).map { .bulkString($0) }
        case REDIS_REPLY_STATUS:
            guard value >= 0, value <= records.readableBytes else { return nil }
            return records.readString(length: Int(value)).map { .simpleString($0) }
        case REDIS_REPLY_ERROR:
            guard value >= 0, value <= records.readableBytes else { return nil }
            return records.readString(length: Int(value)).map { .error($0) }
        case REDIS_REPLY_INTEGER:
            return .integer(value)
        case REDIS_REPLY_NIL:
            return .null
        case REDIS_REPLY_ARRAY:
            // Each element takes at least a header, which bounds the count by what the buffer holds.
            guard value >= 0, value <= records.readableBytes / header else { return nil }
            var elements = [RESPValue]()
            elements.reserveCapacity(Int(value))
            for _ in 0..<Int(value) {
                guard let element = decode(&records) else { return nil }
                elements.append(element)
            }
            return .array(elements)
        default:
            return nil
        }
    }
}
