import Foundation

/// The static types of the language. `unknown` is the type of attributes and event properties whose type is only
/// known at run time; it takes the type of what it is compared with (a value of another type then counts as null).
public enum ExpressionType: String, Sendable, Hashable, CustomStringConvertible {
    case bool, number, string, time, duration, null, list, unknown
    public var description: String { rawValue }
}

/// Where an expression is used: segments (and audience/periodic SQL) have no triggering event; triggers, exits,
/// `if` steps, lifecycle and scoring rules do.
public enum ExpressionScope: Sendable, Hashable {
    case contact
    case event
}

enum CompareOperator: Sendable, Hashable {
    case equal, notEqual, less, lessOrEqual, greater, greaterOrEqual

    init?(_ op: BinaryOperator) {
        switch op {
        case .equal: self = .equal
        case .notEqual: self = .notEqual
        case .less: self = .less
        case .lessOrEqual: self = .lessOrEqual
        case .greater: self = .greater
        case .greaterOrEqual: self = .greaterOrEqual
        default: return nil
        }
    }

    var sql: String {
        switch self {
        case .equal: return "="
        case .notEqual: return "<>"
        case .less: return "<"
        case .lessOrEqual: return "<="
        case .greater: return ">"
        case .greaterOrEqual: return ">="
        }
    }
}

enum ArithmeticKind: Sendable, Hashable {
    case numberPlus, numberMinus          // number ± number, duration ± duration (seconds)
    case timePlusDuration, timeMinusDuration, durationPlusTime
    case timeMinusTime                    // -> duration
}

/// A contact attribute stored in its own column of `contacts` (the evaluator reads the same key of the contact).
struct ContactColumn: Sendable, Hashable {
    let key: String
    let column: String
    let type: ExpressionType

    static let all: [String: ContactColumn] = {
        var columns: [String: ContactColumn] = [:]
        for name in ["external_id", "email", "phone", "timezone", "stage", "first_utm_source", "first_utm_medium",
                     "last_utm_source", "last_utm_medium", "last_device_type", "email_sha256"] {
            columns[name] = ContactColumn(key: name, column: name, type: .string)
        }
        for name in ["stage_entered_at", "first_seen_at", "last_seen_at", "unsubscribed_at", "created_at", "updated_at"] {
            columns[name] = ContactColumn(key: name, column: name, type: .time)
        }
        return columns
    }()
}

/// A `count(...)` or `sum(...)` over the contact's events.
struct HistorySpec: Sendable, Hashable {
    let eventName: String?       // nil = "*"
    let within: Double?          // seconds
    let property: String?        // sum only
    let filter: TypedNode?
}

/// The checked, resolved tree the evaluator and the SQL compiler walk. Dynamic (`unknown`) values are converted
/// to the type they are used as by explicit `coerce` nodes.
indirect enum TypedNode: Sendable, Hashable {
    case literal(Value, ExpressionType)          // durations are numbers of seconds
    case column(ContactColumn)
    case score
    case tags
    case attribute([String])                      // contact.<path> (unknown)
    case eventName
    case eventOccurredAt
    case eventProperty([String])                  // unknown
    case eventContext([String])                   // unknown
    case coerce(TypedNode, ExpressionType)        // unknown -> bool/number/string/time
    case not(TypedNode)
    case and(TypedNode, TypedNode)
    case or(TypedNode, TypedNode)
    case compare(CompareOperator, TypedNode, TypedNode, ExpressionType)  // operands of the given type
    case isNull(TypedNode, ExpressionType, negated: Bool)
    case arithmetic(ArithmeticKind, TypedNode, TypedNode)
    case negate(TypedNode)
    case count(HistorySpec)
    case sum(HistorySpec)
    case inSegment(String)
    case hasTag(String)
    case now
}

struct Checker {
    let scope: ExpressionScope
    var eventDepth = 0  // > 0 inside a count/sum `where:`
    var segments: Set<String> = []
    var tags: Set<String> = []
    var eventNames: Set<String> = []
    var usesEvent = false
    var usesHistory = false

    init(scope: ExpressionScope) { self.scope = scope }

