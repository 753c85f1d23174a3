import Foundation

/// A parameter of a compiled predicate; the caller maps it to its PostgreSQL client's values. Every placeholder
/// in the SQL also carries an explicit cast (`$1::text`, `$2::double precision`, `$3::timestamptz`), so the
/// parameter types need not be declared.
public enum SQLParameter: Sendable, Hashable {
    case text(String)
    case number(Double)
    case bool(Bool)
    case time(Date)
    case null
}

public struct SQLCompilerOptions: Sendable, Hashable {
    /// The `contact_scores.name` that `contact.score` reads (the scoring model's name). Assumption: the
    /// installation's one scoring model is called `engagement`, as in the examples.
    public var scoreName: String
    /// The score's decay half-life in seconds (nil: no decay). The current value is
    /// `value * 0.5 ^ ((now - reference_at) / half_life)`; a contact without a score row has score 0.
    public var scoreHalfLife: Double?
    /// The number of the first placeholder (to embed the predicate in a statement that has parameters already).
    public var firstParameterIndex: Int

    public init(scoreName: String = "engagement", scoreHalfLife: Double? = nil, firstParameterIndex: Int = 1) {
        self.scoreName = scoreName
        self.scoreHalfLife = scoreHalfLife
        self.firstParameterIndex = firstParameterIndex
    }
}

/// Compiles a checked expression to a boolean PostgreSQL predicate over one row of `contacts`. The predicate is
/// never NULL: it is true exactly when `Condition.matches(in:)` is true for the same data.
///
/// Mapping:
/// - `contact.email`, `phone`, `timezone`, `stage`, `first_seen_at`, ... (the columns of `contacts`) read the
///   column; other `contact.X.Y` read `c.attributes -> 'X' -> 'Y'` (jsonb), converted to the type they are used
///   as with a `jsonb_typeof` guard (a value of another type is NULL, as in the evaluator; strings are times only
///   when they are strict ISO-8601);
/// - `contact.score` is the decayed `contact_scores` value (see `SQLCompilerOptions`), `has_tag` is
///   `= ANY(c.tags)`, `in_segment` is `EXISTS` in `segment_memberships`;
/// - `count`/`sum` are correlated subqueries on `events` (`occurred_at >= now - within`); `compileScan` turns
///   them (and the score and `in_segment`) into joins instead, for evaluating many contacts at once;
/// - every comparison is wrapped so NULL becomes false (`COALESCE(a < b, false)`), `x == null` is `IS NULL`
///   (JSON `null` counts as null), strings compare with `COLLATE "C"` (bytes, as the evaluator does);
/// - `now()` is a parameter (business time comes from the installation clock, never from SQL's `now()`);
/// - `event.*` outside `count`/`sum` reads `event` (parameters), or NULL when no event is given.
public enum SQLCompiler {
    public static func compile(_ expression: Condition, contactAlias: String = "c", now: Date,
                               event: ExpressionEvent? = nil,
                               options: SQLCompilerOptions = SQLCompilerOptions()) -> (sql: String, parameters: [SQLParameter]) {
        checkAlias(contactAlias)
        var builder = SQLBuilder(contact: contactAlias, now: now, event: event, options: options)
        let fragment = builder.compile(expression.root, events: .top)
        return (builder.asPredicate(fragment), builder.parameters)
    }

    /// The same predicate for evaluating many contacts at once (a segment over all contacts or a large id range):
    /// `count`/`sum` become LEFT JOINs of events pre-aggregated per contact, `contact.score` and `in_segment`
    /// LEFT JOINs of `contact_scores` and `segment_memberships`, so the cost is a few scans and hash joins
    /// instead of one index probe per contact and subquery. Use `compile` for a handful of contacts.
    ///
    /// `joins` goes right after `FROM contacts <contactAlias>` (it may be empty); `predicate` is never NULL and has
    /// the same value as `compile`'s for every contact. A `count`/`sum` whose `where:` reads the contact keeps the
    /// correlated form. Identical aggregates share one join (a `count` and `sum`s with the same event name, window
    /// and filter share one aggregate), and so do repeated `contact.score` and `in_segment("x")`. When the whole
    /// condition is a conjunction with `in_segment("s")`, the aggregates are computed for the members of `s` only
    /// (the condition is false for everyone else): for a small segment, index probes instead of a pass over all
    /// the events.
    ///
    /// `contactRange`: SQL bounds (e.g. placeholders of the enclosing statement) of the contact ids the statement
    /// looks at. Every aggregate is restricted to them, so evaluating an id range costs in proportion to its
    /// events rather than to all events (PostgreSQL does not carry a range condition on `c.id` into the derived
    /// tables by itself). The caller must then restrict `contactAlias.id` to the same range.
    public static func compileScan(_ expression: Condition, contactAlias: String = "c", now: Date,
                                   options: SQLCompilerOptions = SQLCompilerOptions(),
                                   contactRange: SQLContactRange? = nil) -> (joins: String, predicate: String, parameters: [SQLParameter]) {
        checkAlias(contactAlias)
        var builder = SQLBuilder(contact: contactAlias, now: now, event: nil, options: options,
                                 scan: ScanJoins(contactRange: contactRange, condition: expression.root))
        let fragment = builder.compile(expression.root, events: .top)
        let predicate = builder.asPredicate(fragment)
        return (builder.scanJoinsSQL(), predicate, builder.parameters)
    }

