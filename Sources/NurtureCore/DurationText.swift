/// Durations as people write them in definition files and flags: `500ms`, `30s`, `30m`, `6h`, `2d`, `1w`,
/// or combinations like `1h30m`. Parsed to milliseconds.
public enum DurationText {
    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public let text: String
        public let reason: String
        public var description: String { "invalid duration \"\(text)\": \(reason) (use e.g. 30s, 15m, 6h, 2d, 1w, 1h30m)" }
    }

    public static func milliseconds(_ text: String) throws(ParseError) -> Int64 {
        let trimmed = text.trimmingSpaces()
        guard !trimmed.isEmpty else { throw ParseError(text: text, reason: "empty") }
        var total: Int64 = 0
        var number: Int64? = nil
        var chars = Array(trimmed.unicodeScalars)
        var index = 0
        while index < chars.count {
            let c = chars[index]
            if let digit = c.properties.numericType != nil ? Int64(String(c)) : nil {
                let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (s, o2) = m.addingReportingOverflow(digit)
                if o1 || o2 { throw ParseError(text: text, reason: "too large") }
                number = s
                index += 1
                continue
            }
            guard let value = number else { throw ParseError(text: text, reason: "expected a number before '\(c)'") }
            var unit = String(c)
            if c == "m", index + 1 < chars.count, chars[index + 1] == "s" { unit = "ms"; index += 1 }
            let factor: Int64
            switch unit {
            case "ms": factor = 1
            case "s": factor = 1_000
            case "m": factor = 60_000
            case "h": factor = 3_600_000
            case "d": factor = 86_400_000
            case "w": factor = 7 * 86_400_000
            default: throw ParseError(text: text, reason: "unknown unit '\(unit)'")
            }
            let (p, o) = value.multipliedReportingOverflow(by: factor)
            if o { throw ParseError(text: text, reason: "too large") }
            total += p
            number = nil
            index += 1
        }
        if number != nil { throw ParseError(text: text, reason: "missing unit after the last number") }
        chars.removeAll()
        return total
    }

    /// Formats milliseconds back into the shortest readable form (`90000` → `1m30s`).
    public static func format(milliseconds: Int64) -> String {
        if milliseconds == 0 { return "0s" }
        var rest = milliseconds
        var out = ""
        for (unit, size) in [("d", Int64(86_400_000)), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= size { out += "\(rest / size)\(unit)"; rest %= size }
        }
        return out
    }
}

extension String {
    func trimmingSpaces() -> String {
        var scalars = Substring(self)
        while let f = scalars.first, f == " " || f == "\t" || f == "\n" { scalars.removeFirst() }
        while let l = scalars.last, l == " " || l == "\t" || l == "\n" { scalars.removeLast() }
        return String(scalars)
    }
}
