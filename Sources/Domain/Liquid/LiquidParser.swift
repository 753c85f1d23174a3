import Foundation

/// Maps byte offsets of the source to 1-based line and column (columns count Unicode scalars).
struct LiquidSourceMap: Sendable {
    let bytes: [UInt8]
    /// Line and column (1-based; columns count Unicode scalars) of every byte offset, and of the end.
    private let lines: [Int32]
    private let columns: [Int32]

    init(_ source: String) {
        bytes = Array(source.utf8)
        var lines = [Int32](repeating: 1, count: bytes.count + 1)
        var columns = [Int32](repeating: 1, count: bytes.count + 1)
        var line: Int32 = 1, column: Int32 = 1
        for (i, b) in bytes.enumerated() {
            lines[i] = line
            columns[i] = column
            if b == UInt8(ascii: "\n") {
                line &+= 1
                column = 1
            } else if i + 1 < bytes.count, bytes[i + 1] & 0xC0 != 0x80 {
                column &+= 1
            } else if i + 1 == bytes.count {
                column &+= 1
            }
        }
        lines[bytes.count] = line
        columns[bytes.count] = column
        self.lines = lines
        self.columns = columns
    }

    func location(_ offset: Int) -> LiquidLocation {
        let offset = min(max(offset, 0), bytes.count)
        return LiquidLocation(line: lines[offset], column: columns[offset])
    }

    func error(_ offset: Int, _ message: String) -> LiquidError {
        location(offset).error(message, kind: .syntax)
    }

    func string(_ start: Int, _ end: Int) -> String {
        guard start < end else { return "" }
        return String(decoding: bytes[start..<end], as: UTF8.self)
    }
}

@inline(__always) func liquidIsWhitespace(_ b: UInt8) -> Bool {
    b == 0x20 || b == 0x09 || b == 0x0A || b == 0x0D || b == 0x0B || b == 0x0C
}

@inline(__always) private func isIdentStart(_ b: UInt8) -> Bool {
    (b >= 0x61 && b <= 0x7A) || (b >= 0x41 && b <= 0x5A) || b == 0x5F
}

@inline(__always) private func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

@inline(__always) private func isIdentChar(_ b: UInt8) -> Bool { isIdentStart(b) || isDigit(b) || b == 0x2D }

// MARK: - Template tokens

private enum RawToken {
    case text(String, offset: Int)
    /// Content range of `{{ ... }}` (without braces and trim dashes); `open` is the offset of `{{`.
    case output(start: Int, end: Int, open: Int)
    case tag(RawTag)
}

private struct RawTag {
    let name: String
    let open: Int
    let nameOffset: Int
    let argsStart: Int
    let argsEnd: Int
}

/// A `{% ... %}` found by scanning (used for the main pass and to find `endraw` / `endcomment`).
private struct ScannedTag {
    let open: Int
    let contentStart: Int
    let contentEnd: Int
    let next: Int
    let trimLeft: Bool
    let trimRight: Bool
    let name: String
    let nameOffset: Int
    let argsStart: Int
}

// MARK: - Expression tokens

private enum ExprToken: Equatable {
    case ident(String)
    case string(String)
    case number(Double, isFloat: Bool)
    case dot, dotDot, lbracket, rbracket, lparen, rparen, pipe, colon, comma, assign
    case compare(LiquidCompareOp)
    case end

    var display: String {
        switch self {
        case .ident(let s): return "'\(s)'"
        case .string(let s): return "string \"\(s.prefix(20))\""
        case .number(let n, _): return "number \(Value.format(number: n))"
        case .dot: return "'.'"
        case .dotDot: return "'..'"
        case .lbracket: return "'['"
        case .rbracket: return "']'"
        case .lparen: return "'('"
        case .rparen: return "')'"
        case .pipe: return "'|'"
        case .colon: return "':'"
        case .comma: return "','"
        case .assign: return "'='"
        case .compare(let op): return "'\(op.rawValue)'"
        case .end: return "end of tag"
        }
    }
}

private struct PositionedToken {
    let token: ExprToken
    let offset: Int
}

// MARK: - Parser

struct LiquidParser {
    let map: LiquidSourceMap
    private var tokens: [RawToken] = []
    private var position = 0

    init(source: String) {
        map = LiquidSourceMap(source)
    }

