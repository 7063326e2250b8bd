// SPDX-License-Identifier: Apache-2.0

internal import RealtimeCore

/// The members of a token's header or payload, in document order, without duplicates (the parser refused
/// them). A JOSE header or a claim set has a handful of short names, so finding one by a linear search is
/// cheaper than hashing every name into a dictionary. ``VerifiedIdentity`` builds the dictionary of the claims
/// only if a host reads it.
struct Members {
    let members: [JSONMember]

    init(_ members: [JSONMember]) { self.members = members }

    subscript(name: String) -> JSONValue? { members.value(forKey: name) }

    /// The members as a JSON object.
    var object: JSONObject { members.object }
}

/// The claim checks of RFC 7519 §4.1 and the mapping to a ``VerifiedIdentity``, run on an authenticated payload.
struct ClaimsValidator {
    let configuration: JWTVerifier.Configuration
    let now: Timestamp

    func validate(_ claims: Members, header: Members) throws(TokenVerificationError) -> VerifiedIdentity {
        // First: a refresh token is refused as such, whatever else is wrong with it.
        if let markers = configuration.refreshTokenMarkers {
            try refuseRefreshMarkers(markers, in: header, names: markers.headerParameters, "header")
            try refuseRefreshMarkers(markers, in: claims, names: markers.claims, "claim")
        }
        let nowMS = now.millisecondsSinceEpoch
        let leewayMS = max(configuration.leeway.milliseconds, 0)

        var expiresAt: Timestamp?
        if let value = claims["exp"], !value.isNull {
            let exp = try numericDate("exp", value)
            guard nowMS < exp.addingSaturating(leewayMS) else {
                throw TokenVerificationError(.expired, "exp has passed")
            }
            expiresAt = Timestamp(millisecondsSinceEpoch: exp)
        }
        if let value = claims["nbf"], !value.isNull {
            let nbf = try numericDate("nbf", value)
            guard nowMS.addingSaturating(leewayMS) >= nbf else {
                throw TokenVerificationError(.notYetValid, "nbf is in the future")
            }
        }
        var issuedAt: Timestamp?
        if let value = claims["iat"], !value.isNull {
            let iat = try numericDate("iat", value)
            guard iat <= nowMS.addingSaturating(leewayMS) else {
                throw TokenVerificationError(.issuedInFuture, "iat is in the future")
            }
            issuedAt = Timestamp(millisecondsSinceEpoch: iat)
        }

        if let issuer = configuration.issuer {
            guard let value = claims["iss"], !value.isNull else {
                throw TokenVerificationError(.missingClaim, "iss is missing")
            }
            guard let iss = value.stringValue else {
                throw TokenVerificationError(.invalidClaim, "iss is not a string")
            }
            guard iss == issuer else { throw TokenVerificationError(.wrongIssuer, "iss is not the configured issuer") }
        }
        try checkAudience(claims["aud"])

        if let tokenType = configuration.tokenType {
            let source = tokenType.location == .header ? header : claims
            guard let value = source[tokenType.name], !value.isNull else {
                throw TokenVerificationError(.wrongTokenType, "\(tokenType.name) is missing")
            }
            guard let type = value.stringValue else {
                throw TokenVerificationError(.invalidClaim, "\(tokenType.name) is not a string")
            }
            guard type == tokenType.expected else {
                throw TokenVerificationError(.wrongTokenType, "\(tokenType.name) is not \(tokenType.expected)")
            }
        }

        for name in configuration.requiredClaims {
            guard let value = claims[name], !value.isNull else {
                throw TokenVerificationError(.missingClaim, "\(name) is missing")
            }
        }

        let mapping = configuration.claims
        guard let userValue = claims[mapping.userIDClaim], !userValue.isNull else {
            throw TokenVerificationError(.missingClaim, "\(mapping.userIDClaim) is missing")
        }
        guard let userID = userValue.stringValue, !userID.isEmpty else {
            throw TokenVerificationError(.invalidClaim, "\(mapping.userIDClaim) is not a non-empty string")
        }
        var sessionID: String?
        if let name = mapping.sessionIDClaim, let value = claims[name], !value.isNull {
            guard let string = value.stringValue, !string.isEmpty else {
                throw TokenVerificationError(.invalidClaim, "\(name) is not a non-empty string")
            }
            sessionID = string
        }
        var roles: [String] = []
        if let name = mapping.rolesClaim, let value = claims[name], !value.isNull {
            roles = try stringList(name, value)
        }
        let isAdmin = try evaluate(mapping.admin.backing, claims)
        return VerifiedIdentity(
            userID: userID,
            sessionID: sessionID,
            isAdmin: isAdmin,
            roles: roles,
            expiresAt: expiresAt,
            issuedAt: issuedAt,
            claimMembers: claims.members
        )
    }

