public import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
public import RealtimeCore
import RealtimeCrypto
public import RealtimeJWT
import Synchronization

/// Certificates made for one test run with the `openssl` command line tool: a CA, a server certificate it signed
/// for `127.0.0.1` (subjectAltName IP), a client certificate it signed (for servers that authenticate clients), and
/// a second CA with a client certificate of its own (to test refused certificates).
public struct TestCertificates: Sendable {
    public let directory: URL
    public var caFile: String { directory.appendingPathComponent("ca.pem").path }
    public var otherCAFile: String { directory.appendingPathComponent("other-ca.pem").path }
    public var serverCertificate: String { directory.appendingPathComponent("server.pem").path }
    public var serverKey: String { directory.appendingPathComponent("server-key.pem").path }
    /// A client certificate (`extendedKeyUsage=clientAuth`) signed by ``caFile``, and its key.
    public var clientCertificate: String { directory.appendingPathComponent("client.pem").path }
    public var clientKey: String { directory.appendingPathComponent("client-key.pem").path }
    /// A client certificate signed by ``otherCAFile`` (which a server trusting ``caFile`` refuses), and its key.
    public var otherClientCertificate: String { directory.appendingPathComponent("other-client.pem").path }
    public var otherClientKey: String { directory.appendingPathComponent("other-client-key.pem").path }

    /// Made once per process (a few RSA key generations), in a temporary folder.
    public static let shared: Result<TestCertificates, any Error> = Result { try make() }

    private static func make() throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jwks-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        func openssl(_ arguments: [String]) throws {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["openssl"] + arguments
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice
            let errors = Pipe()
            process.standardError = errors
            try process.run()
            let message = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TestCertificates.CertificateError(message: String(decoding: message, as: UTF8.self))
            }
        }
        for name in ["ca", "other-ca"] {
            try openssl([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(name)-key.pem", "-out", "\(name).pem",
                "-days", "2", "-subj", "/CN=RealtimeJWKS test \(name)",
                "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
            ])
        }
        try openssl([
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server-key.pem", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1",
        ])
        try "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n".write(
            to: directory.appendingPathComponent("server.ext"),
            atomically: true,
            encoding: .utf8
        )
        try openssl([
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
        ])
        try "extendedKeyUsage=clientAuth\n".write(
            to: directory.appendingPathComponent("client.ext"),
            atomically: true,
            encoding: .utf8
        )
        for (name, ca) in [("client", "ca"), ("other-client", "other-ca")] {
            try openssl([
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(name)-key.pem", "-out", "\(name).csr",
                "-subj", "/CN=RealtimeJWKS test \(name)",
            ])
            try openssl([
                "x509", "-req", "-in", "\(name).csr", "-CA", "\(ca).pem", "-CAkey", "\(ca)-key.pem",
                "-CAcreateserial", "-out", "\(name).pem", "-days", "2", "-extfile", "client.ext",
            ])
        }
        return certificates
    }

    public struct CertificateError: Error, CustomStringConvertible {
        public var message: String
        public var description: String { "openssl failed: \(message)" }
    }
}

/// An HTTPS/1.1 server on 127.0.0.1 (a free port) whose answer per path the test sets: a JWK Set that rotates,
/// errors, a stall, a huge or malformed body. It counts the requests per path and lets a test wait for them.
public final class HTTPSTestServer: Sendable {
    /// What the server answers on a path.
    public enum Answer: Sendable {
        /// 200 with `body`, `Content-Type` and optionally `Cache-Control`.
        case body(String, contentType: String = "application/json", cacheControl: String? = nil)
        /// A status with an empty JSON body.
        case status(Int)
        /// The head only, then silence (the client's read timeout must end it).
        case stall
        /// 200 JSON of `bytes` bytes, chunked without `Content-Length` (`announced: false`) or announced.
        case huge(bytes: Int, announced: Bool)
        /// 200 JSON, chunked: `chunks` one-byte chunks (spaces, so no JSON), one every `interval`, then the end.
        case trickle(chunks: Int, interval: Duration)
    }

    private struct State {
        var answers: [String: Answer] = [:]
        var requests: [String: Int] = [:]
    }

    private let state = Mutex(State())
    private let channel: any Channel
    public let port: Int

    private init(channel: any Channel) {
        self.channel = channel
        port = channel.localAddress?.port ?? 0
    }

    /// The base URL, `https://127.0.0.1:<port>`.
    public var baseURL: String { "https://127.0.0.1:\(port)" }

    public func url(_ path: String) -> String { baseURL + path }

