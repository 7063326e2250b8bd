// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeHummingbird
import RealtimeTesting
import Testing

/// The admin API over real sockets (issue 16): `GET /api/v1/connections` and `GET /api/v1/users/{id}/connections`
/// list the cluster's connections a page at a time, for administrators only, with clear errors for bad input.
@Suite("Admin API over real sockets")
struct AdminAPITests {
    /// A store with the connections of two other servers of the cluster, beside the test server's own.
    static func clusterStore() async throws -> (store: InMemoryConnectionStore, records: [ConnectionRecord]) {
        let store = InMemoryConnectionStore()
        var records: [ConnectionRecord] = []
        for server in ["srv_other_1", "srv_other_2"] {
            let now = Timestamp.now()
            try await store.heartbeat(
                ServerRecord(
                    id: ServerID(server),
                    startedAt: now,
                    lastHeartbeat: now,
                    expiresAt: now + .seconds(600),
                    connectionCount: 4
                )
            )
            for index in 0..<4 {
                let record = ConnectionRecord(
                    id: .random(),
                    serverID: ServerID(server),
                    userID: index == 0 ? "a@b" : "user-\(server)-\(index)",
                    sessionID: "s-\(index)",
                    isAdmin: false,
                    remoteAddress: "192.0.2.\(index + 1)",
                    origin: index.isMultiple(of: 2) ? "https://app.example" : nil,
                    connectedAt: now
                )
                _ = try await store.register(record, maxConnectionsPerUser: nil)
                records.append(record)
            }
        }
        return (store, records)
    }

    static func ids(_ reply: HTTPReply) throws -> [String] {
        try reply.json()["connections"]?.arrayValue?.compactMap { $0["connectionId"]?.stringValue } ?? []
    }

    @Test("pages through every server's connections with a cursor, each page within the limit")
    func pagination() async throws {
        let (store, records) = try await Self.clusterStore()
        try await TestServer.with(backends: .inMemory(tokenVerifier: TestKeys.verifier(), connectionStore: store)) {
            server in
            let alice = try await server.connect(TestKeys.token("alice", session: "s-alice"))
            defer { Task { await alice.close() } }
            #expect(try await eventually { try await store.servers().contains { $0.id == server.hub.serverID } })
            var listed: [String] = []
            var cursor: String?
            var pages = 0
            repeat {
                let query = cursor.map { "&cursor=\($0)" } ?? ""
                let reply = try await server.api("GET", "/api/v1/connections?limit=3" + query)
                #expect(reply.status == 200, "\(reply.text)")
                let page = try reply.json()
                #expect(page["limit"]?.intValue == 3)
                let ids = try Self.ids(reply)
                #expect(ids.count <= 3)
                listed += ids
                cursor = page["nextCursor"]?.stringValue
                pages += 1
                try #require(pages <= 20, "the listing does not end")
            } while cursor != nil
            #expect(Set(listed).isSuperset(of: records.map(\.id.rawValue)))
            let aliceRecords = try await store.connections(ofUser: "alice")
            #expect(aliceRecords.count == 1)
            #expect(listed.contains(aliceRecords[0].id.rawValue))
            #expect(listed.count == records.count + 1)

            // Every field of a record.
            let one = try await server.api("GET", "/api/v1/connections?userId=alice")
            let record = try #require(try one.json()["connections"]?.arrayValue?.first)
            #expect(record["userId"] == "alice")
            #expect(record["sessionId"] == "s-alice")
            #expect(record["serverId"]?.stringValue == server.hub.serverID.rawValue)
            #expect(record["admin"] == false)
            #expect(record["remoteAddress"] == "127.0.0.1")
            #expect(record["connectedAt"]?.stringValue?.hasSuffix("Z") == true)
            #expect(record["origin"] == .null)
            #expect(try one.json()["nextCursor"] == .null)
        }
    }

    @Test("filters by user, in the query or the path (percent-encoded), a page at a time")
    func filterByUser() async throws {
        let (store, records) = try await Self.clusterStore()
        try await TestServer.with(backends: .inMemory(tokenVerifier: TestKeys.verifier(), connectionStore: store)) {
            server in
            let expected = Set(records.filter { $0.userID == "a@b" }.map(\.id.rawValue))
            #expect(expected.count == 2)
            for path in ["/api/v1/connections?userId=a%40b&limit=1", "/api/v1/users/a%40b/connections?limit=1"] {
                var listed: [String] = []
                var cursor: String?
                repeat {
                    let reply = try await server.api("GET", path + (cursor.map { "&cursor=\($0)" } ?? ""))
                    #expect(reply.status == 200, "\(path): \(reply.text)")
                    #expect(try reply.json()["userId"] == "a@b")
                    listed += try Self.ids(reply)
                    cursor = try reply.json()["nextCursor"]?.stringValue
                    try #require(listed.count <= 4, "the user listing does not end")
                } while cursor != nil
                #expect(listed.count == 2)
                #expect(Set(listed) == expected)
            }
            let nobody = try await server.api("GET", "/api/v1/users/nobody/connections")
            #expect(nobody.status == 200)
            #expect(try Self.ids(nobody).isEmpty)
        }
    }