    private static func checkAlias(_ contactAlias: String) {
        precondition(!contactAlias.isEmpty && !contactAlias.hasPrefix("nurture_") && contactAlias.unicodeScalars.allSatisfy { Lexer.isIdentifierPart($0) },
                     "contactAlias must be a plain SQL identifier not starting with nurture_ (the subqueries' aliases)")
    }
}

/// A compiled sub-expression and whether it can be NULL.
struct SQLFragment {
    let sql: String
    let nullable: Bool
}

struct SQLBuilder {
    enum EventSource { case top; case row(String) }

    let contact: String
    let now: Date
    let event: ExpressionEvent?
    let options: SQLCompilerOptions
    var parameters: [SQLParameter] = []
    /// Scan mode's joins (nil: `compile`, correlated subqueries only).
    var scan: ScanJoins?
    private var nowPlaceholder: String? = nil
    var aliasCounter = 0

    init(contact: String, now: Date, event: ExpressionEvent?, options: SQLCompilerOptions, scan: ScanJoins? = nil) {
        self.contact = contact
        self.now = now
        self.event = event
        self.options = options
        self.scan = scan
    }

    mutating func parameter(_ value: SQLParameter) -> String {
        parameters.append(value)
        let placeholder = "$\(options.firstParameterIndex + parameters.count - 1)"
        switch value {
        case .text: return "\(placeholder)::text"
        case .number: return "\(placeholder)::double precision"
        case .bool: return "\(placeholder)::boolean"
        case .time: return "\(placeholder)::timestamptz"
        case .null: return placeholder
        }
    }

    mutating func nowSQL() -> String {
        if let p = nowPlaceholder { return p }
        let p = parameter(.time(now))
        nowPlaceholder = p
        return p
    }

    func asPredicate(_ f: SQLFragment) -> String { f.nullable ? "COALESCE(\(f.sql), false)" : f.sql }

