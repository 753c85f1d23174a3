import Foundation

/// A Liquid syntax error (from `LiquidTemplate.parse`) or render error (from `render`), with the 1-based line and
/// column in the template source it concerns. `description` is `line:column: message` (what `nurture templates render`
/// prints; `nurture validate` prefixes the file name).
public struct LiquidError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        /// The template does not parse (unknown tag or filter, unclosed block, bad expression, ...).
        case syntax
        /// The template parsed but this render failed (division by zero, a limit exceeded, ...).
        case render
    }

    public let kind: Kind
    public let line: Int
    public let column: Int
    public let message: String

    public init(kind: Kind, line: Int, column: Int, message: String) {
        self.kind = kind
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "\(line):\(column): \(message)" }
}

/// Bounds that keep one render cheap and finite whatever the template and data are. Exceeding any of them is a
/// render error (`LiquidError`, kind `.render`), never a hang or a crash.
public struct LiquidLimits: Sendable, Hashable {
    /// Bytes of output (and of any single string a capture or filter builds).
    public var maxOutputBytes: Int
    /// `for` iterations in one render, all loops together (a range is refused up front if it would exceed this).
    public var maxLoopIterations: Int
    /// Elements in any array a filter or range builds.
    public var maxArrayLength: Int
    /// Work units in one render: every filter call costs 1 plus the size of its input and arguments
    /// (bytes of strings, elements of arrays), every output costs its size. Bounds CPU time.
    public var maxWork: Int

    public init(maxOutputBytes: Int = 1_000_000, maxLoopIterations: Int = 100_000, maxArrayLength: Int = 100_000,
                maxWork: Int = 50_000_000) {
        self.maxOutputBytes = maxOutputBytes
        self.maxLoopIterations = maxLoopIterations
        self.maxArrayLength = maxArrayLength
        self.maxWork = maxWork
    }

    public static let standard = LiquidLimits()

    /// Deepest nesting of block tags (`if`, `for`, ...) a template may have; deeper is a syntax error.
    public static let maxNestingDepth = 64
}

/// How to render: html auto-escaping, the clock (`now`, the `date` filter's `"now"`), the time zone dates print in.
public struct RenderOptions: Sendable {
    /// Escape `& < > " '` in every `{{ }}` output unless its last filter is `raw` (or `escape`/`escape_once`,
    /// whose output is already escaped).
    public var htmlEscape: Bool
    public var now: Date
    public var timeZone: TimeZone
    public var limits: LiquidLimits

    public init(htmlEscape: Bool = false, now: Date = Date(), timeZone: TimeZone = TimeZone(identifier: "UTC")!,
                limits: LiquidLimits = .standard) {
        self.htmlEscape = htmlEscape
        self.now = now
        self.timeZone = timeZone
        self.limits = limits
    }
}