    private func refuseRefreshMarkers(
        _ markers: JWTVerifier.RefreshTokenMarkers,
        in members: Members,
        names: [String],
        _ kind: String
    ) throws(TokenVerificationError) {
        for name in names {
            if let value = members[name], markers.isRefresh(value) {
                throw TokenVerificationError(.wrongTokenType, "the \(kind) \(name) marks a refresh token")
            }
        }
    }

    /// A NumericDate (seconds since the epoch, integer or not) in milliseconds, saturating.
    private func numericDate(_ name: String, _ value: JSONValue) throws(TokenVerificationError) -> Int64 {
        switch value {
        case .int(let seconds):
            let (product, overflow) = seconds.multipliedReportingOverflow(by: 1000)
            return overflow ? (seconds < 0 ? .min : .max) : product
        case .double(let seconds):
            let milliseconds = (seconds * 1000).rounded(.down)
            if milliseconds >= 9.2e18 { return .max }
            if milliseconds <= -9.2e18 { return .min }
            return Int64(milliseconds)
        default:
            throw TokenVerificationError(.invalidClaim, "\(name) is not a number")
        }
    }

    private func checkAudience(_ value: JSONValue?) throws(TokenVerificationError) {
        let audiences = configuration.audiences
        guard let value, !value.isNull else {
            if !audiences.isEmpty { throw TokenVerificationError(.missingClaim, "aud is missing") }
            return
        }
        // One string, or an array of strings that must all be strings; one of them must be ours.
        let named: Bool
        switch value {
        case .string(let audience): named = isOurs(audience)
        case .array(let values):
            var found = false
            for element in values {
                guard let string = element.stringValue else {
                    throw TokenVerificationError(.invalidClaim, "aud is not a string or an array of strings")
                }
                if !found { found = isOurs(string) }
            }
            named = found
        default:
            throw TokenVerificationError(.invalidClaim, "aud is not a string or an array of strings")
        }
        guard named else {
            throw TokenVerificationError(
                .wrongAudience,
                audiences.isEmpty ? "token names an audience but none is configured" : "aud names none of ours"
            )
        }
    }

    /// Whether `audience` is a configured audience (a few are compared directly rather than hashed).
    private func isOurs(_ audience: String) -> Bool {
        let audiences = configuration.audiences
        return audiences.count <= 4 ? audiences.contains { $0 == audience } : audiences.contains(audience)
    }

    /// An array of strings, or one string, as a list.
    private func stringList(_ name: String, _ value: JSONValue) throws(TokenVerificationError) -> [String] {
        switch value {
        case .string(let string): return [string]
        case .array(let values):
            var strings: [String] = []
            strings.reserveCapacity(values.count)
            for element in values {
                guard let string = element.stringValue else {
                    throw TokenVerificationError(.invalidClaim, "\(name) is not an array of strings")
                }
                strings.append(string)
            }
            return strings
        default:
            throw TokenVerificationError(.invalidClaim, "\(name) is not an array of strings")
        }
    }

    private func evaluate(
        _ rule: JWTVerifier.AdminRule.Backing,
        _ claims: Members
    ) throws(TokenVerificationError) -> Bool {
        switch rule {
        case .never:
            return false
        case .claimEquals(let name, let expected):
            guard let value = claims[name], !value.isNull else { return false }
            guard let string = value.stringValue else {
                throw TokenVerificationError(.invalidClaim, "\(name) is not a string")
            }
            return string == expected
        case .arrayContains(let name, let expected):
            guard let value = claims[name], !value.isNull else { return false }
            return try stringList(name, value).contains(expected)
        case .scopeContains(let name, let scope):
            guard let value = claims[name], !value.isNull else { return false }
            if let string = value.stringValue {
                return string.split(separator: " ", omittingEmptySubsequences: true).contains { $0 == scope }
            }
            return try stringList(name, value).contains(scope)
        case .booleanClaim(let name):
            guard let value = claims[name], !value.isNull else { return false }
            guard let flag = value.boolValue else {
                throw TokenVerificationError(.invalidClaim, "\(name) is not a boolean")
            }
            return flag
        case .anyOf(let rules):
            for rule in rules {
                if try evaluate(rule, claims) { return true }
            }
            return false
        }
    }
}

extension Int64 {
    fileprivate func addingSaturating(_ other: Int64) -> Int64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? (other > 0 ? .max : .min) : sum
    }
}
