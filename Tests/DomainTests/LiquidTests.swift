import Domain
import Foundation
import Testing

/// 2026-11-22T10:00:00Z, a Sunday.
let liquidNow = Date(timeIntervalSince1970: 1_795_341_600)

/// Renders `source` with `json` as context; returns the output, or `ERROR line:col: message` for a LiquidError.
func liquid(_ source: String, _ json: String = "{}", html: Bool = false, timeZone: String = "UTC",
            limits: LiquidLimits = .standard) -> String {
    do {
        let template = try LiquidTemplate.parse(source)
        let options = RenderOptions(htmlEscape: html, now: liquidNow, timeZone: TimeZone(identifier: timeZone)!, limits: limits)
        return try template.render(try Value(jsonText: json), options: options)
    } catch {
        if let e = error as? LiquidError { return "ERROR \(e)" }
        return "UNEXPECTED \(error)"
    }
}

@Suite struct LiquidOutputTests {
    @Test func textAndVariables() {
        #expect(liquid("plain text") == "plain text")
        #expect(liquid("") == "")
        #expect(liquid("Hi {{ name }}!", #"{"name":"Ann"}"#) == "Hi Ann!")
        #expect(liquid("{{missing}}|{{ missing.deep.er }}|{{ }}") == "||")
        #expect(liquid("{{ a.b[0][\"c\"] }}", #"{"a":{"b":[{"c":"deep"}]}}"#) == "deep")
        #expect(liquid("{{ a[k] }} {{ a[i] }}", #"{"a":{"x":1},"k":"x","i":0}"#) == "1 ")
        #expect(liquid("{{ list[i] }} {{ list[-1] }} {{ list[9] }}", #"{"list":[1,2,3],"i":1}"#) == "2 3 ")
        #expect(liquid("{{ list.size }} {{ list.first }} {{ list.last }} {{ s.size }} {{ o.size }}",
                       #"{"list":[1,2,3],"s":"héllo","o":{"a":1,"b":2}}"#) == "3 1 3 5 2")
        #expect(liquid("{{ o.size }}", #"{"o":{"size":"own"}}"#) == "own")
        #expect(liquid(#"{{ ["odd key"] }}"#, #"{"odd key":"ok"}"#) == "ok")
    }

    @Test func literalsAndTypes() {
        #expect(liquid("{{ 'single' }} {{ \"double\" }} {{ 42 }} {{ -1.5 }} {{ true }} {{ false }} {{ nil }}") == "single double 42 -1.5 true false ")
        #expect(liquid("{{ n }} {{ f }} {{ b }} {{ arr }} {{ obj }}", #"{"n":3,"f":2.5,"b":true,"arr":["a",1,["b"]],"obj":{"k":"v"}}"#)
                == #"3 2.5 true a1b {"k":"v"}"#)
        #expect(liquid("{{ (1..4) }}") == "1234")
    }

    @Test func nowIsBuiltInUnlessDefined() {
        #expect(liquid("{{ now }}") == "2026-11-22T10:00:00Z")
        #expect(liquid("{{ now }}", #"{"now":"mine"}"#) == "mine")
    }

    @Test func whitespaceControl() {
        #expect(liquid("a  {{- 'b' -}}  c") == "abc")
        #expect(liquid("a \n {%- if true -%} \n b \n {%- endif -%} \n c") == "abc")
        #expect(liquid("<ul>\n{% for i in (1..2) -%}\n  <li>{{ i }}</li>\n{% endfor -%}\n</ul>") == "<ul>\n<li>1</li>\n<li>2</li>\n</ul>")
        #expect(liquid("x {{ 'y' -}}\n\n z") == "x yz")
        #expect(liquid("x \t\n{{- 'y' }} z") == "xy z")
        #expect(liquid("{{- 'only' -}}") == "only")
    }