    mutating func checkTopLevel(_ node: SyntaxNode) throws(ExpressionError) -> TypedNode {
        let (typed, type) = try check(node)
        switch type {
        case .bool: return typed
        case .unknown: return .coerce(typed, .bool)
        default: throw ExpressionError("a condition must be true or false, but this expression is a \(type)", at: node.position)
        }
    }

    mutating func check(_ node: SyntaxNode) throws(ExpressionError) -> (TypedNode, ExpressionType) {
        switch node.kind {
        case .string(let s): return (.literal(.string(s), .string), .string)
        case .number(let n): return (.literal(.number(n), .number), .number)
        case .bool(let b): return (.literal(.bool(b), .bool), .bool)
        case .null: return (.literal(.null, .null), .null)
        case .time(let d): return (.literal(.time(d), .time), .time)
        case .name(let path): return try checkName(path, at: node.position)
        case .call(let name, let arguments): return try checkCall(name, arguments, at: node.position)
        case .unary(.not, let operand):
            return (.not(try boolOperand(operand, of: "not")), .bool)
        case .unary(.negate, let operand):
            let (typed, type) = try check(operand)
            switch type {
            case .number, .duration: return (.negate(typed), type)
            case .unknown: return (.negate(.coerce(typed, .number)), .number)
            default: throw ExpressionError("cannot negate a \(type)", at: node.position)
            }
        case .binary(.and, let l, let r):
            return (.and(try boolOperand(l, of: "and"), try boolOperand(r, of: "and")), .bool)
        case .binary(.or, let l, let r):
            return (.or(try boolOperand(l, of: "or"), try boolOperand(r, of: "or")), .bool)
        case .binary(.plus, let l, let r), .binary(.minus, let l, let r):
            guard case .binary(let op, _, _) = node.kind else { fatalError("unreachable") }
            return try checkArithmetic(op, l, r, at: node.position)
        case .binary(let op, let l, let r):
            return try checkComparison(CompareOperator(op)!, op, l, r, at: node.position)
        }
    }

    private mutating func boolOperand(_ node: SyntaxNode, of op: String) throws(ExpressionError) -> TypedNode {
        let (typed, type) = try check(node)
        switch type {
        case .bool: return typed
        case .unknown: return .coerce(typed, .bool)
        default: throw ExpressionError("'\(op)' needs true/false operands, but this is a \(type)", at: node.position)
        }
    }

    // MARK: names

    private mutating func checkName(_ path: [String], at position: SourcePosition) throws(ExpressionError) -> (TypedNode, ExpressionType) {
        switch path[0] {
        case "contact":
            guard path.count >= 2 else { throw ExpressionError("expected an attribute after 'contact', e.g. contact.email", at: position) }
            let rest = Array(path.dropFirst())
            if rest.count == 1 {
                if rest[0] == "score" { return (.score, .number) }
                if rest[0] == "tags" { return (.tags, .list) }
                if let column = ContactColumn.all[rest[0]] { return (.column(column), column.type) }
            }
            return (.attribute(rest), .unknown)
        case "event":
            if scope == .contact && eventDepth == 0 {
                throw ExpressionError("'\(path.joined(separator: "."))' is not available here: there is no triggering event (use count(...) to look at past events)", at: position)
            }
            if eventDepth == 0 { usesEvent = true }
            guard path.count >= 2 else { throw ExpressionError("expected event.name, event.properties.<name> or event.context.<name>", at: position) }
            switch path[1] {
            case "name" where path.count == 2: return (.eventName, .string)
            case "occurred_at" where path.count == 2, "timestamp" where path.count == 2: return (.eventOccurredAt, .time)
            case "properties" where path.count >= 3: return (.eventProperty(Array(path.dropFirst(2))), .unknown)
            case "context" where path.count >= 3: return (.eventContext(Array(path.dropFirst(2))), .unknown)
            default:
                throw ExpressionError("unknown event field '\(path.dropFirst().joined(separator: "."))': expected event.name, event.properties.<name> or event.context.<name>", at: position)
            }
        default:
            if path.count == 1 && ["count", "sum", "in_segment", "has_tag", "now", "duration"].contains(path[0]) {
                throw ExpressionError("\(path[0]) is a function: write \(path[0])(...)", at: position)
            }
            throw ExpressionError("unknown name '\(path.joined(separator: "."))': names start with 'contact.' or 'event.'", at: position)
        }
    }

