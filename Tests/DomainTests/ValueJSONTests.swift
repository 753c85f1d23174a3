import Domain
import Foundation
import Testing


private func parse(_ text: String) throws -> Value { try ValueJSON.parse(text) }

/// The error text for `text`, nil when it parses.
private func failure(_ text: String) -> String? { failure(Array(text.utf8)) }

private func failure(_ bytes: [UInt8]) -> String? {
    do { _ = try ValueJSON.parse(bytes); return nil } catch { return error.description }
}

/// The previous implementation: JSONSerialization then `Value(json:)`.
private func foundationParse(_ bytes: [UInt8]) -> Value? {
    guard let object = try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed]) else { return nil }
    return Value(json: object)
}

/// The previous `jsonText`.
private func foundationWrite(_ value: Value) -> String {
    guard let data = try? JSONSerialization.data(withJSONObject: value.jsonObject,
                                                 options: [.fragmentsAllowed, .sortedKeys, .withoutEscapingSlashes]) else { return "null" }
    return String(decoding: data, as: UTF8.self)
}

/// Equal, allowing numbers to differ in the last few ulps when `lenient` (JSONSerialization reads numbers with more
/// than 17 significant digits through `Decimal`, which rounds less accurately).
private func same(_ a: Value, _ b: Value, lenient: Bool) -> Bool {
    switch (a, b) {
    case (.number(let x), .number(let y)):
        if x == y { return true }
        return lenient && abs(x - y) <= 1e-14 * max(abs(x), abs(y))
    case (.array(let x), .array(let y)):
        return x.count == y.count && zip(x, y).allSatisfy { same($0, $1, lenient: lenient) }
    case (.object(let x), .object(let y)):
        return x.count == y.count && x.allSatisfy { key, value in y[key].map { same(value, $0, lenient: lenient) } ?? false }
    default:
        return a == b
    }
}

/// Whether the text may hold a number JSONSerialization reads through `Decimal` (rounding less accurately than
/// `Double(String)`): it does so when the number's text before any exponent is longer than 17 characters.
private func hasLongNumber(_ bytes: [UInt8]) -> Bool {
    var run = 0
    for b in bytes {
        if (b >= 0x30 && b <= 0x39) || b == 0x2E || b == 0x2D { run += 1; if run > 17 { return true } } else { run = 0 }
    }
    return false
}

// MARK: - generators

private let keyPool: [String] = [
    "", "a", "A", "b", "B", "ab", "aB", "Ab", "AB", "userId", "userid", "UserId", "messageId", "type", "event",
    "_x", "x_y", "x-y", "x.y", "x y", "$ua", "a1", "a2", "a10", "a2b", "a10b", "1", "2", "10", "100", "0",
    "a01", "a001", "01", "x0y", "x00y", "é", "e", "E", "ä", "ß", "ss", "Ω", "😀", "€", "ﬁ", "fi", "日本", "e\u{301}",
    "[", "`", "~", "|", "@", "#", "\"q\"", "back\\slash", "tab\t", "nl\n", "ctl\u{1}", "del\u{7f}", "\u{2028}",
]

