import Domain
import Foundation

/// Renders an email `OutboundMessage` as an RFC 5322 / MIME message (pure; no I/O).
///
/// - `multipart/alternative` (text first, then html) when both bodies exist, else a single `text/plain` or
///   `text/html` part; always `charset=utf-8`.
/// - Each body is quoted-printable or base64, whichever is shorter for its bytes (mostly-ASCII text stays readable
///   as quoted-printable); no line exceeds 76 characters in either.
/// - Headers: `Date`, `From`, `To`, `Subject`, `Message-ID: <deliveryId@domain-of-from>`, `MIME-Version`, the
///   message's own headers (`List-Unsubscribe`, `List-Unsubscribe-Post` for marketing), `X-Nurture-Delivery-Id`.
///   Non-ASCII subjects, display names and header values become RFC 2047 encoded-words (`=?UTF-8?B?...?=`);
///   long headers are folded; CR and LF in values are dropped (no header injection).
/// - CRLF line endings everywhere; no line longer than 998 octets.
public enum MIMEMessage {
    /// The whole message as bytes, ready for `SMTPClient.send`.
    /// - Parameters:
    ///   - from: the `From` header (`Name <address>` or a bare address); `message.from` when nil.
    ///   - date: the `Date` header.
    public static func render(_ message: OutboundMessage, from: String? = nil, date: Date) -> [UInt8] {
        var out: [UInt8] = []
        let bodySize = (message.text?.utf8.count ?? 0) + (message.html?.utf8.count ?? 0)
        out.reserveCapacity(1024 + bodySize + bodySize / 2)
        let sender = from ?? message.from
        let senderAddress = sender.map { parseAddress($0).address }

        header("Date", dateHeader(date), into: &out)
        if let sender { header("From", formatAddress(sender), into: &out) }
        if let to = message.to { header("To", formatAddress(to), into: &out) }
        if let subject = message.subject { header("Subject", encodeHeaderText(subject, nameLength: 7), into: &out) }
        header("Message-ID", messageID(deliveryId: message.deliveryId, from: senderAddress), into: &out)
        header("MIME-Version", "1.0", into: &out)
        for (name, value) in message.headers where isHeaderName(name) {
            let lowered = name.lowercased()
            if reservedHeaders.contains(lowered) { continue }
            header(name, encodeHeaderText(value, nameLength: name.utf8.count), into: &out)
        }
        header("X-Nurture-Delivery-Id", encodeHeaderText(message.deliveryId, nameLength: 21), into: &out)

        switch (message.text, message.html) {
        case (let text?, let html?):
            let boundary = boundary(for: message.deliveryId)
            header("Content-Type", "multipart/alternative; boundary=\"\(boundary)\"", into: &out)
            crlf(&out)
            append("This is a multi-part message in MIME format.", &out); crlf(&out)
            for (type, content) in [("text/plain", text), ("text/html", html)] {
                crlf(&out)
                append("--\(boundary)", &out); crlf(&out)
                part(type: type, content, into: &out)
            }
            crlf(&out)
            append("--\(boundary)--", &out); crlf(&out)
        case (let text?, nil):
            part(type: "text/plain", text, into: &out)
        case (nil, let html?):
            part(type: "text/html", html, into: &out)
        case (nil, nil):
            part(type: "text/plain", "", into: &out)
        }
        return out
    }

    /// Headers set by `render` itself; a message header with one of these names is ignored.
    static let reservedHeaders: Set<String> = [
        "date", "from", "to", "subject", "message-id", "mime-version", "content-type", "content-transfer-encoding",
        "x-nurture-delivery-id", "bcc", "cc",
    ]

    // MARK: - parts

    public enum TransferEncoding: String, Sendable { case quotedPrintable = "quoted-printable", base64 }

    /// Quoted-printable when it is no longer than base64 for these bytes, else base64.
    public static func transferEncoding(for bytes: [UInt8]) -> TransferEncoding {
        var qp = 0
        for b in bytes {
            if (b >= 33 && b <= 126 && b != 61) || b == 32 || b == 10 || b == 13 || b == 9 { qp += 1 } else { qp += 3 }
        }
        let b64 = (bytes.count + 2) / 3 * 4
        return qp <= b64 + b64 / 10 ? .quotedPrintable : .base64
    }

