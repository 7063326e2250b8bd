// SPDX-License-Identifier: Apache-2.0

import Foundation
import RealtimeCore
import RealtimeJWT
import Testing

/// The committed fixtures (made by Fixtures/make_fixtures.py with PyJWT), read relative to this file.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func load(_ name: String) -> JSONObject {
        let data = try! Data(contentsOf: directory.appendingPathComponent(name))
        return try! JSONParser().parse(Array(data)).objectValue!
    }

    static let pyjwt = load("pyjwt-fixtures.json")

    static func key(_ name: String) -> JSONObject { pyjwt["keys"]!["\(name)"]!.objectValue! }

    static func string(_ key: String, _ field: String) -> String { Self.key(key)[field]!.stringValue! }

    static func jwkText(_ key: String, _ field: String) -> String { JSONWriter.string(Self.key(key)[field]!) }

    /// The fixture key name holding a key pair for `algorithm`.
    static func keyName(for algorithm: JWTAlgorithm) -> String {
        switch algorithm {
        case .hs256, .hs384, .hs512: return "hmac"
        case .rs256, .rs384, .rs512, .ps256, .ps384, .ps512: return "rsa"
        case .es256: return "ec-P-256"
        case .es384: return "ec-P-384"
        case .es512: return "ec-P-521"
        default: return "ed25519"
        }
    }

    static var hmacSecret: [UInt8] {
        let hex = Array(string("hmac", "secret_hex").utf8)
        return stride(from: 0, to: hex.count, by: 2).map {
            UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)!
        }
    }

    /// A private (signing) key for `algorithm` from the fixtures' PEM.
    static func privateKey(for algorithm: JWTAlgorithm, kid: String? = nil) throws -> JWTKey {
        if algorithm.isHMAC { return try .hmac(secret: hmacSecret, algorithms: [algorithm], kid: kid) }
        return try .privateKey(pem: string(keyName(for: algorithm), "private_pem"), algorithm: algorithm, kid: kid)
    }

    /// A public (verifying) key for `algorithm` from the fixtures' PEM.
    static func publicKey(for algorithm: JWTAlgorithm, kid: String? = nil) throws -> JWTKey {
        if algorithm.isHMAC { return try .hmac(secret: hmacSecret, algorithms: [algorithm], kid: kid) }
        return try .publicKey(pem: string(keyName(for: algorithm), "public_pem"), algorithm: algorithm, kid: kid)
    }
}

/// Runs `body` and returns the refusal reason (or `nil` if it did not throw).
func refusal(_ body: () throws -> Any) -> TokenVerificationError.Reason? {
    do {
        _ = try body()
        return nil
    } catch let error as TokenVerificationError {
        return error.reason
    } catch {
        Issue.record("unexpected error \(error)")
        return nil
    }
}

/// Unpadded base64url of a string's UTF-8 (for hand-made tokens).
func b64(_ text: String) -> String { Base64URL.encode(Array(text.utf8)) }

let referenceNow = Timestamp(secondsSinceEpoch: 1_800_000_000)
