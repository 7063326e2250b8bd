// SPDX-License-Identifier: Apache-2.0

import Hummingbird
import RealtimeCore
import ServiceLifecycle
import Testing

/// Plain HTTP connections at graceful shutdown: requests on their way are answered with `Connection: close`, from the
/// start of the hub's drain on.
extension RequestLimitTests {
    /// Graceful shutdown: a request sent on a kept-alive connection, or as the first request of a connection opened
    /// before the shutdown, is answered (with `Connection: close`) and the connection then closes, so the server
    /// stops. Before: the first was reset if it crossed the close (its client could not tell whether the publish was
    /// carried out), and the second was served keep-alive and held the shutdown open while its client kept sending.
    @Test("graceful shutdown answers a request already on its way with Connection: close, then stops")
    func gracefulShutdownAnswersRequestsOnTheirWay() async throws {
        try await TestServer.with({ $0.http.shutdownGrace = .seconds(10) }) { server in
            let fresh = try await TestSocket.connect(port: server.port)
            let used = try await TestSocket.connect(port: server.port)
            let request = "GET /ws/health HTTP/1.1\r\nHost: x\r\n\r\n"
            try await used.write(request)
            #expect(try await used.readHTTPReply().header("Connection") == nil, "kept alive before the shutdown")
            await server.serviceGroup.triggerGracefulShutdown()
            // The HTTP server's shutdown (after the hub's drain) closes the listener, then tells every connection.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline {
                guard let probe = try? await TestSocket.connect(port: server.port) else { break }
                await probe.close()
                try await Task.sleep(for: .milliseconds(10))
            }
            for (name, socket) in [("opened before, silent", fresh), ("kept alive", used)] {
                try await socket.write(request)
                let reply = try await socket.readHTTPReply()
                #expect(reply.header("Connection")?.lowercased() == "close", "\(name)")
                try await socket.waitForEOF()
            }
        }
    }

    /// Graceful shutdown begins with the hub's drain, which waits for the WebSocket clients to close (here one that
    /// does not answer the close frame holds it), and the HTTP server hears of the shutdown only after that. A
    /// request answered in between says `Connection: close`, and its connection then closes. Before: it was answered
    /// keep-alive, and the client's next request went into a socket about to close.
    @Test("while the hub drains, before the HTTP server's shutdown, a response says Connection: close and closes")
    func responsesDuringTheHubsDrainCloseTheirConnection() async throws {
        try await TestServer.with(closeTimeout: .seconds(60)) { server in
            let request = "GET /ws/health HTTP/1.1\r\nHost: x\r\n\r\n"
            let used = try await TestSocket.connect(port: server.port)
            try await used.write(request)
            #expect(try await used.readHTTPReply().header("Connection") == nil, "kept alive before the shutdown")
            let silent = try await server.connect(TestKeys.token("alice"))
            await server.serviceGroup.triggerGracefulShutdown()
            // The hub is draining once it tells its clients to reconnect; this one never answers the close frame.
            _ = try await silent.nextMessage(type: "reconnect")
            _ = try await silent.nextClose()
            let fresh = try await TestSocket.connect(port: server.port)
            // Two pipelined requests on the kept-alive connection: both are answered before the close.
            for (name, socket, requests) in [("kept alive", used, 2), ("opened during the drain", fresh, 1)] {
                try await socket.write(String(repeating: request, count: requests))
                for _ in 0..<requests {
                    let reply = try await socket.readHTTPReply()
                    #expect(reply.header("Connection")?.lowercased() == "close", "\(name)")
                }
                try await socket.waitForEOF()
            }
            // Still the hub's drain, not the HTTP server's shutdown: its listener takes connections.
            let probe = try await TestSocket.connect(port: server.port)
            await probe.close()
            await silent.close()
        }
    }
}