    @Test("administrators only: a user or service token gets 403, no token 401")
    func authorization() async throws {
        try await TestServer.with { server in
            for path in ["/api/v1/connections", "/api/v1/users/alice/connections"] {
                let user = try await server.api("GET", path, token: TestKeys.token("alice"))
                #expect(user.status == 403, "\(path)")
                #expect(try user.json()["error"]?["code"] == "forbidden")
                // A service may publish, not list who is connected.
                let service = try await server.api("GET", path, token: TestKeys.token("svc", roles: ["service"]))
                #expect(service.status == 403, "\(path)")
                let publish = try await server.api(
                    "POST",
                    "/api/v1/events",
                    token: TestKeys.token("svc", roles: ["service"]),
                    json: #"{"type":"system.maintenance.scheduled"}"#
                )
                #expect(publish.status == 202)
                let anonymous = try await server.api("GET", path, token: nil)
                #expect(anonymous.status == 401)
                #expect(try anonymous.json()["error"]?["code"] == "missing_token")
                #expect(try await server.api("GET", path).status == 200)
                let post = try await server.api("POST", path)
                #expect(post.status == 405)
                #expect(post.header("Allow") == "GET, HEAD")
                // HEAD takes the same action as GET: the same checks, the same status, no body.
                let head = try await server.api("HEAD", path)
                #expect(head.status == 200 && head.body.isEmpty, "\(path)")
                #expect(try await server.api("HEAD", path, token: TestKeys.token("alice")).status == 403, "\(path)")
                #expect(try await server.api("HEAD", path, token: nil).status == 401, "\(path)")
            }
        }
    }

    @Test("a bad limit is 400 invalid_parameter, a cursor the listing did not return 400 invalid_cursor")
    func badInput() async throws {
        try await TestServer.with { server in
            for limit in ["0", "-1", "501", "abc", "1e3", "", "99999999999999999999"] {
                for path in ["/api/v1/connections", "/api/v1/users/alice/connections"] {
                    let reply = try await server.api("GET", "\(path)?limit=\(limit)")
                    #expect(reply.status == 400, "limit=\(limit)")
                    #expect(try reply.json()["error"]?["code"] == "invalid_parameter", "limit=\(limit)")
                    #expect(try reply.json()["error"]?["message"]?.stringValue?.contains("1 to 500") == true)
                }
            }
            #expect(try await server.api("GET", "/api/v1/connections?limit=500").status == 200)
            for cursor in ["zz", "abc", "", "%00", "61.zz", String(repeating: "61", count: 600)] {
                for path in ["/api/v1/connections", "/api/v1/users/alice/connections"] {
                    let reply = try await server.api("GET", "\(path)?cursor=\(cursor)")
                    #expect(reply.status == 400, "cursor=\(cursor.prefix(20)) \(path)")
                    #expect(try reply.json()["error"]?["code"] == "invalid_cursor", "cursor=\(cursor.prefix(20))")
                }
            }
            let empty = try await server.api("GET", "/api/v1/connections?userId=")
            #expect(empty.status == 400)
            #expect(try empty.json()["error"]?["code"] == "invalid_parameter")
            let badPath = try await server.api("GET", "/api/v1/users/%zz/connections")
            #expect(badPath.status == 400)
            #expect(try badPath.json()["error"]?["code"] == "invalid_parameter")
            // Query values are decoded strictly (a bad escape was taken literally), and a parameter counts once
            // (the first of two decided).
            for (query, says) in [
                ("userId=%zz", "userId is not valid percent-encoded"), ("userId=%FF", "userId is not valid percent"),
                ("cursor=%z", "cursor is not valid percent"), ("limit=1&limit=2", "limit is given more than once"),
                ("userId=a&limit=5&userId=b", "userId is given more than once"),
            ] {
                let reply = try await server.api("GET", "/api/v1/connections?\(query)")
                #expect(reply.status == 400, "\(query)")
                #expect(try reply.json()["error"]?["code"] == "invalid_parameter", "\(query)")
                #expect(try reply.json()["error"]?["message"]?.stringValue?.hasPrefix(says) == true, "\(reply.text)")
            }
            let decoded = try await server.api("GET", "/api/v1/connections?userId=a%40b&limit=2")
            #expect(decoded.status == 200)
            #expect(try decoded.json()["userId"]?.stringValue == "a@b")
        }
    }

    @Test("the disconnect and revoke routes decode percent-encoded ids")
    func percentEncodedPathParameters() async throws {
        try await TestServer.with { server in
            let socket = try await server.connect(TestKeys.token("a b@c", session: "s/1"))
            let revoke = try await server.api("POST", "/api/v1/sessions/s%2F1/revoke")
            #expect(revoke.status == 200)
            #expect(try revoke.json()["revoked"] == "s/1")
            #expect(try await socket.nextClose().code == 4009)
            let disconnect = try await server.api("POST", "/api/v1/users/a%20b%40c/disconnect")
            #expect(try disconnect.json()["disconnected"] == "a b@c")
        }
    }
}
