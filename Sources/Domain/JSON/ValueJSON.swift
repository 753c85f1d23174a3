import Foundation

/// Why JSON text was refused: a short reason and the 0-based byte offset where the problem was noticed.
/// `description` reads like "expected ',' or '}' at byte 57".
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    /// 0-based offset into the input bytes (a skipped UTF-8 byte-order mark counts).
    public let offset: Int

    public init(_ reason: String, at offset: Int) {
        self.reason = reason
        self.offset = offset
    }

    public var description: String { "\(reason) at byte \(offset)" }
}

/// A strict RFC 8259 JSON reader and a compact writer for `Value`, without Foundation's bridging
/// (`JSONSerialization` → `Any` → `Value(json:)` costs most of event ingestion's CPU).
///
/// Reading — what is accepted, and where it differs from `JSONSerialization.jsonObject(with:options:)`:
/// - Any JSON value at the top level (like `.fragmentsAllowed`), surrounded by optional space/tab/LF/CR;
///   anything after the value is refused.
/// - UTF-8 only. A leading UTF-8 byte-order mark is skipped (as JSONSerialization does); UTF-16/UTF-32 input,
///   which JSONSerialization detects and accepts, is refused (it fails as not being valid JSON text).
/// - Trailing commas (`[1,]`, `{"a":1,}`) are refused; JSONSerialization accepts them.
/// - Strings: every RFC escape, `\u` escapes included; a surrogate pair gives one scalar; an unpaired surrogate
///   (`"\ud800"`, `"\udc00"`, `"\ud800\u0041"`) is refused, never replaced — as JSONSerialization does. Invalid
///   UTF-8 (overlong forms, encoded surrogates, truncated sequences) and unescaped control characters
///   (U+0000–U+001F) are refused. `\u0000` is accepted.
/// - Numbers: RFC grammar (no leading zeros, no `+`, no bare `.`); the result is the correctly rounded double
///   (what `Double(String)`/strtod gives), so every double written by `write` reads back exactly. JSONSerialization
///   agrees except where it goes through `Decimal`: non-integers whose text before the exponent is longer than
///   17 characters, and integers beyond `UInt64`. `Decimal.doubleValue` is often 1–4 ulps off there, even for the
///   shortest text of a double (`0.30000000000000004` gave 0.3000000000000001, `0.1000000000000000055511151231257827`
///   gave 0.10000000000000005); here both read exactly.
///   A magnitude beyond `Double` (`1e400`) is refused, like JSONSerialization; underflow gives 0. `-0` (an integer)
///   gives +0 as JSONSerialization does; `-0.0` gives -0.0.
/// - Objects: duplicate keys — the last one wins (as JSONSerialization).
/// - Nesting: at most 512 arrays/objects deep (JSONSerialization's limit too), so hostile input cannot exhaust the stack.
///
/// Writing — the same text `JSONSerialization.data(withJSONObject: value.jsonObject, options: [.fragmentsAllowed,
/// .sortedKeys, .withoutEscapingSlashes])` produced before, byte for byte:
/// - compact; keys in JSONSerialization's `.sortedKeys` order, which is *not* byte order but
///   `compare(_:options: [.numeric, .caseInsensitive, .forcedOrdering], locale: NSLocale.system)` (ICU root collation:
///   `"_x" < "a" < "A" < "a2" < "a10" < "B"`). Keys made of printable ASCII (without a leading-zero digit run such as
///   `a01`) are ordered by an equivalent byte-level comparison; objects with any other key fall back to Foundation's
///   comparison (exact, but ~5 µs per comparison). Definition checksums hash this text, so the order must not change.
/// - numbers: integral values below 1e15 in magnitude as integers (`-0.0` as `0`), others as Swift's shortest
///   round-trip `description` without a trailing `.0` (`1e+16`, `0.1`, `1e-07`). Non-finite numbers are written as
///   `null` (JSONSerialization threw, and `jsonText` then returned `"null"` for the whole document).
/// - strings: `"` `\` escaped, `/` not escaped, control characters as `\b \f \n \r \t` or `\u00xx` (lowercase hex),
///   everything else (DEL, U+2028, non-ASCII) as raw UTF-8.
/// - times as ISO-8601 strings (`Value.iso8601`), as `jsonObject` does.
public enum ValueJSON {
    /// The deepest nesting of arrays and objects accepted.
    public static let maximumDepth = 512

