import Foundation

/// A month and day of month, without a year (birthdays, anniversaries, yearly date triggers).
public struct DateComponentsMonthDay: Sendable, Hashable, CustomStringConvertible {
    public let month: Int
    public let day: Int

    /// `month` 1-12, `day` 1-31 (not checked against the month: `WorkflowSchedule` clamps to the month's length).
    public init(month: Int, day: Int) {
        self.month = month
        self.day = day
    }

    /// `--MM-DD` (ISO 8601's year-less form).
    public var description: String {
        "--" + (month < 10 ? "0" : "") + String(month) + "-" + (day < 10 ? "0" : "") + String(day)
    }
}

/// Pure calendar arithmetic for workflows: contact time zones, quiet hours and yearly date triggers.
///
/// Everything is computed on the proleptic Gregorian calendar of the given time zone. Local ("wall-clock") times
/// are turned into instants explicitly so daylight-saving transitions are handled the same on every platform:
/// a local time that does not exist (skipped by a spring-forward gap) resolves to the first instant after the
/// gap; a local time that exists twice (fall-back fold) resolves to its first occurrence (unless the caller needs
/// an instant at or after a given one, see `quietHoursEnd`).
public enum WorkflowSchedule {
    /// The time zone to use for a contact: its own IANA name when valid, else the settings' default, else UTC.
    public static func timeZone(contact: String?, fallback: String?) -> TimeZone {
        for candidate in [contact, fallback] {
            guard let name = candidate?.trimmingCharacters(in: .whitespaces), !name.isEmpty,
                  let zone = TimeZone(identifier: name) else { continue }
            return zone
        }
        return utc
    }

    /// nil when `date` is outside quiet hours in `zone`; else the first instant at/after `date` when the quiet
    /// window ends (windows may wrap midnight, e.g. 21:00–08:00; from == to means no quiet hours). DST-safe: when
    /// the local end time does not exist (spring forward) use the first instant after the gap.
    public static func quietHoursEnd(_ quiet: SettingsDefinition.QuietHours, at date: Date, in zone: TimeZone) -> Date? {
        let from = quiet.from.minutesOfDay, to = quiet.to.minutesOfDay
        guard from != to else { return nil }
        let local = calendar(zone).dateComponents([.year, .month, .day, .hour, .minute], from: date)
        guard let year = local.year, let month = local.month, let day = local.day,
              let hour = local.hour, let minute = local.minute else { return nil }
        let now = hour * 60 + minute
        let endsTomorrow: Bool
        if from < to {
            guard now >= from && now < to else { return nil }
            endsTomorrow = false
        } else {
            if now >= from { endsTomorrow = true } else if now < to { endsTomorrow = false } else { return nil }
        }
        let wall = wallClock(year: year, month: month, day: day + (endsTomorrow ? 1 : 0), hour: quiet.to.hour, minute: quiet.to.minute)
        let instants = instants(ofWallClock: wall, in: zone)
        // In a fall-back fold the end time exists twice: the first occurrence not before `date`.
        return instants.first(where: { $0 >= date }) ?? instants.last.map { max($0, date) } ?? date
    }

    /// Yearly date trigger: the instant of the occurrence of month/day of `anniversary` at `at` local time in `zone`
    /// in the local calendar year containing `reference`. Feb 29 → Feb 28 in non-leap years.
    public static func yearlyOccurrence(of anniversary: DateComponentsMonthDay, at: ClockTime, in zone: TimeZone,
                                        yearOf reference: Date) -> Date {
        let year = calendar(zone).component(.year, from: reference)
        let month = min(max(anniversary.month, 1), 12)
        let day = min(max(anniversary.day, 1), daysIn(month: month, year: year))
        let wall = wallClock(year: year, month: month, day: day, hour: at.hour, minute: at.minute)
        return instants(ofWallClock: wall, in: zone).first ?? Date(timeIntervalSince1970: Double(wall))
    }

