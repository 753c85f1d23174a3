import Foundation

/// The untyped tree the parser produces. Every node carries the position of its first character (for a binary
/// node: its operator), so later phases can report `line:column`.
public struct SyntaxNode: Sendable, Hashable {
    public indirect enum Kind: Sendable, Hashable {
        case string(String)
        case number(Double)
        case bool(Bool)
        case null
        /// An unquoted ISO-8601 timestamp (`2026-01-01T00:00:00Z` or `2026-01-01`).
        case time(Date)
        /// A dotted name: `contact.email` is `["contact", "email"]`.
        case name([String])
        case call(name: String, arguments: [SyntaxArgument])
        case unary(UnaryOperator, SyntaxNode)
        case binary(BinaryOperator, SyntaxNode, SyntaxNode)
    }

    public let kind: Kind
    public let position: SourcePosition

    public init(_ kind: Kind, at position: SourcePosition) {
        self.kind = kind
        self.position = position
    }
}

public struct SyntaxArgument: Sendable, Hashable {
    /// The label of a named argument (`within:`), nil for a positional one.
    public let label: String?
    public let labelPosition: SourcePosition?
    public let value: SyntaxNode
}

public enum UnaryOperator: String, Sendable, Hashable {
    case not
    case negate = "-"
}

public enum BinaryOperator: String, Sendable, Hashable {
    case and, or
    case equal = "==", notEqual = "!="
    case less = "<", lessOrEqual = "<=", greater = ">", greaterOrEqual = ">="
    case plus = "+", minus = "-"

    var isComparison: Bool {
        switch self {
        case .equal, .notEqual, .less, .lessOrEqual, .greater, .greaterOrEqual: return true
        default: return false
        }
    }
}

// MARK: - Lexer

struct Token: Sendable {
    enum Kind: Sendable, Equatable {
        case identifier(String)
        case string(String)
        case number(Double)
        case time(Date)
        case symbol(String)  // ( ) , : . == != < <= > >= + -
        case end
    }
    let kind: Kind
    let position: SourcePosition

    var display: String {
        switch kind {
        case .identifier(let s): return "'\(s)'"
        case .string(let s): return "string \"\(s)\""
        case .number(let n): return "number \(Value.format(number: n))"
        case .time: return "timestamp"
        case .symbol(let s): return "'\(s)'"
        case .end: return "end of expression"
        }
    }
}

struct Lexer {
    private let scalars: [Unicode.Scalar]
    private var index = 0
    private var line = 1
    private var column = 1

    init(_ source: String) { scalars = Array(source.unicodeScalars) }

    private var position: SourcePosition { SourcePosition(line: line, column: column) }
    private func peek(_ offset: Int = 0) -> Unicode.Scalar? {
        index + offset < scalars.count ? scalars[index + offset] : nil
    }
    private mutating func advance() {
        if scalars[index] == "\n" { line += 1; column = 1 } else { column += 1 }
        index += 1
    }

    static func isIdentifierStart(_ c: Unicode.Scalar) -> Bool {
        (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_"
    }
    static func isIdentifierPart(_ c: Unicode.Scalar) -> Bool { isIdentifierStart(c) || isDigit(c) }
    static func isDigit(_ c: Unicode.Scalar) -> Bool { c >= "0" && c <= "9" }

    mutating func tokenize() throws(ExpressionError) -> [Token] {
        var tokens: [Token] = []
        while true {
            while let c = peek(), c == " " || c == "\t" || c == "\n" || c == "\r" { advance() }
            let start = position
            guard let c = peek() else { tokens.append(Token(kind: .end, position: start)); return tokens }
            if Lexer.isIdentifierStart(c) {
                var text = ""
                while let d = peek(), Lexer.isIdentifierPart(d) { text.unicodeScalars.append(d); advance() }
                tokens.append(Token(kind: .identifier(text), position: start))
            } else if Lexer.isDigit(c) {
                tokens.append(try lexNumberOrTime(start))
            } else if c == "\"" || c == "'" {
                tokens.append(Token(kind: .string(try lexString(quote: c, start: start)), position: start))
            } else {
                let two = peek(1).map { String(c) + String($0) } ?? String(c)
                switch two {
                case "==", "!=", "<=", ">=":
                    advance(); advance()
                    tokens.append(Token(kind: .symbol(two), position: start))
                    continue
                case "&&": throw ExpressionError("unexpected '&&'; use 'and'", at: start)
                case "||": throw ExpressionError("unexpected '||'; use 'or'", at: start)
                default: break
                }
                switch c {
                case "(", ")", ",", ":", ".", "<", ">", "+", "-":
                    advance()
                    tokens.append(Token(kind: .symbol(String(c)), position: start))
                case "=": throw ExpressionError("unexpected '='; use '==' to compare", at: start)
                case "!": throw ExpressionError("unexpected '!'; use 'not' or '!='", at: start)
                default: throw ExpressionError("unexpected character '\(c)'", at: start)
                }
            }
        }
    }

    private mutating func lexString(quote: Unicode.Scalar, start: SourcePosition) throws(ExpressionError) -> String {
        advance()
        var text = ""
        while true {
            guard let c = peek() else { throw ExpressionError("unterminated string literal", at: start) }
            if c == quote { advance(); return text }
            if c == "\n" { throw ExpressionError("unterminated string literal", at: start) }
            if c == "\\" {
                let escapePosition = position
                advance()
                guard let e = peek() else { throw ExpressionError("unterminated string literal", at: start) }
                switch e {
                case "\"", "'", "\\", "/": text.unicodeScalars.append(e)
                case "n": text.unicodeScalars.append("\n")
                case "t": text.unicodeScalars.append("\t")
                case "r": text.unicodeScalars.append("\r")
                case "u":
                    var hex = ""
                    for k in 1...4 {
                        guard let h = peek(k), h.properties.isASCIIHexDigit else {
                            throw ExpressionError("invalid \\u escape: expected 4 hexadecimal digits", at: escapePosition)
                        }
                        hex.unicodeScalars.append(h)
                    }
                    guard let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                        throw ExpressionError("invalid \\u escape: not a Unicode scalar", at: escapePosition)
                    }
                    for _ in 0..<4 { advance() }
                    text.unicodeScalars.append(scalar)
                default: throw ExpressionError("unknown escape '\\\(e)' in string", at: escapePosition)
                }
                advance()
                continue
            }
            text.unicodeScalars.append(c)
            advance()
        }
    }