    public static func parse(_ bytes: [UInt8]) throws(JSONParseError) -> Value {
        let result = bytes.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONParseError) -> Value in try parse(buffer) }
        }
        return try result.get()
    }

    public static func parse(_ text: String) throws(JSONParseError) -> Value {
        var text = text
        let result = text.withUTF8 { buffer in
            Result { () throws(JSONParseError) -> Value in try parse(buffer) }
        }
        return try result.get()
    }

    public static func parse(_ buffer: UnsafeBufferPointer<UInt8>) throws(JSONParseError) -> Value {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { throw JSONParseError("unexpected end of input", at: 0) }
        var reader = JSONReader(base: base, end: buffer.count)
        return try reader.document()
    }

    /// Compact JSON text with sorted keys (see the type's documentation).
    public static func write(_ value: Value) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        write(value, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends the compact JSON text of `value` to `out`.
    public static func write(_ value: Value, into out: inout [UInt8]) {
        JSONWriter.value(value, &out)
    }
}

// MARK: - Reader

private enum ASCII {
    static let quote: UInt8 = 0x22, backslash: UInt8 = 0x5C, slash: UInt8 = 0x2F
    static let comma: UInt8 = 0x2C, colon: UInt8 = 0x3A
    static let openBracket: UInt8 = 0x5B, closeBracket: UInt8 = 0x5D
    static let openBrace: UInt8 = 0x7B, closeBrace: UInt8 = 0x7D
    static let minus: UInt8 = 0x2D, plus: UInt8 = 0x2B, dot: UInt8 = 0x2E, zero: UInt8 = 0x30, nine: UInt8 = 0x39
    static let lowerE: UInt8 = 0x65, upperE: UInt8 = 0x45
    static let space: UInt8 = 0x20, tab: UInt8 = 0x09, lf: UInt8 = 0x0A, cr: UInt8 = 0x0D
}

/// Exact powers of ten representable as doubles (Clinger's fast path).
private let exactPowersOfTen: [Double] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]

private struct JSONReader {
    let base: UnsafePointer<UInt8>
    let end: Int
    var i = 0
    /// Reused buffer for strings that contain escapes.
    var scratch: [UInt8] = []
    /// Members of the objects being read (innermost last), so each dictionary is built at its final size.
    var members: [Member] = []

    struct Member {
        let key: String
        let value: Value
    }

    init(base: UnsafePointer<UInt8>, end: Int) {
        self.base = base
        self.end = end
    }

    mutating func document() throws(JSONParseError) -> Value {
        if end >= 3 && base[0] == 0xEF && base[1] == 0xBB && base[2] == 0xBF { i = 3 }
        skipWhitespace()
        let result = try value(depth: 0)
        skipWhitespace()
        if i < end { throw fail("unexpected \(describe(base[i])) after the JSON value") }
        return result
    }

    // MARK: errors

    func fail(_ reason: String) -> JSONParseError { JSONParseError(reason, at: i) }
    func endOfInput() -> JSONParseError { JSONParseError("unexpected end of input", at: end) }

    func describe(_ byte: UInt8) -> String {
        if byte >= 0x21 && byte < 0x7F { return "'\(Character(Unicode.Scalar(byte)))'" }
        let hex = String(byte, radix: 16, uppercase: true)
        return "byte 0x\(hex.count == 1 ? "0" + hex : hex)"
    }

    // MARK: structure

    @inline(__always) mutating func skipWhitespace() {
        while i < end {
            let c = base[i]
            guard c == ASCII.space || c == ASCII.lf || c == ASCII.cr || c == ASCII.tab else { return }
            i += 1
        }
    }

