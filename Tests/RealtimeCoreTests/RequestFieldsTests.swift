import RealtimeCore
import Testing

/// The one reading of a publish request's body that every host uses (the Hummingbird API, the Vapor example).
@Suite struct RequestFieldsTests {
    static func event(_ json: String) throws -> Result<RealtimeEvent, RequestFieldError> {
        let object = try #require(try JSONParser().parse(Array(json.utf8)).objectValue)
        do throws(RequestFieldError) {
            return .success(try RealtimeEvent(request: RequestFields(object)))
        } catch {
            return .failure(error)
        }
    }

    @Test func aFullRequestIsRead() throws {
        let event = try Self.event(
            #"{"type":"security.suspicious.activity","userId":"u1","sessionId":"s1","data":{"ip":"192.0.2.1"},"scope":"user","id":"evt-1"}"#
        ).get()
        #expect(event.type.rawValue == "security.suspicious.activity")
        #expect(event.userID == "u1")
        #expect(event.sessionID == "s1")
        #expect(event.data["ip"] == "192.0.2.1")
        #expect(event.scope == .user("u1"))
        #expect(event.id == "evt-1")
        let minimal = try Self.event(#"{"type":"system.maintenance","userId":null,"scope":"everyone"}"#).get()
        #expect(minimal.userID == nil && minimal.scope == .everyone && minimal.data.isEmpty)
    }

    /// Every refusal names its field, with the API's code; none drops a field of the wrong type.
    @Test(arguments: [
        (#"{}"#, "missing_field", "type is required"),
        (#"{"type":"security alert"}"#, "invalid_event_type", "type must look like"),
        (#"{"type":"billing.charged"}"#, "unknown_category", "unknown event category 'billing'"),
        (#"{"type":"security.x","userId":7}"#, "invalid_field", "userId must be a string, not number"),
        (#"{"type":"security.x","userId":""}"#, "invalid_field", "userId "),
        (#"{"type":"security.x","sessionId":"a\u0000b"}"#, "invalid_field", "sessionId "),
        (#"{"type":"security.x","data":[1]}"#, "invalid_field", "data must be an object"),
        (#"{"type":"security.x","scope":true}"#, "invalid_field", "scope must be a string"),
        (#"{"type":"security.x","scope":"user"}"#, "invalid_field", "scope 'user' needs userId"),
        (#"{"type":"security.x","scope":"all"}"#, "invalid_field", "scope must be user, admins or everyone, not 'all'"),
        (#"{"type":"security.x","id":""}"#, "invalid_field", "id must be 1 to 128 bytes"),
    ])
    func refusals(json: String, code: String, message: String) throws {
        guard case .failure(let error) = try Self.event(json) else {
            Issue.record("accepted \(json)")
            return
        }
        #expect(error.code == code)
        #expect(error.message.hasPrefix(message), "\(error.message)")
    }

    @Test func hubRefusalsGetTheirHTTPAnswer() {
        #expect(RealtimeError(.invalidArgument, "bad").httpAnswer == (400, "invalid_argument", "bad"))
        #expect(RealtimeError(.limitExceeded, "slow down").httpAnswer == (429, "limit_exceeded", "slow down"))
        #expect(RealtimeError(.backendUnavailable, "redis").httpAnswer == (503, "backend_unavailable", "redis"))
        #expect(
            RealtimeError(.protocolViolation, "secret detail").httpAnswer == (
                500, "internal_error", "the request failed"
            )
        )
    }
}