    mutating func parse() throws -> [LiquidNode] {
        tokens = try tokenize()
        position = 0
        let (nodes, _) = try parseNodes(until: [], opener: nil, depth: 0, loopDepth: 0)
        return nodes
    }

    // MARK: template tokenizer

    private func scanTag(at open: Int) throws -> ScannedTag {
        let bytes = map.bytes
        var contentStart = open + 2
        let trimLeft = contentStart < bytes.count && bytes[contentStart] == UInt8(ascii: "-")
        if trimLeft { contentStart += 1 }
        var j = contentStart
        while j + 1 < bytes.count && !(bytes[j] == UInt8(ascii: "%") && bytes[j + 1] == UInt8(ascii: "}")) { j += 1 }
        guard j + 1 < bytes.count else { throw map.error(open, "tag '{%' was never closed with '%}'") }
        var contentEnd = j
        let trimRight = contentEnd > contentStart && bytes[contentEnd - 1] == UInt8(ascii: "-")
        if trimRight { contentEnd -= 1 }
        var k = contentStart
        while k < contentEnd && liquidIsWhitespace(bytes[k]) { k += 1 }
        let nameOffset = k
        if k < contentEnd && bytes[k] == UInt8(ascii: "#") {
            k += 1
        } else {
            while k < contentEnd && (isIdentStart(bytes[k]) || isDigit(bytes[k])) { k += 1 }
        }
        return ScannedTag(open: open, contentStart: contentStart, contentEnd: contentEnd, next: j + 2,
                          trimLeft: trimLeft, trimRight: trimRight, name: map.string(nameOffset, k),
                          nameOffset: nameOffset, argsStart: k)
    }

    /// The next `{% ... %}` at or after `from`, or nil.
    private func nextTag(from: Int) throws -> ScannedTag? {
        let bytes = map.bytes
        var i = from
        while i + 1 < bytes.count {
            if bytes[i] == UInt8(ascii: "{") && bytes[i + 1] == UInt8(ascii: "%") { return try scanTag(at: i) }
            i += 1
        }
        return nil
    }

    private func onlyWhitespace(_ start: Int, _ end: Int) -> Bool {
        var i = start
        while i < end { if !liquidIsWhitespace(map.bytes[i]) { return false }; i += 1 }
        return true
    }

    private func tokenize() throws -> [RawToken] {
        let bytes = map.bytes
        let n = bytes.count
        var out: [RawToken] = []
        var i = 0
        var textStart = 0
        var trimNext = false

        func appendText(_ start: Int, _ end: Int, trimStart: Bool, trimEnd: Bool) {
            var s = start, e = end
            if trimStart { while s < e && liquidIsWhitespace(bytes[s]) { s += 1 } }
            if trimEnd { while e > s && liquidIsWhitespace(bytes[e - 1]) { e -= 1 } }
            if s < e { out.append(.text(map.string(s, e), offset: s)) }
        }

        while i + 1 < n {
            guard bytes[i] == UInt8(ascii: "{") && (bytes[i + 1] == UInt8(ascii: "{") || bytes[i + 1] == UInt8(ascii: "%")) else {
                i += 1
                continue
            }
            let open = i
            if bytes[i + 1] == UInt8(ascii: "{") {
                var contentStart = open + 2
                let trimLeft = contentStart < n && bytes[contentStart] == UInt8(ascii: "-")
                if trimLeft { contentStart += 1 }
                var j = contentStart
                while j + 1 < n && !(bytes[j] == UInt8(ascii: "}") && bytes[j + 1] == UInt8(ascii: "}")) { j += 1 }
                guard j + 1 < n else { throw map.error(open, "output '{{' was never closed with '}}'") }
                var contentEnd = j
                let trimRight = contentEnd > contentStart && bytes[contentEnd - 1] == UInt8(ascii: "-")
                if trimRight { contentEnd -= 1 }
                appendText(textStart, open, trimStart: trimNext, trimEnd: trimLeft)
                trimNext = trimRight
                out.append(.output(start: contentStart, end: contentEnd, open: open))
                i = j + 2
                textStart = i
                continue
            }
            let tag = try scanTag(at: open)
            appendText(textStart, open, trimStart: trimNext, trimEnd: tag.trimLeft)
            trimNext = tag.trimRight
            i = tag.next
            textStart = i
            switch tag.name {
            case "":
                throw map.error(tag.nameOffset, "expected a tag name after '{%'")
            case "#":
                continue   // inline comment
            case "raw":
                guard onlyWhitespace(tag.argsStart, tag.contentEnd) else {
                    throw map.error(tag.argsStart, "'raw' takes no arguments")
                }
                var search = tag.next
                var closing: ScannedTag?
                while let candidate = try nextTag(from: search) {
                    if candidate.name == "endraw" { closing = candidate; break }
                    search = candidate.open + 2
                }
                guard let end = closing else { throw map.error(open, "'raw' tag was never closed (expected {% endraw %})") }
                var s = tag.next, e = end.open
                if tag.trimRight { while s < e && liquidIsWhitespace(bytes[s]) { s += 1 } }
                if end.trimLeft { while e > s && liquidIsWhitespace(bytes[e - 1]) { e -= 1 } }
                if s < e { out.append(.text(map.string(s, e), offset: s)) }
                trimNext = end.trimRight
                i = end.next
                textStart = i
            case "comment":
                var depth = 1
                var search = tag.next
                var closing: ScannedTag?
                while let candidate = try nextTag(from: search) {
                    if candidate.name == "comment" { depth += 1 }
                    if candidate.name == "endcomment" { depth -= 1; if depth == 0 { closing = candidate; break } }
                    search = candidate.next
                }
                guard let end = closing else {
                    throw map.error(open, "'comment' tag was never closed (expected {% endcomment %})")
                }
                trimNext = end.trimRight
                i = end.next
                textStart = i
            default:
                out.append(.tag(RawTag(name: tag.name, open: open, nameOffset: tag.nameOffset,
                                       argsStart: tag.argsStart, argsEnd: tag.contentEnd)))
            }
        }
        appendText(textStart, n, trimStart: trimNext, trimEnd: false)
        return out
    }

