import Domain
import Foundation
import Testing

/// `Value.iso8601` writes exactly what Foundation's ISO8601DateFormatter writes (UTC, seconds truncated; with
/// milliseconds: `.withFractionalSeconds`), without the formatter's cost.
@Suite struct ISO8601FormatTests {
    static func foundation(_ date: Date, milliseconds: Bool) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = milliseconds ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }

    @Test func matchesFoundationAcrossTheRange() {
        var rng = SplitMix64(seed: 20261123)
        var dates: [Date] = [Date(timeIntervalSince1970: 0), Date(timeIntervalSince1970: -1), Date(timeIntervalSince1970: 1_795_428_000.999),
                             Date(timeIntervalSince1970: 951_782_400), Date(timeIntervalSince1970: -2_208_988_800)]   // 2000-02-29, 1900-01-01
        for _ in 0..<2_000 {
            // Whole milliseconds, 1900...2200 (Foundation's own fraction rounding differs below a millisecond).
            let ms = Int64(rng.next() % 9_467_280_000_000) - 2_208_988_800_000
            dates.append(Date(timeIntervalSince1970: Double(ms) / 1000))
        }
        for date in dates {
            #expect(Value.iso8601(date) == Self.foundation(date, milliseconds: false), "\(date.timeIntervalSince1970)")
            #expect(Value.iso8601(date, milliseconds: true) == Self.foundation(date, milliseconds: true), "\(date.timeIntervalSince1970)")
        }
        #expect(Value.iso8601(Date(timeIntervalSince1970: 1_795_428_000.123), milliseconds: true) == "2026-11-23T10:00:00.123Z")
        #expect(Value.iso8601(Date(timeIntervalSince1970: 1_795_428_000.999)) == "2026-11-23T10:00:00Z")
    }
}
