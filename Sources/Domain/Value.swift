import Foundation

/// A dynamically typed value: what contact attributes, event properties, template contexts and expression
/// results are made of. JSON-shaped, plus timestamps (kept as seconds since 1970, UTC).
public enum Value: Sendable, Hashable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case time(Date)
    case array([Value])
    case object([String: Value])

    /// Converts what `JSONSerialization` produces (NSNumber, NSString, NSArray, NSDictionary, NSNull).
    public init(json: Any?) {
        switch json {
        case nil, is NSNull: self = .null
        case let n as NSNumber:
            // JSONSerialization's booleans are a distinct NSNumber subclass (objCType "c" with a Boolean type name).
            if String(describing: type(of: n)).contains("Boolean") { self = .bool(n.boolValue) } else { self = .number(n.doubleValue) }
        case let s as String: self = .string(s)
        case let a as [Any]: self = .array(a.map { Value(json: $0) })
        case let o as [String: Any]: self = .object(o.mapValues { Value(json: $0) })
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .number(Double(i))
        case let d as Double: self = .number(d)
        default: self = .string("\(json!)")
        }
    }

    /// Parses JSON text into a value (throws a `JSONParseError` on malformed JSON; see `ValueJSON`).
    public init(jsonText: String) throws {
        self = try ValueJSON.parse(jsonText)
    }

    /// The value as a Foundation JSON object (times become ISO-8601 strings).
    public var jsonObject: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .number(let n): return n.rounded() == n && abs(n) < 1e15 ? NSNumber(value: Int64(n)) : NSNumber(value: n)
        case .string(let s): return s
        case .time(let d): return Value.iso8601(d)
        case .array(let a): return a.map(\.jsonObject)
        case .object(let o): return o.mapValues(\.jsonObject)
        }
    }

    /// Compact JSON text with sorted keys (JSONSerialization's `.sortedKeys` order; see `ValueJSON`).
    public var jsonText: String { ValueJSON.write(self) }

    /// `a.b.c` lookup through objects (nil when any step is missing or not an object).
    public subscript(path path: [String]) -> Value? {
        var current = self
        for key in path {
            guard case .object(let o) = current, let next = o[key] else { return nil }
            current = next
        }
        return current
    }

    public subscript(key: String) -> Value? {
        if case .object(let o) = self { return o[key] }
        return nil
    }

    public var isNull: Bool { if case .null = self { return true }; return false }

    /// Liquid/expression truthiness: only `false` and `null` are false.
    public var isTruthy: Bool {
        switch self {
        case .null: return false
        case .bool(let b): return b
        default: return true
        }
    }

    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var numberValue: Double? { if case .number(let n) = self { return n }; return nil }

    /// How the value prints in a template: numbers without a needless `.0`, times as ISO-8601, null as "".
    public var description: String {
        switch self {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return Value.format(number: n)
        case .string(let s): return s
        case .time(let d): return Value.iso8601(d)
        case .array(let a): return a.map(\.description).joined()
        case .object: return jsonText
        }
    }

    public static func format(number n: Double) -> String {
        if n.isNaN || n.isInfinite { return String(n) }
        if n.rounded() == n && abs(n) < 1e15 { return String(Int64(n)) }
        return String(n)
    }

    /// `2026-11-23T10:00:00Z` (UTC; seconds truncated), or `2026-11-23T10:00:00.123Z` with `milliseconds` (rounded).
    /// Written from `gmtime_r`'s fields, not by Foundation's ISO8601DateFormatter (tens of µs per call; this is on
    /// hot paths: every event the web role writes, every time value rendered to JSON).
    public static func iso8601(_ date: Date) -> String { iso8601(date, milliseconds: false) }

    public static func iso8601(_ date: Date, milliseconds: Bool) -> String {
        let t = date.timeIntervalSince1970
        // Years 1...9999 only (what the format can say); anything else goes through Foundation as before.
        guard t.isFinite, t >= -62_135_596_800, t < 253_402_300_800 else {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = milliseconds ? [.withInternetDateTime, .withFractionalSeconds] : [.withInternetDateTime]
            formatter.timeZone = TimeZone(identifier: "UTC")
            return formatter.string(from: date)
        }
        // Like Foundation: seconds truncated; with milliseconds, the nearest millisecond (53.995 is 53.994999… in binary).
        let ms = Int64(milliseconds ? (t * 1000).rounded() : (t * 1000).rounded(.down))
        var seconds = time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ value: Int32, _ width: Int) {
            var v = Int(value), divisor = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 { out.append(UInt8(ascii: "0") + UInt8(v / divisor % 10)); v %= divisor; divisor /= 10 }
        }
        digits(parts.tm_year + 1900, 4); out.append(UInt8(ascii: "-")); digits(parts.tm_mon + 1, 2); out.append(UInt8(ascii: "-"))
        digits(parts.tm_mday, 2); out.append(UInt8(ascii: "T")); digits(parts.tm_hour, 2); out.append(UInt8(ascii: ":"))
        digits(parts.tm_min, 2); out.append(UInt8(ascii: ":")); digits(parts.tm_sec, 2)
        if milliseconds { out.append(UInt8(ascii: ".")); digits(Int32(((ms % 1000) + 1000) % 1000), 3) }
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses ISO-8601 timestamps (`2026-11-22T10:00:00Z`, with fractional seconds or an offset, or a bare date).
    public static func parseTime(_ text: String) -> Date? {
        // The strict form (what app servers send) without Foundation's formatters, which cost ~50 µs each.
        if let d = ExpressionTime.parse(text) { return d }
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = full.date(from: text) { return d }
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        if let d = plain.date(from: text) { return d }
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        return day.date(from: text)
    }
}
