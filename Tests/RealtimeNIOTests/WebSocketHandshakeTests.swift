import NIOHTTP1
import Testing

@testable import RealtimeNIO

/// `WebSocketHandshake.problem`: the RFC 6455 §4.2.1 checks every host applies before asking the hub (the Vapor
/// host calls it; the realtime pipeline through `RequestHeadGuard`).
@Suite struct WebSocketHandshakeTests {
    static func head(
        method: HTTPMethod = .GET,
        version: HTTPVersion = .http1_1,
        _ headers: [(String, String)] = [
            ("Host", "x"), ("Upgrade", "websocket"), ("Connection", "keep-alive, Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ]
    ) -> HTTPRequestHead {
        HTTPRequestHead(version: version, method: method, uri: "/ws/events", headers: HTTPHeaders(headers))
    }

    static func replacing(_ name: String, with values: [String]) -> [(String, String)] {
        let base: [(String, String)] = [
            ("Host", "x"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13"),
        ]
        return base.filter { $0.0 != name } + values.map { (name, $0) }
    }

    @Test func aValidHandshakeHasNoProblem() {
        #expect(WebSocketHandshake.problem(Self.head()) == nil)
    }

    @Test func eachBrokenRuleIsNamed() {
        let cases: [(HTTPRequestHead, String)] = [
            (Self.head(method: .HEAD), "GET"),
            (Self.head(version: .http1_0), "HTTP/1.1"),
            (Self.head(Self.replacing("Connection", with: ["keep-alive"])), "Connection: Upgrade"),
            (Self.head(Self.replacing("Sec-WebSocket-Key", with: ["AAAAAAAAAAA="])), "16 bytes"),
            (Self.head(Self.replacing("Sec-WebSocket-Key", with: ["!!!!!!!!!!!!!!!!!!!!!!=="])), "16 bytes"),
            (Self.head(Self.replacing("Sec-WebSocket-Key", with: ["dGhlIHNhbXBsZSBub25jZQ==", "b"])), "one"),
            (Self.head(Self.replacing("Sec-WebSocket-Key", with: [])), "one"),
            (Self.head(Self.replacing("Sec-WebSocket-Version", with: ["8"])), "13"),
        ]
        for (head, words) in cases {
            let problem = WebSocketHandshake.problem(head)
            #expect(problem?.contains(words) == true, "\(head.method) \(head.headers): \(problem ?? "nil")")
        }
        // The realtime pipeline's own check leaves the key count and the version to NIO's upgrader.
        let twoVersions = Self.head(Self.replacing("Sec-WebSocket-Version", with: ["8"]))
        #expect(RealtimeHubPipeline.handshakeProblem(twoVersions) == nil)
    }
}