    /// One part: its headers, a blank line, the encoded body. No CRLF is added after the body: in a multipart the
    /// CRLF before the next boundary line belongs to the boundary, so adding one would add a line to the text.
    private static func part(type: String, _ content: String, into out: inout [UInt8]) {
        let bytes = Array(content.utf8)
        let encoding = transferEncoding(for: bytes)
        header("Content-Type", "\(type); charset=utf-8", into: &out)
        header("Content-Transfer-Encoding", encoding.rawValue, into: &out)
        crlf(&out)
        switch encoding {
        case .quotedPrintable: quotedPrintable(bytes, into: &out)
        case .base64: base64Lines(normalisedCRLF(bytes), into: &out)
        }
    }

    /// RFC 2045 §6.7 quoted-printable: line breaks (LF or CRLF) become CRLF, lines at most 76 characters with
    /// soft breaks (`=` CRLF), `=`, control and non-ASCII bytes as `=XX`, whitespace before a line break encoded.
    public static func quotedPrintable(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        quotedPrintable(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    static func quotedPrintable(_ bytes: [UInt8], into out: inout [UInt8]) {
        out.reserveCapacity(out.count + bytes.count + bytes.count / 8)
        let hex: [UInt8] = Array("0123456789ABCDEF".utf8)
        var lineLength = 0
        var i = 0
        let n = bytes.count
        while i < n {
            let b = bytes[i]
            if b == 13 && i + 1 < n && bytes[i + 1] == 10 { i += 1; continue }   // CR of CRLF: the LF breaks the line
            if b == 10 {
                out.append(13); out.append(10)
                lineLength = 0
                i += 1
                continue
            }
            let atLineEnd = i + 1 == n || bytes[i + 1] == 10 || (bytes[i + 1] == 13 && i + 2 < n && bytes[i + 2] == 10)
            let literal = (b >= 33 && b <= 126 && b != 61) || ((b == 32 || b == 9) && !atLineEnd)
            let width = literal ? 1 : 3
            // Keep room for the soft-break "=" unless this is the line's last character.
            let limit = atLineEnd ? 76 : 75
            if lineLength + width > limit {
                out.append(61); out.append(13); out.append(10)
                lineLength = 0
            }
            if literal {
                out.append(b)
            } else {
                out.append(61); out.append(hex[Int(b >> 4)]); out.append(hex[Int(b & 15)])
            }
            lineLength += width
            i += 1
        }
    }

    /// Base64 in lines of 76 characters, each ending in CRLF.
    public static func base64Lines(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        base64Lines(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    private static let base64Alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func base64Lines(_ bytes: [UInt8], into out: inout [UInt8]) {
        out.reserveCapacity(out.count + bytes.count * 4 / 3 + bytes.count / 38 + 8)
        var i = 0
        var lineLength = 0
        let a = base64Alphabet
        while i < bytes.count {
            let b0 = UInt32(bytes[i])
            let b1 = i + 1 < bytes.count ? UInt32(bytes[i + 1]) : 0
            let b2 = i + 2 < bytes.count ? UInt32(bytes[i + 2]) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.append(a[Int(v >> 18 & 63)])
            out.append(a[Int(v >> 12 & 63)])
            out.append(i + 1 < bytes.count ? a[Int(v >> 6 & 63)] : 61)
            out.append(i + 2 < bytes.count ? a[Int(v & 63)] : 61)
            i += 3
            lineLength += 4
            if lineLength == 76 { out.append(13); out.append(10); lineLength = 0 }
        }
        if lineLength > 0 { out.append(13); out.append(10) }
    }

    static func base64(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        base64Lines(bytes, into: &out)
        out.removeAll { $0 == 13 || $0 == 10 }
        return String(decoding: out, as: UTF8.self)
    }

    /// Bare LF and bare CR become CRLF.
    static func normalisedCRLF(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count + bytes.count / 32)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 13 {
                out.append(13); out.append(10)
                if i + 1 < bytes.count && bytes[i + 1] == 10 { i += 1 }
            } else if b == 10 {
                out.append(13); out.append(10)
            } else {
                out.append(b)
            }
            i += 1
        }
        return out
    }

    /// A boundary that cannot occur in a quoted-printable or base64 body (neither ever contains `=_`).
    static func boundary(for deliveryId: String) -> String {
        "=_nurture_" + SHA256.hexString(Array(SHA256.hash(deliveryId.utf8).prefix(12)))
    }

    // MARK: - headers

    private static func header(_ name: String, _ value: String, into out: inout [UInt8]) {
        append(name, &out)
        out.append(58); out.append(32)
        append(value, &out)
        crlf(&out)
    }

    @inline(__always) private static func append(_ s: String, _ out: inout [UInt8]) { out.append(contentsOf: s.utf8) }
    @inline(__always) private static func crlf(_ out: inout [UInt8]) { out.append(13); out.append(10) }

    /// RFC 5322 field name: printable ASCII except `:`.
    static func isHeaderName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 76 && name.utf8.allSatisfy { $0 >= 33 && $0 <= 126 && $0 != 58 }
    }

    /// An unstructured header value: CR/LF/controls become spaces; ASCII is folded at spaces to lines of about 78
    /// characters; anything non-ASCII (or an unbreakable run too long for one line) becomes encoded-words.
    /// `nameLength` is the field name's length (the first line also holds `Name: `).
    public static func encodeHeaderText(_ value: String, nameLength: Int) -> String {
        var printableASCII = true
        var ascii = true
        for b in value.utf8 {
            if b < 32 || b == 127 { printableASCII = false } else if b > 127 { printableASCII = false; ascii = false; break }
        }
        var cleaned = value
        if !printableASCII {
            cleaned = ""
            cleaned.reserveCapacity(value.utf8.count)
            for scalar in value.unicodeScalars {
                if scalar.value < 32 || scalar.value == 127 {
                    cleaned.append(" ")
                } else {
                    if scalar.value > 127 { ascii = false }
                    cleaned.unicodeScalars.append(scalar)
                }
            }
        }
        if ascii {
            if let folded = fold(cleaned, firstLineUsed: nameLength + 2) { return folded }
        }
        return encodedWords(cleaned, firstLineUsed: nameLength + 2)
    }

    /// Folds ASCII text at spaces (CRLF before the space) so lines stay near 78 characters; nil when a run without
    /// spaces would make a line longer than 998.
    private static func fold(_ text: String, firstLineUsed: Int) -> String? {
        if firstLineUsed + text.utf8.count <= 78 { return text }
        var out = ""
        out.reserveCapacity(text.utf8.count + 16)
        var lineLength = firstLineUsed
        var first = true
        // Split keeping the spaces: each word after the first is preceded by its space(s).
        var words: [Substring] = []
        var start = text.startIndex
        var index = text.startIndex
        while index < text.endIndex {
            if text[index] == " " && index != start {
                // a word ends before a space that follows a non-space
                let previous = text.index(before: index)
                if text[previous] != " " {
                    words.append(text[start..<index])
                    start = index
                }
            }
            index = text.index(after: index)
        }
        words.append(text[start..<text.endIndex])
        for word in words {
            let length = word.utf8.count
            if !first && lineLength + length > 78 && word.first == " " {
                out += "\r\n"
                lineLength = 0
            }
            out += word
            lineLength += length
            if lineLength > 998 { return nil }
            first = false
        }
        return out
    }

    /// RFC 2047 `B` encoded-words in UTF-8, each at most 75 characters, never splitting a character, separated by
    /// CRLF SP (folding; the whitespace between adjacent encoded-words is not part of the text).
    public static func encodedWords(_ text: String, firstLineUsed: Int = 0) -> String {
        // "=?UTF-8?B?" + payload + "?=" ≤ 75 → payload ≤ 63 → 45 bytes of text per word.
        let maxBytes = 45
        var words: [String] = []
        var chunk: [UInt8] = []
        for scalar in text.unicodeScalars {
            let bytes = Array(String(scalar).utf8)
            if chunk.count + bytes.count > maxBytes {
                words.append("=?UTF-8?B?\(base64(chunk))?=")
                chunk.removeAll(keepingCapacity: true)
            }
            chunk.append(contentsOf: bytes)
        }
        if !chunk.isEmpty || words.isEmpty { words.append("=?UTF-8?B?\(base64(chunk))?=") }
        return words.joined(separator: "\r\n ")
    }

    /// `Name <address>` → (Name, address); `"Quoted, Name" <a>` unquotes; a bare address has no name.
    public static func parseAddress(_ text: String) -> (name: String?, address: String) {
        let trimmed = trimSpaces(Substring(text))
        guard trimmed.hasSuffix(">"), let open = trimmed.lastIndex(of: "<") else { return (nil, String(trimmed)) }
        let address = String(trimSpaces(trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]))
        var name = trimSpaces(trimmed[..<open])
        if name.utf8.count >= 2 && name.hasPrefix("\"") && name.hasSuffix("\"") {
            name = name.dropFirst().dropLast()
            if name.contains("\\") {
                var unescaped = ""
                var escaping = false
                for c in name {
                    if escaping { unescaped.append(c); escaping = false } else if c == "\\" { escaping = true } else { unescaped.append(c) }
                }
                return (unescaped.isEmpty ? nil : unescaped, address)
            }
        }
        return (name.isEmpty ? nil : String(name), address)
    }