    @Test func htmlEscaping() {
        let data = #"{"v":"<a href=\"x\">Tom & Jerry's</a>"}"#
        #expect(liquid("{{ v }}", data, html: true) == "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;")
        #expect(liquid("{{ v | raw }}", data, html: true) == #"<a href="x">Tom & Jerry's</a>"#)
        #expect(liquid("{{ v }}", data, html: false) == #"<a href="x">Tom & Jerry's</a>"#)
        #expect(liquid("{{ v | escape }}", data, html: false) == "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;")
        // Already escaped output is not escaped twice; filters after raw still escape.
        #expect(liquid("{{ v | escape }}", data, html: true) == "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt;")
        #expect(liquid("{{ v | raw | upcase }}", data, html: true) == "&lt;A HREF=&quot;X&quot;&gt;TOM &amp; JERRY&#39;S&lt;/A&gt;")
        // Template text is never escaped; only outputs are.
        #expect(liquid("<b>{{ 'x<y' }}</b>", html: true) == "<b>x&lt;y</b>")
        // A capture is escaped once, when its outputs render.
        #expect(liquid("{% capture c %}<i>{{ v }}</i>{% endcapture %}{{ c }}", #"{"v":"<x>"}"#, html: true) == "<i>&lt;x&gt;</i>")
        #expect(liquid("{% echo v %}", #"{"v":"<x>"}"#, html: true) == "&lt;x&gt;")
        #expect(liquid("{{ v | escape_once }}", #"{"v":"&amp; & <"}"#, html: true) == "&amp; &amp; &lt;")
    }
}

@Suite struct LiquidTagTests {
    @Test func ifElsifElse() {
        let t = "{% if n > 10 %}big{% elsif n > 5 %}medium{% else %}small{% endif %}"
        #expect(liquid(t, #"{"n":11}"#) == "big")
        #expect(liquid(t, #"{"n":6}"#) == "medium")
        #expect(liquid(t, #"{"n":1}"#) == "small")
        #expect(liquid(t) == "small")
    }

