import Domain
import Foundation
import Testing

/// The error `source` produces, as `line:column: message` (nil if it parses and checks).
private func error(_ source: String, scope: ExpressionScope = .event) -> String? {
    Condition.validate(source, scope: scope)?.description
}

private func expr(_ source: String, scope: ExpressionScope = .event) throws -> Condition {
    try Condition(source, scope: scope)
}

private let now = Date(timeIntervalSince1970: 1_800_000_000)  // 2027-01-15T08:00:00Z
private let day = 86_400.0

@Suite struct ExpressionParserTests {
    @Test func parsesTheLanguage() throws {
        for source in [
            #"contact.email != null and has_tag("newsletter")"#,
            #"count("*", within: "60d") == 0"#,
            #"count("Page Viewed", within: "7d", where: event.properties.path == "/pricing") >= 3"#,
            #"sum("Order Completed", "total", within: "365d") > 50"#,
            #"in_segment("frequent-buyers") and contact.score > 40"#,
            #"contact.first_seen_at < now() - duration("60d")"#,
            #"not (event.name == "A" or event.name == 'B')"#,
            "contact.signup_at > 2026-01-01T00:00:00Z and contact.signup_at <= 2026-12-31",
            "contact.age + 1 >= -3.5e1",
            "contact.\"first name\" == \"Ann\"",
            "contact.address.city == \"Paris\"",
            "contact.vip",
            "event.context.timezone == \"Europe/Paris\"\n  and event.properties.total > 0",
            "now() - contact.first_seen_at > duration(\"1d12h\")",
        ] {
            #expect(error(source) == nil, "\(source): \(error(source) ?? "")")
        }
    }

    @Test func syntaxErrorsNameLineAndColumn() {
        #expect(error(#"count("*", within: "30d""#) == "1:25: expected ')' after arguments of count, found end of expression")
        #expect(error(#"count("*" within: "30d")"#) == "1:11: expected ')' after arguments of count, found 'within'")
        #expect(error("contact.email = \"a\"") == "1:15: unexpected '='; use '==' to compare")
        #expect(error("contact.a == 1 && contact.b == 2") == "1:16: unexpected '&&'; use 'and'")
        #expect(error("(contact.a == 1") == "1:16: expected ')' to close '(' at 1:1, found end of expression")
        #expect(error("contact.a == \"abc") == "1:14: unterminated string literal")
        #expect(error("contact.a == 1 contact.b") == "1:16: unexpected 'contact' after the end of the expression")
        #expect(error("") == "1:1: empty expression")
        #expect(error("contact.a ==") == "1:13: expected an expression, found end of expression")
        #expect(error("1 < 2 < 3") == "1:7: comparisons cannot be chained; combine them with 'and'")
        #expect(error("contact.a == 30d") == "1:16: unexpected 'd' after number 30 (durations are written duration(\"30d\"))")
        #expect(error("contact.a == 2026-13-01") == "1:14: invalid timestamp '2026-13-01': expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")
        #expect(error("contact.a == #") == "1:14: unexpected character '#'")
        #expect(error("contact. == 1") == "1:10: expected a name after '.', found '=='")
        #expect(error(String(repeating: "(", count: 300) + "true" + String(repeating: ")", count: 300)) == "1:202: expression is nested too deeply")
        #expect(error(Array(repeating: "true", count: 3000).joined(separator: " and "))?.hasSuffix("expression is too long (more than 4000 tokens)") == true)
        // Lines and columns count from the start of the expression text, across newlines.
        #expect(error("contact.a == 1 and\n  contact.b ==") == "2:15: expected an expression, found end of expression")
        #expect(error("contact.a == 1 and\n  (contact.b == 2") == "2:18: expected ')' to close '(' at 2:3, found end of expression")
    }

    @Test func typeErrors() {
        #expect(error("now() < 5") == "1:7: cannot compare time with number")
        #expect(error("contact.first_seen_at == \"soon\"") == "1:26: \"soon\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)")
        #expect(error("contact.score == \"high\"") == "1:15: cannot compare number with string")
        #expect(error("contact.score") == "1:1: a condition must be true or false, but this expression is a number")
        #expect(error("count(\"A\") and true") == "1:1: 'and' needs true/false operands, but this is a number")
        #expect(error("contact.score < null") == "1:15: cannot compare number with null using '<' (only == and != work with null)")
        #expect(error("now() + 5 > now()") == "1:7: cannot add a number and a time; use duration(\"30d\")")
        #expect(error("now() + now() > now()") == "1:7: cannot add time and time")
        #expect(error("\"2026-01-01\" - duration(\"1d\") < now() and now() - \"2026-01-01\" > duration(\"1d\")") == nil)
        #expect(error("\"soon\" + duration(\"1d\") < now()") == "1:1: \"soon\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)")
        #expect(error("true < false") == "1:6: cannot order booleans with '<'")
        #expect(error("contact.tags == \"vip\"") == "1:14: cannot compare list with string; use has_tag(\"...\") to test tags")
        #expect(error("score > 3") == "1:1: unknown name 'score': names start with 'contact.' or 'event.'")
        #expect(error("contact == 3") == "1:1: expected an attribute after 'contact', e.g. contact.email")
        #expect(error("event.foo == 3") == "1:1: unknown event field 'foo': expected event.name, event.properties.<name> or event.context.<name>")
        #expect(error("duration(\"3d\") > 5") == "1:16: cannot compare duration with number")
    }

