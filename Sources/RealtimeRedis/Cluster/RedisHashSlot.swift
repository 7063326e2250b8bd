/// Redis Cluster's key → slot function: CRC16 (XMODEM) of the key, or of its hash tag, modulo 16,384.
///
/// A hash tag is the part between the first `{` and the first `}` after it, when not empty: `rthub:cs:{u:alice}`
/// and `rthub:h:{u:alice}:s` share the slot of `u:alice`, which is how every multi-key script of the Redis
/// backends stays on one slot.
package enum RedisHashSlot {
    /// The number of slots of a Redis Cluster.
    package static let count = 16_384

    /// The slot of `key`.
    package static func slot(of key: some Collection<UInt8>) -> Int {
        let bytes = Array(key)
        if let open = bytes.firstIndex(of: UInt8(ascii: "{")),
            let close = bytes[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1
        {
            return Int(crc16(bytes[(open + 1)..<close]) % UInt16(count))
        }
        return Int(crc16(bytes[...]) % UInt16(count))
    }

    /// The slot of `key`.
    package static func slot(of key: String) -> Int { slot(of: Array(key.utf8)) }

    /// CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as in the Redis Cluster specification.
    package static func crc16(_ bytes: ArraySlice<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
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
        switch name {
        case "EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO":
            guard count > 3, let keys = argument(2).flatMap({ Int(String(decoding: $0, as: UTF8.self)) }), keys > 0
            else { return nil }
            return argument(3)
        case "PING", "SCRIPT", "CLUSTER", "INFO", "CLIENT", "AUTH", "SELECT", "ASKING", "READONLY", "FLUSHALL",
            "FLUSHDB", "DBSIZE", "TIME", "CONFIG", "DEBUG", "SUBSCRIBE", "PSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE",
            "HELLO", "ECHO", "QUIT", "COMMAND", "MULTI", "EXEC", "DISCARD", "WAIT", "PUBLISH":
            return nil
        default:
            return count > 1 ? argument(1) : nil
        }
    }

    /// The bytes of argument `index` (0 is the name).
    package func argument(_ index: Int) -> ArraySlice<UInt8>? {
        guard index < lengths.count else { return nil }
        var offset = 0
        for length in lengths.prefix(index) { offset += Int(length) }
        return storage[offset..<(offset + Int(lengths[index]))]
    }
}
