import Domain
import Foundation
import Testing

@Suite struct SegmentMessageTests {
    func reason(_ text: String) -> String? {
        do { _ = try SegmentMessage.parse(text); return nil } catch { return error.reason }
    }

    @Test func parsesTrack() throws {
        let m = try SegmentMessage.parse("""
            {"type":"track","userId":"u1","anonymousId":"a1","event":"Signed Up","properties":{"plan":"pro","n":3},
             "context":{"campaign":{"source":"google","medium":"cpc"},"device":{"type":"ios"},"timezone":"Europe/Paris"},
             "timestamp":"2026-11-22T10:00:00.250Z","messageId":"m-1"}
            """)
        #expect(m.type == .track)
        #expect(m.userId == "u1" && m.anonymousId == "a1")
        #expect(m.event == "Signed Up" && m.eventName == "Signed Up")
        #expect(m.properties["plan"] == .string("pro"))
        #expect(m.properties["n"] == .number(3))
        #expect(m.messageId == "m-1")
        #expect(m.timestamp == Date(timeIntervalSince1970: 1_795_341_600.25))
        let d = m.derived
        #expect(d.utmSource == "google" && d.utmMedium == "cpc")
        #expect(d.deviceType == "ios")
        #expect(d.timezone == "Europe/Paris")
        #expect(d.email == nil)
    }

    @Test func parsesIdentifyPageAlias() throws {
        let i = try SegmentMessage.parse(#"{"type":"identify","userId":42,"traits":{"email":"  Ada@Example.COM ","timezone":"UTC","phone":"+331"}}"#)
        #expect(i.userId == "42")
        #expect(i.eventName == nil)
        #expect(i.derived.email == "Ada@Example.COM")
        #expect(i.derived.emailSHA256 == SHA256.hex("ada@example.com"))
        #expect(i.derived.timezone == "UTC" && i.derived.phone == "+331")
        #expect(i.messageId == nil && i.timestamp == nil)

        let p = try SegmentMessage.parse(#"{"type":"page","anonymousId":"a","name":"Pricing","context":{"page":{"path":"/pricing"}}}"#)
        #expect(p.eventName == "Page Viewed")
        #expect(p.storedProperties == .object(["name": .string("Pricing"), "path": .string("/pricing")]))

        let a = try SegmentMessage.parse(#"{"type":"alias","userId":"u","previousId":"a"}"#)
        #expect(a.previousId == "a" && a.userId == "u")
        #expect(reason(#"{"type":"alias","userId":"u"}"#) == "alias needs previousId")
    }

    @Test func precisereasonsForMalformedPayloads() {
        #expect(reason("{nope")?.hasPrefix("payload is not JSON: ") == true)
        #expect(reason("[1,2]") == "payload is not a JSON object")
        #expect(reason(#"{"type":"track","event":"x"}"#) == "missing userId and anonymousId")
        #expect(reason(#"{"type":"screen","userId":"u"}"#) == "type must be one of track, identify, page, alias")
        #expect(reason(#"{"userId":"u"}"#) == "type must be one of track, identify, page, alias")
        #expect(reason(#"{"type":"track","userId":"u","event":5}"#) == "event must be a string")
        #expect(reason(#"{"type":"track","userId":"u"}"#) == "event must be a string")
        #expect(reason(#"{"type":"track","userId":{"a":1},"event":"e"}"#) == "userId must be a string")
        #expect(reason(#"{"type":"track","userId":"u","event":"e","properties":[1]}"#) == "properties must be an object")
        #expect(reason(#"{"type":"track","userId":"u","event":"e","timestamp":"yesterday"}"#) == "timestamp is not ISO-8601: yesterday")
        #expect(reason(#"{"type":"track","userId":"u","event":"e","messageId":7}"#) == "messageId must be a string")
        let big = #"{"type":"track","userId":"u","event":"e","properties":{"x":""# + String(repeating: "a", count: 70 * 1024) + #""}}"#
        #expect(reason(big) == "over 64 KiB (\(big.utf8.count) bytes)")
    }

    @Test func activityFoldKeepsFirstAndLast() {
        var fold = ActivityFold()
        let t0 = Date(timeIntervalSince1970: 1_000), t1 = Date(timeIntervalSince1970: 2_000), t2 = Date(timeIntervalSince1970: 3_000)
        fold.observe(at: t1, DerivedAttributes(utmSource: "mid", utmMedium: "email", deviceType: "ios"))
        fold.observe(at: t2, DerivedAttributes(utmSource: "last", deviceType: "android"))
        fold.observe(at: t0, DerivedAttributes(utmSource: "first", utmMedium: "cpc", deviceType: "desktop"))
        fold.observe(at: t1, DerivedAttributes())
        #expect(fold.firstSeen == t0 && fold.lastSeen == t2)
        #expect(fold.firstUTMSource == "first" && fold.firstUTMMedium == "cpc")
        #expect(fold.lastUTMSource == "last" && fold.lastUTMMedium == nil)
        #expect(fold.lastDeviceType == "android")
    }
}
