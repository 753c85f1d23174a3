import Channels
import Domain
import Foundation

struct DefinitionFailed: Error, CustomStringConvertible {
    let description: String
}

/// Typed definitions from YAML text, through the real loader (the definition structs have no public init).
enum Definitions {
    static func load(_ yaml: String) throws -> [Definition] {
        let report = DefinitionLoader.load(file: "test.yaml", text: yaml)
        guard report.isValid else { throw DefinitionFailed(description: report.errors.map { "\($0)" }.joined(separator: "\n")) }
        return report.definitions
    }

    static func template(_ yaml: String) throws -> TemplateDefinition {
        for definition in try load(yaml) { if case .template(let t) = definition.body { return t } }
        throw DefinitionFailed(description: "no template in \(yaml)")
    }

    static func provider(_ yaml: String) throws -> ProviderDefinition {
        for definition in try load(yaml) { if case .provider(let p) = definition.body { return p } }
        throw DefinitionFailed(description: "no provider in \(yaml)")
    }

    static func httpProvider(_ url: String, channel: String = "email", batch: Int? = nil) throws -> ProviderDefinition {
        try provider("""
        kind: provider
        name: test-\(channel)
        channel: \(channel)
        type: http
        url: "\(url)"
        \(batch.map { "batch: \($0)" } ?? "")
        """)
    }

    static func smtpProvider(port: Int, from: String = "Acme <hello@acme.test>") throws -> ProviderDefinition {
        try provider("""
        kind: provider
        name: test-smtp
        channel: email
        type: smtp
        url: "smtp://127.0.0.1:\(port)"
        from: "\(from)"
        username_env: TEST_SMTP_USER
        password_env: TEST_SMTP_PASSWORD
        """)
    }
}

func emailMessage(id: String = UUID().uuidString.lowercased(), to: String = "ann@example.com", subject: String = "Hello",
                  html: String? = "<p>Hi</p>", text: String? = "Hi", category: TemplateDefinition.Category = .marketing,
                  headers: [(name: String, value: String)] = []) -> OutboundMessage {
    OutboundMessage(deliveryId: id, channel: .email, category: category, to: to, contactId: "u-42",
                    from: "Acme <hello@acme.test>", subject: subject, html: html, text: text, headers: headers,
                    source: .workflow(name: "welcome", step: 2))
}

/// A small MIME reader for checking what `MIMEMessage` writes: strict about CRLF and line length.
struct ParsedMIME {
    struct Part {
        var headers: [(String, String)]
        var body: [UInt8]   // decoded
        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    var headers: [(String, String)]
    var parts: [Part]
    /// Header values as written (folded), for checking folding.
    var rawHeaderLines: [String]

    func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }

    init(_ bytes: [UInt8]) throws {
        // Every LF is preceded by CR, every CR followed by LF; no line over 998 octets.
        var lineLength = 0
        for (i, b) in bytes.enumerated() {
            if b == 10 {
                guard i > 0, bytes[i - 1] == 13 else { throw DefinitionFailed(description: "bare LF at \(i)") }
                lineLength = 0
            } else if b == 13 {
                guard i + 1 < bytes.count, bytes[i + 1] == 10 else { throw DefinitionFailed(description: "bare CR at \(i)") }
            } else {
                lineLength += 1
                guard lineLength <= 998 else { throw DefinitionFailed(description: "line over 998 octets at \(i)") }
            }
        }
        let text = String(decoding: bytes, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw DefinitionFailed(description: "no header/body separator") }
        rawHeaderLines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        headers = ParsedMIME.parseHeaders(String(text[..<split.lowerBound]))
        let body = String(text[split.upperBound...])
        let contentType = headers.first { $0.0.lowercased() == "content-type" }?.1 ?? ""
        if contentType.hasPrefix("multipart/") {
            guard let b = contentType.range(of: "boundary=\"") else { throw DefinitionFailed(description: "no boundary") }
            let boundary = String(contentType[b.upperBound...].prefix { $0 != "\"" })
            let sections = body.components(separatedBy: "--\(boundary)")
            guard sections.count >= 3, sections.last!.hasPrefix("--") else {
                throw DefinitionFailed(description: "multipart not closed with --\(boundary)--")
            }
            parts = try sections.dropFirst().dropLast().map { section in
                var s = Substring(section)
                guard s.hasPrefix("\r\n") else { throw DefinitionFailed(description: "boundary line not followed by CRLF") }
                s = s.dropFirst()   // "\r\n" is one Character
                guard let cut = s.range(of: "\r\n\r\n") else { throw DefinitionFailed(description: "part without header end") }
                let partHeaders = ParsedMIME.parseHeaders(String(s[..<cut.lowerBound]))
                var content = String(s[cut.upperBound...])
                // The CRLF before the next boundary belongs to the boundary.
                if content.hasSuffix("\r\n") { content.removeLast() }
                return Part(headers: partHeaders, body: try ParsedMIME.decode(content, headers: partHeaders))
            }
        } else {
            parts = [Part(headers: headers, body: try ParsedMIME.decode(body, headers: headers))]
        }
    }

