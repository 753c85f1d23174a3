import Foundation

/// Dates for the `date` and `plus_days` filters: a strftime (Ruby's directives and flags, English names) and an
/// ISO-8601 reader, computed arithmetically (no formatters, no Calendar) so they are fast and thread-safe.
enum LiquidDate {
    /// Dates beyond about ±300,000 years are not dates (keeps every conversion finite).
    static let maxEpochSeconds: Double = 1e13

    static let monthNames = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
                             "October", "November", "December"]
    static let dayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

    // MARK: civil calendar (Howard Hinnant's algorithms)

    static func civil(fromDays z0: Int) -> (year: Int, month: Int, day: Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    static func days(fromYear y0: Int, month m: Int, day d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    struct Parts {
        var year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, nanosecond = 0
        var weekday = 4      // 0 = Sunday
        var yearDay = 1      // 1...366
        var offset = 0       // seconds east of UTC
        var epoch: Int = 0
    }

    static func parts(_ date: Date, timeZone: TimeZone) -> Parts {
        let t = date.timeIntervalSince1970
        let offset = timeZone.secondsFromGMT(for: date)
        let whole = t.rounded(.down)
        var p = Parts()
        p.epoch = Int(whole)
        p.nanosecond = Int(((t - whole) * 1e9).rounded(.down))
        p.offset = offset
        let local = Int(whole) + offset
        let days = Int((Double(local) / 86400).rounded(.down))
        var secs = local - days * 86400
        p.hour = secs / 3600; secs %= 3600
        p.minute = secs / 60
        p.second = secs % 60
        (p.year, p.month, p.day) = civil(fromDays: days)
        p.weekday = ((days % 7) + 11) % 7   // 1970-01-01 was a Thursday (4)
        p.yearDay = days - self.days(fromYear: p.year, month: 1, day: 1) + 1
        return p
    }

    // MARK: ISO-8601

    static func iso8601UTC(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        guard t.isFinite, abs(t) < maxEpochSeconds else { return Value.iso8601(date) }
        let p = parts(date, timeZone: TimeZone(identifier: "UTC")!)
        return pad(p.year, 4) + "-" + pad(p.month, 2) + "-" + pad(p.day, 2) + "T" + pad(p.hour, 2) + ":" + pad(p.minute, 2)
            + ":" + pad(p.second, 2) + "Z"
    }

    /// `2026-11-22`, `2026-11-22T10:00`, `2026-11-22T10:00:00.123Z`, `2026-11-22 10:00:00 +0100`, ... A timestamp
    /// without an offset is read in `timeZone`. Returns nil for anything else.
    static func parse(_ text: String, timeZone: TimeZone) -> Date? {
        let b = Array(text.utf8)
        guard b.count >= 10, b.count < 64 else { return nil }
        var i = 0
        func digits(_ n: Int) -> Int? {
            guard i + n <= b.count else { return nil }
            var v = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            i += n
            return v
        }
        func take(_ c: Character) -> Bool {
            if i < b.count && b[i] == c.asciiValue! { i += 1; return true }
            return false
        }
        guard let year = digits(4), take("-"), let month = digits(2), take("-"), let day = digits(2),
              (1...12).contains(month), (1...31).contains(day) else { return nil }
        var hour = 0, minute = 0, second = 0
        var fraction = 0.0
        var offset: Int?
        if i < b.count && (b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: "t") || b[i] == UInt8(ascii: " ")) {
            i += 1
            guard let h = digits(2), take(":"), let m = digits(2), h <= 24, m <= 59 else { return nil }
            hour = h; minute = m
            if take(":") {
                guard let s = digits(2), s <= 60 else { return nil }
                second = s
                if take(".") || take(",") {
                    var scale = 0.1
                    var any = false
                    while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
                        fraction += Double(b[i] - 0x30) * scale
                        scale /= 10
                        i += 1
                        any = true
                    }
                    guard any else { return nil }
                }
            }
            while i < b.count && b[i] == UInt8(ascii: " ") { i += 1 }
            if i < b.count {
                if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                    i += 1
                    offset = 0
                } else if i + 3 <= b.count, String(decoding: b[i..<(i + 3)], as: UTF8.self) == "UTC" {
                    i += 3
                    offset = 0
                } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                    let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                    i += 1
                    guard let oh = digits(2), oh <= 23 else { return nil }
                    _ = take(":")
                    let om = digits(2) ?? 0
                    offset = sign * (oh * 3600 + om * 60)
                }
            }
        }
        guard i == b.count else { return nil }
        let localSeconds = days(fromYear: year, month: month, day: day) * 86400 + hour * 3600 + minute * 60 + second
        let utc: Int
        if let offset {
            utc = localSeconds - offset
        } else {
            let guess = localSeconds - timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(localSeconds)))
            utc = localSeconds - timeZone.secondsFromGMT(for: Date(timeIntervalSince1970: Double(guess)))
        }
        return Date(timeIntervalSince1970: Double(utc) + fraction)
    }

    /// `date` plus `days` calendar days, keeping the wall-clock time in `timeZone` across DST changes.
    static func addDays(_ date: Date, _ days: Double, timeZone: TimeZone) -> Date? {
        let t = date.timeIntervalSince1970 + days * 86400
        guard t.isFinite, abs(t) < maxEpochSeconds else { return nil }
        let shifted = Date(timeIntervalSince1970: t)
        let drift = timeZone.secondsFromGMT(for: date) - timeZone.secondsFromGMT(for: shifted)
        return Date(timeIntervalSince1970: t + Double(drift))
    }

    // MARK: strftime

    private static func pad(_ value: Int, _ width: Int, _ padChar: Character = "0") -> String {
        let s = String(abs(value))
        let sign = value < 0 ? "-" : ""
        guard s.count + sign.count < width else { return sign + s }
        return sign + String(repeating: padChar, count: width - s.count - sign.count) + s
    }

    /// Ruby's strftime: `%Y %m %d %e %j %H %k %I %l %M %S %L %N %p %P %A %a %B %b %h %u %w %y %C %z %:z %Z %s %U %W
    /// %G %g %V %F %D %x %T %X %R %r %c %n %t %%`, with flags `-` (no padding), `_` (spaces), `0`, `^` (upper case),
    /// `#` (change case) and a width. Unknown directives are copied as they are.
    static func format(_ date: Date, _ format: String, timeZone: TimeZone) -> String {
        let t = date.timeIntervalSince1970
        guard t.isFinite, abs(t) < maxEpochSeconds else { return format }
        let p = parts(date, timeZone: timeZone)
        var out = ""
        let chars = Array(format.unicodeScalars)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            guard c == "%", i + 1 < chars.count else { out.unicodeScalars.append(c); i += 1; continue }
            let start = i
            i += 1
            var noPad = false, spacePad = false, zeroPad = false, upper = false, swapCase = false
            flags: while i < chars.count {
                switch chars[i] {
                case "-": noPad = true
                case "_": spacePad = true
                case "0": zeroPad = true
                case "^": upper = true
                case "#": swapCase = true
                default: break flags
                }
                i += 1
            }
            var width: Int?
            while i < chars.count, let d = Int(String(chars[i])), chars[i].isASCII {
                width = min((width ?? 0) * 10 + d, 64)
                i += 1
            }
            var colon = false
            if i < chars.count && chars[i] == ":" { colon = true; i += 1 }
            guard i < chars.count else {
                out += String(String.UnicodeScalarView(chars[start...]))
                break
            }
            let directive = chars[i]
            i += 1

            func number(_ v: Int, _ defaultWidth: Int, _ defaultPad: Character = "0") -> String {
                if noPad { return String(v) }
                let padChar: Character = spacePad ? " " : (zeroPad ? "0" : defaultPad)
                return pad(v, width ?? defaultWidth, padChar)
            }
            func text(_ s: String) -> String {
                var s = s
                if upper || swapCase { s = s.uppercased() }
                if let width, !noPad, s.count < width {
                    s = String(repeating: zeroPad ? "0" : " ", count: width - s.count) + s
                }
                return s
            }
            let hour12 = p.hour % 12 == 0 ? 12 : p.hour % 12
            switch directive {
            case "Y": out += noPad || width != nil ? number(p.year, 0) : pad(p.year, 4)
            case "C": out += number(p.year / 100, 2)
            case "y": out += number(((p.year % 100) + 100) % 100, 2)
            case "m": out += number(p.month, 2)
            case "d": out += number(p.day, 2)
            case "e": out += number(p.day, 2, " ")
            case "j": out += number(p.yearDay, 3)
            case "H": out += number(p.hour, 2)
            case "k": out += number(p.hour, 2, " ")
            case "I": out += number(hour12, 2)
            case "l": out += number(hour12, 2, " ")
            case "M": out += number(p.minute, 2)
            case "S": out += number(p.second, 2)
            case "L":
                out += pad(p.nanosecond / 1_000_000, 3)
            case "N":
                let digits = min(max(width ?? 9, 1), 9)
                var v = p.nanosecond
                for _ in 0..<(9 - digits) { v /= 10 }
                out += pad(v, digits)
            case "p": out += swapCase ? (p.hour < 12 ? "am" : "pm") : text(p.hour < 12 ? "AM" : "PM")
            case "P": out += text(p.hour < 12 ? "am" : "pm")
            case "A": out += text(dayNames[p.weekday])
            case "a": out += text(String(dayNames[p.weekday].prefix(3)))
            case "B": out += text(monthNames[p.month - 1])
            case "b", "h": out += text(String(monthNames[p.month - 1].prefix(3)))
            case "u": out += number(p.weekday == 0 ? 7 : p.weekday, 1)
            case "w": out += number(p.weekday, 1)
            case "s": out += String(p.epoch)
            case "z":
                let sign = p.offset < 0 ? "-" : "+"
                let a = abs(p.offset)
                out += sign + pad(a / 3600, 2) + (colon ? ":" : "") + pad((a % 3600) / 60, 2)
            case "Z":
                let id = timeZone.identifier
                let name = (id == "UTC" || id == "GMT" || id == "Etc/UTC") ? "UTC" : (timeZone.abbreviation(for: date) ?? id)
                out += text(name)
            case "U": out += number((p.yearDay - 1 + 7 - p.weekday) / 7, 2)
            case "W": out += number((p.yearDay - 1 + 7 - (p.weekday + 6) % 7) / 7, 2)
            case "G", "g", "V":
                let (isoYear, isoWeek) = isoWeek(p)
                switch directive {
                case "G": out += number(isoYear, 4)
                case "g": out += number(((isoYear % 100) + 100) % 100, 2)
                default: out += number(isoWeek, 2)
                }
            case "F": out += pad(p.year, 4) + "-" + pad(p.month, 2) + "-" + pad(p.day, 2)
            case "D", "x": out += pad(p.month, 2) + "/" + pad(p.day, 2) + "/" + pad(((p.year % 100) + 100) % 100, 2)
            case "T", "X": out += pad(p.hour, 2) + ":" + pad(p.minute, 2) + ":" + pad(p.second, 2)
            case "R": out += pad(p.hour, 2) + ":" + pad(p.minute, 2)
            case "r": out += pad(hour12, 2) + ":" + pad(p.minute, 2) + ":" + pad(p.second, 2) + " " + (p.hour < 12 ? "AM" : "PM")
            case "c":
                out += String(dayNames[p.weekday].prefix(3)) + " " + String(monthNames[p.month - 1].prefix(3)) + " "
                    + pad(p.day, 2, " ") + " " + pad(p.hour, 2) + ":" + pad(p.minute, 2) + ":" + pad(p.second, 2) + " " + pad(p.year, 4)
            case "n": out += "\n"
            case "t": out += "\t"
            case "%": out += "%"
            default:
                out += String(String.UnicodeScalarView(chars[start..<i]))
            }
        }
        return out
    }

    /// ISO-8601 week-based year and week number.
    private static func isoWeek(_ p: Parts) -> (Int, Int) {
        let isoWeekday = p.weekday == 0 ? 7 : p.weekday
        let week = (p.yearDay - isoWeekday + 10) / 7
        func weeksIn(_ year: Int) -> Int {
            func dow(_ y: Int) -> Int { (y + y / 4 - y / 100 + y / 400) % 7 }
            return (dow(year) == 4 || dow(year - 1) == 3) ? 53 : 52
        }
        if week < 1 { return (p.year - 1, weeksIn(p.year - 1)) }
        if week > weeksIn(p.year) { return (p.year + 1, 1) }
        return (p.year, week)
    }
}
