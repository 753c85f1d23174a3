import Domain
import Foundation
import Testing
@testable import Web

/// The `timestamp` of events the web role writes.
@Suite struct WebTimestampTests {
    @Test func eventTimestampsAreISO8601UTC() {
        #expect(WebServer.timestamp(Date(timeIntervalSince1970: 1_795_428_000.123)) == "2026-11-23T10:00:00.123Z")
        #expect(WebServer.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(Value.parseTime(WebServer.timestamp(Date(timeIntervalSince1970: 1_795_428_000.5)))
                == Date(timeIntervalSince1970: 1_795_428_000.5))
    }
}
