/// The message ids of an `http` provider request body (contract §5) without building a `Value` tree: `{"messages":
/// [{"id": ...}, ...]}` (a batch) or `{"id": ...}` (one message). Everything else is skipped, but checked to be
/// well-formed JSON. A sink counting a million messages of a few kilobytes each spends its time here instead of
/// allocating every message's dictionaries.
///
/// Returns nil when the body is not a JSON object, is malformed, or an id is not a plain string (an escape, a number):
/// the caller then parses the body in full.
public enum MessageIDScan {
    public struct Result: Equatable, Sendable {
        /// The ids in order; a message without an `"id"` string gives `nil`.
        public var ids: [String?]
        /// True for `{"messages": [...]}`.
        public var isBatch: Bool

        public init(ids: [String?], isBatch: Bool) {
            self.ids = ids
            self.isBatch = isBatch
        }
    }

    public static func scan(_ body: [UInt8]) -> Result? {
        body.withUnsafeBufferPointer { buffer in
            var scanner = Scanner(bytes: buffer)
            return scanner.topLevel()
        }
    }

    private struct Scanner {
        let bytes: UnsafeBufferPointer<UInt8>
        var i = 0
        /// Containers deeper than this are refused (a hostile body cannot exhaust the stack).
        static let maximumDepth = 256

        init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

        mutating func skipSpace() {
            while i < bytes.count {
                switch bytes[i] {
                case 0x20, 0x09, 0x0A, 0x0D: i += 1
                default: return
                }
            }
        }

        mutating func expect(_ byte: UInt8) -> Bool {
            skipSpace()
            guard i < bytes.count, bytes[i] == byte else { return false }
            i += 1
            return true
        }

        mutating func peek() -> UInt8? {
            skipSpace()
            return i < bytes.count ? bytes[i] : nil
        }

