import Foundation

/// Every filter the engine knows; the parser rejects any other name and any wrong argument count.
enum LiquidFilter: String, CaseIterable, Sendable {
    case `default`, upcase, downcase, capitalize, strip, lstrip, rstrip
    case stripNewlines = "strip_newlines"
    case truncate, truncatewords, replace
    case replaceFirst = "replace_first"
    case replaceLast = "replace_last"
    case remove
    case removeFirst = "remove_first"
    case removeLast = "remove_last"
    case append, prepend, split, join, first, last, size, slice
    case plus, minus, times
    case dividedBy = "divided_by"
    case modulo, round, floor, ceil, abs
    case atLeast = "at_least"
    case atMost = "at_most"
    case date
    case plusDays = "plus_days"
    case urlEncode = "url_encode"
    case urlDecode = "url_decode"
    case escape, h
    case escapeOnce = "escape_once"
    case jsonEscape = "json_escape"
    case json, sha256
    case hmacSHA256 = "hmac_sha256"
    case base64Encode = "base64_encode"
    case base64Decode = "base64_decode"
    case newlineToBr = "newline_to_br"
    case stripHtml = "strip_html"
    case sort
    case sortNatural = "sort_natural"
    case uniq, reverse, map, `where`, compact, concat, sum, raw

    /// How many positional arguments the filter takes.
    var arity: ClosedRange<Int> {
        switch self {
        case .default: return 0...1
        case .truncate, .truncatewords: return 0...2
        case .replace, .replaceFirst, .replaceLast: return 1...2
        case .remove, .removeFirst, .removeLast, .append, .prepend: return 1...1
        case .split, .join: return 0...1
        case .slice: return 1...2
        case .plus, .minus, .times, .dividedBy, .modulo, .atLeast, .atMost, .plusDays, .hmacSHA256, .map, .concat: return 1...1
        case .round: return 0...1
        case .date: return 0...1
        case .sort, .sortNatural, .uniq, .compact, .sum: return 0...1
        case .where: return 1...2
        default: return 0...0
        }
    }

    /// Keyword arguments (`default: "x", allow_false: true`).
    var namedArguments: Set<String> {
        self == .default ? ["allow_false"] : []
    }
}

/// Pure helpers shared by the filters and the renderer.
enum LiquidFilters {
    /// Shopify's `to_number`: numbers as they are, numeric strings (`"12"`, `"-1.5"`) parsed, times as epoch
    /// seconds, anything else 0.
    static func toNumber(_ v: Value) -> Double {
        switch v {
        case .number(let n): return n
        case .string(let s): return parseNumber(s) ?? 0
        case .time(let d): return d.timeIntervalSince1970
        default: return 0
        }
    }

    /// `-?\d+(\.\d+)?` after trimming whitespace, else nil.
    static func parseNumber(_ s: String) -> Double? {
        let bytes = Array(s.utf8)
        var start = 0, end = bytes.count
        while start < end && liquidIsWhitespace(bytes[start]) { start += 1 }
        while end > start && liquidIsWhitespace(bytes[end - 1]) { end -= 1 }
        guard start < end, end - start < 400 else { return nil }
        var i = start
        if bytes[i] == UInt8(ascii: "-") { i += 1 }
        let digitsStart = i
        while i < end && bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
        guard i > digitsStart else { return nil }
        if i < end {
            guard bytes[i] == UInt8(ascii: ".") else { return nil }
            i += 1
            let fraction = i
            while i < end && bytes[i] >= 0x30 && bytes[i] <= 0x39 { i += 1 }
            guard i > fraction, i == end else { return nil }
        }
        return Double(String(decoding: bytes[start..<end], as: UTF8.self))
    }

    /// A Double as an Int without trapping: non-finite is 0, huge values are clamped.
    static func toInt(_ d: Double) -> Int {
        guard d.isFinite else { return 0 }
        let limit = 1e15
        return Int(Swift.min(Swift.max(d, -limit), limit).rounded(.towardZero))
    }

    /// The size of a value for the work budget: bytes of strings, elements (recursively) of collections.
    static func cost(_ v: Value, cap: Int = 100_000_000) -> Int {
        switch v {
        case .string(let s): return s.utf8.count
        case .array(let a):
            var total = a.count
            for e in a {
                total += cost(e, cap: cap - total)
                if total >= cap { return total }
            }
            return total
        case .object(let o):
            var total = o.count
            for (k, e) in o {
                total += k.utf8.count + cost(e, cap: cap - total)
                if total >= cap { return total }
            }
            return total
        default: return 1
        }
    }