    mutating func value(depth: Int) throws(JSONParseError) -> Value {
        guard i < end else { throw endOfInput() }
        switch base[i] {
        case ASCII.quote: return .string(try string())
        case ASCII.openBrace: return try object(depth: depth + 1)
        case ASCII.openBracket: return try array(depth: depth + 1)
        case 0x74: try literal("true"); return .bool(true)
        case 0x66: try literal("false"); return .bool(false)
        case 0x6E: try literal("null"); return .null
        case ASCII.minus, ASCII.zero...ASCII.nine: return .number(try number())
        default: throw fail("expected a value, found \(describe(base[i]))")
        }
    }

    mutating func literal(_ word: StaticString) throws(JSONParseError) {
        let start = i
        let count = word.utf8CodeUnitCount
        let bytes = word.utf8Start
        for k in 0..<count {
            guard start + k < end else { throw endOfInput() }
            guard base[start + k] == bytes[k] else { throw JSONParseError("invalid literal (expected \(word))", at: start) }
        }
        i = start + count
    }

    mutating func object(depth: Int) throws(JSONParseError) -> Value {
        if depth > ValueJSON.maximumDepth { throw fail("nesting deeper than \(ValueJSON.maximumDepth)") }
        i += 1
        skipWhitespace()
        guard i < end else { throw endOfInput() }
        if base[i] == ASCII.closeBrace { i += 1; return .object([:]) }
        let first = members.count
        while true {
            guard i < end else { throw endOfInput() }
            guard base[i] == ASCII.quote else { throw fail("expected a string key, found \(describe(base[i]))") }
            let key = try string()
            skipWhitespace()
            guard i < end else { throw endOfInput() }
            guard base[i] == ASCII.colon else { throw fail("expected ':'") }
            i += 1
            skipWhitespace()
            members.append(Member(key: key, value: try value(depth: depth)))
            skipWhitespace()
            guard i < end else { throw endOfInput() }
            switch base[i] {
            case ASCII.comma:
                i += 1
                skipWhitespace()
            case ASCII.closeBrace:
                i += 1
                var fields = [String: Value](minimumCapacity: members.count - first)
                for k in first..<members.count { fields[members[k].key] = members[k].value }  // the last duplicate wins
                members.removeSubrange(first...)
                return .object(fields)
            default:
                throw fail("expected ',' or '}'")
            }
        }
    }

    mutating func array(depth: Int) throws(JSONParseError) -> Value {
        if depth > ValueJSON.maximumDepth { throw fail("nesting deeper than \(ValueJSON.maximumDepth)") }
        i += 1
        skipWhitespace()
        var elements: [Value] = []
        guard i < end else { throw endOfInput() }
        if base[i] == ASCII.closeBracket { i += 1; return .array(elements) }
        while true {
            elements.append(try value(depth: depth))
            skipWhitespace()
            guard i < end else { throw endOfInput() }
            switch base[i] {
            case ASCII.comma: i += 1; skipWhitespace()
            case ASCII.closeBracket: i += 1; return .array(elements)
            default: throw fail("expected ',' or ']'")
            }
        }
    }

    // MARK: strings

    /// At the opening quote; returns after the closing quote.
    mutating func string() throws(JSONParseError) -> String {
        let open = i
        i += 1
        let start = i
        while i < end {
            let c = base[i]
            if c == ASCII.quote {
                let text = String(decoding: UnsafeBufferPointer(start: base + start, count: i - start), as: UTF8.self)
                i += 1
                return text
            }
            if c == ASCII.backslash { return try escapedString(from: start, open: open) }
            if c < 0x20 { throw fail("unescaped control character in string") }
            if c < 0x80 { i += 1 } else { try skipUTF8Sequence() }
        }
        throw JSONParseError("unterminated string", at: open)
    }

