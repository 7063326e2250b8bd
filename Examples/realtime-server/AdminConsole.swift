// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import NIOCore
import RealtimeCore
import RealtimeHummingbird

/// A browser file embedded in the executable by the `EmbedStaticFiles` build plugin (from `Clients/`).
struct EmbeddedStaticFile: Sendable {
    /// Where it is served, e.g. `/client/realtime-client.js`.
    let path: String
    let contentType: String
    /// A strong validator of the content (FNV-1a 64 of the bytes), quoted.
    let etag: String
    let text: StaticString
}

/// The generated `all` list lives in `EmbeddedStaticFiles.swift` (written at build time).
enum EmbeddedStaticFiles {}

/// The browser client library (`/client/…`, always served) and the admin console (`/admin/`, when enabled).
///
/// Every console response carries a strict Content-Security-Policy (scripts, styles, images and connections from
/// this origin only: no inline script or style, nothing from a CDN), refuses framing, sends no referrer and
/// forbids content sniffing. The console reads no cookie: its API calls carry the pasted token in
/// `Authorization`, so a cross-site request cannot ride on a session.
enum AdminConsole {
    static let contentSecurityPolicy = [
        "default-src 'none'", "script-src 'self'", "style-src 'self'", "img-src 'self'", "connect-src 'self'",
        "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'",
    ].joined(separator: "; ")

    /// The security headers of every console response.
    static let consoleHeaders: HTTPFields = [
        .contentSecurityPolicy: contentSecurityPolicy,
        HTTPField.Name("X-Frame-Options")!: "DENY",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        .xContentTypeOptions: "nosniff",
        HTTPField.Name("Cross-Origin-Opener-Policy")!: "same-origin",
        HTTPField.Name("Cross-Origin-Resource-Policy")!: "same-origin",
        HTTPField.Name("Permissions-Policy")!: "camera=(), microphone=(), geolocation=()",
    ]

    /// The headers of the client library: any origin may load it as a module (it is public code).
    static let clientHeaders: HTTPFields = [
        .xContentTypeOptions: "nosniff",
        .accessControlAllowOrigin: "*",
        HTTPField.Name("Cross-Origin-Resource-Policy")!: "cross-origin",
    ]

    /// Adds the routes: `GET /client/<file>` always; with `enabled`, `GET /admin` (also `/admin/`: the page),
    /// `/admin/<file>` and `/admin/settings.json` (the hub's paths and authentication options, so the page hard-codes
    /// none); without it, `/admin` answers 404 with how to enable the console.
    static func addRoutes(
        to router: Router<RealtimeRequestContext>,
        hub: RealtimeHub,
        apiPrefix: String,
        enabled: Bool
    ) {
        for file in EmbeddedStaticFiles.all where file.path.hasPrefix("/client/") {
            router.get(RouterPath(file.path)) { request, _ in serve(file, request, headers: clientHeaders) }
        }
        guard enabled else {
            // `/admin/` too: the router ignores a trailing slash.
            router.get("/admin") { _, _ in
                Response(
                    status: .notFound,
                    headers: [.contentType: "text/plain; charset=utf-8"],
                    body: .init(
                        byteBuffer: ByteBuffer(
                            string: "The admin console is off. Start realtime-server with --admin-console or "
                                + "WEBSOCKET_ADMIN_CONSOLE=true (it is on by default in development mode).\n"
                        )
                    )
                )
            }
            return
        }
        for file in EmbeddedStaticFiles.all where file.path.hasPrefix("/admin/") {
            let paths = file.path == "/admin/index.html" ? ["/admin", file.path] : [file.path]
            for path in paths {
                router.get(RouterPath(path)) { request, _ in serve(file, request, headers: consoleHeaders) }
            }
        }
        let settings: JSONValue = [
            "serverId": .string(hub.serverID.rawValue),
            "eventsPath": .string(hub.configuration.eventsPath),
            "adminPath": .string(hub.configuration.adminPath),
            "apiPrefix": .string(apiPrefix),
            "firstMessageAuth": .bool(hub.configuration.firstMessageAuthentication),
            "queryTokenAllowed": .bool(hub.configuration.allowQueryToken),
        ]
        router.get("/admin/settings.json") { _, _ in
            var headers = consoleHeaders
            headers[.contentType] = "application/json; charset=utf-8"
            headers[.cacheControl] = "no-store"
            return Response(
                status: .ok,
                headers: headers,
                body: .init(byteBuffer: ByteBuffer(string: JSONWriter.string(settings)))
            )
        }
    }

    /// The file with its type, `Cache-Control: no-cache` and its ETag (revalidated on every use, so a new build is
    /// picked up at once), or `304 Not Modified` when the browser holds this version.
    static func serve(_ file: EmbeddedStaticFile, _ request: Request, headers: HTTPFields) -> Response {
        var headers = headers
        headers[.eTag] = file.etag
        headers[.cacheControl] = "no-cache"
        if let match = request.headers[.ifNoneMatch],
            match.split(separator: ",").contains(where: { $0.trimmingWhitespace() == file.etag })
        {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = file.contentType
        let bytes = UnsafeRawBufferPointer(start: file.text.utf8Start, count: file.text.utf8CodeUnitCount)
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = self
        while text.first == " " { text.removeFirst() }
        while text.last == " " { text.removeLast() }
        return text
    }
}
