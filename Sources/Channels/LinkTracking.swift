import Domain
import Foundation

/// Open and click tracking for HTML email (issue 7), as a pure function of the rendered HTML:
/// - every `<a href="http(s)://...">` becomes a signed click redirect `{public}/c/{token}` unless the tag carries
///   `data-notrack` (then it is left exactly as written); the token carries the original URL and the template's UTM
///   parameters, which the redirect adds; the installation's own links (unsubscribe, preferences, tracking) are
///   never rewritten;
/// - a 1×1 pixel `{public}/o/{token}` goes right before `</body>` (or at the end when there is none).
///
/// Everything else is kept byte for byte. Call it on the rendered `html` of marketing and transactional email alike
/// (a template opts out with `tracking: false`, or `tracking: {opens: false}` / `{clicks: false}`).
public enum LinkTracking {
    /// Tracks an email message as its template says (`tracking:`, `utm:`): what the send paths call right after
    /// composing. Other channels, text-only mail and templates with tracking off are left as they are.
    public static func apply(to message: inout OutboundMessage, template: TemplateDefinition, contactId: Int64, links: SignedLinks) {
        guard message.channel == .email, let html = message.html, template.trackOpens || template.trackClicks else { return }
        message.html = rewrite(html: html, contactId: contactId, deliveryId: message.deliveryId, links: links, utm: template.utm,
                               trackOpens: template.trackOpens, trackClicks: template.trackClicks)
    }

    /// The rendered HTML with its links rewritten and (when `trackOpens`) the pixel added.
    /// - Parameters:
    ///   - utm: the template's UTM parameters (`utm_source` → `newsletter`, ...); names without the `utm_` prefix
    ///     get it. Added by the redirect to the destination, unless the destination already names the parameter.
    public static func rewrite(html: String, contactId: Int64, deliveryId: String, links: SignedLinks,
                               utm: [String: String] = [:], trackOpens: Bool = true, trackClicks: Bool = true,
                               expiresAt: Date? = nil) -> String {
        var out = html
        if trackClicks {
            let query = utmQuery(utm)
            out = rewriteAnchors(out) { url in
                guard isTrackable(url, links: links) else { return nil }
                return links.clickURL(contactId: contactId, deliveryId: deliveryId, url: url, utm: query, expiresAt: expiresAt)
            }
        }
        if trackOpens {
            let pixel = "<img src=\"\(links.openPixelURL(contactId: contactId, deliveryId: deliveryId, expiresAt: expiresAt))\" "
                + "width=\"1\" height=\"1\" alt=\"\" style=\"display:block;border:0;width:1px;height:1px\">"
            if let offset = lastClosingBody(out) {
                var bytes = Array(out.utf8)
                bytes.insert(contentsOf: Array(pixel.utf8), at: offset)
                out = String(decoding: bytes, as: UTF8.self)
            } else {
                out += pixel
            }
        }
        return out
    }

    /// The UTF-8 offset of the last `</body` (any case), scanning bytes (Foundation's case-insensitive backwards
    /// search cost more than the rest of the rewrite).
    static func lastClosingBody(_ html: String) -> Int? {
        let needle: [UInt8] = Array("</body".utf8)
        return html.utf8.withContiguousStorageIfAvailable { bytes -> Int? in
            guard bytes.count >= needle.count else { return nil }
            var i = bytes.count - needle.count
            while i >= 0 {
                if bytes[i] == 0x3C && bytes[i + 1] == 0x2F {
                    var match = true
                    for k in 2..<needle.count where bytes[i + k] | 0x20 != needle[k] { match = false; break }
                    if match { return i }
                }
                i -= 1
            }
            return nil
        } ?? {
            var copy = html
            copy.makeContiguousUTF8()
            return lastClosingBody(copy)
        }()
    }

