import NIOCore
import RealtimeCore
import Testing

@testable import RealtimeRedis

/// The cluster client's decisions as values: key slots, the slot map, redirects. No server.
@Suite struct RedisClusterRoutingTests {
    @Test func crc16MatchesTheClusterSpecification() {
        // The specification's check value for "123456789".
        #expect(RedisHashSlot.crc16(Array("123456789".utf8)[...]) == 0x31C3)
        #expect(RedisHashSlot.slot(of: "foo") == 12182)
        #expect(RedisHashSlot.slot(of: "bar") == 5061)
    }

    @Test func hashTagsPickTheSlot() {
        #expect(RedisHashSlot.slot(of: "{user1000}.following") == RedisHashSlot.slot(of: "{user1000}.followers"))
        #expect(RedisHashSlot.slot(of: "rthub:cs:{u:alice}") == RedisHashSlot.slot(of: "rthub:h:{u:alice}:s"))
        #expect(RedisHashSlot.slot(of: "rthub:cs:{u:alice}") == RedisHashSlot.slot(of: "u:alice"))
        // Only the first `{…}` counts, an empty one means no tag, `{` inside a tag is part of it.
        #expect(RedisHashSlot.slot(of: "foo{bar}{zap}") == RedisHashSlot.slot(of: "bar"))
        #expect(RedisHashSlot.slot(of: "foo{}{bar}") == RedisHashSlot.slot(of: Array("foo{}{bar}".utf8)[...]))
        #expect(RedisHashSlot.slot(of: "foo{}{bar}") != RedisHashSlot.slot(of: "bar"))
        #expect(RedisHashSlot.slot(of: "foo{{bar}}zap") == RedisHashSlot.slot(of: "{bar"))
        #expect(
            RedisHashSlot.slot(of: "no-close{tag") == Int(RedisHashSlot.crc16(Array("no-close{tag".utf8)[...]) % 16384)
        )
        // Any collection of bytes, contiguous or not, hashes the same.
        #expect(RedisHashSlot.slot(of: "x{u:bob}y".utf8) == RedisHashSlot.slot(of: "u:bob"))
        #expect(RedisHashSlot.slot(of: Array("oof".utf8).reversed()) == RedisHashSlot.slot(of: "foo"))
    }

    @Test func commandsAreRoutedByTheirKey() {
        #expect(RedisCommand("GET", "k").routingKey.map(Array.init) == Array("k".utf8))
        #expect(RedisCommand("EVALSHA", "abc", "2", "k1", "k2", "arg").routingKey.map(Array.init) == Array("k1".utf8))
        #expect(RedisCommand("EVALSHA", "abc", "0", "arg").routingKey == nil)
        #expect(RedisCommand("SPUBLISH", "chan", "x").routingKey.map(Array.init) == Array("chan".utf8))
        #expect(RedisCommand("PUBLISH", "chan", "x").routingKey == nil)
        #expect(RedisCommand("script", "LOAD", "return 1").routingKey == nil)
        #expect(RedisCommand("PING").routingKey == nil)
        // Command names in any case; a name that only starts like a keyless one is routed by its key.
        #expect(RedisCommand("get", "k").routingKey.map(Array.init) == Array("k".utf8))
        #expect(RedisCommand("EvalSha", "abc", "1", "k1", "arg").routingKey.map(Array.init) == Array("k1".utf8))
        #expect(RedisCommand("publish", "chan", "x").routingKey == nil)
        #expect(RedisCommand("PINGX", "k").routingKey.map(Array.init) == Array("k".utf8))
    }

    static func slotsReply(_ ranges: [(Int, Int, String, Int)]) -> RESPValue {
        .array(
            ranges.map { start, end, host, port in
                .array([
                    .integer(Int64(start)), .integer(Int64(end)),
                    .array([
                        .bulkString(ByteBuffer(string: host)), .integer(Int64(port)),
                        .bulkString(ByteBuffer(string: "id")),
                    ]),
                    .array([.bulkString(ByteBuffer(string: host)), .integer(Int64(port + 1000))]),
                ])
            }
        )
    }

    @Test func slotMapReadsClusterSlots() throws {
        let seed = RedisNodeAddress(host: "10.0.0.9", port: 7000)
        let reply = Self.slotsReply([
            (0, 5460, "127.0.0.1", 7001), (5461, 10922, "", 7002), (10923, 16383, "127.0.0.1", 7003),
        ])
        let topology = try RedisClusterTopology(clusterSlots: reply, answeredBy: seed)
        #expect(topology.primaries.count == 3)
        #expect(topology.owner(of: 0) == RedisNodeAddress(host: "127.0.0.1", port: 7001))
        #expect(topology.owner(of: 5461) == RedisNodeAddress(host: "10.0.0.9", port: 7002))
        #expect(topology.owner(of: 16383) == RedisNodeAddress(host: "127.0.0.1", port: 7003))
        #expect(topology.uncoveredSlots == 0)
    }

    @Test func slotMapReportsUncoveredSlots() throws {
        let reply = Self.slotsReply([(0, 99, "127.0.0.1", 7001), (200, 16383, "127.0.0.1", 7002)])
        let topology = try RedisClusterTopology(clusterSlots: reply, answeredBy: .init(host: "127.0.0.1", port: 7001))
        #expect(topology.uncoveredSlots == 100)
        #expect(topology.uncoveredDescription == "100-199")
        #expect(topology.owner(of: 150) == nil)
    }

    @Test func malformedClusterSlotsIsRefused() {
        let seed = RedisNodeAddress(host: "127.0.0.1", port: 7000)
        for reply: RESPValue in [
            .error("ERR This instance has cluster support disabled"),
            .array([.array([.integer(5), .integer(2), .array([.bulkString(ByteBuffer(string: "h")), .integer(1)])])]),
            .array([
                .array([.integer(0), .integer(20000), .array([.bulkString(ByteBuffer(string: "h")), .integer(1)])])
            ]),
            .array([.array([.integer(0), .integer(1), .array([.bulkString(ByteBuffer(string: "h")), .integer(0)])])]),
            .array([.integer(1)]),
        ] {
            #expect(throws: RealtimeError.self) { try RedisClusterTopology(clusterSlots: reply, answeredBy: seed) }
        }
    }

    @Test func movedPatchesOneSlot() throws {
        let reply = Self.slotsReply([(0, 16383, "127.0.0.1", 7001)])
        var topology = try RedisClusterTopology(clusterSlots: reply, answeredBy: .init(host: "127.0.0.1", port: 7001))
        let target = RedisNodeAddress(host: "127.0.0.1", port: 7002)
        topology.move(slot: 42, to: target)
        #expect(topology.owner(of: 42) == target)
        #expect(topology.owner(of: 41) == RedisNodeAddress(host: "127.0.0.1", port: 7001))
        #expect(topology.primaries.count == 2)
        topology.move(slot: 99_999, to: target)
        #expect(topology.primaries.count == 2)
    }

    @Test func redirectsAreDecided() {
        let node = RedisNodeAddress(host: "127.0.0.1", port: 7002)
        #expect(RedisClusterRedirect.decide(.simpleString("OK"), attempt: 0) == .done)
        #expect(RedisClusterRedirect.decide(.error("ERR wrong"), attempt: 0) == .done)
        #expect(RedisClusterRedirect.decide(.error("NOSCRIPT No matching script"), attempt: 0) == .done)
        #expect(
            RedisClusterRedirect.decide(.error("MOVED 3999 127.0.0.1:7002"), attempt: 0) == .moved(slot: 3999, to: node)
        )
        #expect(
            RedisClusterRedirect.decide(.error("ASK 3999 127.0.0.1:7002"), attempt: 1) == .ask(slot: 3999, to: node)
        )
        #expect(
            RedisClusterRedirect.decide(.error("MOVED 1 [::1]:7002"), attempt: 0)
                == .moved(slot: 1, to: RedisNodeAddress(host: "::1", port: 7002))
        )
        #expect(
            RedisClusterRedirect.decide(.error("TRYAGAIN Multiple keys request during rehashing"), attempt: 0)
                == .retryLater
        )
        #expect(RedisClusterRedirect.decide(.error("CLUSTERDOWN The cluster is down"), attempt: 2) == .retryLater)
        // A malformed redirect is an error for the caller, not something to follow.
        #expect(RedisClusterRedirect.decide(.error("MOVED x 127.0.0.1:7002"), attempt: 0) == .done)
        #expect(RedisClusterRedirect.decide(.error("MOVED 20000 127.0.0.1:7002"), attempt: 0) == .done)
        #expect(RedisClusterRedirect.decide(.error("MOVED 1 nowhere"), attempt: 0) == .done)
        // Redirect loops end.
        if case .giveUp = RedisClusterRedirect.decide(.error("MOVED 1 127.0.0.1:7002"), attempt: 5) {
        } else {
            Issue.record("a sixth redirect must give up")
        }
    }

    @Test func nodeListsAreParsedWithClearErrors() throws {
        let nodes = try RedisNodeAddress.list(parsing: "node1:6379, rediss://node2:6380,[::1]:7000")
        #expect(
            nodes == [
                RedisNodeAddress(host: "node1", port: 6379), RedisNodeAddress(host: "node2", port: 6380),
                RedisNodeAddress(host: "::1", port: 7000),
            ]
        )
        for bad in ["", "node1", "node1:", "node1:0", "node1:70000", "node1:6379,", ":6379", "[::1:7000"] {
            #expect(throws: RealtimeError.self, "\(bad)") { try RedisNodeAddress.list(parsing: bad) }
        }
        #expect(throws: RealtimeError.self) {
            try RedisConfiguration.cluster(nodes: "a:1", base: RedisConfiguration(database: 2))
        }
        let configuration = try RedisConfiguration.cluster(nodes: "a:1,b:2")
        #expect(configuration.clusterNodes.count == 2)
    }
}
