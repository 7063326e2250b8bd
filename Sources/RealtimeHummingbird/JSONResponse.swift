// SPDX-License-Identifier: Apache-2.0

import HTTPTypes
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
