public import RealtimeCore

/// TLS to Redis (`rediss://`, `REDIS_TLS_*`): the server's certificate is verified by default, against `caFile`
/// or the system's trust roots, and its name (or IP address) checked.
///
/// Needs the package's `RedisTLS` trait (on by default); without it a configuration with TLS fails to connect with
/// `RealtimeError.Code.invalidConfiguration`.
public struct RedisTLSOptions: Sendable, Hashable {
    /// A PEM file of the certificate authorities to trust (`REDIS_TLS_CA_FILE`); the system's roots when nil.
    public var caFile: String?
    /// A PEM client certificate (chain) for servers that authenticate clients (`REDIS_TLS_CERT_FILE`).
    public var certificateFile: String?
    /// The PEM private key of ``certificateFile`` (`REDIS_TLS_KEY_FILE`).
    public var keyFile: String?
    /// The name to verify and send as SNI; the host's name when nil (an IP address is checked against the
    /// certificate's IP addresses and sends no SNI).
    public var serverName: String?
    /// Whether the server's certificate is verified. Turning it off makes the connection open to interception:
    /// only for tests.
    public var verifyCertificate: Bool

    public init(
        caFile: String? = nil,
        certificateFile: String? = nil,
        keyFile: String? = nil,
        serverName: String? = nil,
        verifyCertificate: Bool = true
    ) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
        self.verifyCertificate = verifyCertificate
    }

    /// Checks that a certificate and its key come together.
    ///
    /// - Throws: `RealtimeError.Code.invalidConfiguration` for a certificate without a key or a key without one.
    public func validate() throws(RealtimeError) {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw RealtimeError(
                .invalidConfiguration,
                "a Redis TLS client certificate needs its key and a key its certificate "
                    + "(REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together)"
            )
        }
    }
}
