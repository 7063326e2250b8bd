// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
import Hummingbird
import HummingbirdCore
import NIOCore
import RealtimeCore

/// An HTTP API error: `{"error":{"code":…,"message":…}}` with a status.
struct APIError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String
    var message: String
    var headers: HTTPFields = [:]

    var response: Response {
        var response = jsonResponse(
            status,
            .object(["error": .object(["code": .string(code), "message": .string(message)])])
        )
        response.headers.append(contentsOf: headers)
        return response
    }
}

/// A response with a JSON body written by ``JSONWriter``.
func jsonResponse(_ status: HTTPResponse.Status, _ value: JSONValue) -> Response {
    let bytes = JSONWriter.bytes(value)
    var buffer = ByteBuffer()
    buffer.writeBytes(bytes)
    buffer.writeInteger(UInt8(ascii: "\n"))
    return Response(
        status: status,
        headers: [.contentType: "application/json; charset=utf-8", .cacheControl: "no-store"],
        body: .init(byteBuffer: buffer)
    )
}

/// Turns the router's plain errors on the hub's paths into the JSON error envelope: `404 not_found` for an
/// unknown path, `405 method_not_allowed` with `Allow` for a known path and another method, and the status's own
/// code for any other `HTTPResponseError`. Requests outside `prefixes` keep the host's error handling, except
/// another method on one of the hub's routes (`POST /metrics`), which is `405` here too.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// The hub's routes, with `:name` segments matching any one segment.
    let routes: [(method: HTTPRequest.Method, path: String)]
    /// Paths at or below these are the hub's.
    let prefixes: [String]

    init(routes: [(method: HTTPRequest.Method, path: String)], prefixes: [String]) {
        self.routes = routes
        self.prefixes = prefixes
    }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as any HTTPResponseError {
            let path = request.uri.path
            let allowed = error.status == .notFound ? allowedMethods(path) : []
            // The hub's prefixes, and its routes outside them (`/metrics`) when another method was asked for.
            guard !allowed.isEmpty || prefixes.contains(where: { path == $0 || path.hasPrefix($0) }) else {
                throw error
            }
            if error.status == .notFound {
                guard allowed.isEmpty else {
                    let allow = allowed.map(\.rawValue).joined(separator: ", ")
                    return APIError(
                        status: .methodNotAllowed,
                        code: "method_not_allowed",
                        message: "\(path) accepts \(allow), not \(request.method.rawValue)",
                        headers: [.allow: allow]
                    ).response
                }
                return APIError(status: .notFound, code: "not_found", message: "no such endpoint: \(path)").response
            }
            return APIError(status: error.status, code: Self.code(error.status), message: error.status.reasonPhrase)
                .response
        }
    }

    /// The methods of the routes whose path matches `path`, in registration order.
    func allowedMethods(_ path: String) -> [HTTPRequest.Method] {
        let segments = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods: [HTTPRequest.Method] = []
        for route in routes where !methods.contains(route.method) {
            let template = route.path.split(separator: "/", omittingEmptySubsequences: true)
            guard template.count == segments.count else { continue }
            if zip(template, segments).allSatisfy({ $0.hasPrefix(":") || $0 == $1 }) { methods.append(route.method) }
        }
        return methods
    }

    /// `payload_too_large` for 413 and so on: the reason phrase in snake case.
    static func code(_ status: HTTPResponse.Status) -> String {
        switch status.code {
        case 413: return "payload_too_large"
        case 500...: return status.code == 503 ? "unavailable" : "internal_error"
        default:
            return status.reasonPhrase.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }.reduce(into: "") {
                $0.append($1)
            }
        }
    }
}