    @Test func truthiness() {
        for (json, expected) in [(#"{"v":0}"#, "T"), (#"{"v":""}"#, "T"), (#"{"v":[]}"#, "T"), (#"{"v":false}"#, "F"),
                                 (#"{"v":null}"#, "F"), ("{}", "F"), (#"{"v":"false"}"#, "T")] {
            #expect(liquid("{% if v %}T{% else %}F{% endif %}", json) == expected, "\(json)")
        }
    }

    @Test func comparisons() {
        let cases: [(String, String)] = [
            ("1 == 1.0", "T"), ("1 != 2", "T"), ("1 <> 1", "F"), ("'a' < 'b'", "T"), ("2 >= 2", "T"), ("3 <= 2", "F"),
            ("'abc' contains 'b'", "T"), ("'abc' contains 'z'", "F"), ("list contains 2", "T"), ("list contains '2'", "F"),
            ("obj contains 'k'", "T"), ("missing contains 'x'", "F"), ("missing > 5", "F"), ("'a' > 1", "F"),
            ("missing == nil", "T"), ("s == 'x'", "T"), ("true == true", "T"), ("list == list", "T"),
            ("t > '2026-01-01'", "T"), ("t == '2026-11-22T10:00:00Z'", "T"),
        ]
        let data = #"{"list":[1,2,3],"obj":{"k":1},"s":"x","t":"2026-11-22T10:00:00Z"}"#
        for (condition, expected) in cases {
            let src = condition.hasPrefix("t ") ? "{% assign t = now %}{% if \(condition) %}T{% else %}F{% endif %}"
                : "{% if \(condition) %}T{% else %}F{% endif %}"
            #expect(liquid(src, data) == expected, "\(condition)")
        }
    }

    @Test func andOrRightToLeft() {
        // Shopify: `true or false and false` is `true or (false and false)` = true;
        // `false and false or true` is `false and (false or true)` = false.
        #expect(liquid("{% if true or false and false %}T{% else %}F{% endif %}") == "T")
        #expect(liquid("{% if false and false or true %}T{% else %}F{% endif %}") == "F")
        #expect(liquid("{% if a and b %}T{% else %}F{% endif %}", #"{"a":1,"b":0}"#) == "T")
        #expect(liquid("{% if a and c %}T{% else %}F{% endif %}", #"{"a":1}"#) == "F")
    }

    @Test func emptyAndBlank() {
        let t = "{% if v == empty %}E{% endif %}{% if v == blank %}B{% endif %}{% if v != empty %}N{% endif %}"
        #expect(liquid(t, #"{"v":""}"#) == "EB")
        #expect(liquid(t, #"{"v":"  "}"#) == "BN")
        #expect(liquid(t, #"{"v":[]}"#) == "EB")
        #expect(liquid(t, #"{"v":{}}"#) == "EB")
        #expect(liquid(t, #"{"v":null}"#) == "BN")
        #expect(liquid(t, #"{"v":"x"}"#) == "N")
        #expect(liquid("{% case v %}{% when empty %}E{% else %}X{% endcase %}", #"{"v":[]}"#) == "E")
    }

    @Test func unless() {
        #expect(liquid("{% unless v %}no{% endunless %}") == "no")
        #expect(liquid("{% unless v %}no{% else %}yes{% endunless %}", #"{"v":1}"#) == "yes")
        #expect(liquid("{% unless v > 1 %}a{% elsif v > 0 %}b{% endunless %}", #"{"v":2}"#) == "b")
        #expect(liquid("{% unless v > 1 %}a{% elsif v > 0 %}b{% endunless %}", #"{"v":1}"#) == "a")
    }

    @Test func caseWhen() {
        let t = "{% case x %}\n  {% when 1 %}one{% when 2, 3 %}few{% when 'a' or 'b' %}letter{% else %}other{% endcase %}"
        #expect(liquid(t, #"{"x":1}"#) == "one")
        #expect(liquid(t, #"{"x":3}"#) == "few")
        #expect(liquid(t, #"{"x":"b"}"#) == "letter")
        #expect(liquid(t, #"{"x":9}"#) == "other")
        #expect(liquid(t) == "other")
        // Shopify renders every matching `when`.
        #expect(liquid("{% case 1 %}{% when 1 %}a{% when 1 %}b{% endcase %}") == "ab")
    }

    @Test func forLoops() {
        let data = #"{"items":["a","b","c","d","e"],"none":[],"n":3}"#
        #expect(liquid("{% for i in items %}{{ i }}{% endfor %}", data) == "abcde")
        #expect(liquid("{% for i in items limit: 2 %}{{ i }}{% endfor %}", data) == "ab")
        #expect(liquid("{% for i in items offset: 3 %}{{ i }}{% endfor %}", data) == "de")
        #expect(liquid("{% for i in items limit: 2 offset: 1 %}{{ i }}{% endfor %}", data) == "bc")
        #expect(liquid("{% for i in items reversed limit: 2 %}{{ i }}{% endfor %}", data) == "ba")
        #expect(liquid("{% for i in items reversed %}{{ i }}{% endfor %}", data) == "edcba")
        #expect(liquid("{% for i in items limit: n %}{{ i }}{% endfor %}", data) == "abc")
        #expect(liquid("{% for i in (1..5) %}{{ i }}{% endfor %}") == "12345")
        #expect(liquid("{% for i in (n..5) %}{{ i }}{% endfor %}", data) == "345")
        #expect(liquid("{% for i in (5..1) %}{{ i }}{% else %}none{% endfor %}") == "none")
        #expect(liquid("{% for i in none %}{{ i }}{% else %}empty{% endfor %}", data) == "empty")
        #expect(liquid("{% for i in missing %}{{ i }}{% else %}empty{% endfor %}", data) == "empty")
        #expect(liquid("{% for i in items offset: 9 %}{{ i }}{% else %}past{% endfor %}", data) == "past")
        #expect(liquid("{% for p in o %}{{ p[0] }}={{ p[1] }};{% endfor %}", #"{"o":{"b":2,"a":1}}"#) == "a=1;b=2;")
        #expect(liquid("{% for c in 'str' %}[{{ c }}]{% endfor %}") == "[str]")
    }

    @Test func forloopObject() {
        let t = "{% for i in (1..3) %}{{ forloop.index }}{{ forloop.index0 }}{{ forloop.rindex }}{{ forloop.rindex0 }}"
            + "{% if forloop.first %}F{% endif %}{% if forloop.last %}L{% endif %}{{ forloop.length }},{% endfor %}"
        #expect(liquid(t) == "1032F3," + "21213," + "3210L3,")
        #expect(liquid("{% for a in (1..2) %}{% for b in (1..2) %}{{ forloop.parentloop.index }}{{ forloop.index }} {% endfor %}{% endfor %}")
                == "11 12 21 22 ")
        #expect(liquid("{% for i in (1..2) %}{% endfor %}{{ forloop.index }}|{{ i }}") == "|")
    }

    @Test func breakAndContinue() {
        #expect(liquid("{% for i in (1..10) %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}") == "123")
        #expect(liquid("{% for i in (1..5) %}{% if i == 2 or i == 4 %}{% continue %}{% endif %}{{ i }}{% endfor %}") == "135")
        #expect(liquid("{% for a in (1..2) %}{% for b in (1..3) %}{% if b == 2 %}{% break %}{% endif %}{{ a }}{{ b }} {% endfor %}{% endfor %}")
                == "11 21 ")
        #expect(liquid("{% for a in (1..3) %}{% for b in none %}{% else %}{% break %}{% endfor %}{{ a }}{% endfor %}") == "")
    }