    /// The slow path: the string has escapes; the bytes from `start` up to `i` (a backslash) are plain.
    mutating func escapedString(from start: Int, open: Int) throws(JSONParseError) -> String {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: UnsafeBufferPointer(start: base + start, count: i - start))
        while i < end {
            let c = base[i]
            if c == ASCII.quote {
                i += 1
                return String(decoding: scratch, as: UTF8.self)
            }
            if c == ASCII.backslash {
                try escape()
            } else if c < 0x20 {
                throw fail("unescaped control character in string")
            } else if c < 0x80 {
                scratch.append(c)
                i += 1
            } else {
                let first = i
                try skipUTF8Sequence()
                scratch.append(contentsOf: UnsafeBufferPointer(start: base + first, count: i - first))
            }
        }
        throw JSONParseError("unterminated string", at: open)
    }

    /// At a backslash: appends the escaped character to `scratch`.
    mutating func escape() throws(JSONParseError) {
        guard i + 1 < end else { throw endOfInput() }
        let c = base[i + 1]
        let simple: UInt8
        switch c {
        case ASCII.quote: simple = ASCII.quote
        case ASCII.backslash: simple = ASCII.backslash
        case ASCII.slash: simple = ASCII.slash
        case 0x62: simple = 0x08  // b
        case 0x66: simple = 0x0C  // f
        case 0x6E: simple = 0x0A  // n
        case 0x72: simple = 0x0D  // r
        case 0x74: simple = 0x09  // t
        case 0x75:  // u
            let escapeStart = i
            i += 2
            let unit = try hex4()
            var scalar = UInt32(unit)
            if unit >= 0xD800 && unit <= 0xDBFF {
                guard i + 1 < end, base[i] == ASCII.backslash, base[i + 1] == 0x75 else {
                    if i + 1 >= end && (i >= end || base[i] == ASCII.backslash) { throw endOfInput() }
                    throw JSONParseError("unpaired surrogate in \\u escape", at: escapeStart)
                }
                i += 2
                let low = try hex4()
                guard low >= 0xDC00 && low <= 0xDFFF else { throw JSONParseError("unpaired surrogate in \\u escape", at: escapeStart) }
                scalar = 0x10000 + ((UInt32(unit) - 0xD800) << 10) + (UInt32(low) - 0xDC00)
            } else if unit >= 0xDC00 && unit <= 0xDFFF {
                throw JSONParseError("unpaired surrogate in \\u escape", at: escapeStart)
            }
            appendUTF8(scalar)
            return
        default:
            throw fail("invalid escape sequence")
        }
        scratch.append(simple)
        i += 2
    }

    /// Four hex digits at `i`.
    mutating func hex4() throws(JSONParseError) -> UInt16 {
        var value: UInt16 = 0
        for _ in 0..<4 {
            guard i < end else { throw endOfInput() }
            let c = base[i]
            let digit: UInt8
            switch c {
            case 0x30...0x39: digit = c &- 0x30
            case 0x41...0x46: digit = c &- 0x41 &+ 10
            case 0x61...0x66: digit = c &- 0x61 &+ 10
            default: throw fail("invalid \\u escape (expected a hex digit)")
            }
            value = value << 4 | UInt16(digit)
            i += 1
        }
        return value
    }

    mutating func appendUTF8(_ scalar: UInt32) {
        switch scalar {
        case 0..<0x80:
            scratch.append(UInt8(scalar))
        case 0x80..<0x800:
            scratch.append(UInt8(0xC0 | scalar >> 6))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        case 0x800..<0x10000:
            scratch.append(UInt8(0xE0 | scalar >> 12))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        default:
            scratch.append(UInt8(0xF0 | scalar >> 18))
            scratch.append(UInt8(0x80 | scalar >> 12 & 0x3F))
            scratch.append(UInt8(0x80 | scalar >> 6 & 0x3F))
            scratch.append(UInt8(0x80 | scalar & 0x3F))
        }
    }

    /// At a byte ≥ 0x80: checks one well-formed UTF-8 sequence (RFC 3629: no overlong forms, no surrogates,
    /// nothing above U+10FFFF) and steps over it.
    mutating func skipUTF8Sequence() throws(JSONParseError) {
        let c = base[i]
        var continuation = 0
        var low: UInt8 = 0x80, high: UInt8 = 0xBF
        switch c {
        case 0xC2...0xDF: continuation = 1
        case 0xE0: continuation = 2; low = 0xA0
        case 0xE1...0xEC, 0xEE, 0xEF: continuation = 2
        case 0xED: continuation = 2; high = 0x9F
        case 0xF0: continuation = 3; low = 0x90
        case 0xF1...0xF3: continuation = 3
        case 0xF4: continuation = 3; high = 0x8F
        default: throw fail("invalid UTF-8 in string")
        }
        guard i + continuation < end else { throw fail("invalid UTF-8 in string") }
        let second = base[i + 1]
        guard second >= low && second <= high else { throw fail("invalid UTF-8 in string") }
        var k = 2
        while k <= continuation {
            guard base[i + k] & 0xC0 == 0x80 else { throw fail("invalid UTF-8 in string") }
            k += 1
        }
        i += continuation + 1
    }

    // MARK: numbers

    @inline(__always) func isDigit(_ c: UInt8) -> Bool { c &- ASCII.zero < 10 }

    mutating func number() throws(JSONParseError) -> Double {
        let start = i
        var negative = false
        if base[i] == ASCII.minus {
            negative = true
            i += 1
            guard i < end else { throw endOfInput() }
        }
        var mantissa: UInt64 = 0
        var significant = 0      // digits held in `mantissa` (leading zeros excluded)
        var exponent = 0         // decimal exponent applied to `mantissa`
        var truncated = false    // more than 19 significant digits: only the slow path is exact
        var integer = true

        let first = base[i]
        if first == ASCII.zero {
            i += 1
            if i < end && isDigit(base[i]) { throw fail("leading zero in number") }
        } else if isDigit(first) {
            while i < end, isDigit(base[i]) {
                if significant < 19 {
                    mantissa = mantissa &* 10 &+ UInt64(base[i] &- ASCII.zero)
                    significant += 1
                } else {
                    exponent += 1
                    truncated = true
                }
                i += 1
            }
        } else {
            throw fail("expected a digit in number")
        }
        if i < end && base[i] == ASCII.dot {
            integer = false
            i += 1
            guard i < end else { throw endOfInput() }
            guard isDigit(base[i]) else { throw fail("expected a digit after '.'") }
            while i < end, isDigit(base[i]) {
                let digit = base[i] &- ASCII.zero
                if significant < 19 {
                    if mantissa != 0 || digit != 0 { significant += 1 }
                    mantissa = mantissa &* 10 &+ UInt64(digit)
                    exponent -= 1
                } else if digit != 0 {
                    truncated = true
                }
                i += 1
            }
        }
        if i < end && (base[i] == ASCII.lowerE || base[i] == ASCII.upperE) {
            integer = false
            i += 1
            guard i < end else { throw endOfInput() }
            var exponentNegative = false
            if base[i] == ASCII.minus || base[i] == ASCII.plus {
                exponentNegative = base[i] == ASCII.minus
                i += 1
                guard i < end else { throw endOfInput() }
            }
            guard isDigit(base[i]) else { throw fail("expected a digit in exponent") }
            var value = 0
            while i < end, isDigit(base[i]) {
                if value < 100_000 { value = value * 10 + Int(base[i] &- ASCII.zero) }
                i += 1
            }
            exponent += exponentNegative ? -value : value
        }

        if integer && mantissa == 0 { return 0 }  // `-0` is the integer 0 for JSONSerialization too
        if !truncated {
            if integer && exponent == 0 {
                // UInt64 → Double rounds to nearest, like strtod on the same digits.
                let magnitude = Double(mantissa)
                return negative ? -magnitude : magnitude
            }
            if mantissa <= 1 << 53 && exponent >= -22 && exponent <= 22 {
                // Both operands exact: one IEEE operation gives the correctly rounded result.
                var value = Double(mantissa)
                if exponent >= 0 { value *= exactPowersOfTen[exponent] } else { value /= exactPowersOfTen[-exponent] }
                return negative ? -value : value
            }
        }
        // Slow path: the standard library's correctly rounded conversion.
        let text = String(decoding: UnsafeBufferPointer(start: base + start, count: i - start), as: UTF8.self)
        guard let value = Double(text) else { throw JSONParseError("invalid number", at: start) }
        guard value.isFinite else { throw JSONParseError("number out of range", at: start) }
        return value
    }
}