    // MARK: blocks

    private static let blockEnders: Set<String> = [
        "endif", "endunless", "endfor", "endcase", "endcapture", "else", "elsif", "when", "endraw", "endcomment",
    ]

    private struct Opener {
        let name: String
        let offset: Int
    }

    private mutating func parseNodes(until terminators: Set<String>, opener: Opener?, depth: Int,
                                     loopDepth: Int) throws -> ([LiquidNode], RawTag?) {
        var nodes: [LiquidNode] = []
        while position < tokens.count {
            let token = tokens[position]
            position += 1
            switch token {
            case .text(let text, let offset):
                nodes.append(.text(text, map.location(offset)))
            case .output(let start, let end, let open):
                var expr = try ExpressionParser(map: map, start: start, end: end, fallbackOffset: open + 2)
                let output = try expr.parseOutput(location: map.location(open))
                try expr.expectEnd()
                nodes.append(.output(output))
            case .tag(let tag):
                if terminators.contains(tag.name) { return (nodes, tag) }
                nodes.append(try parseTag(tag, opener: opener, depth: depth, loopDepth: loopDepth))
            }
        }
        if let opener, !terminators.isEmpty {
            let ender = opener.name == "capture" ? "endcapture" : "end\(opener.name)"
            throw map.error(opener.offset, "'\(opener.name)' tag was never closed (expected {% \(ender) %})")
        }
        return (nodes, nil)
    }

    private func noArguments(_ tag: RawTag) throws {
        guard onlyWhitespace(tag.argsStart, tag.argsEnd) else {
            throw map.error(tag.argsStart, "'\(tag.name)' takes no arguments")
        }
    }

    private func expression(_ tag: RawTag) throws -> ExpressionParser {
        try ExpressionParser(map: map, start: tag.argsStart, end: tag.argsEnd, fallbackOffset: tag.argsStart)
    }

