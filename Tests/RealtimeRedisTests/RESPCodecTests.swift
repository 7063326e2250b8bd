import NIOCore
import RealtimeCore
import RealtimeRedis
import Testing

@Suite struct RESPCodecTests {
    private func parse(_ text: String, chunk: Int = .max) throws -> [RESPValue] {
        let parser = RESPParser()
        let bytes = Array(text.utf8)
        var values: [RESPValue] = []
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + chunk)
            try bytes[offset..<end].withUnsafeBytes { try parser.feed($0) }
            while let value = try parser.next() { values.append(value) }
            offset = end
        }
        return values
    }

    @Test func parsesEveryReplyType() throws {
        let values = try parse(
            "+OK\r\n-ERR unknown command\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
                + "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n+x\r\n"
        )
        #expect(
            values == [
                .simpleString("OK"), .error("ERR unknown command"), .integer(-42),
                .bulkString(ByteBuffer(string: "hello")),
                .bulkString(ByteBuffer()), .null, .null, .array([]),
                .array([.integer(1), .array([.bulkString(ByteBuffer(string: "a")), .null]), .simpleString("x")]),
            ]
        )
    }

    @Test func parsesRepliesSplitAcrossReads() throws {
        let text = "*2\r\n$12\r\nline\r\nbreak!\r\n:7\r\n+PONG\r\n"
        let whole = try parse(text)
        #expect(
            whole == [.array([.bulkString(ByteBuffer(string: "line\r\nbreak!")), .integer(7)]), .simpleString("PONG")]
        )
        #expect(try parse(text, chunk: 1) == whole)
        #expect(try parse(text, chunk: 5) == whole)
    }

    /// Replies are built from hiredis's parser callbacks on a byte tape: nesting, a reply larger than the tape
    /// keeps between replies (given back, then grown again), and many replies in one read.
    @Test func parsesNestedLargeAndManyReplies() throws {
        let nested = "*2\r\n*2\r\n*1\r\n*0\r\n*-1\r\n$0\r\n\r\n"
        #expect(try parse(nested) == [.array([.array([.array([.array([])]), .null]), .bulkString(ByteBuffer())])])
        let large = [UInt8](repeating: UInt8(ascii: "x"), count: 3 << 20)
        let text =
            "*3\r\n:1\r\n$\(large.count)\r\n" + String(decoding: large, as: UTF8.self) + "\r\n-ERR e\r\n"
            + "+OK\r\n" + String(repeating: ":5\r\n", count: 1000)
        let values = try parse(text, chunk: 64 << 10)
        #expect(values.count == 1002)
        #expect(values.first == .array([.integer(1), .bulkString(ByteBuffer(bytes: large)), .error("ERR e")]))
        #expect(values[1] == .simpleString("OK"))
        #expect(values.dropFirst(2).allSatisfy { $0 == .integer(5) })
    }

    @Test func malformedReplyIsAProtocolViolation() throws {
        #expect {
            _ = try parse("?what\r\n")
        } throws: { error in
            (error as? RealtimeError)?.code == .protocolViolation
        }
    }

    /// The replies of one read are taken off hiredis's tape together; a reply still incomplete at the end of a read
    /// keeps the elements hiredis already parsed. Every split point of a stream of mixed replies (nested arrays,
    /// nulls, errors, binary bulk strings with CR LF inside) gives the same replies as the whole stream.
    @Test func parsesEverySplitOfMixedReplies() throws {
        let text =
            "+OK\r\n*3\r\n:1\r\n*2\r\n$4\r\na\r\nb\r\n$-1\r\n-ERR x y\r\n$3\r\nxxx\r\n*-1\r\n:-9\r\n"
            + "*2\r\n*0\r\n$0\r\n\r\n$1\r\nz\r\n"
        let expected: [RESPValue] = [
            .simpleString("OK"),
            .array([
                .integer(1), .array([.bulkString(ByteBuffer(string: "a\r\nb")), .null]), .error("ERR x y"),
            ]),
            .bulkString(ByteBuffer(string: "xxx")), .null, .integer(-9),
            .array([.array([]), .bulkString(ByteBuffer())]),
            .bulkString(ByteBuffer(string: "z")),
        ]
        #expect(try parse(text) == expected)
        let bytes = Array(text.utf8)
        for split in 1..<bytes.count {
            let parser = RESPParser()
            var values: [RESPValue] = []
            for part in [bytes[..<split], bytes[split...]] {
                try part.withUnsafeBytes { try parser.feed($0) }
                while let value = try parser.next() { values.append(value) }
            }
            #expect(values == expected, "split at \(split)")
        }
    }

    /// Bulk strings are slices of one buffer per batch, which the parser reuses for the next batch only when no
    /// reply holds a slice of it: replies kept across batches keep their bytes.
    @Test func repliesKeptAcrossBatchesKeepTheirBytes() throws {
        let parser = RESPParser()
        var kept: [RESPValue] = []
        for round in 0..<50 {
            let text = "$6\r\nv\(10_000 + round)\r\n*1\r\n$2\r\nab\r\n"
            try Array(text.utf8).withUnsafeBytes { try parser.feed($0) }
            var batch: [RESPValue] = []
            while let value = try parser.next() { batch.append(value) }
            #expect(batch.count == 2)
            #expect(batch.last == .array([.bulkString(ByteBuffer(string: "ab"))]))
            // Keep every other round's first reply; drop the rest, so the buffer is sometimes free for reuse.
            if round.isMultiple(of: 2) { kept.append(batch[0]) }
        }
        #expect(kept.map(\.string) == stride(from: 0, to: 50, by: 2).map { "v\(10_000 + $0)" })
    }

    /// Replies complete before a malformed one are returned first; then the protocol error, and again on the next
    /// call (the stream cannot be resynchronised).
    @Test func repliesBeforeAMalformedOneAreReturnedFirst() throws {
        let parser = RESPParser()
        try Array("+OK\r\n$1\r\nx\r\n?what\r\n".utf8).withUnsafeBytes { try parser.feed($0) }
        #expect(try parser.next() == .simpleString("OK"))
        #expect(try parser.next() == .bulkString(ByteBuffer(string: "x")))
        for _ in 0..<2 {
            #expect {
                _ = try parser.next()
            } throws: { error in
                (error as? RealtimeError)?.code == .protocolViolation
            }
        }
    }

    /// The value's accessors over a bulk string: a copy as bytes or text, the slice itself as a buffer.
    @Test func bulkStringAccessors() {
        let value = RESPValue.bulkString(ByteBuffer(bytes: [0x34, 0x32]))
        #expect(value.bytes == [0x34, 0x32])
        #expect(value.string == "42")
        #expect(value.int == 42)
        #expect(value.buffer == ByteBuffer(string: "42"))
        #expect(RESPValue.simpleString("OK").buffer == nil)
        #expect(RESPValue.bulkString(ByteBuffer()).bytes == [])
    }

    @Test func encodesCommandsAsRESPArrays() throws {
        var command = RedisCommand("SET", "key", "")
        command.append(bytes: [0, 13, 10, 255])
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        RESPEncoder.encode(command, into: &buffer)
        let expected: [UInt8] =
            Array("*4\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n$4\r\n".utf8) + [0, 13, 10, 255, 13, 10]
        #expect(buffer.readableBytesView.elementsEqual(expected))
        #expect(RESPEncoder.encodedSize(command) == expected.count)
        #expect(command.name == "SET")
        #expect(command.count == 4)
    }

    /// The Swift encoder against hiredis's `redisFormatCommandArgv`, byte for byte: argument counts and lengths
    /// across every digit-count boundary (0, 9, 10, 99, 100, 999, 1000, 10 000), empty and binary arguments, and
    /// commands appended one after another into the same buffer.
    @Test func encoderMatchesHiredisByteForByte() throws {
        let lengths = [0, 1, 9, 10, 11, 99, 100, 101, 999, 1000, 1001, 9999, 10_000]
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        var expected: [UInt8] = []
        for argumentCount in [1, 2, 9, 10, 11, 33, 99, 100, 101] {
            for round in 0..<3 {
                var command = RedisCommand("EVALSHA")
                for index in 1..<argumentCount {
                    // The long arguments once per command; the many arguments of long commands stay short.
                    let length = index < lengths.count ? lengths[(index + round) % lengths.count] : index % 12
                    // Every byte value, CR and LF included.
                    command.append(bytes: (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ index) })
                }
                let reference = try #require(RESPEncoder.hiredisFormatted(command))
                var single = ByteBufferAllocator().buffer(capacity: 0)
                RESPEncoder.encode(command, into: &single)
                #expect(single.getBytes(at: 0, length: single.readableBytes) == reference, "\(argumentCount) arguments")
                #expect(RESPEncoder.encodedSize(command) == reference.count)
                RESPEncoder.encode(command, into: &buffer)
                expected += reference
            }
        }
        #expect(buffer.getBytes(at: 0, length: buffer.readableBytes) == expected)
    }

    @Test func readsRedisURLs() throws {
        let full = try RedisConfiguration(url: "redis://al%40ice:p%3Ass@10.0.0.1:6380/3")
        #expect(full.host == "10.0.0.1")
        #expect(full.port == 6380)
        #expect(full.username == "al@ice")
        #expect(full.password == "p:ss")
        #expect(full.database == 3)
        let passwordOnly = try RedisConfiguration(url: "redis://:secret@localhost")
        #expect(passwordOnly.username == nil)
        #expect(passwordOnly.password == "secret")
        #expect(passwordOnly.port == 6379)
        #expect(passwordOnly.database == 0)
        let ipv6 = try RedisConfiguration(url: "redis://[::1]:7000/")
        #expect(ipv6.host == "::1")
        #expect(ipv6.port == 7000)
        for bad in ["http://x", "redis://host:99999", "redis://host/db", "redis://:pw@", "redis://h/%zz"] {
            #expect(throws: RealtimeError.self) { _ = try RedisConfiguration(url: bad) }
        }
    }

    @Test func reconnectDelaysGrowWithJitterUpToTheCap() {
        let configuration = RedisConfiguration(
            initialReconnectDelay: .milliseconds(100),
            maximumReconnectDelay: .seconds(1)
        )
        for _ in 0..<50 {
            let first = configuration.reconnectDelay(attempt: 0)
            #expect(first >= .milliseconds(50) && first <= .milliseconds(100))
            let third = configuration.reconnectDelay(attempt: 2)
            #expect(third >= .milliseconds(200) && third <= .milliseconds(400))
            let late = configuration.reconnectDelay(attempt: 40)
            #expect(late >= .milliseconds(500) && late <= .seconds(1))
        }
    }
}
