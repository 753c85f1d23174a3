import Foundation
import Yams

/// One problem found in a definition file: `file:line:column: message` (1-based line and column in the file).
/// Warnings print as `file:line:column: warning: message` and do not fail validation.
public struct DefinitionDiagnostic: Sendable, Hashable, CustomStringConvertible {
    public enum Severity: String, Sendable, Hashable { case error, warning }
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String
    public let severity: Severity

    public init(file: String, line: Int, column: Int, message: String, severity: Severity = .error) {
        self.file = file
        self.line = line
        self.column = column
        self.message = message
        self.severity = severity
    }

    public var description: String {
        "\(file):\(line):\(column): " + (severity == .warning ? "warning: " : "") + message
    }
}

/// A 1-based position in a definition file.
public struct DefinitionPosition: Sendable, Hashable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public var description: String { "\(line):\(column)" }
}

/// The YAML of a definition after `${VAR}` substitution, with positions: a small Sendable tree of our own, so the
/// decoders work the same on a file (positions known) and on a stored spec (`Value`, no positions).
indirect enum DNode: Sendable {
    enum ScalarKind: Sendable { case string, int, float, bool, null }
    enum Style: Sendable { case plain, singleQuoted, doubleQuoted, literal, folded }
    case scalar(text: String, kind: ScalarKind, style: Style, at: DefinitionPosition?, contentIndent: Int?)
    case mapping([(key: String, keyAt: DefinitionPosition?, value: DNode)], at: DefinitionPosition?)
    case sequence([DNode], at: DefinitionPosition?)

    var position: DefinitionPosition? {
        switch self {
        case .scalar(_, _, _, let at, _), .mapping(_, let at), .sequence(_, let at): return at
        }
    }

    var typeName: String {
        switch self {
        case .scalar(_, let kind, _, _, _):
            switch kind {
            case .string: return "a string"
            case .int: return "an integer"
            case .float: return "a number"
            case .bool: return "a boolean"
            case .null: return "null"
            }
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }

    /// The document as JSON (numbers, booleans and null keep their type).
    var value: Value {
        switch self {
        case .scalar(let text, let kind, _, _, _):
            switch kind {
            case .string: return .string(text)
            case .int, .float: return Double(text.replacingOccurrences(of: "_", with: "")).map(Value.number) ?? .string(text)
            case .bool: return .bool(["true", "True", "TRUE"].contains(text))
            case .null: return .null
            }
        case .mapping(let pairs, _):
            var object: [String: Value] = [:]
            for pair in pairs { object[pair.key] = pair.value.value }
            return .object(object)
        case .sequence(let items, _): return .array(items.map(\.value))
        }
    }

    /// A tree from a stored spec (no positions).
    init(_ value: Value) {
        switch value {
        case .null: self = .scalar(text: "null", kind: .null, style: .plain, at: nil, contentIndent: nil)
        case .bool(let b): self = .scalar(text: b ? "true" : "false", kind: .bool, style: .plain, at: nil, contentIndent: nil)
        case .number(let n):
            let isInt = n.rounded() == n && abs(n) < 1e15
            self = .scalar(text: isInt ? String(Int64(n)) : String(n), kind: isInt ? .int : .float, style: .plain, at: nil, contentIndent: nil)
        case .string(let s): self = .scalar(text: s, kind: .string, style: .doubleQuoted, at: nil, contentIndent: nil)
        case .time(let d): self = .scalar(text: Value.iso8601(d), kind: .string, style: .doubleQuoted, at: nil, contentIndent: nil)
        case .array(let a): self = .sequence(a.map(DNode.init), at: nil)
        case .object(let o):
            self = .mapping(o.keys.sorted().map { (key: $0, keyAt: nil, value: DNode(o[$0]!)) }, at: nil)
        }
    }

    /// Where line `line`, column `column` (1-based) of this scalar's *text* is in the file — best effort:
    /// exact for single-line plain and quoted scalars without escapes and for literal block scalars (`|`);
    /// approximate for folded scalars, multi-line flow scalars and text changed by `${VAR}` substitution.
    func position(ofTextLine line: Int, column: Int) -> DefinitionPosition? {
        guard case .scalar(_, _, let style, let at, let indent) = self, let at else { return position }
        switch style {
        case .plain:
            return line == 1 ? DefinitionPosition(line: at.line, column: at.column + column - 1)
                : DefinitionPosition(line: at.line + line - 1, column: column)
        case .singleQuoted, .doubleQuoted:
            return line == 1 ? DefinitionPosition(line: at.line, column: at.column + column)
                : DefinitionPosition(line: at.line + line - 1, column: column)
        case .literal, .folded:
            return DefinitionPosition(line: at.line + line, column: (indent ?? 0) + column)
        }
    }
}

/// Reads YAML text into `DNode` documents, substituting `${VAR}` / `${VAR:-default}` in scalars.
struct YAMLReader {
    let file: String
    let text: String
    let environment: [String: String]
    var diagnostics: [DefinitionDiagnostic] = []
    private let lines: [Substring]

    init(file: String, text: String, environment: [String: String]) {
        self.file = file
        self.text = text
        self.environment = environment
        self.lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    }

    mutating func error(_ message: String, at position: DefinitionPosition?) {
        let p = position ?? DefinitionPosition(line: 1, column: 1)
        diagnostics.append(DefinitionDiagnostic(file: file, line: p.line, column: p.column, message: message))
    }

    /// Every document of the file (a YAML syntax error ends the file: what follows cannot be trusted).
    mutating func documents() -> [DNode] {
        var out: [DNode] = []
        do {
            let parser = try Yams.Parser(yaml: text)
            while let root = try parser.nextRoot() {
                out.append(convert(root))
            }
        } catch {
            reportYAMLError(error)
        }
        return out
    }

    private mutating func reportYAMLError(_ error: any Error) {
        guard let yaml = error as? YamlError else { return self.error("\(error)", at: nil) }
        switch yaml {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            let detail = context.map { " (\($0.text) at \($0.mark.line):\($0.mark.column))" } ?? ""
            self.error("YAML syntax error: \(problem)\(detail)", at: DefinitionPosition(line: mark.line, column: mark.column))
        case .duplicatedKeysInMapping(let duplicates, let context):
            self.error("duplicate key \(duplicates.map { "'\($0)'" }.joined(separator: ", ")) in mapping",
                       at: DefinitionPosition(line: context.mark.line, column: context.mark.column))
        case .reader(let problem, _, _, _):
            self.error("YAML reader error: \(problem)", at: nil)
        default:
            self.error("YAML error: \(yaml)", at: nil)
        }
    }

    private func pos(_ mark: Mark?) -> DefinitionPosition? {
        mark.map { DefinitionPosition(line: $0.line, column: $0.column) }
    }

    private mutating func convert(_ node: Node) -> DNode {
        switch node {
        case .scalar(let scalar):
            let at = pos(scalar.mark)
            let style: DNode.Style
            switch scalar.style {
            case .singleQuoted: style = .singleQuoted
            case .doubleQuoted: style = .doubleQuoted
            case .literal: style = .literal
            case .folded: style = .folded
            default: style = .plain
            }
            var indent: Int? = nil
            if (style == .literal || style == .folded), let at {
                // The content starts on the next non-blank line; its indentation is the block's.
                var index = at.line // 0-based index of the line after the indicator
                while index < lines.count, lines[index].allSatisfy({ $0 == " " }) { index += 1 }
                if index < lines.count { indent = lines[index].prefix(while: { $0 == " " }).count }
            }
            let text = substitute(scalar.string, node: .scalar(text: scalar.string, kind: .string, style: style, at: at, contentIndent: indent))
            let kind: DNode.ScalarKind = style == .plain ? Self.resolve(text) : .string
            return .scalar(text: text, kind: kind, style: style, at: at, contentIndent: indent)
        case .mapping(let mapping):
            var pairs: [(key: String, keyAt: DefinitionPosition?, value: DNode)] = []
            var seen: [String: DefinitionPosition?] = [:]
            for (key, value) in mapping {
                let keyText: String
                if case .scalar(let s) = key { keyText = s.string } else {
                    error("keys must be plain strings", at: pos(key.mark))
                    continue
                }
                if let first = seen[keyText] {
                    error("duplicate key '\(keyText)' (first at \(first.map(\.description) ?? "?"))", at: pos(key.mark))
                    continue
                }
                seen[keyText] = pos(key.mark)
                pairs.append((key: keyText, keyAt: pos(key.mark), value: convert(value)))
            }
            return .mapping(pairs, at: pos(mapping.mark))
        case .sequence(let sequence):
            return .sequence(sequence.map { convert($0) }, at: pos(sequence.mark))
        case .alias(let alias):
            error("YAML aliases are not supported in definition files", at: pos(alias.mark))
            return .scalar(text: "", kind: .null, style: .plain, at: pos(alias.mark), contentIndent: nil)
        }
    }

    /// YAML 1.2 core-schema resolution of a plain scalar (so `no` stays a string, unlike YAML 1.1).
    static func resolve(_ text: String) -> DNode.ScalarKind {
        switch text {
        case "", "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE", "false", "False", "FALSE": return .bool
        default: break
        }
        if text.range(of: #"^[-+]?[0-9]+$"#, options: .regularExpression) != nil { return .int }
        if text.range(of: #"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"#, options: .regularExpression) != nil { return .float }
        return .string
    }

    /// Replaces `${VAR}` and `${VAR:-default}`; an unset variable without a default is an error at its position.
    /// `$${` is a literal `${`.
    private mutating func substitute(_ text: String, node: DNode) -> String {
        guard text.contains("${") else { return text }
        var out = ""
        let chars = Array(text)
        var i = 0
        var line = 1
        var column = 1
        func advance(_ c: Character) {
            if c == "\n" { line += 1; column = 1 } else { column += 1 }
        }
        while i < chars.count {
            if chars[i] == "$", i + 2 < chars.count, chars[i + 1] == "$", chars[i + 2] == "{" {
                out += "${"
                advance("$"); advance("$"); advance("{")
                i += 3
                continue
            }
            if chars[i] == "$", i + 1 < chars.count, chars[i + 1] == "{" {
                guard let close = chars[(i + 2)...].firstIndex(of: "}") else {
                    error("unterminated ${ in value (expected ${VAR} or ${VAR:-default})", at: node.position(ofTextLine: line, column: column))
                    out.append(contentsOf: chars[i...])
                    break
                }
                let inner = String(chars[(i + 2)..<close])
                let name: String
                let fallback: String?
                if let range = inner.range(of: ":-") {
                    name = String(inner[..<range.lowerBound])
                    fallback = String(inner[range.upperBound...])
                } else {
                    name = inner
                    fallback = nil
                }
                if name.isEmpty || name.range(of: #"^[A-Za-z_][A-Za-z0-9_]*$"#, options: .regularExpression) == nil {
                    error("invalid environment variable name '\(name)' in ${...}", at: node.position(ofTextLine: line, column: column))
                } else if let value = environment[name], !(value.isEmpty && fallback != nil) {
                    out += value
                } else if let fallback {
                    out += fallback
                } else {
                    error("environment variable \(name) is not set (and ${\(name)} has no default; write ${\(name):-default})",
                          at: node.position(ofTextLine: line, column: column))
                }
                for c in chars[i...close] { advance(c) }
                i = close + 1
                continue
            }
            out.append(chars[i])
            advance(chars[i])
            i += 1
        }
        return out
    }
}

/// Edit distance, for "did you mean" suggestions.
func levenshtein(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = Array(repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
func suggestion(for word: String, among candidates: [String]) -> String? {
    let scored = candidates.map { ($0, levenshtein(word.lowercased(), $0.lowercased())) }
    guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
    return best.1 <= max(2, word.count / 3) ? best.0 : nil
}