// MARK: - Writer

private enum JSONWriter {
    static func value(_ value: Value, _ out: inout [UInt8]) {
        switch value {
        case .null: out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C])
        case .bool(let b): if b { out.append(contentsOf: [0x74, 0x72, 0x75, 0x65]) } else { out.append(contentsOf: [0x66, 0x61, 0x6C, 0x73, 0x65]) }
        case .number(let n): number(n, &out)
        case .string(let s): string(s, &out)
        case .time(let d): string(Value.iso8601(d), &out)
        case .array(let elements):
            out.append(ASCII.openBracket)
            var first = true
            for element in elements {
                if !first { out.append(ASCII.comma) }
                first = false
                self.value(element, &out)
            }
            out.append(ASCII.closeBracket)
        case .object(let fields):
            object(fields, &out)
        }
    }

    static func object(_ fields: [String: Value], _ out: inout [UInt8]) {
        out.append(ASCII.openBrace)
        if fields.count == 1, let only = fields.first {
            member(only.key, only.value, &out)
        } else if !fields.isEmpty {
            var members = Array(fields)
            if members.allSatisfy({ KeyOrder.isSimple($0.key) }) {
                members.sort { KeyOrder.simpleLess($0.key, $1.key) }
            } else {
                members.sort { KeyOrder.foundationLess($0.key, $1.key) }
            }
            var first = true
            for (key, value) in members {
                if !first { out.append(ASCII.comma) }
                first = false
                member(key, value, &out)
            }
        }
        out.append(ASCII.closeBrace)
    }

    @inline(__always) static func member(_ key: String, _ value: Value, _ out: inout [UInt8]) {
        string(key, &out)
        out.append(ASCII.colon)
        self.value(value, &out)
    }

    static func number(_ n: Double, _ out: inout [UInt8]) {
        guard n.isFinite else { out.append(contentsOf: [0x6E, 0x75, 0x6C, 0x6C]); return }
        if n.rounded() == n && abs(n) < 1e15 {
            integer(Int64(n), &out)
            return
        }
        var text = n.description
        if text.hasSuffix(".0") { text.removeLast(2) }
        out.append(contentsOf: text.utf8)
    }

    static func integer(_ value: Int64, _ out: inout [UInt8]) {
        if value < 0 { out.append(ASCII.minus) }
        var magnitude = value.magnitude
        if magnitude < 10 { out.append(ASCII.zero &+ UInt8(magnitude)); return }
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)  // 32 bytes of scratch, enough for 20 digits
        withUnsafeMutableBytes(of: &digits) { buffer in
            var position = buffer.count
            while magnitude > 0 {
                position -= 1
                buffer[position] = ASCII.zero &+ UInt8(magnitude % 10)
                magnitude /= 10
            }
            out.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[position...]))
        }
    }

    static func string(_ s: String, _ out: inout [UInt8]) {
        out.append(ASCII.quote)
        if s.utf8.withContiguousStorageIfAvailable({ escaped($0, &out) }) == nil {
            Array(s.utf8).withUnsafeBufferPointer { escaped($0, &out) }
        }
        out.append(ASCII.quote)
    }

    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func escaped(_ bytes: UnsafeBufferPointer<UInt8>, _ out: inout [UInt8]) {
        var runStart = 0
        var k = 0
        let count = bytes.count
        while k < count {
            let c = bytes[k]
            if c >= 0x20 && c != ASCII.quote && c != ASCII.backslash { k += 1; continue }
            if k > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<k])) }
            out.append(ASCII.backslash)
            switch c {
            case ASCII.quote: out.append(ASCII.quote)
            case ASCII.backslash: out.append(ASCII.backslash)
            case 0x08: out.append(0x62)
            case 0x0C: out.append(0x66)
            case 0x0A: out.append(0x6E)
            case 0x0D: out.append(0x72)
            case 0x09: out.append(0x74)
            default:
                out.append(contentsOf: [0x75, ASCII.zero, ASCII.zero, hexDigits[Int(c >> 4)], hexDigits[Int(c & 0xF)]])
            }
            k += 1
            runStart = k
        }
        if count > runStart { out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<count])) }
    }
}

