import Testing

@testable import RealtimeCore

/// `VerifiedIdentity.claims` built from a token's parsed members on first read (what `JWTVerifier` hands over)
/// reads, compares and hashes exactly like claims given as a dictionary.
@Suite struct VerifiedIdentityTests {
    /// Every kind of JSON value, nested values, an empty object and array, and non-ASCII names and strings.
    static let claimSet = #"""
        {"sub":"user-1","sid":"s-1","iat":1700000000,"exp":1700000900.5,"neg":-42,"big":1e300,
         "admin":true,"off":false,"none":null,"roles":["user","ops"],"empty":[],"obj":{},
         "nested":{"a":[1,{"b":null}],"c":"d"},"ключ":"значение","\u212A":"kelvin","esc\"aped":"\u00e9"}
        """#

    static func members(_ text: String = claimSet) throws -> [JSONMember] {
        let bytes = Array(text.utf8)
        let members = try bytes.withUnsafeBufferPointer { try JSONParser().parseObjectMembers($0) }
        return try #require(members)
    }

    static func expected(_ text: String = claimSet) throws -> JSONObject {
        try #require(try JSONParser().parse(text).objectValue)
    }

    static func deferred(_ members: [JSONMember], userID: String = "user-1") -> VerifiedIdentity {
        VerifiedIdentity(
            userID: userID,
            sessionID: "s-1",
            isAdmin: true,
            roles: ["user", "ops"],
            expiresAt: Timestamp(millisecondsSinceEpoch: 1_700_000_900_500),
            issuedAt: Timestamp(millisecondsSinceEpoch: 1_700_000_000_000),
            claimMembers: members
        )
    }

    /// The same identity with `claims` as a dictionary.
    static func eager(_ claims: JSONObject, userID: String = "user-1") -> VerifiedIdentity {
        var identity = deferred([], userID: userID)
        identity.claims = claims
        return identity
    }

    @Test func deferredClaimsEqualTheParsedObjectForEveryKind() throws {
        let identity = Self.deferred(try Self.members())
        let expected = try Self.expected()
        #expect(identity.claims == expected)
        #expect(identity.claims.count == 16)
        #expect(identity.claims["none"] == .null)
        #expect(identity.claims["exp"] == .double(1_700_000_900.5))
        #expect(identity.claims["iat"] == .int(1_700_000_000))
        #expect(identity.claims["nested"]?["a"] == [1, ["b": nil]])
        #expect(identity.claims["ключ"] == "значение")
        #expect(identity.claims["\u{212A}"] == "kelvin")
        #expect(identity.claims["esc\"aped"] == "é")
        // Read again: the same dictionary.
        #expect(identity.claims == expected)
        #expect(Self.deferred([]).claims.isEmpty)
    }

    @Test func equalityAndHashingFollowTheClaimsNotTheirStorage() throws {
        let members = try Self.members()
        let deferred = Self.deferred(members)
        let eager = Self.eager(try Self.expected())
        #expect(deferred == eager && eager == deferred)
        #expect(deferred.hashValue == eager.hashValue)
        // Two identities deferring the same members separately, before either was read.
        #expect(Self.deferred(members) == Self.deferred(members))
        #expect(Self.deferred(members).hashValue == Self.deferred(members).hashValue)
        #expect(Set([deferred, eager, Self.deferred(members)]).count == 1)
        // Different claims, or a different mapped field, make a different identity.
        #expect(Self.deferred(try Self.members(#"{"sub":"user-1"}"#)) != eager)
        #expect(Self.deferred(members, userID: "user-2") != eager)
        var changed = eager
        changed.claims["sub"] = "user-2"
        #expect(deferred != changed)
    }

    @Test func settingClaimsReplacesThemAndCopiesStayIndependent() throws {
        let original = Self.deferred(try Self.members())
        var identity = original
        identity.claims["extra"] = [1, 2]
        identity.claims["none"] = nil
        var expected = try Self.expected()
        expected["extra"] = [1, 2]
        expected["none"] = nil
        #expect(identity.claims == expected)
        #expect(original.claims == (try Self.expected()))  // the copy still reads the token's claims

        var replaced = original
        replaced.claims = ["only": "this"]
        #expect(replaced.claims == ["only": "this"])
        #expect(replaced == Self.eager(["only": "this"]))
        #expect(original.claims == (try Self.expected()))
    }

    @Test func manyTasksReadingFirstAllGetTheSameClaims() async throws {
        let expected = try Self.expected()
        for _ in 0..<20 {
            let identity = Self.deferred(try Self.members())
            let results = await withTaskGroup(of: Bool.self) { group in
                for task in 0..<16 {
                    // Half read a copy of the identity, half the shared value: both share one dictionary.
                    let copy = identity
                    group.addTask { task.isMultiple(of: 2) ? copy.claims == expected : identity.claims == expected }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.count == 16 && results.allSatisfy { $0 })
        }
    }

    @Test func mirrorShowsTheClaimsLikeAStoredProperty() throws {
        let identity = Self.deferred(try Self.members(#"{"sub":"user-1"}"#))
        let mirror = Mirror(reflecting: identity)
        #expect(
            mirror.children.map(\.label) == [
                "userID", "sessionID", "isAdmin", "roles", "expiresAt", "issuedAt", "claims",
            ]
        )
        #expect(mirror.children.first { $0.label == "claims" }?.value as? JSONObject == ["sub": "user-1"])
    }
}