    /// Parses an attribute value into month/day: "1990-05-17", "1990-05-17T00:00:00Z", "05-17", "--05-17"; nil otherwise.
    public static func monthDay(_ text: String) -> DateComponentsMonthDay? {
        var bytes = Array(text.trimmingCharacters(in: .whitespaces).utf8)
        var year: Int? = nil
        if bytes.count > 10, bytes[10] == UInt8(ascii: "T") || bytes[10] == UInt8(ascii: "t") || bytes[10] == UInt8(ascii: " ") {
            bytes = Array(bytes[..<10])   // a timestamp: the date as written, whatever the time and offset
        }
        switch bytes.count {
        case 10:   // YYYY-MM-DD
            guard bytes[4] == UInt8(ascii: "-"), let y = digits(bytes[0..<4]) else { return nil }
            year = y
            bytes = Array(bytes[5...])
        case 7:    // --MM-DD
            guard bytes[0] == UInt8(ascii: "-"), bytes[1] == UInt8(ascii: "-") else { return nil }
            bytes = Array(bytes[2...])
        case 5:    // MM-DD
            break
        default:
            return nil
        }
        guard bytes.count == 5, bytes[2] == UInt8(ascii: "-"), let month = digits(bytes[0..<2]), let day = digits(bytes[3..<5]),
              (1...12).contains(month) else { return nil }
        // Without a year, Feb 29 is a valid anniversary; with one, the date must exist.
        guard day >= 1, day <= daysIn(month: month, year: year ?? 2000) else { return nil }
        return DateComponentsMonthDay(month: month, day: day)
    }

    // MARK: - internals

    private static let utc = TimeZone(secondsFromGMT: 0)!

    /// A Gregorian calendar in `zone` (a value: built per call, nothing shared).
    private static func calendar(_ zone: TimeZone) -> Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = zone
        return calendar
    }

    private static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    private static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    private static func digits(_ slice: ArraySlice<UInt8>) -> Int? {
        var n = 0
        for b in slice {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(b - UInt8(ascii: "0"))
        }
        return n
    }

    /// Days from 1970-01-01 to the proleptic Gregorian date (Howard Hinnant's days_from_civil); `day` may overflow
    /// the month (day 32 is the 1st of the next month).
    private static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + 1 - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468 + (day - 1)
    }

    /// A local date and time as seconds since 1970 "as if UTC" (the wall-clock reading, not an instant).
    private static func wallClock(year: Int, month: Int, day: Int, hour: Int, minute: Int) -> Int {
        daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3_600 + minute * 60
    }

    private static func offset(_ zone: TimeZone, at seconds: Int) -> Int {
        zone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(seconds)))
    }

    /// Every instant whose local reading in `zone` is `wall`, earliest first: one normally, two in a fall-back fold;
    /// in a spring-forward gap, the single first instant after the gap.
    private static func instants(ofWallClock wall: Int, in zone: TimeZone) -> [Date] {
        // The offsets in force around that reading (a day either side covers any real-world transition).
        var offsets = [offset(zone, at: wall - 86_400), offset(zone, at: wall), offset(zone, at: wall + 86_400)]
        offsets = Array(Set(offsets)).sorted(by: >)   // larger offset → earlier instant
        let valid = offsets.map { wall - $0 }.filter { offset(zone, at: $0) == wall - $0 }
        if !valid.isEmpty {
            return valid.sorted().map { Date(timeIntervalSince1970: Double($0)) }
        }
        // A gap: the reading falls between the last instant on the old offset and the first on the new one.
        // Find the transition (the first instant whose reading is past `wall`) by bisection.
        let candidates = offsets.map { wall - $0 }
        var low = candidates.min()! - 86_400, high = candidates.max()! + 86_400
        // Invariant: reading(low) < wall <= reading(high).
        func reading(_ t: Int) -> Int { t + offset(zone, at: t) }
        guard reading(low) < wall, reading(high) >= wall else { return [Date(timeIntervalSince1970: Double(wall - offsets[0]))] }
        while high - low > 1 {
            let mid = low + (high - low) / 2
            if reading(mid) < wall { low = mid } else { high = mid }
        }
        return [Date(timeIntervalSince1970: Double(high))]
    }
}