// MARK: - Key order

/// JSONSerialization's `.sortedKeys` order: `compare(_:options: [.numeric, .caseInsensitive, .forcedOrdering],
/// locale: NSLocale.system)`, i.e. ICU root collation with numeric digit runs, lowercase before uppercase on ties.
enum KeyOrder {
    /// Printable ASCII without a digit run that starts with `0` and has more digits (those need ICU's tie rules).
    static func isSimple(_ key: String) -> Bool {
        if let simple = key.utf8.withContiguousStorageIfAvailable({ isSimple($0) }) { return simple }
        return Array(key.utf8).withUnsafeBufferPointer { isSimple($0) }
    }

    static func isSimple(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var k = 0
        var previousWasDigit = false
        while k < bytes.count {
            let c = bytes[k]
            guard c >= 0x20 && c < 0x7F else { return false }
            let digit = c &- ASCII.zero < 10
            if digit && !previousWasDigit && c == ASCII.zero && k + 1 < bytes.count && bytes[k + 1] &- ASCII.zero < 10 {
                return false
            }
            previousWasDigit = digit
            k += 1
        }
        return true
    }

    /// Primary weights of printable ASCII in ICU's root collation (non-ignorable): space and punctuation in the
    /// order ` _-,;:!?.'"()[]{}@*/\&#%`^+<=>|~$`, then digits, then letters case-insensitively.
    static let primaryWeights: [UInt8] = {
        var weights = [UInt8](repeating: 0, count: 128)
        for (rank, c) in " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$".utf8.enumerated() { weights[Int(c)] = UInt8(rank + 1) }
        for c in UInt8(0x30)...0x39 { weights[Int(c)] = 100 }
        for c in UInt8(0x61)...0x7A {
            weights[Int(c)] = 110 + (c - 0x61)
            weights[Int(c - 0x20)] = 110 + (c - 0x61)
        }
        return weights
    }()