    @Test func functionErrors() {
        #expect(error("counts(\"A\") > 1") == "1:1: unknown function 'counts' (known: count, sum, in_segment, has_tag, now, duration)")
        #expect(error("count(\"A\", \"B\") > 1") == "1:12: count expects 1 argument (event name), got 2")
        #expect(error("count() > 1") == "1:1: count expects 1 argument (event name), got 0")
        #expect(error("count(\"A\", during: \"3d\") > 1") == "1:12: count has no argument named 'during': expected within: or where:")
        #expect(error("count(\"A\", within: \"3x\") > 1") == "1:20: invalid duration \"3x\": expected a number and a unit (s, m, h, d, w), e.g. \"30d\"")
        #expect(error("count(\"A\", within: \"3d\", within: \"4d\") > 1") == "1:26: argument 'within' given twice to count")
        #expect(error("count(\"A\", where: event.properties.x) > 1") == nil)
        #expect(error("count(\"A\", where: 3) > 1") == "1:19: the where: of count must be true or false, but this is a number")
        #expect(error("count(contact.x) > 1") == "1:7: the event name of count must be a string literal in quotes")
        #expect(error("sum(\"*\", \"total\") > 1") == "1:5: sum needs an event name (\"*\" only works with count)")
        #expect(error("sum(\"A\") > 1") == "1:1: sum expects 2 arguments (event name, property), got 1")
        #expect(error("now(1) > now()") == "1:5: now expects no arguments, got 1")
        #expect(error("has_tag(\"a\", within: \"1d\")") == "1:14: has_tag has no argument named 'within': it takes no named arguments")
        #expect(error("count(within: \"1d\", \"A\") > 1") == "1:21: positional argument after named arguments in count")
        #expect(error("count > 1") == "1:1: count is a function: write count(...)")
    }

    @Test func eventNeedsAnEventScope() {
        #expect(error("event.name == \"A\"", scope: .contact)
            == "1:1: 'event.name' is not available here: there is no triggering event (use count(...) to look at past events)")
        #expect(error("contact.a == 1 and event.properties.x == 2", scope: .contact)?.hasPrefix("1:20: 'event.properties.x' is not available here") == true)
        // Inside count's where:, `event` is the counted event, in any scope.
        #expect(error("count(\"A\", where: event.properties.x == 2) > 0", scope: .contact) == nil)
        let e = try? expr("count(\"A\", where: event.name == \"A\") > 0 and in_segment(\"s\") and has_tag(\"t\")", scope: .contact)
        #expect(e?.usesEvent == false)
        #expect(e?.usesHistory == true)
        #expect(e?.referencedSegments == ["s"])
        #expect(e?.referencedTags == ["t"])
        #expect((try? expr("event.name == \"A\""))?.usesEvent == true)
    }

    /// Every condition in the acceptance examples parses and type-checks (segments without an event).
    @Test func acceptanceExamplesCheck() throws {
        // The repo's copy of ../shared/examples (the acceptance examples).
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".yaml") }
        #expect(!files.isEmpty)
        var checked = 0
        for file in files {
            let text = try String(contentsOf: folder.appendingPathComponent(file), encoding: .utf8)
            for document in text.components(separatedBy: "\n---") {
                let isSegment = document.contains("kind: segment")
                for line in document.split(separator: "\n") {
                    var trimmed = line.trimmingCharacters(in: .whitespaces)
                    if trimmed.hasPrefix("- ") { trimmed.removeFirst(2) }
                    for key in ["when:", "where:", "if:", "exit_when:"] where trimmed.hasPrefix(key + " '") {
                        var value = String(trimmed.dropFirst(key.count + 2))
                        guard let end = value.lastIndex(of: "'") else { continue }
                        value = String(value[..<end]).replacingOccurrences(of: "''", with: "'")
                        let scope: ExpressionScope = isSegment ? .contact : .event
                        #expect(Condition.validate(value, scope: scope) == nil, "\(file): \(value): \(error(value, scope: scope) ?? "")")
                        checked += 1
                    }
                }
            }
        }
        #expect(checked >= 25, "only \(checked) conditions found")
    }
}