    mutating func compile(_ node: TypedNode, events: EventSource) -> SQLFragment {
        switch node {
        case .literal(let v, let type):
            switch v {
            case .null: return SQLFragment(sql: "NULL", nullable: true)
            case .bool(let b): return SQLFragment(sql: b ? "true" : "false", nullable: false)
            case .number(let n): return SQLFragment(sql: parameter(.number(n)), nullable: false)
            case .string(let s): return SQLFragment(sql: parameter(.text(s)), nullable: false)
            case .time(let d): return SQLFragment(sql: parameter(.time(d)), nullable: false)
            default: return valueFragment(v, as: type)
            }
        case .column(let column):
            return SQLFragment(sql: "\(contact).\(column.column)", nullable: true)
        case .score:
            if scans(events) { return scanScore() }
            let name = parameter(.text(options.scoreName))
            let value = scoreValue("nurture_score")
            return SQLFragment(sql: "COALESCE((SELECT \(value) FROM contact_scores nurture_score WHERE nurture_score.contact_id = \(contact).id AND nurture_score.name = \(name)), 0::double precision)", nullable: false)
        case .tags:
            return SQLFragment(sql: "\(contact).tags", nullable: true)
        case .attribute(let path):
            return SQLFragment(sql: jsonPath("\(contact).attributes", path), nullable: true)
        case .eventName:
            switch events {
            case .row(let e): return SQLFragment(sql: "\(e).name", nullable: false)
            case .top: return event.map { SQLFragment(sql: parameter(.text($0.name)), nullable: false) } ?? SQLFragment(sql: "NULL::text", nullable: true)
            }
        case .eventOccurredAt:
            switch events {
            case .row(let e): return SQLFragment(sql: "\(e).occurred_at", nullable: false)
            case .top: return event.map { SQLFragment(sql: parameter(.time($0.occurredAt)), nullable: false) } ?? SQLFragment(sql: "NULL::timestamptz", nullable: true)
            }
        case .eventProperty(let path), .eventContext(let path):
            let isProperty: Bool
            if case .eventProperty = node { isProperty = true } else { isProperty = false }
            switch events {
            case .row(let e): return SQLFragment(sql: jsonPath("\(e).\(isProperty ? "properties" : "context")", path), nullable: true)
            case .top:
                let root = isProperty ? event?.properties : event?.context
                return valueFragment(root?[path: path] ?? .null, as: .unknown)
            }
        case .coerce(let inner, let type):
            let f = compile(inner, events: events)
            return SQLFragment(sql: SQLBuilder.coerceJSON(f.sql, to: type), nullable: true)
        case .not(let inner):
            let f = compile(inner, events: events)
            return SQLFragment(sql: "(NOT \(asPredicate(f)))", nullable: false)
        case .and(let l, let r), .or(let l, let r):
            let a = compile(l, events: events), b = compile(r, events: events)
            let op: String
            if case .and = node { op = "AND" } else { op = "OR" }
            return SQLFragment(sql: "(\(asPredicate(a)) \(op) \(asPredicate(b)))", nullable: false)
        case .compare(let op, let l, let r, let type):
            var a = compile(l, events: events), b = compile(r, events: events)
            if type == .unknown {
                a = SQLFragment(sql: "NULLIF(\(a.sql), 'null'::jsonb)", nullable: true)
                b = SQLFragment(sql: "NULLIF(\(b.sql), 'null'::jsonb)", nullable: true)
                // Unknown vs unknown: only == and != are possible.
            }
            let collate = type == .string && op != .equal && op != .notEqual ? " COLLATE \"C\"" : ""
            let sql = "(\(a.sql)\(collate) \(op.sql) \(b.sql))"
            return SQLFragment(sql: sql, nullable: a.nullable || b.nullable)
        case .isNull(let inner, let type, let negated):
            let f = compile(inner, events: events)
            if !f.nullable { return SQLFragment(sql: negated ? "true" : "false", nullable: false) }
            if type == .unknown {
                let sql = negated ? "(\(f.sql) IS NOT NULL AND jsonb_typeof(\(f.sql)) <> 'null')"
                                  : "(\(f.sql) IS NULL OR jsonb_typeof(\(f.sql)) = 'null')"
                return SQLFragment(sql: sql, nullable: false)
            }
            return SQLFragment(sql: "(\(f.sql) IS \(negated ? "NOT " : "")NULL)", nullable: false)
        case .arithmetic(let kind, let l, let r):
            let a = compile(l, events: events), b = compile(r, events: events)
            let sql: String
            switch kind {
            case .numberPlus: sql = "(\(a.sql) + \(b.sql))"
            case .numberMinus: sql = "(\(a.sql) - \(b.sql))"
            case .timePlusDuration: sql = "(\(a.sql) + \(b.sql) * interval '1 second')"
            case .timeMinusDuration: sql = "(\(a.sql) - \(b.sql) * interval '1 second')"
            case .durationPlusTime: sql = "(\(b.sql) + \(a.sql) * interval '1 second')"
            case .timeMinusTime: sql = "extract(epoch from (\(a.sql) - \(b.sql)))::double precision"
            }
            return SQLFragment(sql: sql, nullable: a.nullable || b.nullable)
        case .negate(let inner):
            let f = compile(inner, events: events)
            return SQLFragment(sql: "(- \(f.sql))", nullable: f.nullable)
        case .count(let spec):
            if scans(events) && !(spec.filter?.readsContact ?? false) { return scanHistory(spec, sumOf: nil) }
            let (alias, conditions) = correlatedHistory(spec, events: events)
            return SQLFragment(sql: "(SELECT count(*)::double precision FROM events \(alias) WHERE \(conditions))", nullable: false)
        case .sum(let spec):
            if scans(events) && !(spec.filter?.readsContact ?? false) { return scanHistory(spec, sumOf: spec.property ?? "") }
            let (alias, conditions) = correlatedHistory(spec, events: events)
            return SQLFragment(sql: "(SELECT COALESCE(sum(\(numericProperty(alias, spec.property ?? ""))), 0::double precision) FROM events \(alias) WHERE \(conditions))", nullable: false)
        case .inSegment(let segment):
            if scans(events) { return scanMembership(segment) }
            let p = parameter(.text(segment))
            return SQLFragment(sql: "EXISTS (SELECT 1 FROM segment_memberships nurture_membership WHERE nurture_membership.contact_id = \(contact).id AND nurture_membership.segment = \(p))", nullable: false)
        case .hasTag(let tag):
            let p = parameter(.text(tag))
            return SQLFragment(sql: "COALESCE(\(p) = ANY(\(contact).tags), false)", nullable: false)
        case .now:
            return SQLFragment(sql: nowSQL(), nullable: false)
        }
    }

