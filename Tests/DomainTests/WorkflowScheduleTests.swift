@testable import Domain
import Foundation
import Testing

private let paris = TimeZone(identifier: "Europe/Paris")!
private let tokyo = TimeZone(identifier: "Asia/Tokyo")!
private let utc = TimeZone(secondsFromGMT: 0)!

/// An instant from an ISO-8601 timestamp with an offset (`2026-01-15T22:30:00+01:00`).
private func at(_ text: String) -> Date {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime]
    guard let date = formatter.date(from: text) else { fatalError("bad timestamp in test: \(text)") }
    return date
}

private func quiet(_ from: String, _ to: String) -> SettingsDefinition.QuietHours {
    SettingsDefinition.QuietHours(from: ClockTime(from)!, to: ClockTime(to)!)
}

@Suite struct WorkflowScheduleTests {
    // MARK: quiet hours

    @Test func wrappingWindowEndsNextMorningOrTheSameMorning() {
        let night = quiet("22:00", "08:00")
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-15T22:30:00+01:00"), in: paris) == at("2026-01-16T08:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-15T22:00:00+01:00"), in: paris) == at("2026-01-16T08:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T07:59:00+01:00"), in: paris) == at("2026-01-16T08:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T07:59:59+01:00"), in: paris) == at("2026-01-16T08:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T00:00:00+01:00"), in: paris) == at("2026-01-16T08:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T12:00:00+01:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T08:00:00+01:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-01-16T21:59:59+01:00"), in: paris) == nil)
        // Year end: the next local day is in the next year.
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-12-31T23:00:00+01:00"), in: paris) == at("2027-01-01T08:00:00+01:00"))
    }