    /// How a value prints: nil as nothing, whole numbers without `.0`, times as ISO-8601 UTC, arrays as their
    /// elements run together, objects as JSON.
    static func plainString(_ v: Value) -> String {
        switch v {
        case .null: return ""
        case .bool(let b): return b ? "true" : "false"
        case .number(let n): return Value.format(number: n)
        case .string(let s): return s
        case .time(let d): return LiquidDate.iso8601UTC(d)
        case .array(let a):
            var s = ""
            for e in a { s += plainString(e) }
            return s
        case .object: return json(v)
        }
    }

    static func htmlEscape(_ s: String) -> String {
        var needs = false
        for b in s.utf8 where b == 0x26 || b == 0x3C || b == 0x3E || b == 0x22 || b == 0x27 { needs = true; break }
        guard needs else { return s }
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count + 16)
        for b in s.utf8 {
            switch b {
            case 0x26: out.append(contentsOf: "&amp;".utf8)
            case 0x3C: out.append(contentsOf: "&lt;".utf8)
            case 0x3E: out.append(contentsOf: "&gt;".utf8)
            case 0x22: out.append(contentsOf: "&quot;".utf8)
            case 0x27: out.append(contentsOf: "&#39;".utf8)
            default: out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Like `htmlEscape`, but leaves existing entities (`&amp;`, `&#39;`, `&#x27;`) alone.
    static func htmlEscapeOnce(_ s: String) -> String {
        let bytes = Array(s.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 16)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case 0x26:
                if isEntity(bytes, at: i) { out.append(b) } else { out.append(contentsOf: "&amp;".utf8) }
            case 0x3C: out.append(contentsOf: "&lt;".utf8)
            case 0x3E: out.append(contentsOf: "&gt;".utf8)
            case 0x22: out.append(contentsOf: "&quot;".utf8)
            case 0x27: out.append(contentsOf: "&#39;".utf8)
            default: out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func isEntity(_ bytes: [UInt8], at amp: Int) -> Bool {
        var j = amp + 1
        func isAlpha(_ c: UInt8) -> Bool { (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) }
        func isNum(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
        func isHex(_ c: UInt8) -> Bool { isNum(c) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66) }
        guard j < bytes.count else { return false }
        let start: Int
        if bytes[j] == UInt8(ascii: "#") {
            j += 1
            if j < bytes.count && (bytes[j] == UInt8(ascii: "x") || bytes[j] == UInt8(ascii: "X")) {
                j += 1
                start = j
                while j < bytes.count && isHex(bytes[j]) && j - start < 8 { j += 1 }
            } else {
                start = j
                while j < bytes.count && isNum(bytes[j]) && j - start < 8 { j += 1 }
            }
        } else {
            start = j
            while j < bytes.count && isAlpha(bytes[j]) && j - start < 32 { j += 1 }
        }
        return j > start && j < bytes.count && bytes[j] == UInt8(ascii: ";")
    }

    /// Escapes for use inside a JSON string literal (no surrounding quotes).
    static func jsonEscape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count + 8)
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\u{2028}": out += "\\u2028"
            case "\u{2029}": out += "\\u2029"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out
    }

    /// Compact JSON with sorted keys (times as ISO-8601 strings, non-finite numbers as null).
    static func json(_ v: Value) -> String {
        var out = ""
        writeJSON(v, into: &out)
        return out
    }

    private static func writeJSON(_ v: Value, into out: inout String) {
        switch v {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let n): out += n.isFinite ? Value.format(number: n) : "null"
        case .string(let s): out += "\""; out += jsonEscape(s); out += "\""
        case .time(let d): out += "\""; out += LiquidDate.iso8601UTC(d); out += "\""
        case .array(let a):
            out += "["
            for (i, e) in a.enumerated() {
                if i > 0 { out += "," }
                writeJSON(e, into: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, k) in o.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                out += "\""; out += jsonEscape(k); out += "\":"
                writeJSON(o[k]!, into: &out)
            }
            out += "}"
        }
    }

