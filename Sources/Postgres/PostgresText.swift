import Foundation

/// Hand-written encoders and parsers for PostgreSQL's text formats. No `DateFormatter`, no `Scanner`, no
/// intermediate `String` on the hot path: parsers read the bytes libpq returned.
enum PostgresText {
    // MARK: - Integers

    @inline(__always)
    static func appendDecimal(_ value: Int64, to buffer: inout [UInt8]) {
        if value >= 0 && value < 10 { buffer.append(UInt8(ascii: "0") + UInt8(value)); return }
        var magnitude = value.magnitude
        if value < 0 { buffer.append(UInt8(ascii: "-")) }
        let start = buffer.count
        while magnitude > 0 {
            buffer.append(UInt8(ascii: "0") + UInt8(magnitude % 10))
            magnitude /= 10
        }
        buffer[start...].reverse()
    }

    /// An optionally signed decimal integer (surrounding blanks allowed); nil on anything else or overflow.
    static func parseInt64(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        var i = 0, end = bytes.count
        while i < end && bytes[i] == 0x20 { i += 1 }
        while end > i && bytes[end - 1] == 0x20 { end -= 1 }
        guard i < end else { return nil }
        var negative = false
        if bytes[i] == UInt8(ascii: "-") { negative = true; i += 1 } else if bytes[i] == UInt8(ascii: "+") { i += 1 }
        guard i < end else { return nil }
        // Accumulate negatively so Int64.min parses.
        var value: Int64 = 0
        while i < end {
            let digit = bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(Int64(digit))
            if o1 || o2 { return nil }
            value = s
            i += 1
        }
        if negative { return value }
        return value == Int64.min ? nil : -value
    }

    // MARK: - Floating point

    static func appendDouble(_ d: Double, to buffer: inout [UInt8]) {
        if d.isNaN { buffer.append(contentsOf: "NaN".utf8) }
        else if d.isInfinite { buffer.append(contentsOf: (d < 0 ? "-Infinity" : "Infinity").utf8) }
        else { buffer.append(contentsOf: d.description.utf8) }  // shortest text that round-trips
    }

    static func parseDouble(_ bytes: UnsafeRawBufferPointer) -> Double? {
        guard bytes.count > 0, bytes.count < 64 else { return nil }
        // Short strings are stored inline: no allocation.
        let text = String(decoding: bytes, as: UTF8.self)
        if let d = Double(text) { return d }
        switch text.lowercased() {
        case "nan": return .nan
        case "infinity", "+infinity": return .infinity
        case "-infinity": return -.infinity
        default: return nil
        }
    }

    // MARK: - Booleans

