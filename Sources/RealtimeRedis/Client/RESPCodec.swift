internal import CHiredis
package import NIOCore
package import RealtimeCore

/// Encodes commands with hiredis's `redisFormatCommandArgv`.
package enum RESPEncoder {
    /// Appends the RESP form of `command` to `buffer`.
    package static func encode(_ command: RedisCommand, into buffer: inout ByteBuffer) throws(RealtimeError) {
        var formatted: UnsafeMutablePointer<CChar>? = nil
        let length = command.storage.withUnsafeBytes { base in
            command.lengths.withUnsafeBufferPointer { lengths in
                chiredis_format_command(Int32(lengths.count), base.baseAddress, lengths.baseAddress, &formatted)
            }
        }
        guard length >= 0, let formatted else {
            throw RealtimeError(.internalError, "hiredis could not format a \(command.name) command")
        }
        defer { chiredis_free_command(formatted) }
        buffer.writeBytes(UnsafeRawBufferPointer(start: formatted, count: Int(length)))
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