    @Test func assignAndCapture() {
        #expect(liquid("{% assign x = 'hi' | upcase %}{{ x }}") == "HI")
        #expect(liquid("{% assign x = list | join: '-' %}{{ x }}", #"{"list":[1,2]}"#) == "1-2")
        #expect(liquid("{% assign r = (1..3) %}{{ r | join: ',' }}") == "1,2,3")
        #expect(liquid("{% for i in (1..3) %}{% assign last = i %}{% endfor %}{{ last }}") == "3")
        #expect(liquid("{% capture greeting %}Hello {{ name }}!{% endcapture %}[{{ greeting }}]", #"{"name":"Ann"}"#) == "[Hello Ann!]")
        #expect(liquid("{% capture 'q' %}x{% endcapture %}{{ q }}") == "x")
        #expect(liquid("{% assign name = 'local' %}{{ name }}", #"{"name":"data"}"#) == "local")
    }

    @Test func commentAndRaw() {
        #expect(liquid("a{% comment %} {{ x | nope }} {% if %} {% comment %}nested{% endcomment %} {% endcomment %}b") == "ab")
        #expect(liquid("{% raw %}{{ not parsed }} {% if %}{% endraw %}") == "{{ not parsed }} {% if %}")
        #expect(liquid("a {%- raw -%} {{x}} {%- endraw -%} b") == "a{{x}}b")
        #expect(liquid("a{% # inline comment %}b") == "ab")
    }
}

@Suite struct LiquidFilterTests {
    private func f(_ source: String, _ json: String = "{}") -> String { liquid(source, json) }

