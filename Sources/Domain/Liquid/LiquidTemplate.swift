import Foundation

/// A parsed Liquid template: parse once per template version, render many times (thread-safe, `Sendable`).
///
/// Semantics follow Shopify Liquid where it defines them (truthiness: only `false` and `nil` are falsy; `and`/`or`
/// right to left; `divided_by` floors when both sides are integers; `empty`/`blank`; ranges; `forloop`; ...).
/// Deliberate differences, chosen for e-mail:
/// - Parsing is strict: unknown tags, unknown filters, wrong filter argument counts, unclosed blocks, stray end tags,
///   `break`/`continue` outside a loop and trailing junk in a tag are syntax errors (so `nurture validate` finds them).
/// - Render errors (division by zero, a limit exceeded, `concat` of a non-array, ...) throw `LiquidError` with the
///   line and column instead of printing an inline "Liquid error: ..." into the message: the send fails, is
///   retried and recorded. Missing variables are not errors (they render as nothing), and comparisons of
///   incompatible types (`"a" < 1`, `nil > 5`) are false rather than errors.
/// - Numbers are JSON doubles: a whole number prints without `.0` (`{{ 20 | times: 0.9 | round: 2 }}` is `18`).
///   Integer-ness for `divided_by` is decided by value (and by float literals such as `2.0` in the template).
/// - Strings are measured in characters (grapheme clusters) by `size`, `truncate`, `slice`.
/// - In html mode, `{{ }}` output is escaped unless its last filter is `raw`, `escape` or `escape_once`
///   (already html), and a variable set by `{% capture %}` (itself rendered with escaping) is not escaped again.
public struct LiquidTemplate: Sendable {
    let nodes: [LiquidNode]
    /// The template text this was parsed from.
    public let source: String

    /// Parses a template; throws `LiquidError` (kind `.syntax`) naming the line and column of the problem.
    public static func parse(_ source: String) throws -> LiquidTemplate {
        var parser = LiquidParser(source: source)
        return LiquidTemplate(nodes: try parser.parse(), source: source)
    }

    /// Renders with `context` (an object: its keys are the top-level variables; anything else renders as an
    /// empty context). Throws `LiquidError` (kind `.render`) on a render error or when a limit is exceeded.
    /// `now` is a built-in variable (options.now) unless the context defines it.
    public func render(_ context: Value, options: RenderOptions = RenderOptions()) throws -> String {
        let renderer = LiquidRenderer(context: context, options: options, sizeHint: source.utf8.count)
        _ = try renderer.render(nodes)
        return renderer.out
    }

    /// Every filter name the engine knows.
    public static var filterNames: [String] { LiquidFilter.allCases.map(\.rawValue) }

    /// Every tag name the engine knows.
    public static let tagNames: [String] = [
        "if", "elsif", "else", "endif", "unless", "endunless", "case", "when", "endcase", "for", "endfor", "break",
        "continue", "assign", "capture", "endcapture", "comment", "endcomment", "raw", "endraw", "echo", "#",
    ]
}

/// One render's state. Not shared between threads.
final class LiquidRenderer {
    enum Signal { case normal, breakLoop, continueLoop }

    let options: RenderOptions
    let limits: LiquidLimits
    let root: [String: Value]
    var assigns: [String: Value] = [:]
    /// Innermost last: one scope per running `for` (its variable and `forloop`).
    var scopes: [[String: Value]] = []
    /// Variables set by `capture` in html mode: their content is already escaped.
    var safeCaptures: Set<String> = []
    var out = ""
    var iterations = 0
    var work = 0

    init(context: Value, options: RenderOptions, sizeHint: Int) {
        self.options = options
        self.limits = options.limits
        if case .object(let o) = context { root = o } else { root = [:] }
        out.reserveCapacity(min(sizeHint + sizeHint / 2, options.limits.maxOutputBytes))
    }

    // MARK: budget

    @inline(__always) func charge(_ units: Int, at location: LiquidLocation) throws {
        work &+= units
        if work > limits.maxWork {
            throw location.error("render exceeded the work limit (\(limits.maxWork) units): template too expensive for this data")
        }
    }

    @inline(__always) func emit(_ s: String, at location: LiquidLocation) throws {
        out += s
        let size = out.utf8.count
        if size > limits.maxOutputBytes {
            throw location.error("output exceeds the limit of \(limits.maxOutputBytes) bytes")
        }
        try charge(s.utf8.count, at: location)
    }