    private mutating func parseTag(_ tag: RawTag, opener: Opener?, depth: Int, loopDepth: Int) throws -> LiquidNode {
        let location = map.location(tag.open)
        let isBlock = ["if", "unless", "case", "for", "capture"].contains(tag.name)
        if isBlock && depth >= LiquidLimits.maxNestingDepth {
            throw map.error(tag.open, "blocks are nested more than \(LiquidLimits.maxNestingDepth) deep")
        }
        let me = Opener(name: tag.name, offset: tag.open)
        switch tag.name {
        case "if", "unless":
            let ender = "end\(tag.name)"
            var branches: [LiquidBranch] = []
            var expr = try expression(tag)
            var condition = try expr.parseCondition(tagName: tag.name)
            try expr.expectEnd()
            while true {
                let (body, term) = try parseNodes(until: ["elsif", "else", ender], opener: me, depth: depth + 1,
                                                  loopDepth: loopDepth)
                branches.append(LiquidBranch(condition: condition, body: body))
                guard let term else { throw map.error(tag.open, "'\(tag.name)' tag was never closed (expected {% \(ender) %})") }
                switch term.name {
                case "elsif":
                    var e = try expression(term)
                    condition = try e.parseCondition(tagName: "elsif")
                    try e.expectEnd()
                case "else":
                    try noArguments(term)
                    let (elseBody, endTag) = try parseNodes(until: [ender], opener: me, depth: depth + 1, loopDepth: loopDepth)
                    if let endTag { try noArguments(endTag) }
                    return .conditional(branches: branches, negateFirst: tag.name == "unless", elseBody: elseBody)
                default:
                    try noArguments(term)
                    return .conditional(branches: branches, negateFirst: tag.name == "unless", elseBody: nil)
                }
            }
        case "case":
            var expr = try expression(tag)
            let subject = try expr.parseExpression()
            try expr.expectEnd()
            // Whatever sits between `case` and the first `when` is ignored (normally whitespace).
            var (_, term) = try parseNodes(until: ["when", "else", "endcase"], opener: me, depth: depth + 1, loopDepth: loopDepth)
            var whens: [LiquidWhen] = []
            while let t = term {
                switch t.name {
                case "when":
                    var e = try expression(t)
                    let values = try e.parseWhenValues()
                    try e.expectEnd()
                    let (body, next) = try parseNodes(until: ["when", "else", "endcase"], opener: me, depth: depth + 1, loopDepth: loopDepth)
                    whens.append(LiquidWhen(values: values, isElse: false, body: body))
                    term = next
                case "else":
                    try noArguments(t)
                    let (body, next) = try parseNodes(until: ["endcase"], opener: me, depth: depth + 1, loopDepth: loopDepth)
                    whens.append(LiquidWhen(values: [], isElse: true, body: body))
                    term = next
                default:
                    try noArguments(t)
                    return .caseBlock(subject: subject, whens: whens)
                }
            }
            throw map.error(tag.open, "'case' tag was never closed (expected {% endcase %})")
        case "for":
            var expr = try expression(tag)
            let header = try expr.parseForHeader()
            let (body, term) = try parseNodes(until: ["else", "endfor"], opener: me, depth: depth + 1, loopDepth: loopDepth + 1)
            var elseBody: [LiquidNode] = []
            if let term, term.name == "else" {
                try noArguments(term)
                let (b, endTag) = try parseNodes(until: ["endfor"], opener: me, depth: depth + 1, loopDepth: loopDepth)
                if let endTag { try noArguments(endTag) }
                elseBody = b
            } else if let term {
                try noArguments(term)
            }
            return .forLoop(LiquidFor(variable: header.variable, collection: header.collection, limit: header.limit,
                                      offset: header.offset, reversed: header.reversed, body: body, elseBody: elseBody,
                                      location: location))
        case "assign":
            var expr = try expression(tag)
            let name = try expr.parseAssignTarget()
            let value = try expr.parseOutput(location: location)
            try expr.expectEnd()
            return .assign(name: name, value: value)
        case "capture":
            var expr = try expression(tag)
            let name = try expr.parseCaptureName()
            try expr.expectEnd()
            let (body, term) = try parseNodes(until: ["endcapture"], opener: me, depth: depth + 1, loopDepth: loopDepth)
            if let term { try noArguments(term) }
            return .capture(name: name, body: body, location: location)
        case "echo":
            var expr = try expression(tag)
            let output = try expr.parseOutput(location: location)
            try expr.expectEnd()
            return .output(output)
        case "break", "continue":
            try noArguments(tag)
            guard loopDepth > 0 else { throw map.error(tag.open, "'\(tag.name)' outside a 'for' loop") }
            return tag.name == "break" ? .breakLoop : .continueLoop
        default:
            if LiquidParser.blockEnders.contains(tag.name) {
                if let opener {
                    let at = map.location(opener.offset)
                    throw map.error(tag.open, "'\(tag.name)' does not belong here (inside '\(opener.name)' opened at \(at.line):\(at.column))")
                }
                throw map.error(tag.open, "unexpected '\(tag.name)' (no open block)")
            }
            throw map.error(tag.nameOffset, "unknown tag '\(tag.name)'")
        }
    }
}