    private mutating func lexNumberOrTime(_ start: SourcePosition) throws(ExpressionError) -> Token {
        // An unquoted timestamp starts with 4 digits and '-'.
        if (0..<4).allSatisfy({ peek($0).map(Lexer.isDigit) ?? false }), peek(4) == "-" {
            var text = ""
            while let c = peek(), Lexer.isDigit(c) || c == "-" || c == ":" || c == "." || c == "T" || c == "Z" || c == "+" {
                text.unicodeScalars.append(c)
                advance()
            }
            guard let date = ExpressionTime.parse(text) else {
                throw ExpressionError("invalid timestamp '\(text)': expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ", at: start)
            }
            return Token(kind: .time(date), position: start)
        }
        var text = ""
        while let c = peek(), Lexer.isDigit(c) { text.unicodeScalars.append(c); advance() }
        if peek() == ".", let d = peek(1), Lexer.isDigit(d) {
            text += "."
            advance()
            while let c = peek(), Lexer.isDigit(c) { text.unicodeScalars.append(c); advance() }
        }
        if let e = peek(), e == "e" || e == "E" {
            var k = 1
            if let sign = peek(1), sign == "+" || sign == "-" { k = 2 }
            if let d = peek(k), Lexer.isDigit(d) {
                for _ in 0..<k { text.unicodeScalars.append(peek()!); advance() }
                while let c = peek(), Lexer.isDigit(c) { text.unicodeScalars.append(c); advance() }
            }
        }
        if let c = peek(), Lexer.isIdentifierStart(c) {
            throw ExpressionError("unexpected '\(c)' after number \(text) (durations are written duration(\"\(text)\(c)\"))", at: position)
        }
        guard let value = Double(text), value.isFinite else { throw ExpressionError("invalid number '\(text)'", at: start) }
        return Token(kind: .number(value), position: start)
    }
}

// MARK: - Parser

/// Recursive descent over the tokens. Precedence, loosest first: `or`, `and`, `not`, comparisons (not chainable),
/// `+ -`, unary `-`, then literals, names, calls and parentheses.
struct Parser {
    private let tokens: [Token]
    private var index = 0
    private var depth = 0
    private static let maxDepth = 200
    private static let maxTokens = 4000

    init(tokens: [Token]) { self.tokens = tokens }

    static func parse(_ source: String) throws(ExpressionError) -> SyntaxNode {
        var lexer = Lexer(source)
        let tokens = try lexer.tokenize()
        // Bounds the depth of the trees the checker and evaluator recurse over (left-deep `a and b and ...` chains).
        if tokens.count > maxTokens { throw ExpressionError("expression is too long (more than \(maxTokens) tokens)", at: tokens[maxTokens].position) }
        var parser = Parser(tokens: tokens)
        if case .end = parser.current.kind { throw ExpressionError("empty expression", at: parser.current.position) }
        let node = try parser.parseOr()
        if case .end = parser.current.kind { return node }
        throw ExpressionError("unexpected \(parser.current.display) after the end of the expression", at: parser.current.position)
    }

    private var current: Token { tokens[index] }
    private mutating func advance() { if index < tokens.count - 1 { index += 1 } }
    private func isSymbol(_ s: String) -> Bool { current.kind == .symbol(s) }
    private func isKeyword(_ s: String) -> Bool { current.kind == .identifier(s) }

    private mutating func parseOr() throws(ExpressionError) -> SyntaxNode {
        var left = try parseAnd()
        while isKeyword("or") {
            let position = current.position
            advance()
            left = SyntaxNode(.binary(.or, left, try parseAnd()), at: position)
        }
        return left
    }