    // MARK: operators

    private mutating func checkComparison(_ cmp: CompareOperator, _ op: BinaryOperator, _ l: SyntaxNode, _ r: SyntaxNode,
                                          at position: SourcePosition) throws(ExpressionError) -> (TypedNode, ExpressionType) {
        var (lt, ltype) = try check(l)
        var (rt, rtype) = try check(r)
        let isEquality = cmp == .equal || cmp == .notEqual
        // null literals: only == and !=
        if ltype == .null || rtype == .null {
            guard isEquality else { throw ExpressionError("cannot compare \(ltype) with \(rtype) using '\(op.rawValue)' (only == and != work with null)", at: position) }
            if ltype == .null && rtype == .null { return (.literal(.bool(cmp == .equal), .bool), .bool) }
            let (other, otherType) = ltype == .null ? (rt, rtype) : (lt, ltype)
            return (.isNull(other, otherType, negated: cmp == .notEqual), .bool)
        }
        // A string literal compared with a time is a timestamp.
        if ltype == .time, rtype == .string, case .literal(.string(let s), _) = rt {
            guard let d = ExpressionTime.parse(s) else { throw ExpressionError("\"\(s)\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)", at: r.position) }
            (rt, rtype) = (.literal(.time(d), .time), .time)
        } else if rtype == .time, ltype == .string, case .literal(.string(let s), _) = lt {
            guard let d = ExpressionTime.parse(s) else { throw ExpressionError("\"\(s)\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)", at: l.position) }
            (lt, ltype) = (.literal(.time(d), .time), .time)
        }
        if ltype == .list || rtype == .list {
            throw ExpressionError("cannot compare \(ltype) with \(rtype); use has_tag(\"...\") to test tags", at: position)
        }
        if ltype == .unknown && rtype == .unknown {
            if isEquality { return (.compare(cmp, lt, rt, .unknown), .bool) }
            return (.compare(cmp, .coerce(lt, .number), .coerce(rt, .number), .number), .bool)
        }
        if ltype == .unknown || rtype == .unknown {
            let known = ltype == .unknown ? rtype : ltype
            guard known != .duration else { throw ExpressionError("cannot compare \(ltype) with \(rtype)", at: position) }
            if known == .bool && !isEquality { throw ExpressionError("cannot order booleans with '\(op.rawValue)'", at: position) }
            if ltype == .unknown { lt = .coerce(lt, known) } else { rt = .coerce(rt, known) }
            return (.compare(cmp, lt, rt, known), .bool)
        }
        guard ltype == rtype else { throw ExpressionError("cannot compare \(ltype) with \(rtype)", at: position) }
        if ltype == .bool && !isEquality { throw ExpressionError("cannot order booleans with '\(op.rawValue)'", at: position) }
        return (.compare(cmp, lt, rt, ltype), .bool)
    }