// MARK: - Expressions

struct LiquidForHeader {
    let variable: String
    let collection: LiquidExpr
    let limit: LiquidExpr?
    let offset: LiquidExpr?
    let reversed: Bool
}

private struct ExpressionParser {
    let map: LiquidSourceMap
    private var tokens: [PositionedToken] = []
    private var index = 0
    private static let maxDepth = 32

    init(map: LiquidSourceMap, start: Int, end: Int, fallbackOffset: Int) throws {
        self.map = map
        tokens = try ExpressionParser.tokenize(map: map, start: start, end: end)
    }

    private static func tokenize(map: LiquidSourceMap, start: Int, end: Int) throws -> [PositionedToken] {
        let bytes = map.bytes
        var out: [PositionedToken] = []
        var i = start
        while i < end {
            let b = bytes[i]
            if liquidIsWhitespace(b) { i += 1; continue }
            let at = i
            if isIdentStart(b) {
                var j = i + 1
                while j < end && isIdentChar(bytes[j]) { j += 1 }
                if j < end && bytes[j] == UInt8(ascii: "?") { j += 1 }
                out.append(PositionedToken(token: .ident(map.string(i, j)), offset: at))
                i = j
                continue
            }
            let next: UInt8 = i + 1 < end ? bytes[i + 1] : 0
            if isDigit(b) || (b == UInt8(ascii: "-") && isDigit(next)) {
                var j = i + 1
                while j < end && isDigit(bytes[j]) { j += 1 }
                var isFloat = false
                if j + 1 < end && bytes[j] == UInt8(ascii: ".") && isDigit(bytes[j + 1]) {
                    isFloat = true
                    j += 1
                    while j < end && isDigit(bytes[j]) { j += 1 }
                }
                let text = map.string(i, j)
                guard let value = Double(text), value.isFinite else { throw map.error(at, "invalid number '\(text)'") }
                out.append(PositionedToken(token: .number(value, isFloat: isFloat), offset: at))
                i = j
                continue
            }
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "'"):
                var j = i + 1
                while j < end && bytes[j] != b { j += 1 }
                guard j < end else { throw map.error(at, "unterminated string") }
                out.append(PositionedToken(token: .string(map.string(i + 1, j)), offset: at))
                i = j + 1
                continue
            case UInt8(ascii: "."):
                if next == UInt8(ascii: ".") { out.append(PositionedToken(token: .dotDot, offset: at)); i += 2 } else {
                    out.append(PositionedToken(token: .dot, offset: at)); i += 1
                }
                continue
            case UInt8(ascii: "["): out.append(PositionedToken(token: .lbracket, offset: at))
            case UInt8(ascii: "]"): out.append(PositionedToken(token: .rbracket, offset: at))
            case UInt8(ascii: "("): out.append(PositionedToken(token: .lparen, offset: at))
            case UInt8(ascii: ")"): out.append(PositionedToken(token: .rparen, offset: at))
            case UInt8(ascii: "|"): out.append(PositionedToken(token: .pipe, offset: at))
            case UInt8(ascii: ":"): out.append(PositionedToken(token: .colon, offset: at))
            case UInt8(ascii: ","): out.append(PositionedToken(token: .comma, offset: at))
            case UInt8(ascii: "="):
                if next == UInt8(ascii: "=") { out.append(PositionedToken(token: .compare(.equal), offset: at)); i += 2; continue }
                out.append(PositionedToken(token: .assign, offset: at))
            case UInt8(ascii: "!"):
                guard next == UInt8(ascii: "=") else { throw map.error(at, "unexpected character '!'") }
                out.append(PositionedToken(token: .compare(.notEqual), offset: at)); i += 2; continue
            case UInt8(ascii: "<"):
                if next == UInt8(ascii: "=") { out.append(PositionedToken(token: .compare(.lessOrEqual), offset: at)); i += 2; continue }
                if next == UInt8(ascii: ">") { out.append(PositionedToken(token: .compare(.notEqual), offset: at)); i += 2; continue }
                out.append(PositionedToken(token: .compare(.less), offset: at))
            case UInt8(ascii: ">"):
                if next == UInt8(ascii: "=") { out.append(PositionedToken(token: .compare(.greaterOrEqual), offset: at)); i += 2; continue }
                out.append(PositionedToken(token: .compare(.greater), offset: at))
            default:
                // Report the whole (possibly multi-byte) character.
                var j = i + 1
                while j < end && bytes[j] & 0xC0 == 0x80 { j += 1 }
                throw map.error(at, "unexpected character '\(map.string(i, j))'")
            }
            i += 1
        }
        out.append(PositionedToken(token: .end, offset: end))
        return out
    }

    private var current: PositionedToken { tokens[index] }

    private mutating func advance() -> PositionedToken {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    private func unexpected(_ t: PositionedToken, expected: String) -> LiquidError {
        map.error(t.offset, "expected \(expected), found \(t.token.display)")
    }

    mutating func expectEnd() throws {
        guard current.token == .end else { throw map.error(current.offset, "unexpected \(current.token.display)") }
    }

    private mutating func expect(_ token: ExprToken, _ what: String) throws {
        guard current.token == token else { throw unexpected(current, expected: what) }
        _ = advance()
    }

    private mutating func identifier(_ what: String) throws -> String {
        guard case .ident(let name) = current.token else { throw unexpected(current, expected: what) }
        _ = advance()
        return name
    }

    var isFloatLiteralAhead: Bool {
        if case .number(_, let isFloat) = current.token { return isFloat }
        return false
    }

    mutating func parseExpression(depth: Int = 0) throws -> LiquidExpr {
        guard depth < ExpressionParser.maxDepth else { throw map.error(current.offset, "expression nested too deeply") }
        let t = advance()
        switch t.token {
        case .string(let s): return .literal(.string(s))
        case .number(let n, _): return .literal(.number(n))
        case .lparen:
            let lower = try parseExpression(depth: depth + 1)
            try expect(.dotDot, "'..' in a range like (1..5)")
            let upper = try parseExpression(depth: depth + 1)
            try expect(.rparen, "')' closing the range")
            return .range(lower, upper, map.location(t.offset))
        case .ident(let name):
            switch name {
            case "true": return .literal(.bool(true))
            case "false": return .literal(.bool(false))
            case "nil", "null": return .literal(.null)
            case "empty": return .empty
            case "blank": return .blank
            default: return .variable(LiquidVariable(root: name, lookups: try parseLookups(depth: depth)))
            }
        case .lbracket:
            // `["key"]` at the root: a variable whose name is not an identifier.
            let keyExpr = try parseExpression(depth: depth + 1)
            try expect(.rbracket, "']'")
            guard case .literal(.string(let root)) = keyExpr else {
                throw map.error(t.offset, "a root lookup must be a quoted name like [\"name\"]")
            }
            return .variable(LiquidVariable(root: root, lookups: try parseLookups(depth: depth)))
        default:
            throw unexpected(t, expected: "a value")
        }
    }

    private mutating func parseLookups(depth: Int) throws -> [LiquidLookup] {
        var lookups: [LiquidLookup] = []
        while true {
            switch current.token {
            case .dot:
                _ = advance()
                lookups.append(.key(try identifier("a property name after '.'")))
            case .lbracket:
                let open = advance()
                let inner = try parseExpression(depth: depth + 1)
                try expect(.rbracket, "']'")
                switch inner {
                case .literal(.string(let key)): lookups.append(.key(key))
                case .literal(.number(let n)):
                    guard n.rounded() == n, abs(n) < 1e15 else { throw map.error(open.offset, "an index must be a whole number") }
                    lookups.append(.index(Int(n)))
                case .literal, .range, .empty, .blank:
                    throw map.error(open.offset, "an index must be a number, a string or a variable")
                case .variable: lookups.append(.dynamic(inner))
                }
            default:
                return lookups
            }
        }
    }

    mutating func parseOutput(location: LiquidLocation) throws -> LiquidOutput {
        if current.token == .end {
            // `{{ }}` renders nothing, as in Shopify.
            return LiquidOutput(expr: .literal(.null), filters: [], exprIsFloatLiteral: false, location: location)
        }
        let isFloat = isFloatLiteralAhead
        let expr = try parseExpression()
        let filters = try parseFilters()
        return LiquidOutput(expr: expr, filters: filters, exprIsFloatLiteral: isFloat, location: location)
    }

    private mutating func parseFilters() throws -> [LiquidFilterCall] {
        var filters: [LiquidFilterCall] = []
        while current.token == .pipe {
            _ = advance()
            let nameToken = current
            let name = try identifier("a filter name after '|'")
            guard let filter = LiquidFilter(rawValue: name) else {
                throw map.error(nameToken.offset, "unknown filter '\(name)'")
            }
            var args: [LiquidExpr] = []
            var named: [(name: String, value: LiquidExpr)] = []
            var firstIsFloat = false
            if current.token == .colon {
                _ = advance()
                while true {
                    if case .ident(let argName) = current.token, index + 1 < tokens.count, tokens[index + 1].token == .colon {
                        let argToken = advance()
                        _ = advance()
                        guard filter.namedArguments.contains(argName) else {
                            throw map.error(argToken.offset, "filter '\(name)' has no argument named '\(argName)'")
                        }
                        named.append((argName, try parseExpression()))
                    } else {
                        if args.isEmpty { firstIsFloat = isFloatLiteralAhead }
                        args.append(try parseExpression())
                    }
                    guard current.token == .comma else { break }
                    _ = advance()
                }
            }
            let arity = filter.arity
            guard arity.contains(args.count) else {
                let expected = arity.lowerBound == arity.upperBound ? "\(arity.lowerBound)" : "\(arity.lowerBound) to \(arity.upperBound)"
                throw map.error(nameToken.offset, "filter '\(name)' takes \(expected) argument\(arity.upperBound == 1 ? "" : "s"), got \(args.count)")
            }
            filters.append(LiquidFilterCall(filter: filter, args: args, namedArgs: named, firstArgIsFloatLiteral: firstIsFloat,
                                            location: map.location(nameToken.offset)))
        }
        return filters
    }

    mutating func parseCondition(tagName: String) throws -> LiquidCondition {
        guard current.token != .end else { throw map.error(current.offset, "'\(tagName)' needs a condition") }
        var comparisons: [LiquidComparison] = []
        var connectives: [Bool] = []
        while true {
            let start = current.offset
            let left = try parseExpression()
            var op: LiquidCompareOp?
            if case .compare(let o) = current.token { op = o; _ = advance() } else if current.token == .ident("contains") {
                op = .contains; _ = advance()
            } else if current.token == .assign {
                throw map.error(current.offset, "use '==' to compare ('=' is for assign)")
            }
            var right: LiquidExpr?
            if op != nil { right = try parseExpression() }
            comparisons.append(LiquidComparison(left: left, op: op, right: right, location: map.location(start)))
            if current.token == .ident("and") { connectives.append(true); _ = advance(); continue }
            if current.token == .ident("or") { connectives.append(false); _ = advance(); continue }
            return LiquidCondition(comparisons: comparisons, connectives: connectives)
        }
    }

    mutating func parseWhenValues() throws -> [LiquidExpr] {
        guard current.token != .end else { throw map.error(current.offset, "'when' needs a value") }
        var values = [try parseExpression()]
        while current.token == .comma || current.token == .ident("or") {
            _ = advance()
            values.append(try parseExpression())
        }
        return values
    }

    mutating func parseForHeader() throws -> LiquidForHeader {
        let variable = try identifier("a loop variable name")
        guard current.token == .ident("in") else { throw unexpected(current, expected: "'in'") }
        _ = advance()
        let collection = try parseExpression()
        var limit: LiquidExpr?, offset: LiquidExpr?, reversed = false
        while current.token != .end {
            let t = current
            let word = try identifier("'limit:', 'offset:' or 'reversed'")
            switch word {
            case "reversed": reversed = true
            case "limit", "offset":
                try expect(.colon, "':' after '\(word)'")
                if word == "offset", current.token == .ident("continue") {
                    throw map.error(current.offset, "'offset: continue' is not supported")
                }
                let value = try parseExpression()
                if word == "limit" { limit = value } else { offset = value }
                if current.token == .comma { _ = advance() }
            default:
                throw map.error(t.offset, "unknown 'for' option '\(word)' (expected limit:, offset: or reversed)")
            }
        }
        return LiquidForHeader(variable: variable, collection: collection, limit: limit, offset: offset, reversed: reversed)
    }

    mutating func parseAssignTarget() throws -> String {
        let name = try identifier("a variable name")
        try expect(.assign, "'=' after the variable name")
        guard current.token != .end else { throw map.error(current.offset, "'assign' needs a value after '='") }
        return name
    }

    mutating func parseCaptureName() throws -> String {
        switch current.token {
        case .ident(let name): _ = advance(); return name
        case .string(let name): _ = advance(); return name
        default: throw unexpected(current, expected: "a variable name")
        }
    }
}
