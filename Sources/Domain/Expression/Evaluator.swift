import Foundation

/// One event as the expression language sees it: the triggering event, or one of the contact's past events.
public struct ExpressionEvent: Sendable, Hashable {
    public var name: String
    public var properties: Value
    public var context: Value
    public var occurredAt: Date

    public init(name: String, properties: Value = .object([:]), context: Value = .object([:]), occurredAt: Date) {
        self.name = name
        self.properties = properties
        self.context = context
        self.occurredAt = occurredAt
    }
}

/// What `count`, `sum` and `in_segment` read. Tests pass an `InMemoryHistory`; the runtime backs it with
/// PostgreSQL. All methods concern the one contact being evaluated.
public protocol ExpressionHistory {
    /// The contact's events named `name` (nil: any name) that occurred at or after `since` (nil: ever).
    func events(named name: String?, since: Date?) -> [ExpressionEvent]
    /// How many such events there are (the default loads them; override with a `count(*)`).
    func count(named name: String?, since: Date?) -> Int
    /// Whether the contact is currently a member of `segment`.
    func isMember(ofSegment segment: String) -> Bool
}

extension ExpressionHistory {
    public func count(named name: String?, since: Date?) -> Int { events(named: name, since: since).count }
}

/// A history held in memory (tests, previews, and any caller that already loaded the events).
public struct InMemoryHistory: ExpressionHistory, Sendable {
    public var events: [ExpressionEvent]
    public var segments: Set<String>

    public init(events: [ExpressionEvent] = [], segments: Set<String> = []) {
        self.events = events
        self.segments = segments
    }

    public func events(named name: String?, since: Date?) -> [ExpressionEvent] {
        events.filter { e in
            (name == nil || e.name.utf8.elementsEqual(name!.utf8)) && (since == nil || e.occurredAt >= since!)
        }
    }

    public func isMember(ofSegment segment: String) -> Bool { segments.contains(segment) }
}

/// Everything an evaluation reads.
public struct EvaluationContext {
    /// The contact as one object: attributes merged with the derived ones (`email`, `stage`, `tags` as an array of
    /// strings, `score` as a number (the decayed value of the scoring model), `first_seen_at` as a time or ISO
    /// string, ...). Where a column and an attribute share a name, the column's value must win (as in SQL).
    public var contact: Value
    /// The triggering event, if any (nil: `event.*` is null).
    public var event: ExpressionEvent?
    /// Business time, from the installation clock (rounded to microseconds, PostgreSQL's precision).
    public var now: Date
    public var history: any ExpressionHistory

    public init(contact: Value, event: ExpressionEvent? = nil, now: Date, history: any ExpressionHistory = InMemoryHistory()) {
        self.contact = contact
        self.event = event
        self.now = Date(timeIntervalSince1970: (now.timeIntervalSince1970 * 1_000_000).rounded() / 1_000_000)
        self.history = history
    }
}

extension Condition {
    /// The value of the expression (`.bool`, or `.null` only for a bare unknown attribute that is not a boolean).
    public func evaluate(in context: EvaluationContext) -> Value {
        Evaluator(context: context).eval(root, event: context.event)
    }

    /// True exactly when the condition holds (null counts as false).
    public func matches(in context: EvaluationContext) -> Bool {
        if case .bool(true) = evaluate(in: context) { return true }
        return false
    }
}

/// Walks the typed tree. Semantics (the SQL compiler mirrors each rule):
/// - a missing attribute, or one whose value is not of the type it is used as, is null;
/// - a comparison involving null is false, except `x == null` / `x != null`;
/// - `and`/`or`/`not` treat null as false; arithmetic with null gives null;
/// - strings compare by UTF-8 bytes (SQL: `COLLATE "C"`).
struct Evaluator {
    let context: EvaluationContext