    // MARK: nodes

    func render(_ nodes: [LiquidNode]) throws -> Signal {
        for node in nodes {
            switch node {
            case .text(let text, let location):
                try emit(text, at: location)
            case .output(let output):
                let value = try evaluateOutput(output)
                var text = stringify(value)
                if options.htmlEscape && !output.isMarkedSafe && !isSafeCapture(output) {
                    text = LiquidFilters.htmlEscape(text)
                }
                try emit(text, at: output.location)
            case .conditional(let branches, let negateFirst, let elseBody):
                var taken = false
                for (i, branch) in branches.enumerated() {
                    var truth = try evaluate(branch.condition)
                    if i == 0 && negateFirst { truth.toggle() }
                    if truth {
                        taken = true
                        let signal = try render(branch.body)
                        if signal != .normal { return signal }
                        break
                    }
                }
                if !taken, let elseBody {
                    let signal = try render(elseBody)
                    if signal != .normal { return signal }
                }
            case .caseBlock(let subjectExpr, let whens):
                let subject = try evaluate(subjectExpr)
                var matched = false
                for when in whens {
                    var run = false
                    if when.isElse {
                        run = !matched
                    } else {
                        for candidate in when.values where try matches(subject, candidate) { run = true; break }
                        if run { matched = true }
                    }
                    if run {
                        let signal = try render(when.body)
                        if signal != .normal { return signal }
                    }
                }
            case .forLoop(let loop):
                let signal = try renderFor(loop)
                if signal != .normal { return signal }
            case .assign(let name, let value):
                assigns[name] = try evaluateOutput(value)
                safeCaptures.remove(name)
            case .capture(let name, let body, let location):
                let saved = out
                out = ""
                let signal: Signal
                do { signal = try render(body) } catch { out = saved; throw error }
                let captured = out
                out = saved
                try charge(1, at: location)
                assigns[name] = .string(captured)
                if options.htmlEscape { safeCaptures.insert(name) } else { safeCaptures.remove(name) }
                if signal != .normal { return signal }
            case .breakLoop:
                return .breakLoop
            case .continueLoop:
                return .continueLoop
            }
        }
        return .normal
    }

    private func isSafeCapture(_ output: LiquidOutput) -> Bool {
        guard output.filters.isEmpty, !safeCaptures.isEmpty, case .variable(let v) = output.expr, v.lookups.isEmpty else {
            return false
        }
        return safeCaptures.contains(v.root)
    }

    private enum LoopItems {
        case array([Value])
        case range(Int)
    }

    /// Runs a loop; returns a `break`/`continue` signal only from the loop's `else` body (which belongs to an
    /// enclosing loop, as the parser checked).
    private func renderFor(_ loop: LiquidFor) throws -> Signal {
        let items: LoopItems
        let count: Int
        if case .range(let lowerExpr, let upperExpr, _) = loop.collection {
            let lower = try rangeBound(lowerExpr), upper = try rangeBound(upperExpr)
            items = .range(lower)
            count = upper >= lower ? upper - lower + 1 : 0
        } else {
            let collection = try evaluate(loop.collection)
            let array = try iterable(collection, at: loop.location)
            items = .array(array)
            count = array.count
        }
        var start = 0, end = count
        if let offsetExpr = loop.offset {
            let value = try evaluate(offsetExpr)
            if !value.isNull { start = min(max(LiquidFilters.toInt(LiquidFilters.toNumber(value)), 0), count) }
        }
        if let limitExpr = loop.limit {
            let value = try evaluate(limitExpr)
            if !value.isNull { end = min(start + max(LiquidFilters.toInt(LiquidFilters.toNumber(value)), 0), count) }
        }
        let total = max(end - start, 0)
        if total == 0 { return try render(loop.elseBody) }
        let parent = lookupRoot("forloop")
        scopes.append([:])
        defer { scopes.removeLast() }
        for k in 0..<total {
            iterations += 1
            if iterations > limits.maxLoopIterations {
                throw loop.location.error("loops ran more than \(limits.maxLoopIterations) iterations")
            }
            try charge(1, at: loop.location)
            let index = loop.reversed ? end - 1 - k : start + k
            let item: Value
            switch items {
            case .array(let a): item = a[index]
            case .range(let lower): item = .number(Double(lower + index))
            }
            var forloop: [String: Value] = [
                "index": .number(Double(k + 1)), "index0": .number(Double(k)),
                "rindex": .number(Double(total - k)), "rindex0": .number(Double(total - k - 1)),
                "first": .bool(k == 0), "last": .bool(k == total - 1), "length": .number(Double(total)),
            ]
            if let parent { forloop["parentloop"] = parent }
            scopes[scopes.count - 1][loop.variable] = item
            scopes[scopes.count - 1]["forloop"] = .object(forloop)
            if try render(loop.body) == .breakLoop { break }
        }
        return .normal
    }