    private mutating func checkArithmetic(_ op: BinaryOperator, _ l: SyntaxNode, _ r: SyntaxNode,
                                          at position: SourcePosition) throws(ExpressionError) -> (TypedNode, ExpressionType) {
        var (lt, ltype) = try check(l)
        var (rt, rtype) = try check(r)
        let plus = op == .plus
        let verb = plus ? "add" : "subtract"
        let fail = ExpressionError(plus ? "cannot add \(ltype) and \(rtype)" : "cannot subtract \(rtype) from \(ltype)", at: position)
        // A string literal next to a duration or a time is a timestamp: "2026-01-01" + duration("1d").
        if ltype == .string, rtype == .duration || (rtype == .time && !plus), case .literal(.string(let text), _) = lt {
            guard let d = ExpressionTime.parse(text) else { throw ExpressionError("\"\(text)\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)", at: l.position) }
            (lt, ltype) = (.literal(.time(d), .time), .time)
        }
        if rtype == .string, ltype == .time || ltype == .duration, case .literal(.string(let text), _) = rt {
            guard let d = ExpressionTime.parse(text) else { throw ExpressionError("\"\(text)\" is not an ISO-8601 timestamp (e.g. 2026-01-31T09:00:00Z)", at: r.position) }
            (rt, rtype) = (.literal(.time(d), .time), .time)
        }
        // Resolve unknown operands from the other side.
        switch (ltype, rtype) {
        case (.unknown, .unknown), (.unknown, .number), (.number, .unknown):
            if ltype == .unknown { lt = .coerce(lt, .number); ltype = .number }
            if rtype == .unknown { rt = .coerce(rt, .number); rtype = .number }
        case (.unknown, .duration), (.unknown, .time):
            lt = .coerce(lt, .time); ltype = .time
        case (.time, .unknown):
            rt = .coerce(rt, .time); rtype = .time
        case (.duration, .unknown):
            guard plus else { throw fail }
            rt = .coerce(rt, .time); rtype = .time
        default: break
        }
        switch (ltype, rtype) {
        case (.number, .number): return (.arithmetic(plus ? .numberPlus : .numberMinus, lt, rt), .number)
        case (.duration, .duration): return (.arithmetic(plus ? .numberPlus : .numberMinus, lt, rt), .duration)
        case (.time, .duration): return (.arithmetic(plus ? .timePlusDuration : .timeMinusDuration, lt, rt), .time)
        case (.duration, .time) where plus: return (.arithmetic(.durationPlusTime, lt, rt), .time)
        case (.time, .time) where !plus: return (.arithmetic(.timeMinusTime, lt, rt), .duration)
        case (.time, .number), (.number, .time):
            throw ExpressionError("cannot \(verb) a number and a time; use duration(\"30d\")", at: position)
        default: throw fail
        }
    }

    // MARK: functions

    private mutating func checkCall(_ name: String, _ arguments: [SyntaxArgument], at position: SourcePosition) throws(ExpressionError) -> (TypedNode, ExpressionType) {
        let signatures: [String: (positional: [String], named: [String])] = [
            "count": (["event name"], ["within", "where"]),
            "sum": (["event name", "property"], ["within", "where"]),
            "in_segment": (["segment name"], []),
            "has_tag": (["tag"], []),
            "now": ([], []),
            "duration": (["duration text"], []),
        ]
        guard let signature = signatures[name] else {
            throw ExpressionError("unknown function '\(name)' (known: count, sum, in_segment, has_tag, now, duration)", at: position)
        }
        var positional: [SyntaxNode] = []
        var named: [String: SyntaxNode] = [:]
        for argument in arguments {
            if let label = argument.label {
                let labelPosition = argument.labelPosition ?? argument.value.position
                guard signature.named.contains(label) else {
                    let known = signature.named.isEmpty ? "it takes no named arguments" : "expected " + signature.named.map { "\($0):" }.joined(separator: " or ")
                    throw ExpressionError("\(name) has no argument named '\(label)': \(known)", at: labelPosition)
                }
                guard named[label] == nil else { throw ExpressionError("argument '\(label)' given twice to \(name)", at: labelPosition) }
                named[label] = argument.value
            } else {
                guard named.isEmpty else { throw ExpressionError("positional argument after named arguments in \(name)", at: argument.value.position) }
                positional.append(argument.value)
            }
        }
        guard positional.count == signature.positional.count else {
            let expected = signature.positional.count
            let what = expected == 0 ? "no arguments" : "\(expected) argument\(expected == 1 ? "" : "s") (\(signature.positional.joined(separator: ", ")))"
            let where_ = positional.count > expected ? positional[expected].position : position
            throw ExpressionError("\(name) expects \(what), got \(positional.count)", at: where_)
        }
        switch name {
        case "now": return (.now, .time)
        case "duration":
            let text = try stringLiteral(positional[0], what: "the argument of duration")
            guard let seconds = ExpressionTime.parseDuration(text) else { throw invalidDuration(text, at: positional[0].position) }
            return (.literal(.number(seconds), .duration), .duration)
        case "in_segment":
            let segment = try stringLiteral(positional[0], what: "the segment name of in_segment")
            segments.insert(segment)
            return (.inSegment(segment), .bool)
        case "has_tag":
            let tag = try stringLiteral(positional[0], what: "the tag of has_tag")
            tags.insert(tag)
            return (.hasTag(tag), .bool)
        default:  // count, sum
            usesHistory = true
            let event = try stringLiteral(positional[0], what: "the event name of \(name)")
            guard name == "count" || event != "*" else { throw ExpressionError("sum needs an event name (\"*\" only works with count)", at: positional[0].position) }
            if event != "*" { eventNames.insert(event) }
            var property: String? = nil
            if name == "sum" { property = try stringLiteral(positional[1], what: "the property name of sum") }
            var within: Double? = nil
            if let w = named["within"] { within = try durationArgument(w) }
            var filter: TypedNode? = nil
            if let w = named["where"] {
                eventDepth += 1
                defer { eventDepth -= 1 }
                let (typed, type) = try check(w)
                switch type {
                case .bool: filter = typed
                case .unknown: filter = .coerce(typed, .bool)
                default: throw ExpressionError("the where: of \(name) must be true or false, but this is a \(type)", at: w.position)
                }
            }
            let spec = HistorySpec(eventName: event == "*" ? nil : event, within: within, property: property, filter: filter)
            return name == "count" ? (.count(spec), .number) : (.sum(spec), .number)
        }
    }

