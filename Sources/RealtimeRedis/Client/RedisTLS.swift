import NIOCore
import RealtimeCore
import Synchronization

#if RedisTLS
    import NIOSSL
#endif

/// Adds TLS to a Redis connection's channel: one `NIOSSLContext` per set of options (certificates are read once per
/// process, not per connection), and a client handler per channel.
enum RedisTLS {
    #if RedisTLS
        private static let contexts = Mutex<[RedisTLSOptions: NIOSSLContext]>([:])

        /// The context of `options`, made on first use.
        static func context(for options: RedisTLSOptions) throws(RealtimeError) -> NIOSSLContext {
            if let known = contexts.withLock({ $0[options] }) { return known }
            try options.validate()
            var configuration = TLSConfiguration.makeClientConfiguration()
            configuration.certificateVerification = options.verifyCertificate ? .fullVerification : .none
            do {
                if let caFile = options.caFile {
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                }
                if let certificateFile = options.certificateFile, let keyFile = options.keyFile {
                    configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map {
                        .certificate($0)
                    }
                    configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
                }
                let context = try NIOSSLContext(configuration: configuration)
                contexts.withLock { $0[options] = context }
                return context
            } catch {
                throw RealtimeError(
                    .invalidConfiguration,
                    "cannot load the Redis TLS files (CA \(options.caFile ?? "system roots"), certificate "
                        + "\(options.certificateFile ?? "none"))",
                    underlying: error
                )
            }
        }
    #endif

    /// The error of a TLS connection to `host:port` whose setup (handshake, first round trip) failed with
    /// `underlying`, or was closed by the server (`underlying` nil): it names the node, and says so when the server
    /// asked for a client certificate that `options` lacks (TLS 1.3's `certificate_required` alert, a handshake
    /// failure or a close with no certificate configured).
    static func setupFailure(
        host: String,
        port: Int,
        options: RedisTLSOptions,
        underlying: (any Error)?
    ) -> RealtimeError {
        let text = underlying.map { String(describing: $0) } ?? ""
        let reason: String
        if text.contains("CERTIFICATE_REQUIRED")
            || (options.certificateFile == nil && (underlying == nil || text.contains("HANDSHAKE_FAILURE")))
        {
            reason = "the server requires a client certificate (REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE)"
        } else if underlying == nil {
            reason = "the server closed the connection: does it trust the client certificate's CA?"
        } else {
            reason = "certificate refused, or not a TLS port"
        }
        return RealtimeError(
            .backendUnavailable,
            "TLS with Redis at \(host):\(port) failed (\(reason))",
            underlying: underlying
        )
    }

    /// Adds the TLS client handler to `channel` when `configuration` asks for TLS.
    static func addHandler(
        to channel: any Channel,
        configuration: RedisConfiguration
    ) throws {
        guard let options = configuration.tls else { return }
        #if RedisTLS
            let context = try context(for: options)
            let host = options.serverName ?? configuration.host
            // SNI and name checks take a name; for an IP address NIO checks the certificate's IP addresses.
            let isAddress = host.contains(":") || host.allSatisfy { $0.isNumber || $0 == "." }
            let handler = try NIOSSLClientHandler(context: context, serverHostname: isAddress ? nil : host)
            try channel.pipeline.syncOperations.addHandler(handler)
        #else
            _ = options
            throw RealtimeError(
                .invalidConfiguration,
                "TLS to Redis needs the package's RedisTLS trait (swift-nio-ssl), which this build has off"
            )
        #endif
    }
}