    static func simpleLess(_ a: String, _ b: String) -> Bool {
        let result = a.utf8.withContiguousStorageIfAvailable { pa in
            b.utf8.withContiguousStorageIfAvailable { pb in simpleLess(pa, pb) }
        }
        if let result, let result { return result }
        return Array(a.utf8).withUnsafeBufferPointer { pa in Array(b.utf8).withUnsafeBufferPointer { pb in simpleLess(pa, pb) } }
    }

    /// `a < b` for two simple keys.
    static func simpleLess(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        primaryWeights.withUnsafeBufferPointer { weights in
            var i = 0, j = 0
            while i < a.count && j < b.count {
                let x = a[i], y = b[j]
                if x &- ASCII.zero < 10 && y &- ASCII.zero < 10 {
                    // Numeric digit runs (no leading zeros): the longer run is the bigger number.
                    var iEnd = i, jEnd = j
                    while iEnd < a.count && a[iEnd] &- ASCII.zero < 10 { iEnd += 1 }
                    while jEnd < b.count && b[jEnd] &- ASCII.zero < 10 { jEnd += 1 }
                    if iEnd - i != jEnd - j { return iEnd - i < jEnd - j }
                    while i < iEnd {
                        if a[i] != b[j] { return a[i] < b[j] }
                        i += 1; j += 1
                    }
                    continue
                }
                let wx = weights[Int(x)], wy = weights[Int(y)]
                if wx != wy { return wx < wy }
                i += 1; j += 1
            }
            if i < a.count || j < b.count { return j < b.count }
            // Equal but for letter case (same length, same layout): the first difference decides, lowercase first.
            for k in 0..<a.count where a[k] != b[k] { return a[k] > b[k] }
            return false
        }
    }

    static let systemLocale: Locale = NSLocale.system as Locale

    static func foundationLess(_ a: String, _ b: String) -> Bool {
        a.compare(b, options: [.numeric, .caseInsensitive, .forcedOrdering], range: a.startIndex..<a.endIndex,
                  locale: systemLocale) == .orderedAscending
    }
}