    @Test func stringFilters() {
        #expect(f("{{ 'hello' | upcase }} {{ 'HeLLo' | downcase }} {{ 'hELLO wORLD' | capitalize }}") == "HELLO hello Hello world")
        #expect(f("[{{ '  a b  ' | strip }}][{{ '  a ' | lstrip }}][{{ ' a  ' | rstrip }}]") == "[a b][a ][ a]")
        #expect(f("{{ 'a\nb\r\nc' | strip_newlines }}") == "abc")
        #expect(f("{{ 'a\nb' | newline_to_br }}") == "a<br />\nb")
        #expect(f("{{ 'Ground control to Major Tom.' | truncate: 20 }}") == "Ground control to...")
        #expect(f("{{ 'Ground control to Major Tom.' | truncate: 25, ', and so on' }}") == "Ground control, and so on")
        #expect(f("{{ 'Ground control to Major Tom.' | truncate: 20, '' }}") == "Ground control to Ma")
        #expect(f("{{ 'short' | truncate: 20 }} {{ 'abc' | truncate: 2 }}") == "short ...")
        #expect(f("{{ 'Ground control to Major Tom.' | truncatewords: 3 }}") == "Ground control to...")
        #expect(f("{{ 'Ground control to Major Tom.' | truncatewords: 3, '--' }}") == "Ground control to--")
        #expect(f("{{ 'one two' | truncatewords: 5 }}") == "one two")
        #expect(f("{{ 'a-b-a' | replace: 'a', 'x' }} {{ 'a-b-a' | replace_first: 'a', 'x' }} {{ 'a-b-a' | replace_last: 'a', 'x' }}") == "x-b-x x-b-a a-b-x")
        #expect(f("{{ 'a-b-a' | remove: 'a' }} {{ 'a-b-a' | remove_first: 'a' }} {{ 'a-b-a' | remove_last: 'a' }}") == "-b- -b-a a-b-")
        #expect(f("{{ 'ab' | replace: '', '.' }}") == ".a.b.")
        #expect(f("{{ 'b' | append: 'c' | prepend: 'a' }} {{ n | append: 1 }}", #"{"n":2}"#) == "abc 21")
        #expect(f("{{ 'x' | slice: 0 }}{{ 'hello' | slice: 1, 3 }}{{ 'hello' | slice: -3, 2 }}") == "xellll")
        #expect(f("{{ '<p>Hi <b>there</b></p><script>x()</script><!-- c -->!' | strip_html }}") == "Hi there!")
        #expect(f("{{ 'héllo' | size }} {{ missing | size }}") == "5 0")
    }

    @Test func defaultFilter() {
        #expect(f("{{ missing | default: 'x' }} {{ '' | default: 'x' }} {{ false | default: 'x' }} {{ 0 | default: 'x' }}") == "x x x 0")
        #expect(f("{{ list | default: 'x' }} {{ 'v' | default: 'x' }} {{ missing | default }}|", #"{"list":[]}"#) == "x v |")
        #expect(f("{{ false | default: 'x', allow_false: true }}") == "false")
        #expect(f("{{ contact.first_name | default: \"there\" }}", #"{"contact":{"first_name":"Ann"}}"#) == "Ann")
    }

    @Test func arrayFilters() {
        let data = #"{"a":[3,1,2,1],"w":"b a c","people":[{"n":"Bo","age":30,"vip":true},{"n":"al","age":20},{"n":"Cy","age":40,"vip":false}],"nested":[[1,2],[3]]}"#
        #expect(f("{{ 'a,b,,c,,' | split: ',' | join: '|' }}") == "a|b||c")
        #expect(f("{{ ' a  b ' | split: ' ' | size }} {{ 'abc' | split: '' | join: '.' }}") == "2 a.b.c")
        #expect(f("{{ a | join }} {{ a | join: ', ' }} {{ 'x' | join: '-' }}", data) == "3 1 2 1 3, 1, 2, 1 x")
        #expect(f("{{ a | first }} {{ a | last }} {{ a | size }} {{ 'str' | first }}", data) == "3 1 4 ")
        #expect(f("{{ a | sort | join }} {{ a | uniq | join }} {{ a | reverse | join }}", data) == "1 1 2 3 3 1 2 1 2 1 3")
        #expect(f("{{ people | map: 'n' | join }} {{ people | sort: 'age' | map: 'n' | join }}", data) == "Bo al Cy al Bo Cy")
        #expect(f("{{ people | sort: 'n' | map: 'n' | join }} {{ people | sort_natural: 'n' | map: 'n' | join }}", data) == "Bo Cy al al Bo Cy")
        #expect(f("{{ people | where: 'vip' | map: 'n' | join }} {{ people | where: 'age', 20 | map: 'n' | join }}", data) == "Bo al")
        #expect(f("{{ people | map: 'vip' | compact | size }} {{ people | compact: 'vip' | size }}", data) == "2 2")
        #expect(f("{{ a | concat: nested | size }} {{ nested | map: 'x' | size }}", data) == "6 3")
        #expect(f("{{ people | sum: 'age' }} {{ a | sum }}", data) == "90 7")
        #expect(f("{{ people | uniq: 'vip' | size }}", data) == "3")
        #expect(f("{{ a | slice: 1, 2 | join }}", data) == "1 2")
    }

