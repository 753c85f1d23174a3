import Domain
import Foundation
import Testing

/// The syntax error of `source` as `line:column: message`, or nil when it parses.
private func syntaxError(_ source: String) -> String? {
    do {
        _ = try LiquidTemplate.parse(source)
        return nil
    } catch {
        guard let e = error as? LiquidError else { return "UNEXPECTED \(error)" }
        return e.kind == .syntax ? e.description : "WRONG KIND \(e)"
    }
}

@Suite struct LiquidSyntaxErrorTests {
    @Test(arguments: [
        ("{{ x | nope }}", "1:8: unknown filter 'nope'"),
        ("a\n  {% if x %}\nb", "2:3: 'if' tag was never closed (expected {% endif %})"),
        ("{% for i in list %}\n{% if i %}\n{% endfor %}", "3:1: 'endfor' does not belong here (inside 'if' opened at 2:1)"),
        ("{% unless a %}{% case b %}{% when 1 %}x", "1:15: 'case' tag was never closed (expected {% endcase %})"),
        ("{% capture c %}x", "1:1: 'capture' tag was never closed (expected {% endcapture %})"),
        ("{% foo %}", "1:4: unknown tag 'foo'"),
        ("  {% include 'x' %}", "1:6: unknown tag 'include'"),
        ("{% endif %}", "1:1: unexpected 'endif' (no open block)"),
        ("{% else %}", "1:1: unexpected 'else' (no open block)"),
        ("{% if x %}{% else %}{% elsif y %}{% endif %}", "1:21: 'elsif' does not belong here (inside 'if' opened at 1:1)"),
        ("ok\n{{ x ", "2:1: output '{{' was never closed with '}}'"),
        ("{% if x ", "1:1: tag '{%' was never closed with '%}'"),
        ("{{ x | truncate: 1, 2, 3 }}", "1:8: filter 'truncate' takes 0 to 2 arguments, got 3"),
        ("{{ x | append }}", "1:8: filter 'append' takes 1 argument, got 0"),
        ("{{ x | upcase: 1 }}", "1:8: filter 'upcase' takes 0 arguments, got 1"),
        ("{{ x | default: 'a', nope: 1 }}", "1:22: filter 'default' has no argument named 'nope'"),
        ("{{ 'abc }}", "1:4: unterminated string"),
        ("{% for i in %}{% endfor %}", "1:13: expected a value, found end of tag"),
        ("{% for in x %}{% endfor %}", "1:11: expected 'in', found 'x'"),
        ("{% for i in x limit 2 %}{% endfor %}", "1:21: expected ':' after 'limit', found number 2"),
        ("{% for i in x sorted %}{% endfor %}", "1:15: unknown 'for' option 'sorted' (expected limit:, offset: or reversed)"),
        ("{% assign = 1 %}", "1:11: expected a variable name, found '='"),
        ("{% assign x %}", "1:13: expected '=' after the variable name, found end of tag"),
        ("{% break %}", "1:1: 'break' outside a 'for' loop"),
        ("{{ a b }}", "1:6: unexpected 'b'"),
        ("{{ a | }}", "1:8: expected a filter name after '|', found end of tag"),
        ("{% if %}{% endif %}", "1:7: 'if' needs a condition"),
        ("{% if a = b %}{% endif %}", "1:9: use '==' to compare ('=' is for assign)"),
        ("{% if a == %}{% endif %}", "1:12: expected a value, found end of tag"),
        ("{% raw %}x", "1:1: 'raw' tag was never closed (expected {% endraw %})"),
        ("{% comment %}x{% comment %}{% endcomment %}", "1:1: 'comment' tag was never closed (expected {% endcomment %})"),
        ("{%  %}", "1:5: expected a tag name after '{%'"),
        ("{{ x ; }}", "1:6: unexpected character ';'"),
        ("héllo {{ x | nope }}", "1:14: unknown filter 'nope'"),
        ("{{ (1..) }}", "1:8: expected a value, found ')'"),
        ("{{ (1,2) }}", "1:6: expected '..' in a range like (1..5), found ','"),
        ("{{ a[1.5] }}", "1:5: an index must be a whole number"),
        ("{% endif x %}", "1:1: unexpected 'endif' (no open block)"),
        ("{% if a %}{% endif b %}", "1:19: 'endif' takes no arguments"),
        ("{% for i in x offset: continue %}{% endfor %}", "1:23: 'offset: continue' is not supported"),
    ])
    func reportsLineAndColumn(source: String, expected: String) {
        #expect(syntaxError(source) == expected)
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "{% if a %}", count: 70) + String(repeating: "{% endif %}", count: 70)
        #expect(syntaxError(deep)?.hasSuffix("blocks are nested more than 64 deep") == true)
        let ok = String(repeating: "{% if a %}", count: 60) + "x" + String(repeating: "{% endif %}", count: 60)
        #expect(syntaxError(ok) == nil)
        let parens = "{{ " + String(repeating: "(", count: 5000) + " }}"
        #expect(syntaxError(parens)?.hasSuffix("expression nested too deeply") == true)
    }

    @Test func errorDescriptionIsLineColonColumn() {
        let e = LiquidError(kind: .syntax, line: 3, column: 14, message: "unknown filter 'x'")
        #expect(e.description == "3:14: unknown filter 'x'")
    }

    @Test func knownNames() {
        for name in ["default", "upcase", "date", "plus_days", "sha256", "json_escape", "raw", "where", "url_encode"] {
            #expect(LiquidTemplate.filterNames.contains(name))
        }
    }
}

