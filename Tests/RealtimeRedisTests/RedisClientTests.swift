import Metrics
import MetricsTestKit
import NIOCore
import RealtimeCore
import RealtimeRedis
import RealtimeRedisTestSupport
import RealtimeTesting
import Synchronization
import Testing

extension RedisIntegrationTests {
    @Suite(.timeLimit(.minutes(1))) struct RedisClientTests {
        @Test func commandsReturnEveryReplyType() async throws {
            try await withRedis { configuration, _ in
                let client = RedisClient(configuration: configuration)
                let key = "test:\(RandomID.hex(bytes: 6))"
                #expect(try await client.send(RedisCommand("SET", key, "v")) == .simpleString("OK"))
                #expect(try await client.send(RedisCommand("GET", key)) == .bulkString(ByteBuffer(string: "v")))
                #expect(try await client.send(RedisCommand("GET", key + ":missing")) == .null)
                #expect(try await client.send(RedisCommand("INCR", key + ":n")) == .integer(1))
                _ = try await client.send(RedisCommand("RPUSH", key + ":l", "a", "b"))
                #expect(
                    try await client.send(RedisCommand("LRANGE", key + ":l", "0", "-1"))
                        == .array([.bulkString(ByteBuffer(string: "a")), .bulkString(ByteBuffer(string: "b"))])
                )
                var binary = RedisCommand("SET", key + ":b")
                binary.append(bytes: [0, 1, 13, 10, 255])
                _ = try await client.send(binary)
                #expect(try await client.send(RedisCommand("GET", key + ":b")).bytes == [0, 1, 13, 10, 255])
                let error = await #expect(throws: RealtimeError.self) {
                    try await client.send(RedisCommand("NOSUCHCOMMAND"))
                }
                #expect(error?.code == .backendUnavailable)
                #expect((error?.underlying as? RedisServerError)?.code == "ERR")
                let raw = try await client.pipeline([
                    RedisCommand("PING"), RedisCommand("NOSUCHCOMMAND"), RedisCommand("ECHO", "x"),
                ])
                #expect(raw.count == 3)
                #expect(raw[0] == .simpleString("PONG"))
                if case .error = raw[1] {} else { Issue.record("expected an error reply, got \(raw[1])") }
                #expect(raw[2] == .bulkString(ByteBuffer(string: "x")))
                await client.shutdown()
            }
        }

        @Test func pipelinesManyConcurrentCommands() async throws {
            try await withRedis { configuration, _ in
                var configuration = configuration
                configuration.poolSize = 2
                let client = RedisClient(configuration: configuration)
                let key = "test:counter:\(RandomID.hex(bytes: 6))"
                try await withThrowingTaskGroup(of: Int64.self) { group in
                    for index in 0..<2000 {
                        group.addTask {
                            let echoed = try await client.send(RedisCommand("ECHO", String(index)))
                            #expect(echoed.string == String(index))
                            return try await client.send(RedisCommand("INCR", key)).int ?? -1
                        }
                    }
                    var seen = Set<Int64>()
                    for try await value in group { seen.insert(value) }
                    #expect(seen == Set(1...2000))
                }
                // Replies of one pipeline come back in order.
                let replies = try await client.pipeline((0..<500).map { RedisCommand("ECHO", String($0)) })
                #expect(replies.map(\.string) == (0..<500).map { String($0) })
                // Pipelines and single commands from many tasks at once share each connection's write batches;
                // every caller still gets exactly its own replies.
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for task in 0..<200 {
                        group.addTask {
                            let batch = (0..<(1 + task % 17)).map { RedisCommand("ECHO", "\(task)-\($0)") }
                            let replies = try await client.pipeline(batch)
                            #expect(replies.map(\.string) == batch.indices.map { "\(task)-\($0)" })
                            let single = try await client.send(RedisCommand("ECHO", "single-\(task)"))
                            #expect(single.string == "single-\(task)")
                        }
                    }
                    try await group.waitForAll()
                }
                await client.shutdown()
            }
        }

        @Test func authenticatesAndSelectsTheDatabaseFromTheURL() async throws {
            let server = try await RedisTestServer.start(["--requirepass", "s3cr:t"])
            defer { server.stop() }
            let selected = RedisClient(
                configuration: try RedisConfiguration(url: "redis://:s3cr%3At@127.0.0.1:\(server.port)/3")
            )
            let plain = RedisClient(
                configuration: try RedisConfiguration(url: "redis://default:s3cr%3At@127.0.0.1:\(server.port)")
            )
            _ = try await selected.send(RedisCommand("SET", "where", "db3"))
            #expect(try await selected.send(RedisCommand("GET", "where")).string == "db3")
            #expect(try await plain.send(RedisCommand("GET", "where")) == .null)
            #expect(try await plain.send(RedisCommand("CLIENT", "INFO")).string?.contains("db=0") == true)
            #expect(try await selected.send(RedisCommand("CLIENT", "INFO")).string?.contains("db=3") == true)

            let wrong = RedisClient(
                configuration: try RedisConfiguration(url: "redis://:nope@127.0.0.1:\(server.port)")
            )
            let error = await #expect(throws: RealtimeError.self) { try await wrong.send(RedisCommand("PING")) }
            #expect(error?.code == .backendUnavailable)
            #expect(error?.description.contains("nope") == false)
            for client in [selected, plain, wrong] { await client.shutdown() }
        }

        @Test func slowRedisTimesOutAndThenRecovers() async throws {
            try await withRedis(ownServer: true) { configuration, _ in
                var fast = configuration
                fast.commandTimeout = .milliseconds(200)
                let client = RedisClient(configuration: fast)
                var slow = configuration
                slow.commandTimeout = .seconds(5)
                let admin = RedisClient(configuration: slow)
                #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
                // Redis answers no client for 1000 ms; `awake` is set once it answers again.
                let (awake, watcher) = try await pauseRedis(admin, milliseconds: 1000)
                let error = await #expect(throws: RealtimeError.self) { try await client.send(RedisCommand("PING")) }
                #expect(error?.code == .timeout)
                // A pipeline times out as a whole, and its three late replies are discarded too.
                let batch = await #expect(throws: RealtimeError.self) {
                    try await client.pipeline([RedisCommand("PING"), RedisCommand("PING"), RedisCommand("PING")])
                }
                #expect(batch?.code == .timeout)
                #expect(!awake.isSet, "the command timeouts came only after Redis answered again")
                await watcher.value
                // The late reply to the timed-out PING is discarded; later replies still match their commands.
                #expect(try await client.send(RedisCommand("ECHO", "after")).string == "after")
                #expect(
                    try await client.pipeline([RedisCommand("ECHO", "a"), RedisCommand("ECHO", "b")]).map(\.string) == [
                        "a", "b",
                    ]
                )
                await client.shutdown()
                await admin.shutdown()
            }
        }

        @Test func silentConnectionIsTakenForDeadAndReplaced() async throws {
            try await withRedis(ownServer: true) { configuration, _ in
                var single = configuration
                single.poolSize = 1
                single.commandTimeout = .milliseconds(100)
                single.initialReconnectDelay = .milliseconds(10)
                let metrics = TestMetrics()
                let client = withMetricsFactory(metrics) { RedisClient(configuration: single) }
                var slow = configuration
                slow.commandTimeout = .seconds(5)
                let admin = RedisClient(configuration: slow)
                let id = try #require(try await client.send(RedisCommand("CLIENT", "ID")).int)
                // Redis stays silent for 1.2 s: longer than 5 command timeouts (500 ms) of the client.
                let (_, watcher) = try await pauseRedis(admin, milliseconds: 1200)
                let error = await #expect(throws: RealtimeError.self) { try await client.send(RedisCommand("PING")) }
                #expect(error?.code == .timeout)
                // Taken for dead and replaced (the new TCP connection is accepted even while Redis sleeps).
                #expect(
                    try await eventually {
                        metrics.counterTotal(
                            label: "realtime_redis_reconnects_total",
                            dimensions: [("connection", "pool")]
                        )
                            == 1
                    }
                )
                await watcher.value
                #expect(
                    try await eventually {
                        guard let newID = try? await client.send(RedisCommand("CLIENT", "ID")).int else { return false }
                        return newID != id
                    }
                )
                await client.shutdown()
                await admin.shutdown()
            }
        }

        @Test func killedConnectionFailsCommandsInFlightAndReconnects() async throws {
            try await withRedis { configuration, _ in
                var single = configuration
                single.poolSize = 1
                single.commandTimeout = .seconds(10)
                let client = RedisClient(configuration: single)
                let admin = RedisClient(configuration: configuration)
                let id = try #require(try await client.send(RedisCommand("CLIENT", "ID")).int)
                let list = "test:list:\(RandomID.hex(bytes: 6))"
                async let blocked: Result<RESPValue, RealtimeError> = {
                    do throws(RealtimeError) {
                        return .success(try await client.send(RedisCommand("BLPOP", list, "8")))
                    } catch {
                        return .failure(error)
                    }
                }()
                #expect(
                    try await eventually {
                        let clients = try await admin.send(RedisCommand("CLIENT", "LIST")).string ?? ""
                        return clients.contains("id=\(id) ") && clients.contains("cmd=blpop")
                    }
                )
                _ = try await admin.send(RedisCommand("CLIENT", "KILL", "ID", String(id)))
                // Without the kill, BLPOP would answer nil after 8 s and the command would time out after 10 s:
                // `backendUnavailable` can only come from the lost connection, so no wall-clock bound is needed.
                let outcome = await blocked
                guard case .failure(let error) = outcome else {
                    Issue.record("BLPOP should fail when its connection is killed")
                    return
                }
                #expect(error.code == .backendUnavailable)
                #expect(
                    try await eventually {
                        (try? await client.send(RedisCommand("PING"))) == .simpleString("PONG")
                    }
                )
                await client.shutdown()
                await admin.shutdown()
            }
        }

        @Test func redisRestartFailsFastThenRecovers() async throws {
            try await withRedis(ownServer: true) { configuration, server in
                let server = try #require(server)
                var configuration = configuration
                configuration.initialReconnectDelay = .milliseconds(20)
                configuration.maximumReconnectDelay = .milliseconds(200)
                let client = RedisClient(configuration: configuration)
                #expect(try await client.send(RedisCommand("PING")) == .simpleString("PONG"))
                // Every pooled connection up (the first PING needed only one).
                #expect(try await eventually { await client.healthCheck().status == .healthy })
                server.stop()
                #expect(try await eventually { !client.isConnected })
                // Fails fast: `backendUnavailable`, not the command timeout a queued command would end in.
                let error = await #expect(throws: RealtimeError.self) { try await client.send(RedisCommand("PING")) }
                #expect(error?.code == .backendUnavailable)
                let health = await client.healthCheck()
                #expect(health.status == .unhealthy)
                #expect(health.details["redisConnected"] == .bool(false))
                try await server.launch()
                #expect(
                    try await eventually { (try? await client.send(RedisCommand("PING"))) == .simpleString("PONG") }
                )
                #expect(try await eventually { await client.healthCheck().status == .healthy })
                await client.shutdown()
                let closed = await #expect(throws: RealtimeError.self) { try await client.send(RedisCommand("PING")) }
                #expect(closed?.code == .shutDown)
            }
        }
    }
}
