// SPDX-License-Identifier: Apache-2.0

import RealtimeCore
import RealtimeJWT

/// Access tokens for the clients and the publisher, minted in-process with the server's HMAC secret.
struct TokenMinter {
    let signer: JWTSigner
    let issuer: String?
    let audience: String?

    init(secret: String, issuer: String?, audience: String?) throws {
        self.signer = try JWTSigner(key: JWTKey.hmac(secret: secret))
        self.issuer = issuer
        self.audience = audience
    }

    /// A token for `user`, valid for four hours, with the `admin` role if asked, and a fresh session id.
    func mint(_ user: String, admin: Bool) throws -> String {
        let now = Timestamp.now()
        var claims: JSONObject = [
            "sub": .string(user),
            "sid": .string("lgs-\(user)-\(RandomID.hex(bytes: 4))"),
            "iat": .int(now.secondsSinceEpoch),
            "exp": .int(now.secondsSinceEpoch + 4 * 3600),
        ]
        if admin { claims["roles"] = ["admin"] }
        if let issuer { claims["iss"] = .string(issuer) }
        if let audience { claims["aud"] = .string(audience) }
        return try signer.sign(claims)
    }

    /// The clients of a run: `clients` user connections (client `i` is user `lg-u<i % users>`), then `admins`
    /// administrator connections, each with its own token.
    func clientSpecs(clients: Int, users: Int, admins: Int) throws -> [ClientSpec] {
        var specs: [ClientSpec] = []
        specs.reserveCapacity(clients + admins)
        for index in 0..<clients {
            let user = index % users
            specs.append(
                ClientSpec(index: index, user: user, isAdmin: false, token: try mint("lg-u\(user)", admin: false))
            )
        }
        for index in 0..<admins {
            specs.append(
                ClientSpec(
                    index: clients + index,
                    user: -1,
                    isAdmin: true,
                    token: try mint("lg-admin\(index)", admin: true)
                )
            )
        }
        return specs
    }
}