    /// Ruby's `CGI.escape`: everything but `A-Z a-z 0-9 _ . - ~` percent-encoded, spaces as `+`.
    static func urlEncode(_ s: String) -> String {
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count)
        for b in s.utf8 {
            switch b {
            case 0x41...0x5A, 0x61...0x7A, 0x30...0x39, 0x5F, 0x2E, 0x2D, 0x7E: out.append(b)
            case 0x20: out.append(UInt8(ascii: "+"))
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func urlDecode(_ s: String) -> String {
        let bytes = Array(s.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        func hexValue(_ c: UInt8) -> UInt8? {
            switch c {
            case 0x30...0x39: return c - 0x30
            case 0x41...0x46: return c - 0x41 + 10
            case 0x61...0x66: return c - 0x61 + 10
            default: return nil
            }
        }
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == UInt8(ascii: "+") {
                out.append(0x20)
            } else if b == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 2
            } else {
                out.append(b)
            }
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Start offsets of non-overlapping occurrences of `needle` in `haystack` (Knuth-Morris-Pratt: linear time
    /// whatever the input), at most `limit`.
    static func occurrences(of needle: [UInt8], in haystack: [UInt8], limit: Int = .max) -> [Int] {
        let m = needle.count
        guard m > 0, m <= haystack.count, limit > 0 else { return [] }
        var failure = [Int](repeating: 0, count: m)
        var k = 0
        for i in 1..<m {
            while k > 0 && needle[i] != needle[k] { k = failure[k - 1] }
            if needle[i] == needle[k] { k += 1 }
            failure[i] = k
        }
        var found: [Int] = []
        k = 0
        for i in 0..<haystack.count {
            while k > 0 && haystack[i] != needle[k] { k = failure[k - 1] }
            if haystack[i] == needle[k] { k += 1 }
            if k == m {
                found.append(i - m + 1)
                if found.count >= limit { break }
                k = 0   // non-overlapping
            }
        }
        return found
    }

    /// Strips `<script>`/`<style>` blocks, comments and tags.
    static func stripHTML(_ s: String) -> String {
        let bytes = Array(s.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        func lower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b + 32 : b }
        func hasPrefix(_ p: String, at i: Int) -> Bool {
            let pb = Array(p.utf8)
            guard i + pb.count <= bytes.count else { return false }
            for j in 0..<pb.count where lower(bytes[i + j]) != pb[j] { return false }
            return true
        }
        var i = 0
        while i < bytes.count {
            guard bytes[i] == UInt8(ascii: "<") else { out.append(bytes[i]); i += 1; continue }
            var closer: [UInt8]?
            if hasPrefix("<!--", at: i) { closer = Array("-->".utf8) } else if hasPrefix("<script", at: i) {
                closer = Array("</script>".utf8)
            } else if hasPrefix("<style", at: i) { closer = Array("</style>".utf8) }
            if let closer {
                let tail = Array(bytes[(i + 1)...].map(lower))
                if let at = occurrences(of: closer, in: tail, limit: 1).first {
                    i = i + 1 + at + closer.count
                    continue
                }
            }
            // A plain tag: up to the next '>' (an unterminated '<' is kept, like the regex /<.*?>/ would).
            var j = i + 1
            while j < bytes.count && bytes[j] != UInt8(ascii: ">") { j += 1 }
            if j < bytes.count { i = j + 1 } else { out.append(bytes[i]); i += 1 }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Total order for `sort`: numbers, then strings, times, booleans, arrays, objects; nil last.
    static func sortsBefore(_ a: Value, _ b: Value, natural: Bool) -> Bool {
        func rank(_ v: Value) -> Int {
            switch v {
            case .number: return 0
            case .string: return 1
            case .time: return 2
            case .bool: return 3
            case .array: return 4
            case .object: return 5
            case .null: return 6
            }
        }
        let ra = rank(a), rb = rank(b)
        if ra != rb { return ra < rb }
        switch (a, b) {
        case (.number(let x), .number(let y)): return x < y
        case (.string(let x), .string(let y)):
            if natural {
                let lx = x.lowercased(), ly = y.lowercased()
                if lx != ly { return lx.utf8.lexicographicallyPrecedes(ly.utf8) }
            }
            return x.utf8.lexicographicallyPrecedes(y.utf8)
        case (.time(let x), .time(let y)): return x < y
        case (.bool(let x), .bool(let y)): return !x && y
        default: return false
        }
    }

    /// Ruby's float rounding (`2.675.round(2) == 2.68`): half away from zero with its correction step.
    static func round(_ x: Double, digits: Int) -> Double {
        guard x.isFinite else { return x }
        if digits == 0 { return x.rounded() }
        if digits > 0 {
            if digits >= 16 { return x }
            let s = pow(10.0, Double(digits))
            let xs = x * s
            guard xs.isFinite else { return x }
            var f = xs.rounded()
            if x > 0, (f + 0.5) / s <= x { f += 1 }
            if x < 0, (f - 0.5) / s >= x { f -= 1 }
            return f / s
        }
        if digits <= -308 { return 0 }
        let s = pow(10.0, Double(-digits))
        return (x / s).rounded() * s
    }
}

// MARK: - Applying filters

extension LiquidRenderer {
    /// Applies one filter; returns the result and whether it is a float in Shopify's sense (for `divided_by`).
    func apply(_ call: LiquidFilterCall, to input: Value, args: [Value], inputIsFloat: Bool) throws -> (Value, Bool) {
        let at = call.location
        var units = 1 + LiquidFilters.cost(input)
        for a in args { units += LiquidFilters.cost(a) }
        try charge(units, at: at)
        let result = try compute(call, input, args, inputIsFloat)
        switch result.0 {
        case .string(let s) where s.utf8.count > limits.maxOutputBytes:
            throw at.error("'\(call.filter.rawValue)' produced more than \(limits.maxOutputBytes) bytes")
        case .array(let a) where a.count > limits.maxArrayLength:
            throw at.error("'\(call.filter.rawValue)' produced more than \(limits.maxArrayLength) elements")
        default:
            return result
        }
    }

    private func str(_ v: Value) -> String { LiquidFilters.plainString(v) }

    private func num(_ v: Value) -> Double { LiquidFilters.toNumber(v) }

    private func isFloat(_ v: Value, literal: Bool) -> Bool {
        if literal { return true }
        switch v {
        case .number(let n): return n.rounded() != n
        case .string(let s): return s.utf8.contains(UInt8(ascii: ".")) && LiquidFilters.parseNumber(s) != nil
        default: return false
        }
    }

    private func checkedNumber(_ n: Double, _ call: LiquidFilterCall) throws -> Value {
        guard n.isFinite else { throw call.location.error("'\(call.filter.rawValue)' overflowed") }
        return .number(n)
    }

    /// Elements for the array filters: arrays as they are, nil as none, anything else as one element.
    private func elements(_ v: Value) -> [Value] {
        switch v {
        case .array(let a): return a
        case .null: return []
        default: return [v]
        }
    }

    private func flattened(_ v: Value, depth: Int = 0) -> [Value] {
        guard case .array(let a) = v else { return [v] }
        guard depth < 32, a.contains(where: { if case .array = $0 { return true }; return false }) else { return a }
        var out: [Value] = []
        for e in a { if case .array = e { out += flattened(e, depth: depth + 1) } else { out.append(e) } }
        return out
    }

    private func property(_ element: Value, _ name: String) -> Value {
        guard case .object(let o) = element else { return .null }
        return o[name] ?? .null
    }

    private func date(from v: Value) -> Date? {
        switch v {
        case .time(let d): return d
        case .number(let n): return abs(n) < LiquidDate.maxEpochSeconds ? Date(timeIntervalSince1970: n) : nil
        case .string(let s):
            let t = s.trimmingCharacters(in: .whitespaces)
            if t == "now" || t == "today" { return options.now }
            if let d = LiquidDate.parse(t, timeZone: options.timeZone) { return d }
            if let n = LiquidFilters.parseNumber(t), !t.contains("."), abs(n) < LiquidDate.maxEpochSeconds {
                return Date(timeIntervalSince1970: n)
            }
            return nil
        default: return nil
        }
    }

    private func replaced(_ s: String, _ search: String, _ replacement: String, mode: Int, _ call: LiquidFilterCall) throws -> String {
        // mode: 0 all, 1 first, 2 last
        let hay = Array(s.utf8), needle = Array(search.utf8), with = Array(replacement.utf8)
        if needle.isEmpty {
            // Ruby: "" matches before every character (and at the end for gsub).
            if mode == 1 { return replacement + s }
            if mode == 2 { return s + replacement }
            let count = s.count + 1
            if hay.count + count * with.count > limits.maxOutputBytes {
                throw call.location.error("'\(call.filter.rawValue)' would produce more than \(limits.maxOutputBytes) bytes")
            }
            var out = replacement
            for c in s { out.append(c); out += replacement }
            return out
        }
        var positions = LiquidFilters.occurrences(of: needle, in: hay, limit: mode == 1 ? 1 : .max)
        if mode == 2, let lastPosition = positions.last { positions = [lastPosition] }
        guard !positions.isEmpty else { return s }
        let size = hay.count + positions.count * (with.count - needle.count)
        if size > limits.maxOutputBytes {
            throw call.location.error("'\(call.filter.rawValue)' would produce more than \(limits.maxOutputBytes) bytes")
        }
        var out: [UInt8] = []
        out.reserveCapacity(size)
        var from = 0
        for p in positions {
            out.append(contentsOf: hay[from..<p])
            out.append(contentsOf: with)
            from = p + needle.count
        }
        out.append(contentsOf: hay[from...])
        return String(decoding: out, as: UTF8.self)
    }

    private func split(_ s: String, _ separator: String) -> [Value] {
        if s.isEmpty { return [] }
        if separator.isEmpty { return s.map { .string(String($0)) } }
        if separator == " " {
            return s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) }
        }
        let hay = Array(s.utf8), needle = Array(separator.utf8)
        var parts: [Value] = []
        var from = 0
        for p in LiquidFilters.occurrences(of: needle, in: hay) {
            parts.append(.string(String(decoding: hay[from..<p], as: UTF8.self)))
            from = p + needle.count
        }
        parts.append(.string(String(decoding: hay[from...], as: UTF8.self)))
        while let last = parts.last, case .string(let t) = last, t.isEmpty { parts.removeLast() }   // Ruby drops trailing empties
        return parts
    }

    private func compute(_ call: LiquidFilterCall, _ input: Value, _ args: [Value], _ inputIsFloat: Bool) throws -> (Value, Bool) {
        let arg0 = args.first ?? .null
        switch call.filter {
        case .default:
            var allowFalse = false
            for (name, expr) in call.namedArgs where name == "allow_false" { allowFalse = try evaluate(expr).isTruthy }
            let fallback = args.first ?? .string("")
            switch input {
            case .null: return (fallback, false)
            case .bool(false): return allowFalse ? (input, false) : (fallback, false)
            case .string(let s) where s.isEmpty: return (fallback, false)
            case .array(let a) where a.isEmpty: return (fallback, false)
            case .object(let o) where o.isEmpty: return (fallback, false)
            default: return (input, inputIsFloat)
            }
        case .raw:
            return (input, inputIsFloat)
        case .upcase: return (.string(str(input).uppercased()), false)
        case .downcase: return (.string(str(input).lowercased()), false)
        case .capitalize:
            let s = str(input)
            guard let first = s.first else { return (.string(s), false) }
            return (.string(String(first).uppercased() + s.dropFirst().lowercased()), false)
        case .strip: return (.string(str(input).trimmingCharacters(in: .whitespacesAndNewlines)), false)
        case .lstrip:
            let s = str(input)
            return (.string(String(s.drop(while: { $0.isWhitespace }))), false)
        case .rstrip:
            let s = str(input)
            var end = s.endIndex
            while end > s.startIndex, s[s.index(before: end)].isWhitespace { end = s.index(before: end) }
            return (.string(String(s[..<end])), false)
        case .stripNewlines:
            return (.string(String(str(input).filter { $0 != "\n" && $0 != "\r" && $0 != "\r\n" })), false)
        case .newlineToBr:
            var out = ""
            for c in str(input) {
                if c == "\n" || c == "\r\n" { out += "<br />\n" } else { out.append(c) }
            }
            return (.string(out), false)
        case .truncate:
            if case .null = input { return (.null, false) }
            let s = str(input)
            let length = args.count > 0 ? LiquidFilters.toInt(num(args[0])) : 50
            let ellipsis = args.count > 1 ? str(args[1]) : "..."
            guard s.count > length else { return (.string(s), false) }
            let keep = max(length - ellipsis.count, 0)
            return (.string(String(s.prefix(keep)) + ellipsis), false)
        case .truncatewords:
            if case .null = input { return (.null, false) }
            let s = str(input)
            let count = max(args.count > 0 ? LiquidFilters.toInt(num(args[0])) : 15, 1)
            let ellipsis = args.count > 1 ? str(args[1]) : "..."
            let words = s.split(whereSeparator: { $0.isWhitespace })
            guard words.count > count else { return (.string(s), false) }
            return (.string(words.prefix(count).joined(separator: " ") + ellipsis), false)
        case .replace: return (.string(try replaced(str(input), str(arg0), args.count > 1 ? str(args[1]) : "", mode: 0, call)), false)
        case .replaceFirst: return (.string(try replaced(str(input), str(arg0), args.count > 1 ? str(args[1]) : "", mode: 1, call)), false)
        case .replaceLast: return (.string(try replaced(str(input), str(arg0), args.count > 1 ? str(args[1]) : "", mode: 2, call)), false)
        case .remove: return (.string(try replaced(str(input), str(arg0), "", mode: 0, call)), false)
        case .removeFirst: return (.string(try replaced(str(input), str(arg0), "", mode: 1, call)), false)
        case .removeLast: return (.string(try replaced(str(input), str(arg0), "", mode: 2, call)), false)
        case .append: return (.string(str(input) + str(arg0)), false)
        case .prepend: return (.string(str(arg0) + str(input)), false)
        case .split: return (.array(split(str(input), args.isEmpty ? " " : str(arg0))), false)
        case .join:
            let glue = args.isEmpty ? " " : str(arg0)
            guard case .array(let a) = input else { return (.string(str(input)), false) }
            let parts = a.map(str)
            var size = max(parts.count - 1, 0) * glue.utf8.count
            for p in parts { size += p.utf8.count }
            if size > limits.maxOutputBytes {
                throw call.location.error("'join' would produce more than \(limits.maxOutputBytes) bytes")
            }
            return (.string(parts.joined(separator: glue)), false)
        case .first:
            if case .array(let a) = input { return (a.first ?? .null, false) }
            return (.null, false)
        case .last:
            if case .array(let a) = input { return (a.last ?? .null, false) }
            return (.null, false)
        case .size:
            switch input {
            case .array(let a): return (.number(Double(a.count)), false)
            case .object(let o): return (.number(Double(o.count)), false)
            case .string(let s): return (.number(Double(s.count)), false)
            default: return (.number(0), false)
            }
        case .slice:
            let start = LiquidFilters.toInt(num(arg0))
            let length = args.count > 1 ? LiquidFilters.toInt(num(args[1])) : 1
            func window(_ count: Int) -> Range<Int>? {
                let from = start < 0 ? count + start : start
                guard from >= 0, from <= count, length >= 0 else { return nil }
                return from..<min(count, from + min(length, count))
            }
            switch input {
            case .array(let a):
                guard let r = window(a.count) else { return (.null, false) }
                return (.array(Array(a[r])), false)
            case .null: return (.null, false)
            default:
                let chars = Array(str(input))
                guard let r = window(chars.count) else { return (.null, false) }
                return (.string(String(chars[r])), false)
            }
        case .plus, .minus, .times, .dividedBy, .modulo, .atLeast, .atMost:
            let a = num(input), b = num(arg0)
            let float = isFloat(input, literal: inputIsFloat) || isFloat(arg0, literal: call.firstArgIsFloatLiteral)
            switch call.filter {
            case .plus: return (try checkedNumber(a + b, call), float)
            case .minus: return (try checkedNumber(a - b, call), float)
            case .times: return (try checkedNumber(a * b, call), float)
            case .atLeast: return (.number(Swift.max(a, b)), float)
            case .atMost: return (.number(Swift.min(a, b)), float)
            case .dividedBy:
                guard b != 0 else { throw call.location.error("divided by 0") }
                return (try checkedNumber(float ? a / b : (a / b).rounded(.down), call), float)
            default:
                guard b != 0 else { throw call.location.error("modulo by 0") }
                var r = fmod(a, b)
                if r != 0 && (r < 0) != (b < 0) { r += b }
                return (try checkedNumber(r, call), float)
            }
        case .round:
            let digits = args.isEmpty ? 0 : LiquidFilters.toInt(num(arg0))
            let float = digits > 0 && isFloat(input, literal: inputIsFloat)
            return (.number(LiquidFilters.round(num(input), digits: digits)), float)
        case .floor: return (.number(num(input).rounded(.down)), false)
        case .ceil: return (.number(num(input).rounded(.up)), false)
        case .abs: return (.number(Swift.abs(num(input))), isFloat(input, literal: inputIsFloat))
        case .date:
            if case .null = input { return (.null, false) }
            let format = str(arg0)
            guard !format.isEmpty, let d = date(from: input) else { return (input, false) }
            return (.string(LiquidDate.format(d, format, timeZone: options.timeZone)), false)
        case .plusDays:
            guard let d = date(from: input) else { return (input, false) }
            let days = num(arg0)
            let shifted = LiquidDate.addDays(d, days, timeZone: options.timeZone)
            guard let shifted else { throw call.location.error("'plus_days' moved the date out of range") }
            return (.time(shifted), false)
        case .urlEncode:
            if case .null = input { return (.null, false) }
            return (.string(LiquidFilters.urlEncode(str(input))), false)
        case .urlDecode:
            if case .null = input { return (.null, false) }
            return (.string(LiquidFilters.urlDecode(str(input))), false)
        case .escape, .h: return (.string(LiquidFilters.htmlEscape(str(input))), false)
        case .escapeOnce: return (.string(LiquidFilters.htmlEscapeOnce(str(input))), false)
        case .jsonEscape: return (.string(LiquidFilters.jsonEscape(str(input))), false)
        case .json: return (.string(LiquidFilters.json(input)), false)
        case .sha256: return (.string(SHA256.hex(str(input))), false)
        case .hmacSHA256: return (.string(HMACSHA256.hex(str(input), key: str(arg0))), false)
        case .base64Encode: return (.string(Data(str(input).utf8).base64EncodedString()), false)
        case .base64Decode:
            guard let data = Data(base64Encoded: str(input)) else { throw call.location.error("invalid base64 in 'base64_decode'") }
            return (.string(String(decoding: data, as: UTF8.self)), false)
        case .stripHtml: return (.string(LiquidFilters.stripHTML(str(input))), false)
        case .sort, .sortNatural:
            guard case .array(let a) = input else { return (input, false) }
            try charge(a.count * (Int.bitWidth - max(a.count, 1).leadingZeroBitCount), at: call.location)   // n log n
            let natural = call.filter == .sortNatural
            if args.isEmpty {
                return (.array(a.sorted { LiquidFilters.sortsBefore($0, $1, natural: natural) }), false)
            }
            let key = str(arg0)
            let keyed = a.map { (property($0, key), $0) }
            return (.array(keyed.sorted { LiquidFilters.sortsBefore($0.0, $1.0, natural: natural) }.map(\.1)), false)
        case .uniq:
            guard case .array(let a) = input else { return (input, false) }
            var seen = Set<Value>()
            var out: [Value] = []
            for e in a {
                let k = args.isEmpty ? e : property(e, str(arg0))
                if seen.insert(k).inserted { out.append(e) }
            }
            return (.array(out), false)
        case .reverse:
            guard case .array(let a) = input else { return (input, false) }
            return (.array(a.reversed()), false)
        case .compact:
            let key = args.isEmpty ? nil : str(arg0)
            return (.array(elements(input).filter { e in
                if let key { return !property(e, key).isNull }
                return !e.isNull
            }), false)
        case .map:
            let key = str(arg0)
            return (.array(flattened(input).map { property($0, key) }), false)
        case .where:
            let key = str(arg0)
            let items = elements(input)
            if args.count > 1 {
                let target = args[1]
                return (.array(items.filter { LiquidRenderer.equals(property($0, key), target) }), false)
            }
            return (.array(items.filter { property($0, key).isTruthy }), false)
        case .concat:
            guard case .array(let extra) = arg0 else {
                throw call.location.error("'concat' needs an array argument")
            }
            return (.array(elements(input) + extra), false)
        case .sum:
            var total = 0.0
            var float = false
            for e in flattened(input) {
                let v = args.isEmpty ? e : property(e, str(arg0))
                total += num(v)
                float = float || isFloat(v, literal: false)
            }
            return (try checkedNumber(total, call), float)
        }
    }
}

/// HTML escaping for text and attribute values (`& < > " '`): the same as Liquid's `escape` filter and html
/// auto-escaping, for code that writes HTML itself (link tracking, the web pages).
public enum HTMLText {
    public static func escape(_ text: String) -> String { LiquidFilters.htmlEscape(text) }
}