    private mutating func parseAnd() throws(ExpressionError) -> SyntaxNode {
        var left = try parseNot()
        while isKeyword("and") {
            let position = current.position
            advance()
            left = SyntaxNode(.binary(.and, left, try parseNot()), at: position)
        }
        return left
    }

    private mutating func parseNot() throws(ExpressionError) -> SyntaxNode {
        if isKeyword("not") {
            let position = current.position
            advance()
            return try nested { (p: inout Parser) throws(ExpressionError) in SyntaxNode(.unary(.not, try p.parseNot()), at: position) }
        }
        return try parseComparison()
    }

    private mutating func parseComparison() throws(ExpressionError) -> SyntaxNode {
        let left = try parseAdditive()
        guard case .symbol(let s) = current.kind, let op = BinaryOperator(rawValue: s), op.isComparison else { return left }
        let position = current.position
        advance()
        let right = try parseAdditive()
        if case .symbol(let s2) = current.kind, let op2 = BinaryOperator(rawValue: s2), op2.isComparison {
            throw ExpressionError("comparisons cannot be chained; combine them with 'and'", at: current.position)
        }
        return SyntaxNode(.binary(op, left, right), at: position)
    }

    private mutating func parseAdditive() throws(ExpressionError) -> SyntaxNode {
        var left = try parseUnary()
        while isSymbol("+") || isSymbol("-") {
            let op: BinaryOperator = isSymbol("+") ? .plus : .minus
            let position = current.position
            advance()
            left = SyntaxNode(.binary(op, left, try parseUnary()), at: position)
        }
        return left
    }

    private mutating func parseUnary() throws(ExpressionError) -> SyntaxNode {
        if isSymbol("-") {
            let position = current.position
            advance()
            if case .number(let n) = current.kind {  // fold `-5` into a literal
                advance()
                return SyntaxNode(.number(-n), at: position)
            }
            return try nested { (p: inout Parser) throws(ExpressionError) in SyntaxNode(.unary(.negate, try p.parseUnary()), at: position) }
        }
        return try parsePrimary()
    }

    private mutating func nested(_ body: (inout Parser) throws(ExpressionError) -> SyntaxNode) throws(ExpressionError) -> SyntaxNode {
        depth += 1
        defer { depth -= 1 }
        if depth > Parser.maxDepth { throw ExpressionError("expression is nested too deeply", at: current.position) }
        return try body(&self)
    }

    private mutating func parsePrimary() throws(ExpressionError) -> SyntaxNode {
        let token = current
        switch token.kind {
        case .string(let s): advance(); return SyntaxNode(.string(s), at: token.position)
        case .number(let n): advance(); return SyntaxNode(.number(n), at: token.position)
        case .time(let d): advance(); return SyntaxNode(.time(d), at: token.position)
        case .symbol("("):
            advance()
            let inner = try nested { (p: inout Parser) throws(ExpressionError) in try p.parseOr() }
            guard isSymbol(")") else {
                throw ExpressionError("expected ')' to close '(' at \(token.position), found \(current.display)", at: current.position)
            }
            advance()
            return inner
        case .identifier(let name):
            switch name {
            case "true": advance(); return SyntaxNode(.bool(true), at: token.position)
            case "false": advance(); return SyntaxNode(.bool(false), at: token.position)
            case "null": advance(); return SyntaxNode(.null, at: token.position)
            case "and", "or", "not":
                throw ExpressionError("expected an expression, found '\(name)'", at: token.position)
            default: break
            }
            advance()
            if isSymbol("(") { return try parseCall(name: name, at: token.position) }
            var path = [name]
            while isSymbol(".") {
                advance()
                switch current.kind {
                case .identifier(let part): path.append(part)
                case .string(let part): path.append(part)  // contact."first name"
                default: throw ExpressionError("expected a name after '.', found \(current.display)", at: current.position)
                }
                advance()
            }
            return SyntaxNode(.name(path), at: token.position)
        default:
            throw ExpressionError("expected an expression, found \(token.display)", at: token.position)
        }
    }

    private mutating func parseCall(name: String, at position: SourcePosition) throws(ExpressionError) -> SyntaxNode {
        advance()  // (
        var arguments: [SyntaxArgument] = []
        if !isSymbol(")") {
            while true {
                var label: String? = nil
                var labelPosition: SourcePosition? = nil
                if case .identifier(let l) = current.kind, tokens[index + 1].kind == .symbol(":") {
                    label = l
                    labelPosition = current.position
                    advance(); advance()
                }
                let value = try nested { (p: inout Parser) throws(ExpressionError) in try p.parseOr() }
                arguments.append(SyntaxArgument(label: label, labelPosition: labelPosition, value: value))
                if isSymbol(",") { advance(); continue }
                break
            }
        }
        guard isSymbol(")") else {
            throw ExpressionError("expected ')' after arguments of \(name), found \(current.display)", at: current.position)
        }
        advance()
        return SyntaxNode(.call(name: name, arguments: arguments), at: position)
    }
}