    static func parseBool(_ bytes: UnsafeRawBufferPointer) -> Bool? {
        guard let first = bytes.first else { return nil }
        if bytes.count == 1 {
            switch first {
            case UInt8(ascii: "t"), UInt8(ascii: "1"): return true
            case UInt8(ascii: "f"), UInt8(ascii: "0"): return false
            default: return nil
            }
        }
        switch String(decoding: bytes, as: UTF8.self).lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    // MARK: - Timestamps

    /// Seconds between 1970-01-01 and 2001-01-01 (Foundation's reference date), in microseconds.
    static let referenceDateMicros: Int64 = 978_307_200 * 1_000_000

    /// Microseconds since 1970 (rounded to the nearest microsecond, PostgreSQL's precision).
    @inline(__always)
    static func micros(_ date: Date) -> Int64 {
        // Work from the reference date (2001): its Double keeps sub-microsecond precision for present-day dates.
        let since2001 = date.timeIntervalSinceReferenceDate * 1_000_000
        guard !since2001.isNaN else { return referenceDateMicros }
        // Far beyond PostgreSQL's range either way (the server rejects it); clamped so nothing here overflows.
        let clamped = min(max(since2001.rounded(), -8.0e18), 8.0e18)
        return Int64(clamped) + referenceDateMicros
    }

    @inline(__always)
    static func date(micros: Int64) -> Date {
        Date(timeIntervalSinceReferenceDate: Double(micros - referenceDateMicros) / 1_000_000)
    }

    /// `YYYY-MM-DD HH:MM:SS.ffffff+00` (with ` BC` for years before 1), the UTC instant of `date`.
    static func appendTimestamp(_ date: Date, to buffer: inout [UInt8]) {
        let micros = micros(date)
        var days = micros / 86_400_000_000
        var rest = micros % 86_400_000_000
        if rest < 0 { rest += 86_400_000_000; days -= 1 }
        let (year, month, day) = civil(fromDays: days)
        let bc = year <= 0
        appendPadded(bc ? 1 - year : year, width: 4, to: &buffer)
        buffer.append(UInt8(ascii: "-"))
        appendPadded(month, width: 2, to: &buffer)
        buffer.append(UInt8(ascii: "-"))
        appendPadded(day, width: 2, to: &buffer)
        buffer.append(UInt8(ascii: " "))
        let seconds = rest / 1_000_000
        appendPadded(seconds / 3600, width: 2, to: &buffer)
        buffer.append(UInt8(ascii: ":"))
        appendPadded(seconds / 60 % 60, width: 2, to: &buffer)
        buffer.append(UInt8(ascii: ":"))
        appendPadded(seconds % 60, width: 2, to: &buffer)
        buffer.append(UInt8(ascii: "."))
        appendPadded(rest % 1_000_000, width: 6, to: &buffer)
        buffer.append(contentsOf: "+00".utf8)
        if bc { buffer.append(contentsOf: " BC".utf8) }
    }

    @inline(__always)
    private static func appendPadded(_ value: Int64, width: Int, to buffer: inout [UInt8]) {
        var digits = 1, v = value
        while v >= 10 { v /= 10; digits += 1 }
        if digits < width { for _ in digits..<width { buffer.append(UInt8(ascii: "0")) } }
        appendDecimal(value, to: &buffer)
    }

    /// Parses PostgreSQL's ISO output of `timestamptz`, `timestamp` (taken as UTC) and `date`:
    /// `2026-11-22 10:00:00.123456+00`, `...+05:30`, `... BC`, `infinity`, `-infinity`.
    static func parseTimestamp(_ bytes: UnsafeRawBufferPointer) -> Date? {
        let n = bytes.count
        guard n >= 8 else {
            return nil
        }
        if bytes[0] == UInt8(ascii: "i") || bytes[0] == UInt8(ascii: "-") && bytes[1] == UInt8(ascii: "i") {
            let text = String(decoding: bytes, as: UTF8.self)
            if text == "infinity" { return .distantFuture }
            if text == "-infinity" { return .distantPast }
            return nil
        }
        var i = 0
        @inline(__always) func number(maxDigits: Int) -> Int64? {
            var value: Int64 = 0, count = 0
            while i < n, count < maxDigits {
                let digit = bytes[i] &- UInt8(ascii: "0")
                if digit >= 10 { break }
                value = value * 10 + Int64(digit)
                i += 1; count += 1
            }
            return count == 0 ? nil : value
        }
        @inline(__always) func expect(_ c: UInt8) -> Bool {
            guard i < n, bytes[i] == c else { return false }
            i += 1
            return true
        }
        guard var year = number(maxDigits: 9), expect(UInt8(ascii: "-")),
              let month = number(maxDigits: 2), expect(UInt8(ascii: "-")),
              let day = number(maxDigits: 2), (1...12).contains(month), (1...31).contains(day) else { return nil }
        var micros: Int64 = 0
        var offsetSeconds: Int64 = 0
        if i < n && (bytes[i] == UInt8(ascii: " ") || bytes[i] == UInt8(ascii: "T")) && i + 1 < n && bytes[i + 1] != UInt8(ascii: "B") {
            i += 1
            guard let hour = number(maxDigits: 2), expect(UInt8(ascii: ":")),
                  let minute = number(maxDigits: 2), expect(UInt8(ascii: ":")),
                  let second = number(maxDigits: 2) else { return nil }
            micros = (hour * 3600 + minute * 60 + second) * 1_000_000
            if i < n && bytes[i] == UInt8(ascii: ".") {
                i += 1
                var fraction: Int64 = 0, digits = 0
                while i < n {
                    let digit = bytes[i] &- UInt8(ascii: "0")
                    if digit >= 10 { break }
                    if digits < 6 { fraction = fraction * 10 + Int64(digit); digits += 1 }
                    i += 1
                }
                while digits < 6 { fraction *= 10; digits += 1 }
                micros += fraction
            }
            if i < n && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) {
                let sign: Int64 = bytes[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let hours = number(maxDigits: 2) else { return nil }
                var offset = hours * 3600
                if expect(UInt8(ascii: ":")) {
                    guard let minutes = number(maxDigits: 2) else { return nil }
                    offset += minutes * 60
                    if expect(UInt8(ascii: ":")) {
                        guard let seconds = number(maxDigits: 2) else { return nil }
                        offset += seconds
                    }
                }
                offsetSeconds = sign * offset
            } else if i < n && bytes[i] == UInt8(ascii: "Z") {
                i += 1
            }
        }
        if i + 3 <= n && bytes[i] == UInt8(ascii: " ") && bytes[i + 1] == UInt8(ascii: "B") && bytes[i + 2] == UInt8(ascii: "C") {
            year = 1 - year
            i += 3
        }
        guard i == n else { return nil }
        let days = daysFromCivil(year: year, month: month, day: day)
        return date(micros: days * 86_400_000_000 + micros - offsetSeconds * 1_000_000)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// The proleptic Gregorian date of a day number since 1970-01-01 (`civil_from_days`).
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    // MARK: - UUID

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func appendUUID(_ uuid: UUID, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: uuid.uuid) { raw in
            for (index, byte) in raw.enumerated() {
                if index == 4 || index == 6 || index == 8 || index == 10 { buffer.append(UInt8(ascii: "-")) }
                buffer.append(hexDigits[Int(byte >> 4)])
                buffer.append(hexDigits[Int(byte & 0x0f)])
            }
        }
    }

    @inline(__always)
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (dashes optional, any case, optional braces).
    static func parseUUID(_ bytes: UnsafeRawBufferPointer) -> UUID? {
        var raw: uuid_t = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
        var count = 0
        var high: UInt8? = nil
        let ok = withUnsafeMutableBytes(of: &raw) { out -> Bool in
            for c in bytes {
                if c == UInt8(ascii: "-") || c == UInt8(ascii: "{") || c == UInt8(ascii: "}") { continue }
                guard let v = hexValue(c), count < 16 else { return false }
                if let h = high { out[count] = h << 4 | v; count += 1; high = nil } else { high = v }
            }
            return count == 16 && high == nil
        }
        return ok ? UUID(uuid: raw) : nil
    }

    // MARK: - bytea

    /// The hex output format `\x0a0b...`.
    static func parseByteaHex(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
        guard bytes.count >= 2, bytes[0] == UInt8(ascii: "\\"), bytes[1] == UInt8(ascii: "x"), bytes.count % 2 == 0 else { return nil }
        var out = [UInt8](repeating: 0, count: (bytes.count - 2) / 2)
        var i = 2, j = 0
        while i < bytes.count {
            guard let h = hexValue(bytes[i]), let l = hexValue(bytes[i + 1]) else { return nil }
            out[j] = h << 4 | l
            i += 2; j += 1
        }
        return out
    }

    // MARK: - Arrays

    /// `{"a","b \"c\"",NULL}`: every element quoted, `"` and `\` backslash-escaped.
    static func appendArrayLiteral(_ values: [String?], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "{"))
        for (index, value) in values.enumerated() {
            if index > 0 { buffer.append(UInt8(ascii: ",")) }
            guard let value else { buffer.append(contentsOf: "NULL".utf8); continue }
            buffer.append(UInt8(ascii: "\""))
            for byte in value.utf8 {
                if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { buffer.append(UInt8(ascii: "\\")) }
                buffer.append(byte)
            }
            buffer.append(UInt8(ascii: "\""))
        }
        buffer.append(UInt8(ascii: "}"))
    }

    static func appendArrayLiteral(_ values: [Int64?], to buffer: inout [UInt8]) {
        buffer.append(UInt8(ascii: "{"))
        for (index, value) in values.enumerated() {
            if index > 0 { buffer.append(UInt8(ascii: ",")) }
            if let value { appendDecimal(value, to: &buffer) } else { buffer.append(contentsOf: "NULL".utf8) }
        }
        buffer.append(UInt8(ascii: "}"))
    }

    /// Parses a one-dimensional array literal (`{a,"b c",NULL}`, optionally `[1:3]={...}`); nested arrays are
    /// flattened in order. Calls `element` with each element's unescaped bytes, or nil for NULL.
    static func parseArray(_ bytes: UnsafeRawBufferPointer, _ element: (UnsafeRawBufferPointer?) -> Bool) -> Bool {
        let n = bytes.count
        var i = 0
        if n > 0 && bytes[0] == UInt8(ascii: "[") {
            while i < n && bytes[i] != UInt8(ascii: "=") { i += 1 }
            i += 1
        }
        guard i < n, bytes[i] == UInt8(ascii: "{") else { return false }
        var depth = 0
        var scratch: [UInt8] = []
        while i < n {
            let c = bytes[i]
            switch c {
            case UInt8(ascii: "{"): depth += 1; i += 1
            case UInt8(ascii: "}"):
                depth -= 1; i += 1
                if depth == 0 { return i == n }
            case UInt8(ascii: ","), UInt8(ascii: " "): i += 1
            case UInt8(ascii: "\""):
                i += 1
                scratch.removeAll(keepingCapacity: true)
                while i < n && bytes[i] != UInt8(ascii: "\"") {
                    if bytes[i] == UInt8(ascii: "\\") { i += 1; guard i < n else { return false } }
                    scratch.append(bytes[i]); i += 1
                }
                guard i < n else { return false }
                i += 1
                let ok = scratch.withUnsafeBytes { element($0) }
                if !ok { return false }
            default:
                scratch.removeAll(keepingCapacity: true)
                var escaped = false
                while i < n && bytes[i] != UInt8(ascii: ",") && bytes[i] != UInt8(ascii: "}") {
                    if bytes[i] == UInt8(ascii: "\\") { i += 1; escaped = true; guard i < n else { return false } }
                    scratch.append(bytes[i]); i += 1
                }
                while let last = scratch.last, last == UInt8(ascii: " ") { scratch.removeLast() }
                let isNull = !escaped && scratch.count == 4
                    && scratch[0] | 0x20 == UInt8(ascii: "n") && scratch[1] | 0x20 == UInt8(ascii: "u")
                    && scratch[2] | 0x20 == UInt8(ascii: "l") && scratch[3] | 0x20 == UInt8(ascii: "l")
                let ok = isNull ? element(nil) : scratch.withUnsafeBytes { element($0) }
                if !ok { return false }
            }
        }
        return false
    }
}
