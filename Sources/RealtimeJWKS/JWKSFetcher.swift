// SPDX-License-Identifier: Apache-2.0

import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import RealtimeCore
import RealtimeJWT

/// One HTTPS client and the checks of every response: status 200, a JSON content type, at most `maximumBytes`
/// (refused from `Content-Length` before reading, else while the body streams in, so memory stays bounded),
/// UTF-8, and a JWK Set with at least one usable key.
struct JWKSFetcher: Sendable {
    let configuration: JWKSKeyProvider.Configuration
    let client: HTTPClient

    /// A fetcher with its own client: TLS with certificate and host name verification (against the system's trust
    /// roots, or only those of the configured CA file), no redirects, the configured timeouts.
    init(configuration: JWKSKeyProvider.Configuration) throws(JWKSError) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .fullVerification
        if let caFile = configuration.caFile {
            do {
                tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
            } catch {
                throw JWKSError(.invalidConfiguration, "cannot read CA certificates from \(caFile)")
            }
        }
        var http = HTTPClient.Configuration(
            tlsConfiguration: tls,
            redirectConfiguration: .disallow,
            timeout: .init(
                connect: Self.timeAmount(configuration.connectTimeout),
                read: Self.timeAmount(configuration.readTimeout)
            )
        )
        http.httpVersion = .http1Only
        self.configuration = configuration
        self.client = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: http)
    }

    func shutdown() async {
        try? await client.shutdown()
    }

    /// The body of `url` and the lifetime its `Cache-Control` gives, within `requestTimeout` from start to the last
    /// byte of the body.
    ///
    /// The client's own deadline bounds the request up to the response head only, and its read timeout restarts
    /// with every byte: a body trickled a byte at a time would hold the fetch (and every token waiting on it) for
    /// as long as the server liked. So the whole exchange races a timer, and the loser is cancelled.
    func get(_ url: String, accept: String) async throws(JWKSError) -> (body: [UInt8], lifetime: Duration?) {
        typealias Outcome = Result<(body: [UInt8], lifetime: Duration?), JWKSError>
        let timeout = configuration.requestTimeout
        let outcome = await withTaskGroup(of: Outcome?.self) { group in
            group.addTask {
                do throws(JWKSError) {
                    return .success(try await self.exchange(url, accept: accept))
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                // Cancelled: the exchange ended first.
                guard (try? await Task.sleep(for: timeout)) != nil else { return nil }
                return .failure(JWKSError(.unreachable, "\(Self.host(of: url)): request timeout"))
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? .failure(JWKSError(.unreachable, "\(Self.host(of: url)): the request was cancelled"))
        }
        return try outcome.get()
    }

    /// One request and its whole body (see ``get(_:accept:)``, which bounds its time).
    private func exchange(_ url: String, accept: String) async throws(JWKSError) -> (body: [UInt8], lifetime: Duration?)
    {
        let host = Self.host(of: url)
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        request.headers.add(name: "Accept", value: accept)
        request.headers.add(name: "User-Agent", value: "RealtimeJWKS")
        let maximum = configuration.maximumBytes
        do {
            let response = try await client.execute(
                request,
                deadline: .now() + Self.timeAmount(configuration.requestTimeout)
            )
            guard response.status == .ok else {
                throw JWKSError(.httpStatus, "\(host) answered \(response.status.code)")
            }
            let mediaType =
                (response.headers.first(name: "Content-Type") ?? "")
                .split(separator: ";").first.map { $0.trimming(" \t").lowercased() } ?? ""
            guard mediaType == "application/json" || mediaType == "application/jwk-set+json" else {
                throw JWKSError(.contentType, "\(host) answered Content-Type '\(mediaType)', not JSON")
            }
            if let length = response.headers.first(name: "Content-Length").flatMap({ Int($0) }), length > maximum {
                throw JWKSError(.tooLarge, "\(host) announced \(length) bytes; the limit is \(maximum)")
            }
            var body: [UInt8] = []
            for try await chunk in response.body {
                guard body.count + chunk.readableBytes <= maximum else {
                    // Leaving the loop cancels the rest of the body and closes the connection.
                    throw JWKSError(.tooLarge, "\(host) sent more than \(maximum) bytes")
                }
                body.append(contentsOf: chunk.readableBytesView)
            }
            return (body, CacheControl.lifetime(response.headers.first(name: "Cache-Control")))
        } catch let error as JWKSError {
            throw error
        } catch {
            throw JWKSError(.unreachable, "\(host): \(Self.describe(error))")
        }
    }

    /// The key set at `url`.
    func keySet(_ url: String) async throws(JWKSError) -> (keys: JWTKeySet, lifetime: Duration?) {
        let (body, lifetime) = try await get(url, accept: "application/jwk-set+json, application/json")
        guard let text = String(validating: body, as: UTF8.self) else {
            throw JWKSError(.invalidKeySet, "\(Self.host(of: url)) sent text that is not UTF-8")
        }
        let keys: JWTKeySet
        do {
            keys = try JWTKeySet(jwks: text, rsaAlgorithms: configuration.rsaAlgorithms, publicKeysOnly: true)
        } catch {
            throw JWKSError(.invalidKeySet, "\(Self.host(of: url)): \(error.message)")
        }
        guard !keys.keys.isEmpty else {
            throw JWKSError(.invalidKeySet, "\(Self.host(of: url)) sent no key this verifier can use")
        }
        guard keys.keys.count <= configuration.maximumKeys else {
            throw JWKSError(
                .invalidKeySet,
                "\(Self.host(of: url)) sent \(keys.keys.count) usable keys; the limit is \(configuration.maximumKeys)"
            )
        }
        return (keys, lifetime)
    }

    /// OpenID Connect discovery: `<issuer>/.well-known/openid-configuration`, whose `issuer` must be `issuer`
    /// exactly and whose `jwks_uri` must be an `https` URL.
    func discoverJWKSURL(issuer: String) async throws(JWKSError) -> String {
        let base = issuer.hasSuffix("/") ? String(issuer.dropLast()) : issuer
        let (body, _) = try await get(base + "/.well-known/openid-configuration", accept: "application/json")
        let document: JSONValue
        do {
            document = try JSONParser(limits: .init(maxBytes: configuration.maximumBytes, maxDepth: 16)).parse(body)
        } catch {
            throw JWKSError(.discovery, "the OpenID configuration of \(Self.host(of: issuer)) is not valid JSON")
        }
        guard document["issuer"]?.stringValue == issuer else {
            throw JWKSError(.discovery, "the OpenID configuration names another issuer than \(issuer)")
        }
        guard let jwksURL = document["jwks_uri"]?.stringValue, jwksURL.lowercased().hasPrefix("https://") else {
            throw JWKSError(.discovery, "the OpenID configuration of \(issuer) has no https jwks_uri")
        }
        return jwksURL
    }

    /// The host (and port) of `url`, for messages and health details: never its user information, path, query or
    /// fragment, any of which might carry a secret.
    static func host(of url: String) -> String {
        let parts = url.split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count >= 3, parts[0].hasSuffix(":"), parts[1].isEmpty else { return "the JWKS server" }
        let authority = parts[2].prefix { $0 != "?" && $0 != "#" }
        return String(authority.split(separator: "@", omittingEmptySubsequences: false).last ?? authority)
    }

    /// `duration` as NIO's time amount.
    static func timeAmount(_ duration: Duration) -> TimeAmount {
        let (seconds, attoseconds) = duration.components
        return .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }

    /// A short description of a client error (AHC's and NIOSSL's errors print their case names).
    private static func describe(_ error: any Error) -> String {
        guard let client = error as? HTTPClientError else { return "\(error)" }
        if client == .readTimeout { return "read timeout" }
        if client == .connectTimeout { return "connect timeout" }
        if client == .deadlineExceeded { return "request timeout" }
        return "\(client)"
    }
}
