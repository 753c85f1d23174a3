import Domain
import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Deterministic, so a failure reproduces from its seed.
private typealias SeededRandom = SplitMix64

private let now = Value.parseTime("2026-11-22T12:00:00Z")!
private let day = 86_400.0
private let halfLife = 30 * day
private let eventNames = ["Order Completed", "Page Viewed", "Email Opened", "Signed Up"]

private struct GeneratedContact {
    var id: Int64 = 0
    var columns: [String: Value] = [:]   // email, stage, first_seen_at, last_seen_at, first_utm_medium
    var attributes: [String: Value] = [:]
    var tags: [String] = []
    var score: (value: Double, reference: Date)?
    var segments: Set<String> = []
    var events: [ExpressionEvent] = []

    /// The contact as the runtime hands it to the evaluator: attributes, then the columns over them.
    var object: Value {
        var o = attributes
        for (k, v) in columns where !v.isNull { o[k] = v }
        o["tags"] = .array(tags.map { .string($0) })
        if let s = score { o["score"] = .number(s.value * pow(0.5, (now.timeIntervalSince1970 - s.reference.timeIntervalSince1970) / halfLife)) }
        return .object(o)
    }
}

private func sqlValue(_ p: SQLParameter) -> PostgresValue {
    switch p {
    case .text(let s): return .text(s)
    case .number(let n): return .double(n)
    case .bool(let b): return .bool(b)
    case .time(let d): return .timestamp(d)
    case .null: return .null
    }
}

private struct DataGenerator {
    var rng: SeededRandom

    mutating func pick<T>(_ xs: [T]) -> T { xs[Int.random(in: 0..<xs.count, using: &rng)] }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &rng) }
    mutating func pastTime(maxDays: Int) -> Date { now.addingTimeInterval(-Double(int(0...(maxDays * 86_400)))) }

    mutating func contact() -> GeneratedContact {
        var c = GeneratedContact()
        c.columns["email"] = chance(0.8) ? .string("user\(int(0...9999))@example.com") : .null
        c.columns["stage"] = chance(0.85) ? .string(pick(["subscriber", "lead", "customer", "at_risk", "Lead"])) : .null
        c.columns["first_seen_at"] = chance(0.9) ? .time(pastTime(maxDays: 300)) : .null
        c.columns["last_seen_at"] = chance(0.9) ? .time(pastTime(maxDays: 100)) : .null
        c.columns["first_utm_medium"] = chance(0.7) ? .string(pick(["organic", "cpc", "email"])) : .null
        let plans: [Value?] = [.string("pro"), .string("free"), .string("Pro"), .string("é"), .number(5), .null, nil]
        if let plan = pick(plans) { c.attributes["plan"] = plan }
        let ages: [Value?] = [.number(Double(int(18...80))), .number(Double(int(18...80))), .string("42"), .null, nil]
        if let age = pick(ages) { c.attributes["age"] = age }
        let ltvs: [Value?] = [.number(Double(int(0...400)) / 2), .bool(true), nil]
        if let ltv = pick(ltvs) { c.attributes["ltv"] = ltv }
        let vips: [Value?] = [.bool(true), .bool(false), .string("true"), .number(1), nil]
        if let vip = pick(vips) { c.attributes["vip"] = vip }
        let signups: [Value?] = [.string(Value.iso8601(pastTime(maxDays: 500))), .string("2026-0\(int(1...9))-1\(int(0...9))"),
                                 .string("2026-03-01T10:00:00+02:00"), .string("2026-02-30"), .string("not a date"),
                                 .string("2026-01-01T10:00:00"), .number(20260101), nil]
        if let signup = pick(signups) { c.attributes["signup"] = signup }
        if chance(0.6) { c.attributes["address"] = .object(["city": .string(pick(["Paris", "Berlin", "paris"]))]) }
        c.tags = ["newsletter", "vip", "beta", "loyal-customer"].filter { _ in chance(0.4) }
        if chance(0.7) { c.score = (Double(int(0...100)), pastTime(maxDays: 60)) }
        if chance(0.3) { c.segments.insert("frequent-buyers") }
        if chance(0.2) { c.segments.insert("dormant") }
        for _ in 0..<int(0...12) { c.events.append(event(at: pastTime(maxDays: 400))) }
        return c
    }

    mutating func event(at time: Date) -> ExpressionEvent {
        var properties: [String: Value] = [:]
        let totals: [Value?] = [.number(Double(int(0...200))), .number(Double(int(0...200)) + 0.5), .string("12"), .null, nil]
        if let total = pick(totals) { properties["total"] = total }
        if chance(0.6) { properties["path"] = .string(pick(["/pricing", "/", "/blog"])) }
        let context: Value = .object(chance(0.7) ? ["device": .string(pick(["mobile", "desktop"]))] : [:])
        return ExpressionEvent(name: pick(eventNames), properties: .object(properties), context: context, occurredAt: time)
    }
}