    /// A correlated subquery's events alias and WHERE: the contact's events that `spec` counts.
    private mutating func correlatedHistory(_ spec: HistorySpec, events: EventSource) -> (String, String) {
        aliasCounter += 1
        let alias = "nurture_event\(aliasCounter)"
        let conditions = ["\(alias).contact_id = \(contact).id"] + historyConditions(spec, alias: alias)
        return (alias, conditions.joined(separator: " AND "))
    }

    /// The conditions on the events row `alias` (name, window, `where:`) that `spec` counts, whoever's they are.
    mutating func historyConditions(_ spec: HistorySpec, alias: String) -> [String] {
        var conditions: [String] = []
        if let name = spec.eventName { conditions.append("\(alias).name = \(parameter(.text(name)))") }
        if let within = spec.within {
            conditions.append("\(alias).occurred_at >= \(nowSQL()) - \(parameter(.number(within))) * interval '1 second'")
        }
        if let filter = spec.filter {
            conditions.append(asPredicate(compile(filter, events: .row(alias))))
        }
        return conditions
    }

    /// The number `property` of the events row `alias`, NULL when it is missing or not a JSON number.
    mutating func numericProperty(_ alias: String, _ property: String) -> String {
        let p = parameter(.text(property))
        return "CASE WHEN jsonb_typeof(\(alias).properties -> \(p)) = 'number' THEN (\(alias).properties ->> \(p))::double precision END"
    }

    /// The decayed score of the `contact_scores` row `alias` (NULL when there is no row).
    mutating func scoreValue(_ alias: String) -> String {
        guard let halfLife = options.scoreHalfLife else { return "\(alias).value" }
        let n = nowSQL()
        let h = parameter(.number(halfLife))
        return "\(alias).value * power(0.5::double precision, extract(epoch from (\(n) - \(alias).reference_at))::double precision / \(h))"
    }

    private mutating func jsonPath(_ base: String, _ path: [String]) -> String {
        var sql = base
        for key in path { sql += " -> \(parameter(.text(key)))" }
        return "(\(sql))"
    }

    /// A constant (e.g. a property of the given triggering event) as SQL of the static type.
    private mutating func valueFragment(_ v: Value, as type: ExpressionType) -> SQLFragment {
        if type == .unknown {
            if v.isNull { return SQLFragment(sql: "NULL::jsonb", nullable: true) }
            return SQLFragment(sql: "(\(parameter(.text(v.jsonText)))::jsonb)", nullable: false)
        }
        switch v {
        case .number(let n): return SQLFragment(sql: parameter(.number(n)), nullable: false)
        case .string(let s): return SQLFragment(sql: parameter(.text(s)), nullable: false)
        case .bool(let b): return SQLFragment(sql: b ? "true" : "false", nullable: false)
        case .time(let d): return SQLFragment(sql: parameter(.time(d)), nullable: false)
        default: return SQLFragment(sql: "NULL", nullable: true)
        }
    }

    /// jsonb -> the SQL type of `type`, NULL when the JSON value is of another type (mirrors `Evaluator.coerce`).
    static func coerceJSON(_ x: String, to type: ExpressionType) -> String {
        switch type {
        case .bool: return "(CASE WHEN jsonb_typeof(\(x)) = 'boolean' THEN (\(x) #>> '{}')::boolean END)"
        case .number: return "(CASE WHEN jsonb_typeof(\(x)) = 'number' THEN (\(x) #>> '{}')::double precision END)"
        case .string: return "(CASE WHEN jsonb_typeof(\(x)) = 'string' THEN \(x) #>> '{}' END)"
        case .time:
            // Strict ISO-8601 only (same as ExpressionTime.parse); nested CASEs so no cast runs on other text.
            let s = "(\(x) #>> '{}')"
            let pattern = ExpressionTime.sqlPattern.replacingOccurrences(of: "'", with: "''")
            let dayOK = "substr(\(s), 9, 2)::int <= extract(day from (date_trunc('month', (substr(\(s), 1, 7) || '-01')::date) + interval '1 month - 1 day'))"
            return "(CASE WHEN jsonb_typeof(\(x)) = 'string' AND \(s) ~ '\(pattern)' THEN CASE WHEN \(dayOK) THEN "
                + "(CASE WHEN length(\(s)) = 10 THEN \(s) || 'T00:00:00Z' ELSE \(s) END)::timestamptz END END)"
        default: return x
        }
    }
}