@Suite struct ExpressionEvaluatorTests {
    let contact: Value = .object([
        "email": .string("ann@example.com"),
        "stage": .string("customer"),
        "score": .number(55),
        "tags": .array([.string("newsletter"), .string("vip")]),
        "first_seen_at": .time(now.addingTimeInterval(-90 * day)),
        "last_seen_at": .string("2027-01-10T00:00:00Z"),
        "plan": .string("pro"),
        "age": .number(41),
        "vip": .bool(true),
        "nothing": .null,
        "signup": .string("2026-06-01"),
        "address": .object(["city": .string("Paris")]),
        "count_text": .string("12"),
    ])

    var history: InMemoryHistory {
        InMemoryHistory(events: [
            ExpressionEvent(name: "Order Completed", properties: .object(["total": .number(30)]), occurredAt: now.addingTimeInterval(-10 * day)),
            ExpressionEvent(name: "Order Completed", properties: .object(["total": .number(25.5)]), occurredAt: now.addingTimeInterval(-20 * day)),
            ExpressionEvent(name: "Order Completed", properties: .object(["total": .string("99")]), occurredAt: now.addingTimeInterval(-25 * day)),
            ExpressionEvent(name: "Order Completed", properties: .object(["total": .number(1000)]), occurredAt: now.addingTimeInterval(-400 * day)),
            ExpressionEvent(name: "Page Viewed", properties: .object(["path": .string("/pricing")]), occurredAt: now.addingTimeInterval(-1 * day)),
            ExpressionEvent(name: "Page Viewed", properties: .object(["path": .string("/pricing")]), occurredAt: now.addingTimeInterval(-2 * day)),
            ExpressionEvent(name: "Page Viewed", properties: .object(["path": .string("/")]), occurredAt: now.addingTimeInterval(-3 * day)),
            ExpressionEvent(name: "Page Viewed", properties: .object(["path": .string("/pricing")]), occurredAt: now.addingTimeInterval(-30 * day)),
        ], segments: ["frequent-buyers"])
    }

    func eval(_ source: String, event: ExpressionEvent? = nil) throws -> Bool {
        try expr(source).matches(in: EvaluationContext(contact: contact, event: event, now: now, history: history))
    }

    @Test func attributesAndNulls() throws {
        #expect(try eval("contact.email != null and contact.stage == \"customer\""))
        #expect(try eval("contact.missing == null"))
        #expect(try eval("contact.nothing == null"))           // JSON null is null
        #expect(try !eval("contact.missing != null"))
        #expect(try !eval("contact.missing == \"x\""))
        #expect(try !eval("contact.missing != \"x\""))          // comparisons with null are false...
        #expect(try eval("not (contact.missing == \"x\")"))     // ...and `not` of false is true
        #expect(try !eval("contact.missing < 3 or contact.missing >= 3"))
        #expect(try eval("contact.plan == \"pro\" and contact.plan != \"free\""))
        #expect(try eval("contact.age > 40 and contact.age + 1 == 42 and -contact.age < 0"))
        #expect(try !eval("contact.count_text > 3"))              // a numeric string is not a number
        #expect(try !eval("contact.plan == 3"))                   // a string is null as a number
        #expect(try eval("contact.vip and contact.vip == true"))
        #expect(try !eval("contact.plan"))                        // a non-boolean is not true
        #expect(try eval("contact.address.city == \"Paris\" and contact.address.zip == null and contact.plan.x == null"))
        #expect(try eval("contact.plan == contact.plan and not (contact.plan == contact.age)"))
        #expect(try !eval("contact.missing == contact.missing"))  // null == null through attributes is a comparison with null
        #expect(try eval("contact.plan < \"zzz\" and \"B\" < \"a\""))  // byte order
    }

    @Test func timesAndDurations() throws {
        #expect(try eval("contact.first_seen_at < now() - duration(\"60d\")"))
        #expect(try !eval("contact.first_seen_at < now() - duration(\"91d\")"))
        #expect(try eval("now() - contact.first_seen_at == duration(\"90d\")"))
        #expect(try eval("contact.last_seen_at == 2027-01-10T00:00:00Z"))     // ISO strings are times
        #expect(try eval("contact.last_seen_at == \"2027-01-10T01:00:00+01:00\""))
        #expect(try eval("contact.signup > 2026-05-31T23:59:59Z and contact.signup < \"2026-06-01T00:00:01Z\""))
        #expect(try eval("contact.signup + duration(\"1d\") == 2026-06-02"))
        #expect(try !eval("contact.plan < now()"))                               // not a timestamp: null
        #expect(try eval("duration(\"1w\") == duration(\"7d\") and duration(\"1d12h\") > duration(\"36h\") - duration(\"1s\")"))
    }