    static func parseHeaders(_ block: String) -> [(String, String)] {
        var result: [(String, String)] = []
        for line in block.components(separatedBy: "\r\n") {
            if line.hasPrefix(" ") || line.hasPrefix("\t"), !result.isEmpty {
                result[result.count - 1].1 += line   // unfold: drop the CRLF, keep the whitespace
            } else if let colon = line.firstIndex(of: ":") {
                result.append((String(line[..<colon]), String(line[line.index(after: colon)...]).trimmingCharacters(in: .whitespaces)))
            }
        }
        return result
    }

    static func decode(_ content: String, headers: [(String, String)]) throws -> [UInt8] {
        let encoding = headers.first { $0.0.lowercased() == "content-transfer-encoding" }?.1.lowercased() ?? "7bit"
        switch encoding {
        case "base64":
            guard let data = Data(base64Encoded: content.replacingOccurrences(of: "\r\n", with: "")) else {
                throw DefinitionFailed(description: "invalid base64")
            }
            return Array(data)
        case "quoted-printable":
            return try decodeQuotedPrintable(content)
        default:
            return Array(content.utf8)
        }
    }

    /// RFC 2045 quoted-printable decoding (strict: lines ≤ 76, `=XX` upper-case hex, no trailing whitespace).
    static func decodeQuotedPrintable(_ text: String) throws -> [UInt8] {
        var out: [UInt8] = []
        let lines = text.components(separatedBy: "\r\n")
        for (index, line) in lines.enumerated() {
            let bytes = Array(line.utf8)
            guard bytes.count <= 76 else { throw DefinitionFailed(description: "quoted-printable line over 76: \(line)") }
            if let last = bytes.last, last == 32 || last == 9 { throw DefinitionFailed(description: "trailing whitespace: \(line)") }
            var i = 0
            var soft = false
            while i < bytes.count {
                let b = bytes[i]
                guard b < 128 else { throw DefinitionFailed(description: "8-bit byte in quoted-printable") }
                if b == 61 {
                    if i == bytes.count - 1 { soft = true; break }
                    guard i + 2 < bytes.count + 0, let v = UInt8(String(decoding: bytes[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) else {
                        throw DefinitionFailed(description: "bad escape in \(line)")
                    }
                    out.append(v)
                    i += 3
                } else {
                    out.append(b)
                    i += 1
                }
            }
            if !soft && index < lines.count - 1 { out.append(13); out.append(10) }
        }
        return out
    }

    /// Decodes RFC 2047 `=?UTF-8?B?...?=` / `?Q?` words; whitespace between adjacent encoded-words is dropped.
    static func decodeEncodedWords(_ value: String) -> String {
        var result = ""
        var rest = Substring(value)
        var previousWasWord = false
        while !rest.isEmpty {
            if rest.hasPrefix("=?"), let end = rest.dropFirst(2).range(of: "?=") {
                let word = rest[rest.index(rest.startIndex, offsetBy: 2)..<end.lowerBound]
                let fields = word.split(separator: "?", maxSplits: 2, omittingEmptySubsequences: false)
                if fields.count == 3 {
                    if fields[1].uppercased() == "B", let data = Data(base64Encoded: String(fields[2])) {
                        result += String(decoding: data, as: UTF8.self)
                    } else {
                        result += String(fields[2]).replacingOccurrences(of: "_", with: " ")
                    }
                    rest = rest[end.upperBound...]
                    previousWasWord = true
                    continue
                }
            }
            if previousWasWord {
                let spaces = rest.prefix { $0 == " " || $0 == "\t" }
                let after = rest.dropFirst(spaces.count)
                if after.hasPrefix("=?") && !spaces.isEmpty { rest = after; continue }
            }
            result.append(rest.removeFirst())
            previousWasWord = false
        }
        return result
    }
}