private func randomKey(_ rng: inout SplitMix64) -> String {
    switch Int.random(in: 0..<4, using: &rng) {
    case 0:
        return keyPool.randomElement(using: &rng)!
    case 1:
        // Printable ASCII, short: many prefixes and case-only ties.
        let alphabet = Array("abAB_09 -.$~xyzXYZ1".utf8)
        return String(decoding: (0..<Int.random(in: 0...4, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self)
    case 2:
        let alphabet = Array(" !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~".utf8)
        return String(decoding: (0..<Int.random(in: 1...8, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }, as: UTF8.self)
    default:
        return keyPool.randomElement(using: &rng)! + keyPool.randomElement(using: &rng)!
    }
}

private let stringPool: [String] = [
    "", "x", "Order Completed", "EUR", "a/b", "quote\"d", "back\\slash", "line\nbreak", "\t\r\u{8}\u{c}", "\u{0}",
    "\u{1}\u{1f}", "\u{7f}", "é", "日本語", "😀", "\u{2028}\u{2029}", "e\u{301}", "<script>&amp;</script>",
    "2026-11-22T10:00:00Z",
]

private func randomNumber(_ rng: inout SplitMix64) -> Double {
    switch Int.random(in: 0..<10, using: &rng) {
    case 0: return Double(Int.random(in: -100...100, using: &rng))
    case 1: return Double(Int64.random(in: -999_999_999_999_999...999_999_999_999_999, using: &rng))
    case 2: return Double(Int64.random(in: Int64.min...Int64.max, using: &rng))
    case 3: return Double(Int.random(in: -100_000...100_000, using: &rng)) / 100
    case 4: return [0.1, 0.2, 0.30000000000000004, 59.0, 9.5, -0.0, 1e15, 1e16, 1e21, 1e22, 1e23, 1e-5, 1e-7, 5e-324,
                    2.2250738585072014e-308, 1.7976931348623157e308, 9007199254740993, 123456789012345.67].randomElement(using: &rng)!
    case 5: return Double.random(in: -1...1, using: &rng)
    case 6: return Double.random(in: -1e300...1e300, using: &rng)
    default:
        // Any finite bit pattern.
        while true {
            let d = Double(bitPattern: rng.next())
            if d.isFinite { return d }
        }
    }
}

private func randomValue(_ rng: inout SplitMix64, depth: Int = 0, times: Bool = false) -> Value {
    let leaf = depth >= 4 || Int.random(in: 0..<3, using: &rng) > 0
    if leaf {
        switch Int.random(in: 0..<(times ? 6 : 5), using: &rng) {
        case 0: return .null
        case 1: return .bool(Bool.random(using: &rng))
        case 2: return .number(randomNumber(&rng))
        case 3: return .string(stringPool.randomElement(using: &rng)!)
        case 4: return .string(randomKey(&rng))
        default: return .time(Date(timeIntervalSince1970: Double(Int.random(in: 0...4_000_000_000, using: &rng))))
        }
    }
    if Bool.random(using: &rng) {
        return .array((0..<Int.random(in: 0...5, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1, times: times) })
    }
    var fields: [String: Value] = [:]
    for _ in 0..<Int.random(in: 0...7, using: &rng) { fields[randomKey(&rng)] = randomValue(&rng, depth: depth + 1, times: times) }
    return .object(fields)
}

@Suite struct ValueJSONTests {
    // MARK: reading — vectors

    @Test func literalsWhitespaceAndStructure() throws {
        #expect(try parse(" \t\n\r true \n") == .bool(true))
        #expect(try parse("false") == .bool(false))
        #expect(try parse("null") == .null)
        #expect(try parse("[]") == .array([]))
        #expect(try parse("{}") == .object([:]))
        #expect(try parse(" [ 1 , \"a\" , [ ] , { } ] ") == .array([.number(1), .string("a"), .array([]), .object([:])]))
        #expect(try parse(#"{ "a" : { "b" : [ null ] } }"#) == .object(["a": .object(["b": .array([.null])])]))
        #expect(try parse(#"{"a":1,"a":2}"#) == .object(["a": .number(2)]), "the last duplicate wins")
        #expect(try parse("\u{FEFF}[1]") == .array([.number(1)]), "a UTF-8 byte-order mark is skipped")
    }

    @Test func strings() throws {
        #expect(try parse(#""\"\\\/\b\f\n\r\t""#) == .string("\"\\/\u{8}\u{c}\n\r\t"))
        #expect(try parse(#""\u00e9\u00E9\u0041""#) == .string("ééA"))
        #expect(try parse(#""\u0000""#) == .string("\u{0}"))
        #expect(try parse(#""\uD83D\uDE00 \ud83d\ude00""#) == .string("😀 😀"))
        #expect(try parse(#""\uDBFF\uDFFF""#) == .string("\u{10FFFF}"))
        #expect(try parse(#""\u2028\u20ac""#) == .string("\u{2028}€"))
        #expect(try parse("\"héllo 日本 😀 \u{7f}\"") == .string("héllo 日本 😀 \u{7f}"))
        #expect(try parse(#""plain then \n escaped then plain""#) == .string("plain then \n escaped then plain"))
        #expect(try parse(#"{"k\u0065y":"v"}"#) == .object(["key": .string("v")]))
        #expect(try parse("\"\(String(repeating: "x", count: 5000))\\n\"") == .string(String(repeating: "x", count: 5000) + "\n"))
    }

    @Test func unpairedSurrogatesAreRefused() {
        #expect(failure(#""\ud800""#) == "unpaired surrogate in \\u escape at byte 1")
        #expect(failure(#""\udc00""#) == "unpaired surrogate in \\u escape at byte 1")
        #expect(failure(#""ab\ud800\u0041""#) == "unpaired surrogate in \\u escape at byte 3")
        #expect(failure(#""\ud800x""#) == "unpaired surrogate in \\u escape at byte 1")
        #expect(failure(#""\uDBFF\uDBFF""#) == "unpaired surrogate in \\u escape at byte 1")
        #expect(failure(#""\ude00\ud83d""#) == "unpaired surrogate in \\u escape at byte 1")
    }

    @Test func invalidUTF8IsRefused() {
        for (bytes, offset) in [([0x22, 0xFF, 0x22], 1), ([0x22, 0x61, 0xC3, 0x22], 2), ([0x22, 0xC0, 0x80, 0x22], 1),
                                ([0x22, 0xE0, 0x80, 0x80, 0x22], 1), ([0x22, 0xED, 0xA0, 0x80, 0x22], 1),
                                ([0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1), ([0x22, 0xE2, 0x82], 1), ([0x22, 0x80, 0x22], 1)] as [([UInt8], Int)] {
            #expect(failure(bytes) == "invalid UTF-8 in string at byte \(offset)", "\(bytes)")
        }
        #expect(failure([0x22, 0xE2, 0x82, 0xAC, 0xF0, 0x9F, 0x98, 0x80, 0x22]) == nil)
        #expect(failure([0x5B, 0x31, 0x5D, 0x20, 0xFF]) == "unexpected byte 0xFF after the JSON value at byte 4")
    }

    @Test func numbers() throws {
        let cases = ["0", "-0.0", "1", "-1", "59.0", "9.5", "0.1", "1e5", "1E+2", "-1.5e-3", "123.456e-2", "1e22", "1e23",
                     "9007199254740993", "18446744073709551615", "18446744073709551616", "123456789012345678901234567890",
                     "0.1000000000000000055511151231257827", "3.14159265358979323846264338327950288",
                     "2.2250738585072011e-308", "2.2250738585072014e-308", "1.7976931348623157e308", "4.9e-324",
                     "5e-324", "1e-400", "-1e-400", "0e99999999999", "0.000000000000000000000000000001",
                     "100000000000000000000000000000e-10", "1234567890.0987654321e3", "0.0000001", "7e-1",
                     "0.30000000000000004", "-0.9184838178655594", "0.12604502085038938"]
        for text in cases {
            let expected = try #require(Double(text))
            let parsed = try parse(text)
            #expect(parsed == .number(expected), "\(text)")
            if case .number(let n) = parsed { #expect(n.sign == expected.sign, "\(text)") }
        }
        // `-0` is the integer 0, as JSONSerialization reads it.
        let zero = try parse("-0")
        #expect(zero == .number(0))
        if case .number(let n) = zero { #expect(n.sign == .plus) }
    }

    @Test func malformedNumbers() {
        #expect(failure("01") == "leading zero in number at byte 1")
        #expect(failure("-01") == "leading zero in number at byte 2")
        #expect(failure("1.") == "unexpected end of input at byte 2")
        #expect(failure("[1.]") == "expected a digit after '.' at byte 3")
        #expect(failure(".5") == "expected a value, found '.' at byte 0")
        #expect(failure("+1") == "expected a value, found '+' at byte 0")
        #expect(failure("[-]") == "expected a digit in number at byte 2")
        #expect(failure("1e") == "unexpected end of input at byte 2")
        #expect(failure("[1e+]") == "expected a digit in exponent at byte 4")
        #expect(failure("[1.e5]") == "expected a digit after '.' at byte 3")
        #expect(failure("0x10") == "unexpected 'x' after the JSON value at byte 1")
        #expect(failure("1e400") == "number out of range at byte 0")
        #expect(failure("[0, -1e400]") == "number out of range at byte 4")
        #expect(failure("NaN") == "expected a value, found 'N' at byte 0")
        #expect(failure("-Infinity") == "expected a digit in number at byte 1")
    }

    @Test func nestingIsLimited() throws {
        func nested(_ depth: Int) -> String { String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }
        #expect(failure(nested(512)) == nil)
        #expect(failure(nested(513)) == "nesting deeper than 512 at byte 512")
        #expect(failure(String(repeating: #"{"a":"#, count: 513) + "1" + String(repeating: "}", count: 513))
                == "nesting deeper than 512 at byte \(512 * 5)")
        #expect(failure(String(repeating: "[", count: 200_000)) == "nesting deeper than 512 at byte 512")
        var value = try parse(nested(512))
        var depth = 0
        while case .array(let a) = value, let first = a.first { value = first; depth += 1 }
        #expect(depth == 511)
    }

    @Test func errorsCarryOffsetAndReason() {
        let payload = #"{"type":"track","userId":"u-42","event":"Order Completed" "properties":{}}"#
        #expect(failure(payload) == "expected ',' or '}' at byte 58")
        #expect(failure(#"{"a":1 "b":2}"#) == "expected ',' or '}' at byte 7")
        #expect(failure("[1 2]") == "expected ',' or ']' at byte 3")
        #expect(failure(#"{"a" 1}"#) == "expected ':' at byte 5")
        #expect(failure(#"{"a":1,}"#) == "expected a string key, found '}' at byte 7")
        #expect(failure("{1:2}") == "expected a string key, found '1' at byte 1")
        #expect(failure("[1,]") == "expected a value, found ']' at byte 3")
        #expect(failure("[1] x") == "unexpected 'x' after the JSON value at byte 4")
        #expect(failure("[1]\u{0}") == "unexpected byte 0x00 after the JSON value at byte 3")
        #expect(failure("\"a\tb\"") == "unescaped control character in string at byte 2")
        #expect(failure("\"a\u{1f}\"") == "unescaped control character in string at byte 2")
        #expect(failure(#"["abc"#) == "unterminated string at byte 1")
        #expect(failure(#"["a\"bc"#) == "unterminated string at byte 1")
        #expect(failure("") == "unexpected end of input at byte 0")
        #expect(failure(" \n ") == "unexpected end of input at byte 3")
        #expect(failure("[1,") == "unexpected end of input at byte 3")
        #expect(failure(#"{"a""#) == "unexpected end of input at byte 4")
        #expect(failure(#""\x""#) == "invalid escape sequence at byte 1")
        #expect(failure(#""\u12G4""#) == "invalid \\u escape (expected a hex digit) at byte 5")
        #expect(failure(#""\u12"#) == "unexpected end of input at byte 5")
        #expect(failure("tru") == "unexpected end of input at byte 3")
        #expect(failure("[trUe]") == "invalid literal (expected true) at byte 1")
        #expect(failure("nulls") == "unexpected 's' after the JSON value at byte 4")
        #expect(failure("\u{FEFF}") == "unexpected end of input at byte 3")
        #expect(failure("\u{FEFF}x") == "expected a value, found 'x' at byte 3")
    }

    @Test func valueInitialiserAndSegmentMessageUseTheReader() throws {
        #expect(try Value(jsonText: #"{"a":[1,2.5,"x"]}"#) == .object(["a": .array([.number(1), .number(2.5), .string("x")])]))
        #expect(throws: JSONParseError.self) { try Value(jsonText: "{") }
        func reason(_ text: String) -> String? {
            do { _ = try SegmentMessage.parse(text); return nil } catch { return error.reason }
        }
        #expect(reason("{nope") == "payload is not JSON: expected a string key, found 'n' at byte 1")
        #expect(reason(#"{"type":"track","userId":"u","event":"e",}"#) == "payload is not JSON: expected a string key, found '}' at byte 41")
        #expect(reason("[1,2]") == "payload is not a JSON object")
        #expect(reason("\"track\"") == "payload is not a JSON object")
        #expect(reason("") == "payload is not JSON: unexpected end of input at byte 0")
        let m = try SegmentMessage.parse(Self.segmentPayload)
        #expect(m.type == .track && m.userId == "u-42" && m.event == "Order Completed" && m.messageId == "6f1c")
        #expect(m.properties["items"] == .array([.object(["sku": .string("a"), "price": .number(9.5)])]))
        #expect(m.properties["total"] == .number(59))
        #expect(m.derived.utmSource == "newsletter" && m.derived.timezone == "Europe/Paris")
    }

    static let segmentPayload = #"{"type":"track","userId":"u-42","event":"Order Completed","properties":{"total":59.0,"currency":"EUR","items":[{"sku":"a","price":9.5}]},"timestamp":"2026-11-22T10:00:00Z","messageId":"6f1c","context":{"timezone":"Europe/Paris","campaign":{"source":"newsletter"}}}"#

    // MARK: writing — vectors

    @Test func writesCompactSortedJSON() {
        #expect(Value.object(["b": .number(1), "a": .array([.bool(true), .null, .string("x/y")])]).jsonText
                == #"{"a":[true,null,"x/y"],"b":1}"#)
        #expect(Value.object([:]).jsonText == "{}")
        #expect(Value.array([]).jsonText == "[]")
        #expect(Value.string("s").jsonText == #""s""#)
        #expect(Value.null.jsonText == "null")
        #expect(Value.object(["a10": .null, "a2": .null, "B": .null, "a": .null, "_x": .null, "A": .null, "": .null]).jsonText
                == #"{"":null,"_x":null,"a":null,"A":null,"a2":null,"a10":null,"B":null}"#)
        #expect(Value.object(["é": .null, "e": .null, "f": .null, "z": .null]).jsonText == #"{"e":null,"é":null,"f":null,"z":null}"#)
        #expect(Value.object(["k": .time(Date(timeIntervalSince1970: 1_795_341_600))]).jsonText == #"{"k":"2026-11-22T10:00:00Z"}"#)
    }

    @Test func writesNumbersLikeBefore() {
        let cases: [(Double, String)] = [
            (1, "1"), (-3, "-3"), (0, "0"), (-0.0, "0"), (59, "59"), (9.5, "9.5"), (0.1, "0.1"), (-2.5, "-2.5"),
            (1e15, "1000000000000000"), (999_999_999_999_999, "999999999999999"), (-999_999_999_999_999, "-999999999999999"),
            (1e16, "1e+16"), (9007199254740992, "9007199254740992"), (1e21, "1e+21"), (1e-5, "1e-05"), (1e-7, "1e-07"),
            (0.0001, "0.0001"), (123456789012345.67, "123456789012345.67"), (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"), (0.30000000000000004, "0.30000000000000004"),
            (Double(Int64.max), "9.223372036854776e+18"),
        ]
        for (n, text) in cases {
            #expect(Value.number(n).jsonText == text, "\(n)")
            #expect(foundationWrite(.number(n)) == text, "JSONSerialization: \(n)")
        }
        // JSONSerialization refused non-finite numbers (and `jsonText` was "null" for the whole document).
        #expect(Value.array([.number(.nan), .number(.infinity), .number(1)]).jsonText == "[null,null,1]")
    }

    @Test func writesStringsLikeBefore() throws {
        let s = "\u{0}\u{1}\u{1f}\"\\\n\t\r\u{8}\u{c}/\u{7f}\u{2028}é😀e\u{301}"
        let expected = #""\u0000\u0001\u001f\"\\\n\t\r\b\f/"# + "\u{7f}\u{2028}é😀e\u{301}\""
        #expect(Value.string(s).jsonText == expected)
        #expect(foundationWrite(.string(s)) == expected)
        #expect(try parse(expected) == .string(s))
    }

    // MARK: generated

    /// The writer produces exactly what the JSONSerialization-based `jsonText` produced (definition checksums hash it).
    @Test func writerMatchesJSONSerialization() {
        var rng = SplitMix64(seed: 0x5EED_0001)
        var mismatches: [String] = []
        for _ in 0..<3000 {
            let value = randomValue(&rng, times: true)
            let ours = value.jsonText
            let theirs = foundationWrite(value)
            if ours != theirs && mismatches.count < 5 { mismatches.append("ours:   \(ours)\ntheirs: \(theirs)") }
        }
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n\n"))")
    }

    /// Many keys per object, drawn so that prefixes, digit runs and case-only differences collide often.
    @Test func keyOrderMatchesJSONSerialization() {
        var rng = SplitMix64(seed: 0x5EED_0002)
        var mismatches: [String] = []
        for round in 0..<400 {
            var fields: [String: Value] = [:]
            let simpleOnly = round % 2 == 0
            for _ in 0..<Int.random(in: 2...40, using: &rng) {
                var key = randomKey(&rng)
                if simpleOnly { key = String(decoding: key.utf8.filter { $0 >= 0x20 && $0 < 0x7F }, as: UTF8.self) }
                fields[key] = .null
            }
            let value = Value.object(fields)
            if value.jsonText != foundationWrite(value) && mismatches.count < 5 {
                mismatches.append("ours:   \(value.jsonText)\ntheirs: \(foundationWrite(value))")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.joined(separator: "\n\n"))")
    }

    @Test func randomValuesRoundTrip() throws {
        var rng = SplitMix64(seed: 0x5EED_0003)
        for _ in 0..<5000 {
            let value = randomValue(&rng)
            let text = value.jsonText
            let back = try Value(jsonText: text)
            #expect(back == value, "\(text)")
            #expect(foundationParse(Array(text.utf8)).map { same($0, back, lenient: hasLongNumber(Array(text.utf8))) } == true, "\(text)")
            #expect(back.jsonText == text)
        }
    }

    /// Random bytes and mutated valid documents: the reader never crashes, agrees with JSONSerialization on what is
    /// valid (except for the documented differences) and, when both accept, on the value.
    @Test func fuzzAgainstJSONSerialization() {
        var rng = SplitMix64(seed: 0x5EED_0004)
        let interesting = Array(#"{}[]",:\ u0123456789eE.-+tfnrlsa"#.utf8) + [0x00, 0x09, 0x0A, 0x0D, 0x1F, 0x7F, 0x80, 0xBF, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xED, 0xA0, 0xF0, 0x9F, 0xFF]
        let seeds: [String] = [
            Self.segmentPayload, #"{"a":[1,2,{"b":null}],"c":"\u00e9\ud83d\ude00\n","d":-1.5e-3,"e":true,"f":false}"#,
            " [ 1 , 2.5 , \"x\" ] ", #""\"\\\/\b\f\n\r\t""#, "123456789012345678901234", "0.1000000000000000055511151231257827",
            #"{"k":{"k":{"k":[[[[]]]]}}}"#, "-0", "1e308", "[\"\u{7f}é😀\"]",
        ]
        var accepted = 0, refused = 0, knownDifferences = 0
        var problems: [String] = []
        for round in 0..<20_000 {
            var bytes: [UInt8]
            if round % 5 == 0 {
                bytes = (0..<Int.random(in: 0...12, using: &rng)).map { _ in
                    Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                }
            } else {
                bytes = Array((Bool.random(using: &rng) ? seeds.randomElement(using: &rng)! : randomValue(&rng).jsonText).utf8)
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
                    let byte = Int.random(in: 0..<4, using: &rng) == 0 ? UInt8.random(in: 0...255, using: &rng) : interesting.randomElement(using: &rng)!
                    switch Int.random(in: 0..<5, using: &rng) {
                    case 0: if !bytes.isEmpty { bytes.remove(at: position) }
                    case 1: bytes.insert(byte, at: position)
                    case 2: if !bytes.isEmpty { bytes[position] = byte }
                    case 3: bytes.removeLast(Int.random(in: 0...min(3, bytes.count), using: &rng))
                    default:
                        let end = min(bytes.count, position + Int.random(in: 1...6, using: &rng))
                        bytes.insert(contentsOf: bytes[position..<end], at: position)
                    }
                }
            }
            let ours: Value?
            var reason = ""
            do { ours = try ValueJSON.parse(bytes) } catch { ours = nil; reason = error.reason }
            let theirs = foundationParse(bytes)
            switch (ours, theirs) {
            case (let o?, let t?):
                accepted += 1
                if !same(o, t, lenient: hasLongNumber(bytes)) { problems.append("values differ: \(String(decoding: bytes, as: UTF8.self).debugDescription)") }
            case (nil, nil):
                refused += 1
            case (nil, _?):
                // Documented: JSONSerialization accepts trailing commas and UTF-16/UTF-32 text.
                let trailingComma = (reason.hasPrefix("expected a value, found ']'") || reason.hasPrefix("expected a string key, found '}'"))
                let utf16or32 = bytes.prefix(4).contains(0) || bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0xFF, 0xFE])
                if trailingComma || utf16or32 { knownDifferences += 1 } else { problems.append("only JSONSerialization accepts (\(reason)): \(bytes)") }
            case (_?, nil):
                problems.append("only ValueJSON accepts: \(bytes)")
            }
        }
        #expect(problems.isEmpty, "\(problems.count) problems, e.g.\n\(problems.prefix(8).joined(separator: "\n"))")
        #expect(accepted > 1000 && refused > 1000, "accepted \(accepted), refused \(refused), known differences \(knownDifferences)")
    }
}