    @Test func mathFilters() {
        #expect(f("{{ 4 | plus: 2 }} {{ 4 | minus: 6 }} {{ 3 | times: 2.5 }} {{ '3' | plus: '4' }} {{ 'x' | plus: 1 }}") == "6 -2 7.5 7 1")
        #expect(f("{{ 10 | divided_by: 3 }} {{ 10 | divided_by: 3.0 }} {{ -7 | divided_by: 2 }} {{ 7.5 | divided_by: 2 }} {{ 10.0 | divided_by: 4 }}")
                == "3 3.3333333333333335 -4 3.75 2.5")
        #expect(f("{{ 10 | modulo: 3 }} {{ -7 | modulo: 3 }} {{ 7 | modulo: -3 }} {{ 5.5 | modulo: 2 }}") == "1 2 -2 1.5")
        #expect(f("{{ 1.2345 | round: 2 }} {{ 2.5 | round }} {{ -2.5 | round }} {{ 2.675 | round: 2 }} {{ 1234 | round: -2 }}") == "1.23 3 -3 2.68 1200")
        #expect(f("{{ 1.5 | floor }} {{ -1.5 | floor }} {{ 1.2 | ceil }} {{ -3 | abs }} {{ '-2.5' | abs }}") == "1 -2 2 3 2.5")
        #expect(f("{{ 4 | at_least: 5 }} {{ 4 | at_most: 3 }} {{ 4 | at_least: 3 }}") == "5 3 4")
        #expect(f("{{ price | times: 0.9 | round: 2 }}", #"{"price":19.99}"#) == "17.99")
        #expect(f("{{ price | times: 0.9 | round: 2 }}", #"{"price":20}"#) == "18")
        #expect(f("{{ score | round }}", #"{"score":41.6}"#) == "42")
        #expect(f("{{ missing | round }}") == "0")
    }

    @Test func encodingFilters() {
        #expect(f("{{ 'a b&c/d?é~' | url_encode }}") == "a+b%26c%2Fd%3F%C3%A9~")
        #expect(f("{{ 'a+b%26c%2Fd' | url_decode }}") == "a b&c/d")
        #expect(f("{{ v | escape }}", #"{"v":"<a href=\"x\">'&"}"#) == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;")
        #expect(f("{{ '&lt; &amp; &#39; &#x27; & <' | escape_once }}") == "&lt; &amp; &#39; &#x27; &amp; &lt;")
        #expect(f(#"{{ v | json_escape }}"#, #"{"v":"a\"b\\c\nd\u0001"}"#) == #"a\"b\\c\nd\u0001"#)
        #expect(f("{{ v | json }}", #"{"v":{"b":[1,"x",null,true],"a":1.5}}"#) == #"{"a":1.5,"b":[1,"x",null,true]}"#)
        #expect(f("{{ 'x' | json }} {{ 2 | json }}") == #""x" 2"#)
        #expect(f("{{ 'abc' | sha256 }}") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(f("{{ 'Ann@Example.com' | downcase | sha256 }}") == SHA256.hex("ann@example.com"))
        #expect(f("{{ 'what do ya want for nothing?' | hmac_sha256: 'Jefe' }}") == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(f("{{ 'hi there' | base64_encode }} {{ 'aGkgdGhlcmU=' | base64_decode }}") == "aGkgdGhlcmU= hi there")
        #expect(f("{{ '<b>' | raw }}") == "<b>")
    }

    @Test func dateFilters() {
        #expect(f("{{ now | date: '%B %-d, %Y %H:%M' }}") == "November 22, 2026 10:00")
        #expect(f("{{ 'now' | date: '%Y-%m-%d' }} {{ 'today' | date: '%d' }}") == "2026-11-22 22")
        #expect(f("{{ now | plus_days: 7 | date: '%B %-d' }}") == "November 29")
        #expect(f("{{ now | plus_days: -22 | date: '%F' }}") == "2026-10-31")
        #expect(f("{{ '2026-03-05T08:07:09Z' | date: '%a %A %b %e %-m/%-d/%y %I:%M %p %j %u %w %s %%' }}")
                == "Thu Thursday Mar  5 3/5/26 08:07 AM 064 4 4 1772698029 %")
        #expect(f("{{ '2026-03-05T15:07:09.250+01:00' | date: '%H:%M:%S.%L %z %:z %Z %^B %-I%P' }}") == "14:07:09.250 +0000 +00:00 UTC MARCH 2pm")
        #expect(f("{{ '2026-03-05' | date: '%c' }}") == "Thu Mar  5 00:00:00 2026")
        #expect(f("{{ 0 | date: '%F %T' }} {{ '1700000000' | date: '%F' }}") == "1970-01-01 00:00:00 2023-11-14")
        #expect(f("{{ 'not a date' | date: '%F' }}|{{ missing | date: '%F' }}|{{ now | date: '' }}") == "not a date||2026-11-22T10:00:00Z")
        #expect(f("{{ '2026-01-01' | date: '%G-W%V %U %W' }} {{ '2027-01-01' | date: '%G-W%V' }}") == "2026-W01 00 00 2026-W53")
        // The zone's abbreviation comes from the platform ("EST" on macOS, "GMT-5" on Linux).
        #expect(liquid("{{ now | date: '%Y-%m-%d %H:%M %z' }}", timeZone: "America/New_York") == "2026-11-22 05:00 -0500")
        // plus_days keeps the wall-clock time across a DST change (Europe/Paris, 2026-03-29).
        #expect(liquid("{{ '2026-03-28T10:00:00' | plus_days: 1 | date: '%F %H:%M %z' }}", timeZone: "Europe/Paris") == "2026-03-29 10:00 +0200")
    }
}