    @Test func historyFunctions() throws {
        #expect(try eval("count(\"Order Completed\") == 4"))
        #expect(try eval("count(\"Order Completed\", within: \"30d\") == 3"))
        #expect(try eval("count(\"*\", within: \"60d\") == 7"))
        #expect(try eval("count(\"*\", within: duration(\"2d\")) == 2"))
        #expect(try eval("count(\"Page Viewed\", within: \"7d\", where: event.properties.path == \"/pricing\") == 2"))
        #expect(try eval("sum(\"Order Completed\", \"total\", within: \"365d\") == 55.5"))   // the string "99" is not summed
        #expect(try eval("sum(\"Order Completed\", \"total\") == 1055.5"))
        #expect(try eval("sum(\"Nothing\", \"total\") == 0"))
        #expect(try eval("sum(\"Order Completed\", \"total\", where: event.properties.total > 26) == 1030"))
        #expect(try eval("in_segment(\"frequent-buyers\") and not in_segment(\"dormant\")"))
        #expect(try eval("has_tag(\"vip\") and not has_tag(\"VIP\")"))
        #expect(try eval("count(\"Order Completed\", where: contact.stage == \"customer\" and count(\"Page Viewed\") > 3) == 4"))
    }

    @Test func triggeringEvent() throws {
        let event = ExpressionEvent(name: "Product Added", properties: .object(["price": .number(12), "path": .string("/pricing")]),
                                    context: .object(["timezone": .string("Europe/Paris")]), occurredAt: now)
        #expect(try eval("event.name == \"Product Added\" and event.properties.price > 0", event: event))
        #expect(try eval("event.context.timezone == \"Europe/Paris\" and event.occurred_at == now()", event: event))
        #expect(try !eval("event.properties.price > 100", event: event))
        #expect(try !eval("event.name == \"Product Added\""))  // no event: null
        #expect(try eval("event.name == null"))
    }

    @Test func evaluateReturnsValues() throws {
        let context = EvaluationContext(contact: contact, now: now, history: history)
        #expect(try expr("contact.score >= 50").evaluate(in: context) == .bool(true))
        #expect(try expr("contact.plan").evaluate(in: context) == .null)
        // Missing score is 0, not null.
        let bare = EvaluationContext(contact: .object([:]), now: now)
        #expect(try expr("contact.score == 0 and not has_tag(\"x\") and contact.tags != null").matches(in: bare))
    }

    @Test func parseOnceEvaluateMany() throws {
        let condition = try expr(#"contact.stage == "customer" and count("Order Completed", within: "30d") >= 2 and has_tag("vip")"#)
        let context = EvaluationContext(contact: contact, now: now, history: history)
        var n = 0
        for _ in 0..<20_000 where condition.matches(in: context) { n += 1 }
        #expect(n == 20_000)
    }

    @Test func strictTimestamps() throws {
        for good in ["2026-01-01", "2026-02-28T23:59:59Z", "2024-02-29T00:00:00.123456+14:00", "2026-01-01T00:00:00-05:30"] {
            #expect(try expr("contact.x == \"\(good)\"").source.isEmpty == false)
        }
        for bad in ["2026-02-29", "2026-01-01T24:00:00Z", "2026-01-01T10:00:00", "2026-1-01", "0999-01-01", "2026-01-01T00:00:00.1234567Z"] {
            #expect(Condition.validate("now() == \"\(bad)\"", scope: .event) != nil, "\(bad) accepted")
        }
        let a = try expr("now() == \"2026-01-01T01:30:00+01:30\"")
        #expect(a.matches(in: EvaluationContext(contact: .object([:]), now: Value.parseTime("2026-01-01T00:00:00Z")!)))
    }
}

@Suite struct ExpressionSQLShapeTests {
    @Test func parametersNeverInterpolated() throws {
        let e = try expr(#"contact.plan == "x'; DROP TABLE contacts; --" and has_tag("t") and count("A", within: "2d") > 1"#, scope: .contact)
        let (sql, parameters) = SQLCompiler.compile(e, contactAlias: "c", now: now)
        #expect(!sql.contains("DROP"))
        #expect(parameters.contains(.text("x'; DROP TABLE contacts; --")))
        #expect(parameters.contains(.time(now)))
        #expect(sql.contains("$1::text"))
        // now() is one parameter however often it is used
        let twice = try expr("now() > contact.first_seen_at and count(\"A\", within: \"1d\") == 0", scope: .contact)
        let compiled = SQLCompiler.compile(twice, now: now)
        #expect(compiled.parameters.filter { $0 == .time(now) }.count == 1)
        let offset = SQLCompiler.compile(twice, now: now, options: SQLCompilerOptions(firstParameterIndex: 5))
        #expect(offset.sql.contains("$5") && !offset.sql.contains("$1::"))
    }
}
