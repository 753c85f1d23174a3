import Foundation

/// 1-based line and column of a template construct (kept in the AST so render errors can name where they happened).
struct LiquidLocation: Sendable, Hashable {
    let line: Int32
    let column: Int32

    func error(_ message: String, kind: LiquidError.Kind = .render) -> LiquidError {
        LiquidError(kind: kind, line: Int(line), column: Int(column), message: message)
    }
}

enum LiquidCompareOp: String, Sendable {
    case equal = "=="
    case notEqual = "!="
    case less = "<"
    case greater = ">"
    case lessOrEqual = "<="
    case greaterOrEqual = ">="
    case contains = "contains"
}

/// A value expression: literal, variable path, range, or the special comparands `empty` / `blank`.
indirect enum LiquidExpr: Sendable {
    case literal(Value)
    case variable(LiquidVariable)
    case range(LiquidExpr, LiquidExpr, LiquidLocation)
    case empty
    case blank
}

/// A variable path resolved once at parse time: `a.b[0]["c"][d]`.
struct LiquidVariable: Sendable {
    let root: String
    let lookups: [LiquidLookup]
}

enum LiquidLookup: Sendable {
    /// `.name` or `["name"]`; `size`, `first`, `last` fall back to the collection's own when the key is absent.
    case key(String)
    /// `[3]`, `[-1]` (from the end).
    case index(Int)
    /// `[expr]`: a string looks up a key, a number an index.
    case dynamic(LiquidExpr)
}

struct LiquidFilterCall: Sendable {
    let filter: LiquidFilter
    let args: [LiquidExpr]
    let namedArgs: [(name: String, value: LiquidExpr)]
    /// The first positional argument was written as a float literal (`divided_by: 2.0` divides as floats).
    let firstArgIsFloatLiteral: Bool
    let location: LiquidLocation
}

/// `expr | filter: args | ...`, as in `{{ }}`, `{% echo %}` and `{% assign %}`.
struct LiquidOutput: Sendable {
    let expr: LiquidExpr
    let filters: [LiquidFilterCall]
    let exprIsFloatLiteral: Bool
    let location: LiquidLocation
    /// The last filter is `raw` (or `escape` / `escape_once`, whose result is already html): no auto-escaping.
    var isMarkedSafe: Bool {
        guard let last = filters.last?.filter else { return false }
        return last == .raw || last == .escape || last == .h || last == .escapeOnce
    }
}

/// One `left op right` (or a bare `left` for truthiness).
struct LiquidComparison: Sendable {
    let left: LiquidExpr
    let op: LiquidCompareOp?
    let right: LiquidExpr?
    let location: LiquidLocation
}

/// `c0 op0 c1 op1 c2 ...`, evaluated right to left like Shopify: `a and b or c` is `a and (b or c)`.
struct LiquidCondition: Sendable {
    let comparisons: [LiquidComparison]
    /// `true` = `and`, `false` = `or`; `connectives.count == comparisons.count - 1`.
    let connectives: [Bool]
}

struct LiquidBranch: Sendable {
    let condition: LiquidCondition
    let body: [LiquidNode]
}

struct LiquidWhen: Sendable {
    /// Any of these equal to the subject selects the branch (`when a, b` and `when a or b`).
    let values: [LiquidExpr]
    /// `nil` for `else`.
    let isElse: Bool
    let body: [LiquidNode]
}

struct LiquidFor: Sendable {
    let variable: String
    let collection: LiquidExpr
    let limit: LiquidExpr?
    let offset: LiquidExpr?
    let reversed: Bool
    let body: [LiquidNode]
    let elseBody: [LiquidNode]
    let location: LiquidLocation
}

indirect enum LiquidNode: Sendable {
    case text(String, LiquidLocation)
    case output(LiquidOutput)
    /// `if` / `unless` (`negateFirst`) with `elsif` branches and an optional `else`.
    case conditional(branches: [LiquidBranch], negateFirst: Bool, elseBody: [LiquidNode]?)
    case caseBlock(subject: LiquidExpr, whens: [LiquidWhen])
    case forLoop(LiquidFor)
    case assign(name: String, value: LiquidOutput)
    case capture(name: String, body: [LiquidNode], location: LiquidLocation)
    case breakLoop
    case continueLoop
}