    func eval(_ node: TypedNode, event: ExpressionEvent?) -> Value {
        switch node {
        case .literal(let v, _): return v
        case .column(let column): return Evaluator.coerce(context.contact[column.key] ?? .null, to: column.type)
        case .score:
            if case .number(let n)? = context.contact["score"] { return .number(n) }
            return .number(0)
        case .tags:
            if case .array(let a)? = context.contact["tags"] { return .array(a) }
            return .array([])
        case .attribute(let path): return context.contact[path: path] ?? .null
        case .eventName: return event.map { .string($0.name) } ?? .null
        case .eventOccurredAt: return event.map { .time($0.occurredAt) } ?? .null
        case .eventProperty(let path): return event?.properties[path: path] ?? .null
        case .eventContext(let path): return event?.context[path: path] ?? .null
        case .coerce(let inner, let type): return Evaluator.coerce(eval(inner, event: event), to: type)
        case .not(let inner): return .bool(!isTrue(eval(inner, event: event)))
        case .and(let l, let r): return .bool(isTrue(eval(l, event: event)) && isTrue(eval(r, event: event)))
        case .or(let l, let r): return .bool(isTrue(eval(l, event: event)) || isTrue(eval(r, event: event)))
        case .compare(let op, let l, let r, let type):
            return .bool(Evaluator.compare(op, eval(l, event: event), eval(r, event: event), type))
        case .isNull(let inner, _, let negated):
            let v = eval(inner, event: event)
            return .bool(v.isNull != negated)
        case .arithmetic(let kind, let l, let r):
            let a = eval(l, event: event), b = eval(r, event: event)
            switch (kind, a, b) {
            case (.numberPlus, .number(let x), .number(let y)): return .number(x + y)
            case (.numberMinus, .number(let x), .number(let y)): return .number(x - y)
            case (.timePlusDuration, .time(let t), .number(let s)): return .time(t.addingTimeInterval(s))
            case (.timeMinusDuration, .time(let t), .number(let s)): return .time(t.addingTimeInterval(-s))
            case (.durationPlusTime, .number(let s), .time(let t)): return .time(t.addingTimeInterval(s))
            case (.timeMinusTime, .time(let t), .time(let u)): return .number(t.timeIntervalSince1970 - u.timeIntervalSince1970)
            default: return .null
            }
        case .negate(let inner):
            if case .number(let n) = eval(inner, event: event) { return .number(-n) }
            return .null
        case .count(let spec):
            let since = spec.within.map { context.now.addingTimeInterval(-$0) }
            guard let filter = spec.filter else { return .number(Double(context.history.count(named: spec.eventName, since: since))) }
            var n = 0
            for e in context.history.events(named: spec.eventName, since: since) where isTrue(eval(filter, event: e)) { n += 1 }
            return .number(Double(n))
        case .sum(let spec):
            let since = spec.within.map { context.now.addingTimeInterval(-$0) }
            var total = 0.0
            for e in context.history.events(named: spec.eventName, since: since) {
                guard case .number(let n)? = e.properties[spec.property ?? ""] else { continue }
                if let filter = spec.filter, !isTrue(eval(filter, event: e)) { continue }
                total += n
            }
            return .number(total)
        case .inSegment(let segment): return .bool(context.history.isMember(ofSegment: segment))
        case .hasTag(let tag):
            guard case .array(let tags)? = context.contact["tags"] else { return .bool(false) }
            return .bool(tags.contains { if case .string(let t) = $0 { return t.utf8.elementsEqual(tag.utf8) }; return false })
        case .now: return .time(context.now)
        }
    }

    @inline(__always) private func isTrue(_ v: Value) -> Bool {
        if case .bool(true) = v { return true }
        return false
    }

    /// A dynamic value seen as `type`; a value of another type is null. ISO-8601 strings are times; times seen as
    /// strings print as ISO-8601 (how they are stored in JSON).
    static func coerce(_ v: Value, to type: ExpressionType) -> Value {
        switch (type, v) {
        case (.bool, .bool), (.number, .number), (.string, .string), (.time, .time): return v
        case (.string, .time(let d)): return .string(Value.iso8601(d))
        case (.time, .string(let s)): return ExpressionTime.parse(s).map { .time($0) } ?? .null
        case (.unknown, _): return v
        default: return .null
        }
    }

    static func compare(_ op: CompareOperator, _ a: Value, _ b: Value, _ type: ExpressionType) -> Bool {
        if a.isNull || b.isNull { return false }
        let order: Int  // -1, 0, 1
        switch (a, b) {
        case (.number(let x), .number(let y)): order = x < y ? -1 : (x == y ? 0 : 1)
        case (.time(let x), .time(let y)):
            let p = x.timeIntervalSince1970, q = y.timeIntervalSince1970
            order = p < q ? -1 : (p == q ? 0 : 1)
        case (.string(let x), .string(let y)): order = compareBytes(x, y)
        case (.bool(let x), .bool(let y)): order = x == y ? 0 : (x ? 1 : -1)
        default:
            // Two unknowns of different or structured types: only equality means anything.
            let equal = jsonEqual(a, b)
            switch op {
            case .equal: return equal
            case .notEqual: return !equal
            default: return false
            }
        }
        switch op {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .less: return order < 0
        case .lessOrEqual: return order <= 0
        case .greater: return order > 0
        case .greaterOrEqual: return order >= 0
        }
    }

    static func compareBytes(_ x: String, _ y: String) -> Int {
        var i = x.utf8.makeIterator(), j = y.utf8.makeIterator()
        while true {
            switch (i.next(), j.next()) {
            case (nil, nil): return 0
            case (nil, _): return -1
            case (_, nil): return 1
            case (let p?, let q?): if p != q { return p < q ? -1 : 1 }
            }
        }
    }

    /// `jsonb` equality: same JSON type and equal content (numbers numerically, strings byte for byte).
    static func jsonEqual(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.number(let x), .number(let y)): return x == y
        case (.string(let x), .string(let y)): return x.utf8.elementsEqual(y.utf8)
        case (.time(let x), .time(let y)): return x == y
        case (.time(let x), .string(let y)), (.string(let y), .time(let x)): return Value.iso8601(x).utf8.elementsEqual(y.utf8)
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { jsonEqual($0, $1) }
        case (.object(let x), .object(let y)):
            return x.count == y.count && x.allSatisfy { key, value in y[key].map { jsonEqual(value, $0) } ?? false }
        default: return false
        }
    }
}