@Suite struct LiquidRenderErrorTests {
    @Test func renderErrorsNameTheirPlace() {
        #expect(liquid("line one\n  {{ 1 | divided_by: 0 }}") == "ERROR 2:10: divided by 0")
        #expect(liquid("{{ 1 | modulo: 0 }}") == "ERROR 1:8: modulo by 0")
        #expect(liquid("{{ a | concat: 1 }}", #"{"a":[1]}"#) == "ERROR 1:8: 'concat' needs an array argument")
        #expect(liquid("{{ 'x' | base64_decode }}") == "ERROR 1:10: invalid base64 in 'base64_decode'")
        #expect(liquid("{{ 1 | plus_days: 1e400 }}").hasPrefix("ERROR"))
    }

    @Test func renderErrorsAreOfKindRender() throws {
        let template = try LiquidTemplate.parse("{{ n | divided_by: d }}")
        #expect(try template.render(.object(["n": .number(7), "d": .number(2)])) == "3")
        do {
            _ = try template.render(.object(["n": .number(7), "d": .number(0)]))
            Issue.record("expected a render error")
        } catch {
            let e = error as? LiquidError
            #expect(e?.kind == .render)
            #expect(e?.line == 1 && e?.column == 8)
        }
    }

    @Test func hugeRangesHitTheIterationLimit() {
        let start = Date()
        #expect(liquid("{% for i in (1..1000000000000) %}{% endfor %}") == "ERROR 1:1: loops ran more than 100000 iterations")
        #expect(liquid("{% for i in (1..99999999999999999999999) %}{% endfor %}").hasSuffix("loops ran more than 100000 iterations"))
        #expect(liquid("{% for a in (1..1000) %}{% for b in (1..1000) %}{% endfor %}{% endfor %}")
                == "ERROR 1:25: loops ran more than 100000 iterations")
        #expect(liquid("{% assign r = (1..100000000) %}") == "ERROR 1:15: range of 100000000 elements exceeds the limit of 100000")
        #expect(Date().timeIntervalSince(start) < 20)
    }

    @Test func outputIsBounded() {
        let s = String(repeating: "x", count: 100)
        #expect(liquid("{% for i in (1..100000) %}{{ s }}{% endfor %}", #"{"s":"\#(s)"}"#)
                == "ERROR 1:27: output exceeds the limit of 1000000 bytes")
        #expect(liquid("{% for i in (1..100000) %}0123456789{% endfor %}").utf8.count == 1_000_000)   // exactly the limit is fine
        #expect(liquid("{% for i in (1..100000) %}0123456789A{% endfor %}") == "ERROR 1:27: output exceeds the limit of 1000000 bytes")
        #expect(liquid("{% capture c %}{% for i in (1..100000) %}0123456789A{% endfor %}{% endcapture %}")
                == "ERROR 1:42: output exceeds the limit of 1000000 bytes")
    }

    @Test func stringAndArrayGrowthIsBounded() {
        #expect(liquid("{% assign s = 'ab' %}{% for i in (1..64) %}{% assign s = s | append: s %}{% endfor %}")
                == "ERROR 1:62: 'append' produced more than 1000000 bytes")
        #expect(liquid("{% assign a = 'a,b' | split: ',' %}{% for i in (1..64) %}{% assign a = a | concat: a %}{% endfor %}")
                == "ERROR 1:76: 'concat' produced more than 100000 elements")
        let big = String(repeating: "a", count: 5000)
        #expect(liquid("{{ s | replace: 'a', s }}", #"{"s":"\#(big)"}"#) == "ERROR 1:8: 'replace' would produce more than 1000000 bytes")
        #expect(liquid("{{ s | replace: '', s }}", #"{"s":"\#(big)"}"#) == "ERROR 1:8: 'replace' would produce more than 1000000 bytes")
        #expect(liquid("{% assign a = s | split: '' %}{{ a | join: s }}", #"{"s":"\#(big)"}"#)
                == "ERROR 1:38: 'join' would produce more than 1000000 bytes")
    }

    @Test func workIsBounded() {
        let big = String(repeating: "abc ", count: 25_000)   // 100 KB
        let start = Date()
        let result = liquid("{% for i in (1..100000) %}{% assign x = big | upcase %}{% if big contains 'zzz' %}{% endif %}{% endfor %}",
                            #"{"big":"\#(big)"}"#)
        #expect(result.hasPrefix("ERROR 1:") && result.contains("work limit"))
        let sorted = liquid("{% assign a = big | split: ' ' %}{% for i in (1..100000) %}{% assign b = a | sort %}{% endfor %}",
                            #"{"big":"\#(big)"}"#, limits: LiquidLimits(maxWork: 2_000_000))
        #expect(sorted.contains("work limit"))
        #expect(Date().timeIntervalSince(start) < 30)
    }

    @Test func customLimits() {
        let limits = LiquidLimits(maxOutputBytes: 10, maxLoopIterations: 5, maxArrayLength: 3, maxWork: 1000)
        #expect(liquid("{% for i in (1..6) %}{% endfor %}", limits: limits) == "ERROR 1:1: loops ran more than 5 iterations")
        #expect(liquid("0123456789A", limits: limits) == "ERROR 1:1: output exceeds the limit of 10 bytes")
        #expect(liquid("{{ (1..4) }}", limits: limits) == "ERROR 1:4: range of 4 elements exceeds the limit of 3")
        #expect(liquid("{% for i in (1..5) %}x{% endfor %}", limits: limits) == "xxxxx")
    }

    @Test func oddNumbersDoNotCrash() {
        #expect(liquid("{{ 99999999999999999999 | times: 99999999999999999999 | times: 99999999999999999999 }}").hasPrefix(""))
        #expect(liquid("{{ x | times: x | times: x | times: x }}", #"{"x":1e200}"#) == "ERROR 1:8: 'times' overflowed")
        #expect(liquid("{{ 99999999999999999999 | date: '%Y' }}") == "1e+20")
        #expect(liquid("{{ 'abc' | truncate: 99999999999999999999 }} {{ 'abc' | slice: -99999999999999999999 }}") == "abc ")
        #expect(liquid("{{ 1.5 | round: 99999 }} {{ 1.5 | round: -99999 }}") == "1.5 0")
        #expect(liquid("{{ a[99999999999999] }}", #"{"a":[1]}"#) == "")
        #expect(liquid("{% for i in (-5..-3) %}{{ i }}{% endfor %}") == "-5-4-3")
    }
}


@Suite struct LiquidFuzzTests {
    static let fragments: [String] = [
        // valid
        "Hello ", "{{ name }}", "{{ name | upcase }}", "{{ contact.first_name | default: 'there' }}", "{{ list | join: ', ' }}",
        "{% if x %}", "{% elsif y > 2 %}", "{% else %}", "{% endif %}", "{% unless x %}", "{% endunless %}",
        "{% for i in list %}", "{% for i in (1..n) limit: 3 reversed %}", "{% endfor %}", "{% break %}", "{% continue %}",
        "{{ forloop.index }}", "{% case x %}", "{% when 1, 'a' %}", "{% endcase %}", "{% assign z = list | sort | first %}",
        "{% capture c %}", "{% endcapture %}", "{{ c }}", "{% comment %}", "{% endcomment %}", "{% raw %}", "{% endraw %}",
        "{{ n | plus: 1 | times: 2.5 | round: 1 }}", "{{ n | divided_by: 0 }}", "{{ now | plus_days: 3 | date: '%B %-d %Y %H:%M' }}",
        "{{ name | truncate: 5 }}", "{{ name | replace: 'a', 'bb' }}", "{{ name | split: '' | reverse | join }}", "{{ obj | json }}",
        "{{ list | map: 'k' | compact | uniq | size }}", "{{ name | sha256 }}", "{{ name | url_encode | escape }}", "{{ x | raw }}",
        "{%- if x -%}", "{{- name -}}", "\n", "  ", "<b>&\"'</b>", "{{ list[0] }}", "{{ obj['k'] }}", "{{ list.size }}",
        "{% if list contains 2 and x or y %}", "{% if x == empty %}", "{{ name | where: 'k', 1 }}", "{{ list | concat: list }}",
        // hostile
        "{{", "}}", "{%", "%}", "{{ | }}", "{% if %}", "{% for %}", "{{ 'unterminated }}", "{% endfor %}{% endfor %}",
        "{{ x | nope }}", "{% foo %}", "{{ (1..1000000000) | join }}", "{% for i in (1..1000000000) %}", "{{ a[b[c[d]]] }}",
        "{{ ((((((((1..2)..3)..4)..5)..6)) }}", "{% assign s = s | append: s %}", "{% assign list = list | concat: list %}",
        "{{ name | replace: '', name }}", "{{ 1e999 }}", "{{ -99999999999999999999999 | abs }}", "é✓🙂", "\u{0}", "{{ '🙂' | slice: -1 }}",
        "{% raw %}{{", "{%- -%}", "{{-}}", "{{ - }}", "{{ x.y.z.w.v }}", "{% when %}", "{% else %}", "{{ [\"k\"] }}", "{{ x | default: nil, allow_false: true }}",
        "{{ '' | date: '%' }}", "{{ now | date: '%-_^#0:99Q %:z %N %9N %' }}", "{{ name | base64_decode }}", "{% if a <> b %}",
        "{{ name | truncatewords: -5, name }}", "{{ list | slice: 99999999999, -1 }}", "{{ n | modulo: 0.0 }}", "{% # c %}",
    ]

    static let contexts: [String] = [
        "{}",
        #"{"name":"Ann","x":true,"y":3,"n":4,"list":[1,2,{"k":1},null,"a"],"obj":{"k":"v","l":[1,2]},"contact":{"first_name":"ann"}}"#,
        #"{"name":"","x":false,"y":"str","n":-2.5,"list":[],"obj":{},"contact":null}"#,
        #"{"name":"<script>&'\"","x":null,"n":1e300,"list":[[1,[2,[3]]],{"k":null}],"s":"abcdefghijklmnopqrstuvwxyz"}"#,
        #"{"name":"héllo wörld 🙂","x":0,"y":[1],"n":"12","list":["b","a","c"],"obj":{"size":3}}"#,
    ]

    @Test func randomTemplatesNeverCrashOrHang() throws {
        var rng = SplitMix64(seed: 0x4C49_5155_4944)
        let contexts = try Self.contexts.map { try Value(jsonText: $0) }
        let limits = LiquidLimits(maxOutputBytes: 64_000, maxLoopIterations: 2_000, maxArrayLength: 5_000, maxWork: 200_000)
        var rendered = 0, syntaxErrors = 0, renderErrors = 0
        var slowest = 0.0
        let alphabet = Array("{}%|-:,.'\"()[]<>= \n\tabcxyz0129é🙂")
        for iteration in 0..<20_000 {
            var source = ""
            for _ in 0..<Int.random(in: 1...10, using: &rng) { source += Self.fragments.randomElement(using: &rng)! }
            // Sometimes mutate: insert, delete or replace random characters.
            if Int.random(in: 0..<3, using: &rng) == 0 {
                var chars = Array(source)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    let at = Int.random(in: 0...chars.count, using: &rng)
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0: chars.insert(alphabet.randomElement(using: &rng)!, at: at)
                    case 1: if at < chars.count { chars.remove(at: at) }
                    default: if at < chars.count { chars[at] = alphabet.randomElement(using: &rng)! }
                    }
                }
                source = String(chars)
            }
            let context = contexts.randomElement(using: &rng)!
            let html = Bool.random(using: &rng)
            let start = Date()
            do {
                let template = try LiquidTemplate.parse(source)
                _ = try template.render(context, options: RenderOptions(htmlEscape: html, now: liquidNow, limits: limits))
                rendered += 1
            } catch {
                guard let e = error as? LiquidError else {
                    Issue.record("iteration \(iteration): non-Liquid error \(error) for \(source.debugDescription)")
                    continue
                }
                if e.kind == .syntax { syntaxErrors += 1 } else { renderErrors += 1 }
                #expect(e.line >= 1 && e.column >= 1, "iteration \(iteration): \(e) for \(source.debugDescription)")
                #expect(e.line <= source.split(separator: "\n", omittingEmptySubsequences: false).count + 1)
            }
            let elapsed = Date().timeIntervalSince(start)
            slowest = max(slowest, elapsed)
            #expect(elapsed < 2, "iteration \(iteration) took \(elapsed)s: \(source.debugDescription)")
        }
        // The corpus exercises all three outcomes.
        #expect(rendered > 1000 && syntaxErrors > 1000 && renderErrors > 100,
                "rendered \(rendered), syntax errors \(syntaxErrors), render errors \(renderErrors), slowest \(slowest)s")
    }
}