    private static func trimSpaces(_ text: Substring) -> Substring {
        var s = text
        while let c = s.first, c == " " || c == "\t" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\t" { s = s.dropLast() }
        return s
    }

    /// `From`/`To` value: the address in angle brackets after a display name (quoted when it has specials,
    /// encoded-words when not ASCII), or the bare address.
    public static func formatAddress(_ text: String) -> String {
        let (name, rawAddress) = parseAddress(text)
        var address = rawAddress
        if address.utf8.contains(where: { $0 <= 32 || $0 == 127 || $0 == UInt8(ascii: "<") || $0 == UInt8(ascii: ">") }) {
            address = String(address.unicodeScalars.filter { $0.value > 32 && $0 != "<" && $0 != ">" && $0.value != 127 }.map(Character.init))
        }
        guard var cleanName = name else { return address }
        if cleanName.utf8.contains(where: { $0 < 32 || $0 == 127 }) {
            cleanName = String(cleanName.unicodeScalars.map { $0.value < 32 || $0.value == 127 ? " " : Character($0) })
        }
        if cleanName.utf8.allSatisfy({ $0 < 128 }) {
            if cleanName.utf8.contains(where: { addressSpecials.contains($0) }) {
                let escaped = cleanName.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                return "\"\(escaped)\" <\(address)>"
            }
            return "\(cleanName) <\(address)>"
        }
        return "\(encodedWords(cleanName)) <\(address)>"
    }

