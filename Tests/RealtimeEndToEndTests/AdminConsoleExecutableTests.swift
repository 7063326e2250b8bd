// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import Testing

/// realtime-server serves the browser client at a stable path and the admin console only when enabled, with its
/// security headers (issue 16). The browser tests (Tests/BrowserTests) drive both in Chromium.
@Suite("realtime-server: the client library and the admin console")
struct AdminConsoleExecutableTests {
    static let secret = "console-test-secret-0123456789abcdef0123456789abcdef"

    /// Starts realtime-server with `arguments` and `environment`; returns it and its port.
    static func start(_ arguments: [String], environment: [String: String] = [:]) async throws -> (Child, Int) {
        let child = try Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--port", "0", "--log-level", "warning"] + arguments,
            environment: environment
        )
        do {
            let listening = try await child.line(containing: "listening on http://")
            return (child, try #require(listening.split(separator: ":").last.flatMap { Int($0) }))
        } catch {
            child.stop()
            throw error
        }
    }

    @Test("development mode serves the console with its security headers, and the client library")
    func developmentServesTheConsole() async throws {
        let (server, port) = try await Self.start([])
        defer { server.stop() }
        #expect(try await server.line(containing: "Console:").contains("/admin/"))

        let page = try await TestSocket.request(port: port, "GET", "/admin/")
        #expect(page.status == 200)
        #expect(page.header("Content-Type") == "text/html; charset=utf-8")
        let policy = try #require(page.header("Content-Security-Policy"))
        for directive in [
            "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            #expect(policy.contains(directive), "\(directive)")
        }
        #expect(!policy.contains("unsafe"))
        #expect(page.header("X-Frame-Options") == "DENY")
        #expect(page.header("Referrer-Policy") == "no-referrer")
        #expect(page.header("X-Content-Type-Options") == "nosniff")
        #expect(page.header("Set-Cookie") == nil)
        // No inline script or style: every script has a src, no style element or attribute.
        let html = page.text
        #expect(
            html.components(separatedBy: "<script").count
                == html.components(separatedBy: "<script type=\"module\" src=").count
        )
        #expect(!html.contains("<style") && !html.contains("style="))
        #expect(try await TestSocket.request(port: port, "GET", "/admin").status == 200)

        for (path, type) in [
            ("/admin/console.js", "text/javascript; charset=utf-8"), ("/admin/console.css", "text/css; charset=utf-8"),
            ("/admin/favicon.svg", "image/svg+xml"),
        ] {
            let file = try await TestSocket.request(port: port, "GET", path)
            #expect(file.status == 200, "\(path)")
            #expect(file.header("Content-Type") == type, "\(path)")
            #expect(file.header("Content-Security-Policy") == policy, "\(path)")
        }
        let settings = try await TestSocket.request(port: port, "GET", "/admin/settings.json")
        #expect(try settings.json()["adminPath"] == "/ws/admin")
        #expect(try settings.json()["apiPrefix"] == "/api/v1")
        #expect(try settings.json()["firstMessageAuth"] == false)

        // The client library: a module any origin may load, revalidated by its ETag.
        let client = try await TestSocket.request(port: port, "GET", "/client/realtime-client.js")
        #expect(client.status == 200)
        #expect(client.header("Content-Type") == "text/javascript; charset=utf-8")
        #expect(client.header("Access-Control-Allow-Origin") == "*")
        #expect(client.header("Cache-Control") == "no-cache")
        #expect(client.text.contains("export class RealtimeClient"))
        let etag = try #require(client.header("ETag"))
        let cached = try await TestSocket.request(
            port: port,
            "GET",
            "/client/realtime-client.js",
            headers: [("If-None-Match", etag)]
        )
        #expect(cached.status == 304)
        #expect(cached.body.isEmpty)
        let stale = try await TestSocket.request(
            port: port,
            "GET",
            "/client/realtime-client.js",
            headers: [("If-None-Match", "\"0\"")]
        )
        #expect(stale.status == 200)
    }

    @Test("production mode: the console is off unless WEBSOCKET_ADMIN_CONSOLE=true or --admin-console")
    func productionNeedsTheConsoleEnabled() async throws {
        let production = ["JWT_SECRET": Self.secret]
        let (off, offPort) = try await Self.start([], environment: production)
        let closed = try await TestSocket.request(port: offPort, "GET", "/admin/")
        off.stop()
        #expect(closed.status == 404)
        #expect(closed.text.contains("--admin-console"))
        #expect(!off.output.contains("Console:"))

        var enabled = production
        enabled["WEBSOCKET_ADMIN_CONSOLE"] = "true"
        for (arguments, environment) in [([String](), enabled), (["--admin-console"], production)] {
            let (on, port) = try await Self.start(arguments, environment: environment)
            let page = try await TestSocket.request(port: port, "GET", "/admin/")
            let client = try await TestSocket.request(port: port, "GET", "/client/realtime-client.js")
            on.stop()
            #expect(page.status == 200, "\(arguments) \(environment)")
            #expect(client.status == 200)
        }

        // Off in development mode when asked; a value that is no boolean stops the server with a clear message.
        let (disabled, disabledPort) = try await Self.start(["--no-admin-console"])
        let refused = try await TestSocket.request(port: disabledPort, "GET", "/admin/")
        let library = try await TestSocket.request(port: disabledPort, "GET", "/client/realtime-client.js")
        disabled.stop()
        #expect(refused.status == 404)
        #expect(library.status == 200)
        let bad = try await Child(
            try ExecutableTests.executable("realtime-server"),
            ["serve", "--port", "0"],
            environment: ["WEBSOCKET_ADMIN_CONSOLE": "maybe"]
        ).finish()
        #expect(bad.status != 0)
        #expect(bad.output.contains("WEBSOCKET_ADMIN_CONSOLE must be true or false"))
    }
}