    /// What `for` iterates: arrays as they are, objects as `[key, value]` pairs by key, anything else once (nil never).
    private func iterable(_ value: Value, at location: LiquidLocation) throws -> [Value] {
        switch value {
        case .array(let a): return a
        case .null: return []
        case .object(let o):
            try charge(o.count * 4, at: location)
            return o.keys.sorted().map { .array([.string($0), o[$0]!]) }
        case .string(let s): return s.isEmpty ? [] : [value]
        default: return [value]
        }
    }

    private func rangeBound(_ expr: LiquidExpr) throws -> Int {
        let v = try evaluate(expr)
        return LiquidFilters.toInt(LiquidFilters.toNumber(v))
    }

    // MARK: values

    func lookupRoot(_ name: String) -> Value? {
        var i = scopes.count - 1
        while i >= 0 {
            if let v = scopes[i][name] { return v }
            i -= 1
        }
        if let v = assigns[name] { return v }
        if let v = root[name] { return v }
        if name == "now" { return .time(options.now) }
        return nil
    }

    func evaluate(_ expr: LiquidExpr) throws -> Value {
        switch expr {
        case .literal(let v): return v
        case .variable(let variable):
            guard var value = lookupRoot(variable.root) else { return .null }
            for lookup in variable.lookups {
                value = try self.lookup(value, lookup)
                if case .null = value { return .null }
            }
            return value
        case .range(let lowerExpr, let upperExpr, let location):
            let lower = try rangeBound(lowerExpr), upper = try rangeBound(upperExpr)
            guard upper >= lower else { return .array([]) }
            let count = upper - lower + 1
            if count > limits.maxArrayLength {
                throw location.error("range of \(count) elements exceeds the limit of \(limits.maxArrayLength)")
            }
            try charge(count, at: location)
            return .array((lower...upper).map { .number(Double($0)) })
        case .empty, .blank: return .string("")
        }
    }

    private func lookup(_ value: Value, _ lookup: LiquidLookup) throws -> Value {
        switch lookup {
        case .key(let key): return LiquidRenderer.property(value, key)
        case .index(let i): return LiquidRenderer.element(value, i)
        case .dynamic(let expr):
            let k = try evaluate(expr)
            switch k {
            case .string(let key): return LiquidRenderer.property(value, key)
            case .number(let n): return LiquidRenderer.element(value, LiquidFilters.toInt(n))
            default: return .null
            }
        }
    }

    static func property(_ value: Value, _ key: String) -> Value {
        switch value {
        case .object(let o):
            if let v = o[key] { return v }
            if key == "size" { return .number(Double(o.count)) }
            return .null
        case .array(let a):
            switch key {
            case "size": return .number(Double(a.count))
            case "first": return a.first ?? .null
            case "last": return a.last ?? .null
            default: return .null
            }
        case .string(let s):
            return key == "size" ? .number(Double(s.count)) : .null
        default:
            return .null
        }
    }

    static func element(_ value: Value, _ index: Int) -> Value {
        guard case .array(let a) = value else { return .null }
        let i = index < 0 ? a.count + index : index
        return i >= 0 && i < a.count ? a[i] : .null
    }

    // MARK: conditions

    func evaluate(_ condition: LiquidCondition) throws -> Bool {
        let comparisons = condition.comparisons
        var result = try evaluate(comparisons[comparisons.count - 1])
        var i = comparisons.count - 2
        while i >= 0 {
            if condition.connectives[i] {
                result = try result && evaluate(comparisons[i])
            } else {
                result = try result || evaluate(comparisons[i])
            }
            i -= 1
        }
        return result
    }