/// The templates of ../shared/examples/templates.yaml (the acceptance examples): every one parses and renders.
@Suite struct LiquidExampleTemplateTests {
    static let templates: [String] = [
        "Welcome to Acme{% if contact.first_name %}, {{ contact.first_name }}{% endif %}!",
        "<h1>Hi {{ contact.first_name | default: \"there\" }},</h1>\n<p>Thanks for joining Acme. Three things to try first: ...</p>\n<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>\n",
        "Hi {{ contact.first_name | default: \"there\" }}, thanks for joining Acme.\nUnsubscribe: {{ unsubscribe_url }}\n",
        "<p>Hi {{ contact.first_name | default: \"there\" }}, here is a tip ...</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "<p>{{ contact.first_name | capitalize }}, use code WELCOME15 before {{ now | plus_days: 7 | date: \"%B %-d\" }}.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "You left {{ event.properties.product_name }} in your cart",
        "<p>{{ event.properties.product_name }} ({{ event.properties.price | round: 2 }} {{ event.properties.currency | upcase }}) is waiting.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "Still thinking about {{ event.properties.product_name }}?",
        "10% off {{ event.properties.product_name }}, today only",
        "<p>Now {{ event.properties.price | times: 0.9 | round: 2 }} with code CART10.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "Acme: your {{ event.properties.product_name | truncate: 40 }} is still in your cart. Reply STOP to opt out.",
        "<p>Thanks for your first order, {{ contact.first_name | default: \"friend\" }}. Code THANKS25.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "How is your {{ event.properties.product_name | default: \"order\" }}?",
        "<ul>\n{% for item in event.properties.related limit: 3 %}\n  <li>{{ item.name }}: {{ item.price }}</li>\n{% else %}\n  <li>Batteries and cases at a member price.</li>\n{% endfor %}\n</ul>\n<p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>\n",
        "We miss you, {{ contact.first_name | default: \"friend\" }}",
        "{{ event.properties.product_name }} is now {{ event.properties.discount_pct }}% off",
        "<p>Now {{ event.properties.new_price }}.</p><p><a href=\"{{ unsubscribe_url }}\">Unsubscribe</a></p>",
        "{\"text\": \"Hot lead: {{ contact.email | json_escape }} (score {{ contact.score | round }}, stage {{ contact.stage }})\"}\n",
        "{\"audience\": \"cart-abandoners\", \"email_sha256\": \"{{ contact.email | downcase | sha256 }}\"}\n",
    ]

    static let context = """
        {"contact":{"first_name":"ann","email":"Ann@Example.com","score":72.4,"stage":"lead"},
         "event":{"properties":{"product_name":"Noise-cancelling headphones \\"Pro\\" & case","price":199.5,"currency":"eur",
           "discount_pct":15,"new_price":169.58,"related":[{"name":"Case","price":19},{"name":"Cable","price":9.5},
           {"name":"Stand","price":25},{"name":"Fourth","price":1}]}},
         "unsubscribe_url":"https://acme.test/u/abc?sig=1&x=2"}
        """

    @Test func everyExampleParsesAndRenders() throws {
        for source in Self.templates {
            let template = try LiquidTemplate.parse(source)
            for html in [false, true] {
                _ = try template.render(try Value(jsonText: Self.context), options: RenderOptions(htmlEscape: html, now: liquidNow))
                _ = try template.render(.object([:]), options: RenderOptions(htmlEscape: html, now: liquidNow))
            }
        }
    }

    @Test func exampleOutputs() {
        let c = Self.context
        #expect(liquid(Self.templates[0], c) == "Welcome to Acme, ann!")
        #expect(liquid(Self.templates[0]) == "Welcome to Acme!")
        #expect(liquid(Self.templates[1], html: true) == "<h1>Hi there,</h1>\n<p>Thanks for joining Acme. Three things to try first: ...</p>\n<p><a href=\"\">Unsubscribe</a></p>\n")
        #expect(liquid(Self.templates[3], c, html: true)
                == "<p>Hi ann, here is a tip ...</p><p><a href=\"https://acme.test/u/abc?sig=1&amp;x=2\">Unsubscribe</a></p>")
        #expect(liquid(Self.templates[4], c, html: true).hasPrefix("<p>Ann, use code WELCOME15 before November 29.</p>"))
        #expect(liquid(Self.templates[6], c, html: true).hasPrefix("<p>Noise-cancelling headphones &quot;Pro&quot; &amp; case (199.5 EUR) is waiting.</p>"))
        #expect(liquid(Self.templates[9], c, html: true).hasPrefix("<p>Now 179.55 with code CART10.</p>"))
        #expect(liquid(Self.templates[10], c) == "Acme: your Noise-cancelling headphones \"Pro\" & case is still in your cart. Reply STOP to opt out.")
        #expect(liquid(Self.templates[10], #"{"event":{"properties":{"product_name":"An extremely long product name that goes on and on"}}}"#)
                == "Acme: your An extremely long product name that g... is still in your cart. Reply STOP to opt out.")
        #expect(liquid(Self.templates[12], "{}") == "How is your order?")
        #expect(liquid(Self.templates[13], c, html: true)
                == "<ul>\n\n  <li>Case: 19</li>\n\n  <li>Cable: 9.5</li>\n\n  <li>Stand: 25</li>\n\n</ul>\n<p><a href=\"https://acme.test/u/abc?sig=1&amp;x=2\">Unsubscribe</a></p>\n")
        #expect(liquid(Self.templates[13], html: true)
                == "<ul>\n\n  <li>Batteries and cases at a member price.</li>\n\n</ul>\n<p><a href=\"\">Unsubscribe</a></p>\n")
        #expect(liquid(Self.templates[17], #"{"contact":{"email":"a\"b@x.io","score":41.5,"stage":"mql"}}"#)
                == "{\"text\": \"Hot lead: a\\\"b@x.io (score 42, stage mql)\"}\n")
        #expect(liquid(Self.templates[18], c) == "{\"audience\": \"cart-abandoners\", \"email_sha256\": \"\(SHA256.hex("ann@example.com"))\"}\n")
    }
}