/// Random well-typed conditions from a small grammar covering every construct and the null corners.
private struct ConditionGenerator {
    var data: DataGenerator
    var allowEvent = false

    mutating func bool(_ depth: Int) -> String {
        if depth <= 0 || data.chance(0.35) { return leaf(depth) }
        switch data.int(0...3) {
        case 0: return "not \(bool(depth - 1))"
        case 1: return "(\(bool(depth - 1)) and \(bool(depth - 1)))"
        case 2: return "(\(bool(depth - 1)) or \(bool(depth - 1)))"
        default: return "(\(bool(depth - 1)))"
        }
    }

    /// `in_segment("...") and X`, in either order.
    mutating func guarded(_ depth: Int) -> String {
        let segment = "in_segment(\"\(data.pick(["frequent-buyers", "dormant"]))\")"
        let rest = bool(depth - 1)
        return data.chance(0.5) ? "\(segment) and \(rest)" : "\(rest) and \(segment)"
    }

    mutating func op() -> String { data.pick(["==", "!=", "<", "<=", ">", ">="]) }

    mutating func leaf(_ depth: Int) -> String {
        switch data.int(0...13) {
        case 0, 1: return "\(number(depth)) \(op()) \(number(depth))"
        case 2: return "\(stringSide()) \(op()) \(data.pick(["\"pro\"", "\"Pro\"", "\"lead\"", "\"Paris\"", "\"organic\"", "\"é\"", "\"\""]))"
        case 3, 4: return "\(time(depth)) \(op()) \(time(depth))"
        case 5: return "now() - \(data.pick(["contact.first_seen_at", "contact.last_seen_at", "contact.signup"])) \(op()) duration(\"\(data.int(1...200))d\")"
        case 6: return "\(anyName()) \(data.pick(["==", "!="])) null"
        case 7: return "\(data.pick(["contact.plan", "contact.age", "contact.address.city", "contact.vip"])) \(data.pick(["==", "!="])) \(data.pick(["contact.plan", "contact.age", "contact.address", "contact.ltv"]))"
        case 8: return data.pick(["contact.vip", "contact.vip == true", "contact.vip != false", "not contact.vip"])
        case 9: return "has_tag(\"\(data.pick(["newsletter", "vip", "beta", "loyal-customer", "none"]))\")"
        case 10: return "in_segment(\"\(data.pick(["frequent-buyers", "dormant", "none"]))\")"
        case 11: return data.pick(["true", "false", "null == null", "contact.tags != null"])
        case 12 where allowEvent: return topEvent()
        default: return "\(number(depth)) \(op()) \(data.int(-2...60))"
        }
    }

    mutating func anyName() -> String {
        data.pick(["contact.email", "contact.stage", "contact.first_seen_at", "contact.plan", "contact.age", "contact.vip",
                   "contact.signup", "contact.address.city", "contact.address", "contact.missing", "contact.first_utm_medium"])
    }

    mutating func stringSide() -> String {
        data.pick(["contact.email", "contact.stage", "contact.first_utm_medium", "contact.plan", "contact.address.city"])
    }

    mutating func number(_ depth: Int) -> String {
        switch data.int(0...9) {
        case 0: return "\(data.int(-5...100))"
        case 1: return "\(data.int(0...100)).5"
        case 2: return "contact.score"
        case 3: return data.pick(["contact.age", "contact.ltv", "contact.plan"])
        case 4, 5: return count(depth)
        case 6: return "sum(\"\(data.pick(eventNames))\", \"total\"\(data.chance(0.6) ? ", within: \"\(data.int(1...400))d\"" : "")\(data.chance(0.3) ? ", where: \(eventCondition())" : ""))"
        case 7 where depth > 0: return "(\(number(depth - 1)) + \(number(depth - 1)))"
        case 8 where depth > 0: return "(\(number(depth - 1)) - \(number(depth - 1)))"
        case 9 where depth > 0: return "-\(number(depth - 1))"
        default: return "\(data.int(0...20))"
        }
    }

    mutating func count(_ depth: Int) -> String {
        let name = data.chance(0.2) ? "*" : data.pick(eventNames)
        var args = "\"\(name)\""
        if data.chance(0.7) { args += ", within: \"\(data.int(1...400))d\"" }
        if data.chance(0.5) { args += ", where: \(eventCondition())" }
        return "count(\(args))"
    }

    mutating func eventCondition() -> String {
        switch data.int(0...8) {
        case 0: return "event.properties.total > \(data.int(0...200))"
        case 1: return "event.properties.path == \"/pricing\""
        case 2: return "event.context.device \(data.pick(["==", "!="])) \"mobile\""
        case 3: return "event.name == \"\(data.pick(eventNames))\""
        case 4: return "event.properties.total == null"
        case 5: return "(event.properties.path == \"/\" or event.properties.total <= \(data.int(0...200)))"
        case 6: return "not event.properties.path == \"/blog\""
        case 7: return "event.occurred_at > now() - duration(\"\(data.int(1...100))d\")"
        default: return "event.properties.total < contact.age"
        }
    }

    mutating func time(_ depth: Int) -> String {
        switch data.int(0...7) {
        case 0: return "now()"
        case 1: return "contact.first_seen_at"
        case 2: return "contact.last_seen_at"
        case 3: return "contact.signup"
        case 4: return Value.iso8601(data.pastTime(maxDays: 400))
        case 5: return "\"2026-0\(data.int(1...9))-0\(data.int(1...9))\""
        case 6 where depth > 0: return "(\(time(depth - 1)) \(data.pick(["+", "-"])) duration(\"\(data.int(1...90))d\"))"
        default: return "(now() - duration(\"\(data.int(1...300))d\"))"
        }
    }

    mutating func topEvent() -> String {
        data.pick(["event.name == \"Order Completed\"", "event.properties.total > 50", "event.properties.path == \"/pricing\"",
                   "event.context.device == null", "event.occurred_at > contact.first_seen_at"])
    }
}