    public static func start(certificates: TestCertificates) async throws -> HTTPSTestServer {
        let tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(certificates.serverCertificate).map {
                .certificate($0)
            },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: certificates.serverKey, format: .pem))
        )
        let context = try NIOSSLContext(configuration: tls)
        let box = ServerBox()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(Responder(server: box))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let server = HTTPSTestServer(channel: channel)
        box.server.withLock { $0 = server }
        return server
    }

    public func stop() async {
        try? await channel.close()
    }

    public func answer(_ path: String, with answer: Answer) {
        state.withLock { $0.answers[path] = answer }
    }

    public func requests(_ path: String) -> Int { state.withLock { $0.requests[path] ?? 0 } }

    func received(_ path: String) -> Answer {
        state.withLock { state in
            state.requests[path, default: 0] += 1
            return state.answers[path] ?? .status(404)
        }
    }

    /// Lets the responders find the server created after the bootstrap.
    private final class ServerBox: Sendable {
        let server = Mutex<HTTPSTestServer?>(nil)
    }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let server: ServerBox

        init(server: ServerBox) { self.server = server }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .head(let head) = unwrapInboundIn(data),
                let answer = server.server.withLock({ $0 })?.received(head.uri)
            else { return }
            var headers = HTTPHeaders([("Connection", "close")])
            switch answer {
            case .body(let body, let contentType, let cacheControl):
                headers.add(name: "Content-Type", value: contentType)
                headers.add(name: "Content-Length", value: "\(body.utf8.count)")
                if let cacheControl { headers.add(name: "Cache-Control", value: cacheControl) }
                respond(context, .ok, headers, [ByteBuffer(string: body)])
            case .status(let code):
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "2")
                respond(context, HTTPResponseStatus(statusCode: code), headers, [ByteBuffer(string: "{}")])
            case .stall:
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: "1000")
                context.writeAndFlush(
                    wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                    promise: nil
                )
            case .huge(let bytes, let announced):
                headers.add(name: "Content-Type", value: "application/json")
                if announced { headers.add(name: "Content-Length", value: "\(bytes)") }
                let chunk = ByteBuffer(repeating: UInt8(ascii: " "), count: 64 * 1024)
                respond(context, .ok, headers, Array(repeating: chunk, count: bytes / chunk.readableBytes))
            case .trickle(let chunks, let interval):
                headers.add(name: "Content-Type", value: "application/json")
                context.writeAndFlush(
                    wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))),
                    promise: nil
                )
                trickle(context, left: chunks, every: TimeAmount(interval))
            }
        }

        private func trickle(_ context: ChannelHandlerContext, left: Int, every interval: TimeAmount) {
            let channel = context.channel
            guard channel.isActive else { return }
            guard left > 0 else {
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
                return
            }
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(string: " ")))), promise: nil)
            let this = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.scheduleTask(in: interval) {
                this.value.0.trickle(this.value.1, left: left - 1, every: interval)
            }
        }

        private func respond(
            _ context: ChannelHandlerContext,
            _ status: HTTPResponseStatus,
            _ headers: HTTPHeaders,
            _ body: [ByteBuffer]
        ) {
            context.write(
                wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
                promise: nil
            )
            for part in body { context.write(wrapOutboundOut(.body(.byteBuffer(part))), promise: nil) }
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// Ed25519 keys published as JWKs (`kty` `OKP`, `use` `sig`, `alg` EdDSA), and tokens they sign: the keys of the
/// tests' identity provider. A key set served over the network may hold public keys only, so the published JWK has
/// no private part; each `kid` derives its own private key, the same in every run.
public enum TestJWKS {
    /// The public JWK of `kid` and the signer of tokens for it.
    public static func key(_ kid: String) throws -> (jwk: String, signer: JWTSigner) {
        // FNV-1a of the kid, then a 64-bit mixer for each of the 32 bytes of the private key.
        var state: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "test-identity-provider:\(kid)".utf8 { state = (state ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let privateKey = (0..<32).map { _ -> UInt8 in
            state = (state ^ (state >> 33)) &* 0xff51_afd7_ed55_8ccd
            state ^= state >> 29
            return UInt8(truncatingIfNeeded: state)
        }
        guard let publicKey = try EVPKey.ed25519(raw: privateKey, isPrivate: true).ed25519PublicKey() else {
            throw TestCertificates.CertificateError(message: "OpenSSL did not derive the Ed25519 public key")
        }
        let (x, d) = (Base64URL.encode(publicKey), Base64URL.encode(privateKey))
        let jwk = #"{"kty":"OKP","crv":"Ed25519","kid":"\#(kid)","use":"sig","alg":"EdDSA","x":"\#(x)"}"#
        let privateJWK = #"{"kty":"OKP","crv":"Ed25519","kid":"\#(kid)","alg":"EdDSA","x":"\#(x)","d":"\#(d)"}"#
        return (jwk, try JWTSigner(key: .jwk(privateJWK)))
    }

    /// A JWK Set of the keys `kids`.
    public static func set(_ kids: [String]) throws -> String {
        #"{"keys":["# + (try kids.map { try key($0).jwk }).joined(separator: ",") + "]}"
    }

    /// A token for `user` (valid for 10 minutes, with `claims` added) signed by the key `kid`.
    public static func token(_ kid: String, user: String = "alice", _ claims: JSONObject = [:]) throws -> String {
        var all: JSONObject = ["sub": .string(user), "exp": .int(Timestamp.now().secondsSinceEpoch + 600)]
        all.merge(claims) { $1 }
        return try key(kid).signer.sign(all)
    }
}