    private func stringLiteral(_ node: SyntaxNode, what: String) throws(ExpressionError) -> String {
        guard case .string(let s) = node.kind else { throw ExpressionError("\(what) must be a string literal in quotes", at: node.position) }
        return s
    }

    private func invalidDuration(_ text: String, at position: SourcePosition) -> ExpressionError {
        ExpressionError("invalid duration \"\(text)\": expected a number and a unit (s, m, h, d, w), e.g. \"30d\"", at: position)
    }

    private mutating func durationArgument(_ node: SyntaxNode) throws(ExpressionError) -> Double {
        if case .string(let text) = node.kind {
            guard let seconds = ExpressionTime.parseDuration(text) else { throw invalidDuration(text, at: node.position) }
            return seconds
        }
        if case .call("duration", _) = node.kind, case (.literal(.number(let s), _), _) = try check(node) { return s }
        throw ExpressionError("within: must be a duration such as \"30d\"", at: node.position)
    }
}

/// A parsed and type-checked condition: parse once, evaluate or compile many times.
public struct Condition: Sendable, Hashable, CustomStringConvertible {
    public let source: String
    public let scope: ExpressionScope
    public let syntax: SyntaxNode
    let root: TypedNode
    /// Segments named by `in_segment(...)` (a segment's dependencies).
    public let referencedSegments: Set<String>
    /// Tags named by `has_tag(...)`.
    public let referencedTags: Set<String>
    /// Event names used by `count`/`sum` (without "*").
    public let referencedEventNames: Set<String>
    /// True if the expression reads the triggering event (outside count/sum `where:`).
    public let usesEvent: Bool
    /// True if the expression uses `count` or `sum` (needs the event history).
    public let usesHistory: Bool

    /// Parses and type-checks `source`. Errors carry the line and column inside `source`.
    public init(_ source: String, scope: ExpressionScope) throws(ExpressionError) {
        let syntax = try Parser.parse(source)
        var checker = Checker(scope: scope)
        self.root = try checker.checkTopLevel(syntax)
        self.source = source
        self.scope = scope
        self.syntax = syntax
        self.referencedSegments = checker.segments
        self.referencedTags = checker.tags
        self.referencedEventNames = checker.eventNames
        self.usesEvent = checker.usesEvent
        self.usesHistory = checker.usesHistory
    }

    /// Only the syntax check (no types): what a formatter or an editor would use.
    public static func parse(_ source: String) throws(ExpressionError) -> SyntaxNode {
        try Parser.parse(source)
    }

    /// Parses and checks, returning the error instead of throwing (for `nurture validate`).
    public static func validate(_ source: String, scope: ExpressionScope) -> ExpressionError? {
        do { _ = try Condition(source, scope: scope); return nil } catch { return error }
    }

    public var description: String { source }
}