    @Test func theWindowIsReadInTheContactsZone() {
        let night = quiet("22:00", "08:00")
        // 12:00 UTC is 21:00 in Tokyo (awake) and 22:30 UTC is 07:30 in Tokyo (asleep until 08:00 JST).
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-05-17T12:00:00Z"), in: tokyo) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-05-17T22:30:00Z"), in: tokyo) == at("2026-05-18T08:00:00+09:00"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-05-17T22:30:00Z"), in: utc) == at("2026-05-18T08:00:00Z"))
    }

    @Test func nonWrappingWindow() {
        let lunch = quiet("13:00", "14:00")
        #expect(WorkflowSchedule.quietHoursEnd(lunch, at: at("2026-01-15T13:00:00+01:00"), in: paris) == at("2026-01-15T14:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(lunch, at: at("2026-01-15T13:30:00+01:00"), in: paris) == at("2026-01-15T14:00:00+01:00"))
        #expect(WorkflowSchedule.quietHoursEnd(lunch, at: at("2026-01-15T12:59:59+01:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(lunch, at: at("2026-01-15T14:00:00+01:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(lunch, at: at("2026-01-15T23:00:00+01:00"), in: paris) == nil)
    }

    @Test func equalBoundsMeanNoQuietHours() {
        let none = quiet("09:00", "09:00")
        for time in ["2026-01-15T09:00:00+01:00", "2026-01-15T03:00:00+01:00", "2026-01-15T20:00:00+01:00"] {
            #expect(WorkflowSchedule.quietHoursEnd(none, at: at(time), in: paris) == nil)
        }
    }

    @Test func springForwardInParis() {
        // 2026-03-29 (last Sunday of March): 02:00 CET → 03:00 CEST, i.e. at 01:00 UTC.
        let night = quiet("22:00", "08:00")
        // The night is an hour shorter: 08:00 CEST is 06:00 UTC (a naive "+9 hours" would say 07:00 UTC).
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-03-28T23:00:00+01:00"), in: paris) == at("2026-03-29T06:00:00Z"))
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-03-29T03:30:00+02:00"), in: paris) == at("2026-03-29T06:00:00Z"))
        // An end time inside the gap (02:30 does not exist that night): the first instant after the gap, 03:00 CEST.
        let short = quiet("21:00", "02:30")
        #expect(WorkflowSchedule.quietHoursEnd(short, at: at("2026-03-28T23:00:00+01:00"), in: paris) == at("2026-03-29T01:00:00Z"))
        #expect(WorkflowSchedule.quietHoursEnd(short, at: at("2026-03-29T01:59:00+01:00"), in: paris) == at("2026-03-29T03:00:00+02:00"))
        // Just after the gap it is 03:00 local: past 02:30, so no longer quiet.
        #expect(WorkflowSchedule.quietHoursEnd(short, at: at("2026-03-29T03:00:00+02:00"), in: paris) == nil)
        // The window starts inside the gap: 02:15-05:00 begins at 03:00 CEST that day.
        let early = quiet("02:15", "05:00")
        #expect(WorkflowSchedule.quietHoursEnd(early, at: at("2026-03-29T01:59:00+01:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(early, at: at("2026-03-29T03:00:00+02:00"), in: paris) == at("2026-03-29T05:00:00+02:00"))
    }

    @Test func fallBackInParis() {
        // 2026-10-25 (last Sunday of October): 03:00 CEST → 02:00 CET, i.e. at 01:00 UTC; 02:00-03:00 happens twice.
        let night = quiet("22:00", "08:00")
        // The night is an hour longer: 08:00 CET is 07:00 UTC.
        #expect(WorkflowSchedule.quietHoursEnd(night, at: at("2026-10-24T23:00:00+02:00"), in: paris) == at("2026-10-25T07:00:00Z"))
        // An end time in the fold: the first occurrence at/after the date.
        let fold = quiet("01:00", "02:30")
        #expect(WorkflowSchedule.quietHoursEnd(fold, at: at("2026-10-25T01:30:00+02:00"), in: paris) == at("2026-10-25T02:30:00+02:00"))
        #expect(WorkflowSchedule.quietHoursEnd(fold, at: at("2026-10-25T02:10:00+02:00"), in: paris) == at("2026-10-25T02:30:00+02:00"))
        // 02:45 CEST is after the end; then the clock falls back and 02:10 CET is quiet again until 02:30 CET.
        #expect(WorkflowSchedule.quietHoursEnd(fold, at: at("2026-10-25T02:45:00+02:00"), in: paris) == nil)
        #expect(WorkflowSchedule.quietHoursEnd(fold, at: at("2026-10-25T02:10:00+01:00"), in: paris) == at("2026-10-25T02:30:00+01:00"))
    }

    // MARK: time zones

    @Test func zoneFallsBackForGarbageNames() {
        #expect(WorkflowSchedule.timeZone(contact: "Asia/Tokyo", fallback: "Europe/Paris").identifier == "Asia/Tokyo")
        #expect(WorkflowSchedule.timeZone(contact: "Not/AZone", fallback: "Europe/Paris").identifier == "Europe/Paris")
        #expect(WorkflowSchedule.timeZone(contact: "", fallback: "Europe/Paris").identifier == "Europe/Paris")
        #expect(WorkflowSchedule.timeZone(contact: nil, fallback: "Europe/Paris").identifier == "Europe/Paris")
        #expect(WorkflowSchedule.timeZone(contact: "💥", fallback: "also garbage").secondsFromGMT(for: at("2026-07-01T12:00:00Z")) == 0)
        #expect(WorkflowSchedule.timeZone(contact: nil, fallback: nil).secondsFromGMT(for: at("2026-07-01T12:00:00Z")) == 0)
        #expect(WorkflowSchedule.timeZone(contact: "Mars/Olympus_Mons", fallback: nil).secondsFromGMT(for: at("2026-01-01T12:00:00Z")) == 0)
    }

    // MARK: yearly occurrences

    @Test func feb29FallsOnFeb28InCommonYears() {
        let leapDay = DateComponentsMonthDay(month: 2, day: 29)
        let nine = ClockTime(hour: 9, minute: 0)
        #expect(WorkflowSchedule.yearlyOccurrence(of: leapDay, at: nine, in: utc, yearOf: at("2027-06-01T00:00:00Z")) == at("2027-02-28T09:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: leapDay, at: nine, in: utc, yearOf: at("2028-06-01T00:00:00Z")) == at("2028-02-29T09:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: leapDay, at: nine, in: paris, yearOf: at("2027-01-01T00:00:00Z")) == at("2027-02-28T09:00:00+01:00"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: leapDay, at: nine, in: utc, yearOf: at("2100-03-01T00:00:00Z")) == at("2100-02-28T09:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: leapDay, at: nine, in: utc, yearOf: at("2000-03-01T00:00:00Z")) == at("2000-02-29T09:00:00Z"))
    }

    @Test func occurrenceIsInTheLocalYearAndAtTheLocalTime() {
        let birthday = DateComponentsMonthDay(month: 5, day: 17)
        let nine = ClockTime(hour: 9, minute: 0)
        #expect(WorkflowSchedule.yearlyOccurrence(of: birthday, at: nine, in: tokyo, yearOf: at("2026-01-10T00:00:00Z")) == at("2026-05-17T00:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: birthday, at: nine, in: utc, yearOf: at("2026-01-10T00:00:00Z")) == at("2026-05-17T09:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: birthday, at: nine, in: paris, yearOf: at("2026-01-10T00:00:00Z")) == at("2026-05-17T07:00:00Z"))
        // 2026-12-31 20:00 UTC is already 2027 in Tokyo: the year is the contact's local one.
        let newYear = DateComponentsMonthDay(month: 1, day: 1)
        let midnight = ClockTime(hour: 0, minute: 0)
        let reference = at("2026-12-31T20:00:00Z")
        #expect(WorkflowSchedule.yearlyOccurrence(of: newYear, at: midnight, in: tokyo, yearOf: reference) == at("2026-12-31T15:00:00Z"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: newYear, at: midnight, in: utc, yearOf: reference) == at("2026-01-01T00:00:00Z"))
    }

    @Test func occurrenceAtATimeSkippedByDSTMovesPastTheGap() {
        // 02:30 does not exist in Paris on 2026-03-29: 03:00 CEST; 02:30 on 2026-10-25 exists twice: the first.
        let spring = DateComponentsMonthDay(month: 3, day: 29), autumn = DateComponentsMonthDay(month: 10, day: 25)
        let half = ClockTime(hour: 2, minute: 30)
        #expect(WorkflowSchedule.yearlyOccurrence(of: spring, at: half, in: paris, yearOf: at("2026-06-01T00:00:00Z")) == at("2026-03-29T03:00:00+02:00"))
        #expect(WorkflowSchedule.yearlyOccurrence(of: autumn, at: half, in: paris, yearOf: at("2026-06-01T00:00:00Z")) == at("2026-10-25T02:30:00+02:00"))
    }

    // MARK: parsing

    @Test func monthDayParsing() {
        let may17 = DateComponentsMonthDay(month: 5, day: 17)
        #expect(WorkflowSchedule.monthDay("1990-05-17") == may17)
        #expect(WorkflowSchedule.monthDay("1990-05-17T00:00:00Z") == may17)
        #expect(WorkflowSchedule.monthDay("1990-05-17T23:30:00-05:00") == may17)
        #expect(WorkflowSchedule.monthDay("1990-05-17T00:00:00.000Z") == may17)
        #expect(WorkflowSchedule.monthDay("05-17") == may17)
        #expect(WorkflowSchedule.monthDay("--05-17") == may17)
        #expect(WorkflowSchedule.monthDay(" 1990-05-17 ") == may17)
        #expect(WorkflowSchedule.monthDay("--02-29") == DateComponentsMonthDay(month: 2, day: 29))
        #expect(WorkflowSchedule.monthDay("1992-02-29") == DateComponentsMonthDay(month: 2, day: 29))
        #expect(WorkflowSchedule.monthDay("12-31") == DateComponentsMonthDay(month: 12, day: 31))
        for bad in ["", "May 17", "1990/05/17", "1990-13-01", "1990-00-10", "1990-05-00", "1990-04-31", "1990-02-29",
                    "02-30", "5-17", "--5-17", "05-17-1990", "1990-05-17X", "19900517", "abcd-05-17", "-05-17", "1990-05", "--05-1a"] {
            #expect(WorkflowSchedule.monthDay(bad) == nil, "\(bad)")
        }
        #expect(may17.description == "--05-17")
    }
}