    /// `utm_campaign=spring&utm_source=newsletter` (names sorted, values percent-encoded): what click tokens carry.
    public static func utmQuery(_ utm: [String: String]) -> String {
        utm.map { (key, value) in (key.hasPrefix("utm_") ? key : "utm_" + key, value) }
            .filter { !$0.1.isEmpty }
            .sorted { $0.0 < $1.0 }
            .map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }
            .joined(separator: "&")
    }

    /// `url` with the `name=value` pairs of `query` appended (before any `#fragment`), except names the URL's own
    /// query already has (what the author wrote wins).
    public static func addQuery(_ query: String, to url: String) -> String {
        if query.isEmpty { return url }
        let u = Array(url.utf8)
        let hash = u.firstIndex(of: UInt8(ascii: "#")) ?? u.count
        guard let question = u[..<hash].firstIndex(of: UInt8(ascii: "?")) else {
            // No query of its own: every pair goes in (before any fragment).
            if hash == u.count { return url + "?" + query }
            return String(decoding: u[..<hash], as: UTF8.self) + "?" + query + String(decoding: u[hash...], as: UTF8.self)
        }
        // The names the URL's query already has (a handful: a linear scan beats hashing).
        var existing: [ArraySlice<UInt8>] = []
        var i = question + 1
        while i < hash {
            var end = i
            while end < hash && u[end] != UInt8(ascii: "&") { end += 1 }
            var nameEnd = i
            while nameEnd < end && u[nameEnd] != UInt8(ascii: "=") { nameEnd += 1 }
            if end > i { existing.append(u[i..<nameEnd]) }
            i = end + 1
        }
        var added: [UInt8] = []
        let q = Array(query.utf8)
        i = 0
        while i < q.count {
            var end = i
            while end < q.count && q[end] != UInt8(ascii: "&") { end += 1 }
            var nameEnd = i
            while nameEnd < end && q[nameEnd] != UInt8(ascii: "=") { nameEnd += 1 }
            let name = q[i..<nameEnd]
            if end > i && !existing.contains(where: { $0.elementsEqual(name) }) {
                if !added.isEmpty { added.append(UInt8(ascii: "&")) }
                added.append(contentsOf: q[i..<end])
            }
            i = end + 1
        }
        if added.isEmpty { return url }
        var out: [UInt8] = []
        out.reserveCapacity(u.count + added.count + 1)
        out.append(contentsOf: u[..<hash])
        let last = u[hash - 1]
        if last != UInt8(ascii: "?") && last != UInt8(ascii: "&") { out.append(UInt8(ascii: "&")) }
        out.append(contentsOf: added)
        out.append(contentsOf: u[hash...])
        return String(decoding: out, as: UTF8.self)
    }

    /// An absolute http(s) URL that is not one of the installation's own links.
    public static func isTrackable(_ url: String, links: SignedLinks) -> Bool {
        let bytes = url.utf8
        func hasSchemePrefix(_ scheme: StaticString) -> Bool {
            let count = scheme.utf8CodeUnitCount
            guard bytes.count >= count else { return false }
            var i = bytes.startIndex
            for k in 0..<count {
                let b = bytes[i]
                let lower = b >= 65 && b <= 90 ? b + 32 : b
                if lower != scheme.utf8Start[k] { return false }
                i = bytes.index(after: i)
            }
            return true
        }
        guard hasSchemePrefix("http://") || hasSchemePrefix("https://") else { return false }
        guard !bytes.contains(where: { $0 == 10 || $0 == 13 || $0 == 9 || $0 == 32 }) else { return false }
        // The installation's own links: `{public}/u/`, `/p/`, `/o/`, `/c/`.
        let own = links.publicURL.utf8
        if bytes.starts(with: own) {
            let rest = bytes.dropFirst(own.count)
            if rest.count >= 3, rest.first == UInt8(ascii: "/"), rest.dropFirst(2).first == UInt8(ascii: "/"),
               [UInt8(ascii: "u"), UInt8(ascii: "p"), UInt8(ascii: "o"), UInt8(ascii: "c")].contains(rest.dropFirst().first!) {
                return false
            }
        }
        return true
    }

    // MARK: - scanning

    /// Calls `replace` with the decoded `href` of every `<a>` tag without `data-notrack`; a non-nil result replaces
    /// the attribute's value (written double-quoted). Comments are left alone.
    static func rewriteAnchors(_ html: String, _ replace: (String) -> String?) -> String {
        let bytes = Array(html.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + 256)
        var i = 0
        var copied = 0
        let n = bytes.count
        func lower(_ b: UInt8) -> UInt8 { b >= 65 && b <= 90 ? b + 32 : b }
        func isSpace(_ b: UInt8) -> Bool { b == 32 || b == 9 || b == 10 || b == 13 || b == 12 }
        while i < n {
            guard bytes[i] == UInt8(ascii: "<") else { i += 1; continue }
            // <!-- comment -->
            if i + 3 < n && bytes[i + 1] == UInt8(ascii: "!") && bytes[i + 2] == UInt8(ascii: "-") && bytes[i + 3] == UInt8(ascii: "-") {
                var j = i + 4
                while j + 2 < n && !(bytes[j] == UInt8(ascii: "-") && bytes[j + 1] == UInt8(ascii: "-") && bytes[j + 2] == UInt8(ascii: ">")) { j += 1 }
                i = min(n, j + 3)
                continue
            }
            guard i + 2 < n, lower(bytes[i + 1]) == UInt8(ascii: "a"), isSpace(bytes[i + 2]) else { i += 1; continue }
            // Attributes of this <a ...> tag.
            var j = i + 2
            var hrefValue: Range<Int>? = nil     // the value's bytes (without quotes)
            var hrefSpan: Range<Int>? = nil      // the value including its quotes
            var notrack = false
            while j < n && bytes[j] != UInt8(ascii: ">") {
                if isSpace(bytes[j]) || bytes[j] == UInt8(ascii: "/") { j += 1; continue }
                let nameStart = j
                while j < n && !isSpace(bytes[j]) && bytes[j] != UInt8(ascii: "=") && bytes[j] != UInt8(ascii: ">") { j += 1 }
                let name = String(decoding: bytes[nameStart..<j].map(lower), as: UTF8.self)
                while j < n && isSpace(bytes[j]) { j += 1 }
                var value: Range<Int>? = nil
                var span: Range<Int>? = nil
                if j < n && bytes[j] == UInt8(ascii: "=") {
                    j += 1
                    while j < n && isSpace(bytes[j]) { j += 1 }
                    if j < n && (bytes[j] == UInt8(ascii: "\"") || bytes[j] == UInt8(ascii: "'")) {
                        let quote = bytes[j]
                        let start = j + 1
                        var k = start
                        while k < n && bytes[k] != quote { k += 1 }
                        value = start..<k
                        span = j..<min(n, k + 1)
                        j = min(n, k + 1)
                    } else {
                        let start = j
                        while j < n && !isSpace(bytes[j]) && bytes[j] != UInt8(ascii: ">") { j += 1 }
                        value = start..<j
                        span = start..<j
                    }
                }
                if name == "href" && hrefValue == nil { hrefValue = value; hrefSpan = span }
                if name == "data-notrack" { notrack = true }
            }
            if !notrack, let value = hrefValue, let span = hrefSpan {
                let raw = String(decoding: bytes[value], as: UTF8.self)
                let decoded = trimmingWhitespace(decodeEntities(raw))
                if let replacement = replace(decoded) {
                    out.append(contentsOf: bytes[copied..<span.lowerBound])
                    out.append(UInt8(ascii: "\""))
                    out.append(contentsOf: Array(escapeAttribute(replacement).utf8))
                    out.append(UInt8(ascii: "\""))
                    copied = span.upperBound
                }
            }
            i = j
        }
        if copied == 0 { return html }
        out.append(contentsOf: bytes[copied..<n])
        return String(decoding: out, as: UTF8.self)
    }

    /// HTML character references in an attribute value: the named ones email HTML uses, and numeric ones.
    static func decodeEntities(_ text: String) -> String {
        guard text.utf8.contains(UInt8(ascii: "&")) else { return text }
        var out = ""
        var rest = Substring(text)
        while let amp = rest.firstIndex(of: "&") {
            out += rest[..<amp]
            let after = rest[rest.index(after: amp)...]
            guard let semi = after.prefix(12).firstIndex(of: ";") else { out += "&"; rest = after; continue }
            let name = after[..<semi]
            var replacement: String?
            switch name {
            case "amp": replacement = "&"
            case "quot": replacement = "\""
            case "apos": replacement = "'"
            case "lt": replacement = "<"
            case "gt": replacement = ">"
            case "nbsp": replacement = "\u{A0}"
            default:
                if name.hasPrefix("#x") || name.hasPrefix("#X"), let v = UInt32(name.dropFirst(2), radix: 16), let s = Unicode.Scalar(v) {
                    replacement = String(Character(s))
                } else if name.hasPrefix("#"), let v = UInt32(name.dropFirst()), let s = Unicode.Scalar(v) {
                    replacement = String(Character(s))
                }
            }
            if let replacement {
                out += replacement
                rest = after[after.index(after: semi)...]
            } else {
                out += "&"
                rest = after
            }
        }
        out += rest
        return out
    }

    static func escapeAttribute(_ text: String) -> String { HTMLText.escape(text) }

    /// `text` without leading and trailing white space (Unicode's, which includes the no-break space an entity
    /// may have produced): a scan of scalars, not Foundation's `trimmingCharacters` (a tenth of a worker's CPU).
    static func trimmingWhitespace(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        if first == scalars.startIndex && last == scalars.index(before: scalars.endIndex) { return text }
        return String(scalars[first...last])
    }

    static func percentEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
            }
        }
        return out
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
