// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCrypto

/// A JWS signature algorithm (RFC 7518 §3, RFC 8037 §3.1).
///
/// `none` is not an algorithm here: an unsecured token is always refused. Algorithms are compared by value;
/// the ``name`` is the `alg` header value, matched case-sensitively as RFC 7515 requires.
///
/// ```swift
/// let key = try JWTKey.hmac(secret: "…", algorithms: [.hs256])
/// ```
public struct JWTAlgorithm: Hashable, Sendable, CustomStringConvertible {
    enum Backing: UInt8, CaseIterable {
        case hs256, hs384, hs512
        case rs256, rs384, rs512
        case ps256, ps384, ps512
        case es256, es384, es512
        case eddsa
    }

    let backing: Backing

    init(_ backing: Backing) { self.backing = backing }

    /// HMAC with SHA-256.
    public static let hs256 = JWTAlgorithm(.hs256)
    /// HMAC with SHA-384.
    public static let hs384 = JWTAlgorithm(.hs384)
    /// HMAC with SHA-512.
    public static let hs512 = JWTAlgorithm(.hs512)
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    public static let rs256 = JWTAlgorithm(.rs256)
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    public static let rs384 = JWTAlgorithm(.rs384)
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    public static let rs512 = JWTAlgorithm(.rs512)
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256.
    public static let ps256 = JWTAlgorithm(.ps256)
    /// RSASSA-PSS with SHA-384 and MGF1 with SHA-384.
    public static let ps384 = JWTAlgorithm(.ps384)
    /// RSASSA-PSS with SHA-512 and MGF1 with SHA-512.
    public static let ps512 = JWTAlgorithm(.ps512)
    /// ECDSA on P-256 with SHA-256.
    public static let es256 = JWTAlgorithm(.es256)
    /// ECDSA on P-384 with SHA-384.
    public static let es384 = JWTAlgorithm(.es384)
    /// ECDSA on P-521 with SHA-512.
    public static let es512 = JWTAlgorithm(.es512)
    /// EdDSA with Ed25519 (RFC 8037).
    public static let eddsa = JWTAlgorithm(.eddsa)

    /// Every supported algorithm.
    public static let allCases: [JWTAlgorithm] = Backing.allCases.map(JWTAlgorithm.init)

    /// The algorithm named `name` (the `alg` header value, e.g. `"RS256"`), or `nil` for an unsupported name,
    /// including `none` in any case.
    public init?(name: String) {
        switch name {
        case "HS256": self = .hs256
        case "HS384": self = .hs384
        case "HS512": self = .hs512
        case "RS256": self = .rs256
        case "RS384": self = .rs384
        case "RS512": self = .rs512
        case "PS256": self = .ps256
        case "PS384": self = .ps384
        case "PS512": self = .ps512
        case "ES256": self = .es256
        case "ES384": self = .es384
        case "ES512": self = .es512
        case "EdDSA": self = .eddsa
        default: return nil
        }
    }

    /// The `alg` header value, e.g. `"HS256"`.
    public var name: String {
        switch backing {
        case .hs256: return "HS256"
        case .hs384: return "HS384"
        case .hs512: return "HS512"
        case .rs256: return "RS256"
        case .rs384: return "RS384"
        case .rs512: return "RS512"
        case .ps256: return "PS256"
        case .ps384: return "PS384"
        case .ps512: return "PS512"
        case .es256: return "ES256"
        case .es384: return "ES384"
        case .es512: return "ES512"
        case .eddsa: return "EdDSA"
        }
    }

    public var description: String { name }

    /// Whether this is an HMAC algorithm (a shared secret, not a key pair).
    public var isHMAC: Bool { signatureScheme == nil }

    /// The signature scheme (`nil` for HMAC).
    var signatureScheme: SignatureScheme? {
        switch backing {
        case .hs256, .hs384, .hs512: return nil
        case .rs256, .rs384, .rs512: return .rsaPKCS1v15
        case .ps256, .ps384, .ps512: return .rsaPSS
        case .es256, .es384, .es512: return .ecdsa
        case .eddsa: return .ed25519
        }
    }

    /// The digest for HMAC, RSA and ECDSA (`nil` for EdDSA, which hashes internally).
    var digest: MessageDigest? {
        switch backing {
        case .hs256, .rs256, .ps256, .es256: return .sha256
        case .hs384, .rs384, .ps384, .es384: return .sha384
        case .hs512, .rs512, .ps512, .es512: return .sha512
        case .eddsa: return nil
        }
    }

    /// The bit of this algorithm in an ``AlgorithmSet``.
    var bit: UInt16 { 1 << backing.rawValue }
}

/// A small set of algorithms as a bit mask (checked on every verification, so it must be cheap).
struct AlgorithmSet: Hashable, Sendable {
    var mask: UInt16

    init(_ algorithms: some Sequence<JWTAlgorithm>) {
        mask = 0
        for algorithm in algorithms { mask |= algorithm.bit }
    }

    func contains(_ algorithm: JWTAlgorithm) -> Bool { mask & algorithm.bit != 0 }

    var isEmpty: Bool { mask == 0 }

    var algorithms: Set<JWTAlgorithm> { Set(JWTAlgorithm.allCases.filter(contains)) }
}