    private func evaluate(_ comparison: LiquidComparison) throws -> Bool {
        guard let op = comparison.op, let rightExpr = comparison.right else {
            return try evaluate(comparison.left).isTruthy
        }
        // `x == empty`, `blank != x`, ...
        for (special, other) in [(rightExpr, comparison.left), (comparison.left, rightExpr)] {
            let test: ((Value) -> Bool)?
            switch special {
            case .empty: test = LiquidRenderer.isEmpty
            case .blank: test = LiquidRenderer.isBlank
            default: test = nil
            }
            if let test {
                let v = try evaluate(other)
                switch op {
                case .equal: return test(v)
                case .notEqual: return !test(v)
                default: return false
                }
            }
        }
        let left = try evaluate(comparison.left), right = try evaluate(comparison.right!)
        switch op {
        case .equal, .notEqual:
            if case .string(let a) = left, case .string(let b) = right {
                try charge(min(a.utf8.count, b.utf8.count), at: comparison.location)
            }
            let equal = LiquidRenderer.equals(left, right)
            return op == .equal ? equal : !equal
        case .contains:
            try charge(LiquidFilters.cost(left) + LiquidFilters.cost(right), at: comparison.location)
            return LiquidRenderer.contains(left, right)
        case .less, .greater, .lessOrEqual, .greaterOrEqual:
            guard let order = LiquidRenderer.order(left, right) else { return false }
            switch op {
            case .less: return order < 0
            case .greater: return order > 0
            case .lessOrEqual: return order <= 0
            default: return order >= 0
            }
        }
    }

    private func matches(_ subject: Value, _ candidate: LiquidExpr) throws -> Bool {
        switch candidate {
        case .empty: return LiquidRenderer.isEmpty(subject)
        case .blank: return LiquidRenderer.isBlank(subject)
        default: return LiquidRenderer.equals(subject, try evaluate(candidate))
        }
    }

    static func isEmpty(_ v: Value) -> Bool {
        switch v {
        case .string(let s): return s.isEmpty
        case .array(let a): return a.isEmpty
        case .object(let o): return o.isEmpty
        default: return false
        }
    }

    static func isBlank(_ v: Value) -> Bool {
        switch v {
        case .null: return true
        case .bool(let b): return !b
        case .string(let s): return s.utf8.allSatisfy(liquidIsWhitespace)
        case .array(let a): return a.isEmpty
        case .object(let o): return o.isEmpty
        default: return false
        }
    }

    static func equals(_ a: Value, _ b: Value) -> Bool {
        switch (a, b) {
        case (.time(let x), .string(let s)), (.string(let s), .time(let x)):
            guard let y = LiquidDate.parse(s, timeZone: TimeZone(identifier: "UTC")!) else { return false }
            return x == y
        default:
            return a == b
        }
    }

    static func contains(_ haystack: Value, _ needle: Value) -> Bool {
        switch haystack {
        case .string(let s):
            if case .null = needle { return false }
            let n = LiquidFilters.plainString(needle)
            return LiquidFilters.occurrences(of: Array(n.utf8), in: Array(s.utf8), limit: 1).count > 0 || n.isEmpty
        case .array(let a): return a.contains { equals($0, needle) }
        case .object(let o):
            guard case .string(let key) = needle else { return false }
            return o[key] != nil
        default: return false
        }
    }

    /// Ordering for `<`, `>`, ...: numbers, strings (by bytes), times (ISO strings compare as times); else nil.
    static func order(_ a: Value, _ b: Value) -> Int? {
        switch (a, b) {
        case (.number(let x), .number(let y)): return x < y ? -1 : (x > y ? 1 : 0)
        case (.string(let x), .string(let y)):
            if x == y { return 0 }
            return x.utf8.lexicographicallyPrecedes(y.utf8) ? -1 : 1
        case (.time(let x), .time(let y)): return x < y ? -1 : (x > y ? 1 : 0)
        case (.time, .string(let s)):
            guard let y = LiquidDate.parse(s, timeZone: TimeZone(identifier: "UTC")!) else { return nil }
            return order(a, .time(y))
        case (.string(let s), .time):
            guard let x = LiquidDate.parse(s, timeZone: TimeZone(identifier: "UTC")!) else { return nil }
            return order(.time(x), b)
        default: return nil
        }
    }

    // MARK: output

    func stringify(_ value: Value) -> String {
        LiquidFilters.plainString(value)
    }

    func evaluateOutput(_ output: LiquidOutput) throws -> Value {
        var value = try evaluate(output.expr)
        var isFloat = output.exprIsFloatLiteral
        for call in output.filters {
            var args: [Value] = []
            args.reserveCapacity(call.args.count)
            for arg in call.args { args.append(try evaluate(arg)) }
            (value, isFloat) = try apply(call, to: value, args: args, inputIsFloat: isFloat)
        }
        return value
    }
}