    private static let addressSpecials: Set<UInt8> = Set("()<>[]:;@\\,.\"".utf8)
    private static let atext: Set<UInt8> = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~.".utf8)

    /// `<deliveryId@domain>`: the domain of the sender's address (`nurture.invalid` without one).
    public static func messageID(deliveryId: String, from address: String?) -> String {
        var local = deliveryId
        if !local.utf8.allSatisfy({ atext.contains($0) }) {
            local = String(decoding: deliveryId.utf8.filter { atext.contains($0) }, as: UTF8.self)
        }
        if local.isEmpty { local = "message" }
        var domain = "nurture.invalid"
        if let address, let at = address.utf8.lastIndex(of: UInt8(ascii: "@")) {
            let bytes = address.utf8[address.utf8.index(after: at)...].filter {
                atext.contains($0) || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "]")
            }
            if !bytes.isEmpty { domain = String(decoding: bytes, as: UTF8.self) }
        }
        return "<\(local)@\(domain)>"
    }

    /// RFC 5322 date in UTC: `Tue, 03 Jun 2025 10:00:00 +0000`.
    public static func dateHeader(_ date: Date) -> String {
        let seconds = Int64(date.timeIntervalSince1970.rounded(.down))
        let days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400
        let secondOfDay = seconds - days * 86400
        // Howard Hinnant's civil_from_days.
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        let weekday = Int((days % 7 + 7 + 4) % 7)   // 1970-01-01 was a Thursday
        let names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(names[weekday]), \(two(day)) \(months[Int(month) - 1]) \(year) \(two(secondOfDay / 3600)):\(two(secondOfDay % 3600 / 60)):\(two(secondOfDay % 60)) +0000"
    }
}
