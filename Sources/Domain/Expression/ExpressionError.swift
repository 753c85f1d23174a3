import Foundation

/// A position in an expression's text: 1-based line and column (columns count Unicode scalars).
public struct SourcePosition: Sendable, Hashable, CustomStringConvertible {
    public let line: Int
    public let column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }
}

/// A syntax or type error in an expression. `description` is `line:column: message`, relative to the expression's
/// own text (a definition loader adds the offset of the expression inside its YAML file).
public struct ExpressionError: Error, Sendable, Hashable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String

    public init(_ message: String, at position: SourcePosition) {
        self.line = position.line
        self.column = position.column
        self.message = message
    }

    public var position: SourcePosition { SourcePosition(line: line, column: column) }
    public var description: String { "\(line):\(column): \(message)" }
}