        /// A string at `i` (after spaces): its bytes' range if it has no escapes (nil if it has), and whether it is
        /// well-formed (escapes as RFC 8259 spells them, `\\u` surrogates paired, no control characters, well-formed
        /// UTF-8).
        mutating func string() -> (range: Range<Int>?, ok: Bool) {
            guard expect(UInt8(ascii: "\"")) else { return (nil, false) }
            let start = i
            var escaped = false
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: "\"") {
                    i += 1
                    return (escaped ? nil : start..<(i - 1), true)
                }
                if b == UInt8(ascii: "\\") {
                    escaped = true
                    guard escape() else { return (nil, false) }
                    continue
                }
                if b < 0x20 { return (nil, false) }
                if b >= 0x80 {
                    guard utf8Sequence() else { return (nil, false) }
                    continue
                }
                i += 1
            }
            return (nil, false)
        }

        /// One multi-byte UTF-8 sequence at `i` (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF).
        mutating func utf8Sequence() -> Bool {
            let b0 = bytes[i]
            let count: Int
            var low: UInt8 = 0x80, high: UInt8 = 0xBF  // the second byte's range
            switch b0 {
            case 0xC2...0xDF: count = 2
            case 0xE0: count = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: count = 3
            case 0xED: count = 3; high = 0x9F
            case 0xF0: count = 4; low = 0x90
            case 0xF1...0xF3: count = 4
            case 0xF4: count = 4; high = 0x8F
            default: return false
            }
            guard i + count <= bytes.count, bytes[i + 1] >= low, bytes[i + 1] <= high else { return false }
            for k in 2..<count where bytes[i + k] < 0x80 || bytes[i + k] > 0xBF { return false }
            i += count
            return true
        }

        /// One escape at `i` (the backslash); false if malformed.
        mutating func escape() -> Bool {
            guard i + 1 < bytes.count else { return false }
            switch bytes[i + 1] {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                 UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                i += 2
                return true
            case UInt8(ascii: "u"):
                guard let unit = hex4(at: i + 2) else { return false }
                i += 6
                if unit >= 0xDC00 && unit <= 0xDFFF { return false }
                if unit >= 0xD800 && unit <= 0xDBFF {
                    guard i + 1 < bytes.count, bytes[i] == UInt8(ascii: "\\"), bytes[i + 1] == UInt8(ascii: "u"),
                          let low = hex4(at: i + 2), low >= 0xDC00 && low <= 0xDFFF else { return false }
                    i += 6
                }
                return true
            default:
                return false
            }
        }

        func hex4(at start: Int) -> UInt32? {
            guard start + 4 <= bytes.count else { return nil }
            var value: UInt32 = 0
            for k in start..<(start + 4) {
                let b = bytes[k]
                let digit: UInt8
                switch b {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = b - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = b - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = b - UInt8(ascii: "A") + 10
                default: return nil
                }
                value = value << 4 | UInt32(digit)
            }
            return value
        }

        func equals(_ range: Range<Int>?, _ literal: StaticString) -> Bool {
            guard let range, range.count == literal.utf8CodeUnitCount else { return false }
            let pointer = literal.utf8Start
            for k in 0..<range.count where bytes[range.lowerBound + k] != pointer[k] { return false }
            return true
        }

        /// Skips one JSON value; false if it is malformed.
        mutating func skipValue(depth: Int) -> Bool {
            guard depth < Self.maximumDepth, let b = peek() else { return false }
            switch b {
            case UInt8(ascii: "\""):
                return string().ok
            case UInt8(ascii: "{"):
                i += 1
                if expect(UInt8(ascii: "}")) { return true }
                repeat {
                    guard string().ok, expect(UInt8(ascii: ":")), skipValue(depth: depth + 1) else { return false }
                } while expect(UInt8(ascii: ","))
                return expect(UInt8(ascii: "}"))
            case UInt8(ascii: "["):
                i += 1
                if expect(UInt8(ascii: "]")) { return true }
                repeat {
                    guard skipValue(depth: depth + 1) else { return false }
                } while expect(UInt8(ascii: ","))
                return expect(UInt8(ascii: "]"))
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard i + n <= bytes.count else { return false }
            for k in 0..<n where bytes[i + k] != word.utf8Start[k] { return false }
            i += n
            return true
        }

        /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
        mutating func number() -> Bool {
            func isDigit(_ k: Int) -> Bool { k < bytes.count && bytes[k] >= UInt8(ascii: "0") && bytes[k] <= UInt8(ascii: "9") }
            if i < bytes.count && bytes[i] == UInt8(ascii: "-") { i += 1 }
            guard isDigit(i) else { return false }
            if bytes[i] == UInt8(ascii: "0") {
                i += 1
                if isDigit(i) { return false }
            } else {
                while isDigit(i) { i += 1 }
            }
            if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
                i += 1
                guard isDigit(i) else { return false }
                while isDigit(i) { i += 1 }
            }
            if i < bytes.count && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
                i += 1
                if i < bytes.count && (bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-")) { i += 1 }
                guard isDigit(i) else { return false }
                while isDigit(i) { i += 1 }
            }
            return true
        }

        /// The value of an `"id"` member: the string, or nil (not a plain string). `ok` false: malformed.
        mutating func idValue() -> (id: String?, ok: Bool, plain: Bool) {
            guard peek() == UInt8(ascii: "\"") else { return (nil, skipValue(depth: 1), false) }
            let (range, ok) = string()
            guard ok else { return (nil, false, false) }
            guard let range else { return (nil, true, false) }
            return (String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self), true, true)
        }

        /// An object whose `"id"` is wanted: returns (id, ok, plain).
        mutating func objectID(depth: Int) -> (id: String?, ok: Bool, plain: Bool) {
            guard depth < Self.maximumDepth, expect(UInt8(ascii: "{")) else { return (nil, false, false) }
            var id: String? = nil
            var plain = true
            var seen = false
            if expect(UInt8(ascii: "}")) { return (nil, true, true) }
            repeat {
                let (key, ok) = string()
                guard ok, expect(UInt8(ascii: ":")) else { return (nil, false, false) }
                if equals(key, "id") {
                    let value = idValue()
                    guard value.ok else { return (nil, false, false) }
                    if seen { plain = false }  // a repeated key: let the full parser decide which wins
                    seen = true
                    id = value.id
                    if !value.plain { plain = false }
                } else if key == nil {
                    plain = false  // an escaped key might spell "id"
                    guard skipValue(depth: depth + 1) else { return (nil, false, false) }
                } else {
                    guard skipValue(depth: depth + 1) else { return (nil, false, false) }
                }
            } while expect(UInt8(ascii: ","))
            guard expect(UInt8(ascii: "}")) else { return (nil, false, false) }
            return (id, true, plain)
        }

        mutating func topLevel() -> Result? {
            guard expect(UInt8(ascii: "{")) else { return nil }
            var single: String? = nil
            var messages: [String?]? = nil
            var plain = true
            var idKeys = 0, messagesKeys = 0
            if !expect(UInt8(ascii: "}")) {
                repeat {
                    let (key, ok) = string()
                    guard ok, expect(UInt8(ascii: ":")) else { return nil }
                    if key == nil {
                        plain = false  // an escaped key might spell "id" or "messages"
                        guard skipValue(depth: 1) else { return nil }
                    } else if equals(key, "messages") {
                        messagesKeys += 1
                        if peek() == UInt8(ascii: "[") {
                            i += 1
                            var ids: [String?] = []
                            if !expect(UInt8(ascii: "]")) {
                                repeat {
                                    guard peek() == UInt8(ascii: "{") else { return nil }
                                    let (id, ok, isPlain) = objectID(depth: 2)
                                    guard ok else { return nil }
                                    if !isPlain { plain = false }
                                    ids.append(id)
                                } while expect(UInt8(ascii: ","))
                                guard expect(UInt8(ascii: "]")) else { return nil }
                            }
                            messages = ids
                        } else {
                            guard skipValue(depth: 1) else { return nil }
                        }
                    } else if equals(key, "id") {
                        idKeys += 1
                        let value = idValue()
                        guard value.ok else { return nil }
                        if !value.plain { plain = false }
                        single = value.id
                    } else {
                        guard skipValue(depth: 1) else { return nil }
                    }
                } while expect(UInt8(ascii: ","))
                guard expect(UInt8(ascii: "}")) else { return nil }
            }
            skipSpace()
            // A repeated key: let the full parser decide which one wins.
            guard i == bytes.count, plain, idKeys <= 1, messagesKeys <= 1 else { return nil }
            if let messages { return Result(ids: messages, isBatch: true) }
            return Result(ids: [single], isBatch: false)
        }
    }
}
