/// Redis Cluster's key → slot function: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16,384.
///
/// A hash tag is the part between the first `{` and the first `}` after it, when not empty: `rthub:cs:{u:alice}`
/// and `rthub:h:{u:alice}:s` share the slot of `u:alice`, which is how every multi-key script of the Redis
/// backends stays on one slot.
package enum RedisHashSlot {
    /// The number of slots of a Redis Cluster.
    package static let count = 16_384

    /// The slot of `key`.
    ///
    /// Computed over the key's bytes in place (no copy of the key): the cluster client routes every command by it.
    package static func slot(of key: some Collection<UInt8>) -> Int {
        if let slot = key.withContiguousStorageIfAvailable({ slot(ofBytes: UnsafeRawBufferPointer($0)) }) {
            return slot
        }
        return Array(key).withUnsafeBytes { slot(ofBytes: $0) }
    }

    /// The slot of `key`.
    package static func slot(of key: String) -> Int {
        var key = key
        return key.withUTF8 { slot(ofBytes: UnsafeRawBufferPointer($0)) }
    }

    private static func slot(ofBytes bytes: UnsafeRawBufferPointer) -> Int {
        var hashed = bytes[...]
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            hashed = bytes[(open + 1)..<close]
        }
        return Int(crc16(hashed) % UInt16(count))
    }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in the Redis Cluster specification.
    package static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        table.withUnsafeBufferPointer { table in
            var crc: UInt16 = 0
            for byte in bytes {
                crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
            }
            return crc
        }
    }

    private static let table: [UInt16] = (0..<256).map { index in
        var crc = UInt16(index) << 8
        for _ in 0..<8 { crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1 }
        return crc
    }
}

extension RedisCommand {
    /// The argument that decides which cluster node runs the command: the first key (`EVALSHA`/`EVAL`/`FCALL`:
    /// the first of `numkeys` keys), the channel of `SPUBLISH`, `nil` for a command without one, which the cluster
    /// client sends to one stable primary. `PUBLISH` is one of those: any node accepts it and forwards it to the
    /// others over its cluster-bus links, in order, so one client's publishes all leaving from one node keep their
    /// order across channels, as on a single Redis.
    package var routingKey: ArraySlice<UInt8>? {
        // Read from the name's bytes (ASCII, any case), without making a `String` of it: the cluster client asks
        // this of every command it sends.
        if isNamed(oneOf: Self.scriptNames) {
            guard count > 3, let keys = argument(2).flatMap({ Int(String(decoding: $0, as: UTF8.self)) }), keys > 0
            else { return nil }
            return argument(3)
        }
        if isNamed(oneOf: Self.keylessNames) { return nil }
        return count > 1 ? argument(1) : nil
    }

    /// Whether the command's name (any case) is one of `candidates` (upper-case).
    private func isNamed(oneOf candidates: [[UInt8]]) -> Bool {
        let nameLength = Int(lengths[0])
        return storage.withUnsafeBufferPointer { storage in
            candidates.contains { candidate in
                candidate.count == nameLength && zip(candidate, storage).allSatisfy { $0 == Self.upper($1) }
            }
        }
    }

    @inline(__always)
    private static func upper(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte - 32 : byte
    }

    /// Commands whose keys follow `numkeys` (argument 2).
    private static let scriptNames: [[UInt8]] = ["EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"]
        .map { Array($0.utf8) }

    /// Commands without a key (argument 1 is not one).
    private static let keylessNames: [[UInt8]] = [
        "PING", "SCRIPT", "CLUSTER", "INFO", "CLIENT", "AUTH", "SELECT", "ASKING", "READONLY", "FLUSHALL",
        "FLUSHDB", "DBSIZE", "TIME", "CONFIG", "DEBUG", "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
        "HELLO", "ECHO", "QUIT", "COMMAND", "MULTI", "EXEC", "DISCARD", "WAIT", "PUBLISH",
    ].map { Array($0.utf8) }

    /// The bytes of argument `index` (0 is the name).
    package func argument(_ index: Int) -> ArraySlice<UInt8>? {
        guard index < lengths.count else { return nil }
        var offset = 0
        for length in lengths.prefix(index) { offset += Int(length) }
        return storage[offset..<(offset + Int(lengths[index]))]
    }
}