@Suite struct ExpressionSQLAgreementTests {
    /// For ~2000 random conditions and ~300 random contacts, both SQL predicates (`compile` and `compileScan`) and
    /// the evaluator agree on every pair.
    @Test func sqlAgreesWithEvaluator() throws {
        let database = try TestDatabase.create(prefix: "expr")
        defer { database.drop() }
        let db = try database.connect()
        defer { db.close() }
        _ = try Migrator().migrate(db)

        // NURTURE_EXPRESSION_SEED=N explores other data and conditions; the default keeps runs reproducible.
        let seed = ProcessInfo.processInfo.environment["NURTURE_EXPRESSION_SEED"].flatMap { UInt64($0) } ?? 20_261_122
        var data = DataGenerator(rng: SeededRandom(seed: seed))
        var contacts = (0..<300).map { _ in data.contact() }
        try db.transaction { tx in
            for i in contacts.indices {
                let c = contacts[i]
                let row = try tx.query("""
                    INSERT INTO contacts (email, stage, first_seen_at, last_seen_at, first_utm_medium, attributes, tags, created_at, updated_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING id
                    """, [.init(c.columns["email"]?.stringValue), .init(c.columns["stage"]?.stringValue),
                          c.columns["first_seen_at"].flatMap { if case .time(let d) = $0 { return .timestamp(d) }; return nil } ?? .null,
                          c.columns["last_seen_at"].flatMap { if case .time(let d) = $0 { return .timestamp(d) }; return nil } ?? .null,
                          .init(c.columns["first_utm_medium"]?.stringValue), .jsonb(Value.object(c.attributes).jsonText),
                          .textArray(c.tags), .timestamp(now)])
                let id = row.first![0].int!
                contacts[i].id = id
                if let s = c.score {
                    try tx.execute("INSERT INTO contact_scores (contact_id, name, value, reference_at) VALUES ($1, 'engagement', $2, $3)",
                                   [.int(id), .double(s.value), .timestamp(s.reference)])
                }
                for segment in c.segments {
                    try tx.execute("INSERT INTO segment_memberships (segment, contact_id, entered_at) VALUES ($1, $2, $3)",
                                   [.text(segment), .int(id), .timestamp(now)])
                }
                for (n, e) in c.events.enumerated() {
                    try tx.execute("""
                        INSERT INTO events (contact_id, message_id, type, name, properties, context, occurred_at, received_at)
                        VALUES ($1, $2, 'track', $3, $4, $5, $6, $6)
                        """, [.int(id), .text("m-\(id)-\(n)"), .text(e.name), .jsonb(e.properties.jsonText), .jsonb(e.context.jsonText),
                              .timestamp(e.occurredAt)])
                }
            }
        }
        // A contact with a score but another scoring model's name: score 0 in both.
        try db.execute("INSERT INTO contact_scores (contact_id, name, value, reference_at) SELECT id, 'other', 99, $1 FROM contacts WHERE id % 7 = 0 ON CONFLICT DO NOTHING", [.timestamp(now)])

        let contexts: [Int64: (Value, InMemoryHistory)] = Dictionary(uniqueKeysWithValues: contacts.map {
            ($0.id, ($0.object, InMemoryHistory(events: $0.events, segments: $0.segments)))
        })
        var generator = ConditionGenerator(data: DataGenerator(rng: SeededRandom(seed: seed &+ 7)))
        var ranges = DataGenerator(rng: SeededRandom(seed: seed &+ 11))
        let ids = contacts.map(\.id)
        var failures: [String] = []
        var mixed = 0
        // How many conditions took each scan-mode path: aggregate joins, aggregates guarded by an in_segment
        // conjunct, correlated fallback (a `where:` reading the contact).
        var aggregated = 0, guarded = 0, fallback = 0
        let total = 2000
        let options = SQLCompilerOptions(scoreName: "engagement", scoreHalfLife: halfLife)

        /// Runs one compiled predicate over the contacts with ids in `range` and compares each row with the
        /// evaluator (with `event`). Returns how many contacts matched, nil when it disagreed or failed.
        func agrees(_ mode: String, _ source: String, _ condition: Condition, event: ExpressionEvent?, query: String,
                    _ parameters: [PostgresValue], range: ClosedRange<Int64>) -> Int? {
            let rows: [PostgresRow]
            do {
                rows = try db.query(query, parameters).rows
            } catch {
                failures.append("\(mode) SQL failed for \(source): \(error)\n\(query)")
                return nil
            }
            let expectedIDs = ids.filter { range.contains($0) }
            guard rows.map({ $0[0].int! }) == expectedIDs else {
                failures.append("\(mode) SQL returned \(rows.count) rows for \(expectedIDs.count) contacts: \(source)\n  sql: \(query)")
                return nil
            }
            var trues = 0
            for row in rows {
                let id = row[0].int!
                guard let sqlResult = row[1].bool else {
                    failures.append("\(mode) SQL gave NULL for contact \(id): \(source)")
                    return nil
                }
                let (contact, history) = contexts[id]!
                let expected = condition.matches(in: EvaluationContext(contact: contact, event: event, now: now, history: history))
                if expected { trues += 1 }
                if expected != sqlResult {
                    failures.append("\(mode): contact \(id): evaluator \(expected), SQL \(sqlResult): \(source)\n  contact: \(contact.jsonText)\n  sql: \(query)")
                    return nil
                }
            }
            return trues
        }

        for n in 0..<total {
            let withEvent = n % 10 == 0
            generator.allowEvent = withEvent
            // One condition in eight is guarded by a segment (scan mode then aggregates for its members only).
            let source = n % 8 == 5 ? generator.guarded(3) : generator.bool(3)
            let condition: Condition
            do {
                condition = try Condition(source, scope: withEvent ? .event : .contact)
            } catch {
                failures.append("generated condition does not check: \(source): \(error)")
                continue
            }
            let event = withEvent ? generator.data.event(at: generator.data.pastTime(maxDays: 3)) : nil

            // Correlated (per-contact) mode, over every contact.
            let (sql, parameters) = SQLCompiler.compile(condition, contactAlias: "c", now: now, event: event, options: options)
            if let trues = agrees("compile", source, condition, event: event, query: "SELECT c.id, (\(sql)) FROM contacts c ORDER BY c.id",
                                  parameters.map(sqlValue), range: ids.first!...ids.last!),
               trues > 0 && trues < ids.count {
                mixed += 1
            }

            // Scan mode (no triggering event: `event.*` is null), over every contact half of the time and over a
            // random id range otherwise, with the aggregates restricted to that range ($1, $2).
            var scanOptions = options
            scanOptions.firstParameterIndex = 3
            let scan = SQLCompiler.compileScan(condition, contactAlias: "c", now: now, options: scanOptions,
                                               contactRange: SQLContactRange(lower: "$1::int8", upper: "$2::int8"))
            if scan.joins.contains("nurture_agg") { aggregated += 1 }
            if scan.joins.contains("nurture_guard") { guarded += 1 }
            if scan.predicate.contains("nurture_event") { fallback += 1 }
            var range = ids.first!...ids.last!
            if ranges.chance(0.5) {
                let a = ranges.pick(ids), b = ranges.pick(ids)
                range = min(a, b)...max(a, b)
            }
            _ = agrees("compileScan", source, condition, event: nil,
                       query: "SELECT c.id, (\(scan.predicate)) FROM contacts c \(scan.joins) WHERE c.id BETWEEN $1 AND $2 ORDER BY c.id",
                       [.int(range.lowerBound), .int(range.upperBound)] + scan.parameters.map(sqlValue), range: range)
            if failures.count >= 10 { break }
        }
        #expect(failures.isEmpty, "\(failures.count) disagreements:\n\(failures.joined(separator: "\n"))")
        // The data and the grammar are rich enough that many conditions split the contacts.
        #expect(mixed > total / 4, "only \(mixed) of \(total) conditions split the contacts")
        #expect(aggregated > total / 5 && guarded > total / 40 && fallback > 0, "scan paths: \(aggregated) aggregated, \(guarded) guarded, \(fallback) fallback")
        print("expression agreement (seed \(seed)): \(total) conditions x \(contacts.count) contacts, both modes, \(mixed) split the contacts; "
              + "scan mode: \(aggregated) with aggregate joins, \(guarded) guarded by in_segment, \(fallback) with correlated fallback")
    }

    /// The acceptance examples' segment conditions compile and run.
    @Test func exampleSegmentsRun() throws {
        let database = try TestDatabase.create(prefix: "expr")
        defer { database.drop() }
        let db = try database.connect()
        defer { db.close() }
        _ = try Migrator().migrate(db)
        for source in [
            #"contact.email != null and has_tag("newsletter")"#,
            #"sum("Order Completed", "total", within: "365d") > 50"#,
            #"count("Order Completed", within: "30d") >= 2"#,
            #"in_segment("frequent-buyers") and contact.score > 40 and sum("Order Completed", "total", within: "365d") > 70"#,
            #"has_tag("newsletter") and count("Email Opened", within: "60d") == 0 and contact.first_seen_at < now() - duration("60d")"#,
        ] {
            let condition = try Condition(source, scope: .contact)
            let (sql, parameters) = SQLCompiler.compile(condition, now: now)
            _ = try db.query("SELECT c.id FROM contacts c WHERE \(sql)", parameters.map(sqlValue))
            let scan = SQLCompiler.compileScan(condition, now: now)
            _ = try db.query("SELECT c.id FROM contacts c \(scan.joins) WHERE \(scan.predicate)", scan.parameters.map(sqlValue))
        }
    }
}
