import Foundation

/// Strict ISO-8601 timestamps and `30d`-style durations, shared by the parser, the evaluator and (as the
/// equivalent regular expression) the SQL compiler, so all three accept exactly the same texts.
enum ExpressionTime {
    /// The PostgreSQL regular expression equivalent to `parse(_:)` (the day-of-month check is done separately).
    static let sqlPattern =
        #"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9]))?$"#

    /// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.ffffff](Z|±HH:MM)`; nil for anything else, including
    /// impossible dates (`2026-02-30`). Years 1000-9999, offsets up to ±14:59, at most 6 fractional digits.
    static func parse(_ text: String) -> Date? {
        let s = Array(text.utf8)
        func digit(_ i: Int) -> Int? {
            guard i < s.count, s[i] >= 48, s[i] <= 57 else { return nil }
            return Int(s[i] - 48)
        }
        func number(_ i: Int, _ n: Int) -> Int? {
            var v = 0
            for k in 0..<n { guard let d = digit(i + k) else { return nil }; v = v * 10 + d }
            return v
        }
        guard s.count >= 10, let year = number(0, 4), year >= 1000, s[4] == 45, let month = number(5, 2), s[7] == 45,
              let day = number(8, 2), (1...12).contains(month), day >= 1, day <= daysIn(month: month, year: year) else { return nil }
        var seconds = Double(daysFromCivil(year: year, month: month, day: day)) * 86_400
        if s.count == 10 { return Date(timeIntervalSince1970: seconds) }
        guard s.count >= 20, s[10] == 84, let hour = number(11, 2), s[13] == 58, let minute = number(14, 2), s[16] == 58,
              let second = number(17, 2), hour < 24, minute < 60, second < 60 else { return nil }
        seconds += Double(hour * 3600 + minute * 60 + second)
        var i = 19
        if s[i] == 46 {  // '.'
            i += 1
            var fraction = 0.0, scale = 0.1, digits = 0
            while let d = digit(i) { fraction += Double(d) * scale; scale /= 10; digits += 1; i += 1 }
            guard (1...6).contains(digits) else { return nil }
            seconds += fraction
        }
        guard i < s.count else { return nil }
        if s[i] == 90, i + 1 == s.count { return Date(timeIntervalSince1970: seconds) }  // 'Z'
        guard s[i] == 43 || s[i] == 45, i + 6 == s.count, let oh = number(i + 1, 2), s[i + 3] == 58, let om = number(i + 4, 2),
              oh <= 14, om < 60 else { return nil }
        let offset = Double(oh * 3600 + om * 60)
        return Date(timeIntervalSince1970: s[i] == 43 ? seconds - offset : seconds + offset)
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 (Howard Hinnant's algorithm).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// `90s`, `30m`, `6h`, `2d`, `1w`, or a sequence (`1d12h`); nil otherwise. Whole units only (no months: they
    /// have no fixed length).
    static func parseDuration(_ text: String) -> Double? {
        var total = 0.0
        var current: Double? = nil
        var sawUnit = false
        var iterator = text.unicodeScalars.makeIterator()
        var pendingDigits = ""
        while let c = iterator.next() {
            if ("0"..."9").contains(c) || c == "." {
                pendingDigits.unicodeScalars.append(c)
                continue
            }
            guard !pendingDigits.isEmpty, let n = Double(pendingDigits) else { return nil }
            current = n
            pendingDigits = ""
            let unit: Double
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86_400
            case "w": unit = 604_800
            default: return nil
            }
            total += (current ?? 0) * unit
            sawUnit = true
        }
        guard pendingDigits.isEmpty, sawUnit else { return nil }
        return total
    }
}
