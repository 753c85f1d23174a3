import Domain
import Foundation

/// What a signed link says: unsubscribe (`"u"`, optionally naming the delivery it came in), open the preference
/// centre (`"p"`), an open-tracking pixel (`"o"`, one delivery) or a tracked click (`"c"`, one delivery, the link's
/// original URL and the UTM parameters the redirect adds). Any of them may carry an expiry.
public struct SignedLinkPayload: Sendable, Equatable {
    /// `"u"` (unsubscribe), `"p"` (preferences), `"o"` (open pixel) or `"c"` (click redirect).
    public let purpose: String
    public let contactId: Int64
    public let deliveryId: String?
    /// After this the link is refused (whole seconds); nil = never expires.
    public let expiresAt: Date?
    /// `"c"` only: where the click goes (as written in the template).
    public let url: String?
    /// `"c"` only: `name=value&...` (percent-encoded) added to `url` by the redirect; empty = none.
    public let utm: String

    public init(purpose: String, contactId: Int64, deliveryId: String? = nil, expiresAt: Date? = nil, url: String? = nil,
                utm: String = "") {
        self.purpose = purpose
        self.contactId = contactId
        self.deliveryId = deliveryId
        self.expiresAt = expiresAt.map { Date(timeIntervalSince1970: $0.timeIntervalSince1970.rounded(.down)) }
        self.url = url
        self.utm = utm
    }

    /// True when the link carries an expiry that `now` is past.
    public func isExpired(at now: Date) -> Bool {
        guard let expiresAt else { return false }
        return now >= expiresAt
    }
}

/// Links carried in messages that act for a contact without a login: `{public}/u/{token}` (one-click unsubscribe,
/// RFC 8058), `{public}/p/{token}` (preference centre), `{public}/o/{token}` (open pixel) and `{public}/c/{token}`
/// (click redirect). The web endpoints (`nurture web`) verify the token.
///
/// Token: `base64url(payload) "." base64url(HMAC-SHA256(secret, payload)[0..<16])`, no padding, where the payload
/// is, in UTF-8:
/// - `u[@exp]:contactId[:deliveryId]`, `p[@exp]:contactId`, `o[@exp]:contactId:deliveryId`,
/// - `c[@exp]:contactId:deliveryId:utm:url` (utm is a percent-encoded query string, possibly empty; url is the rest),
///
/// `@exp` being the expiry in Unix seconds (absent: the link does not expire). Everything in the payload is signed,
/// so neither the purpose, the contact, the expiry nor the click's destination can be changed. The 128-bit tag is
/// compared in constant time; any other spelling of the same bytes (padding, non-canonical base64 trailing bits) is
/// refused, so one link has one token. Tokens carry ids only, no personal data.
public struct SignedLinks: Sendable {
    public let publicURL: String
    /// HMAC-SHA256 with the key's inner and outer pads already absorbed (RFC 2104), copied for each token.
    private let inner: SHA256
    private let outer: SHA256
    static let tagByteCount = 16
    /// The longest token `verify` looks at (click tokens carry their URL).
    public static let maximumTokenLength = 8_192

    /// - Parameters:
    ///   - publicURL: where people reach the web endpoints (`NURTURE_PUBLIC_URL`), e.g. `https://mail.acme.com`;
    ///     a trailing `/` is dropped.
    ///   - secret: `NURTURE_SECRET`. Changing it invalidates every link already sent.
    public init(publicURL: String, secret: String) {
        var url = Substring(publicURL)
        while url.hasSuffix("/") { url = url.dropLast() }
        self.publicURL = String(url)
        var key = Array(secret.utf8)
        if key.count > SHA256.blockByteCount { key = SHA256.hash(key) }
        key += [UInt8](repeating: 0, count: SHA256.blockByteCount - key.count)
        var inner = SHA256()
        inner.update(key.map { $0 ^ 0x36 })
        var outer = SHA256()
        outer.update(key.map { $0 ^ 0x5c })
        self.inner = inner
        self.outer = outer
    }

    /// HMAC-SHA256(secret, message) truncated to the tag length; equal to `HMACSHA256.authenticationCode`.
    func tag(_ message: [UInt8]) -> [UInt8] {
        var i = inner
        i.update(message)
        var o = outer
        o.update(i.finalize())
        return Array(o.finalize().prefix(SignedLinks.tagByteCount))
    }

    /// `{public}/u/{token}`: unsubscribes the contact (from marketing), recording the delivery it came in.
    public func unsubscribeURL(contactId: Int64, deliveryId: String?, expiresAt: Date? = nil) -> String {
        "\(publicURL)/u/\(token(SignedLinkPayload(purpose: "u", contactId: contactId, deliveryId: deliveryId, expiresAt: expiresAt)))"
    }

    /// `{public}/p/{token}`: the contact's preference centre.
    public func preferencesURL(contactId: Int64, expiresAt: Date? = nil) -> String {
        "\(publicURL)/p/\(token(SignedLinkPayload(purpose: "p", contactId: contactId, expiresAt: expiresAt)))"
    }

    /// `{public}/o/{token}`: the 1×1 open-tracking pixel of one delivery.
    public func openPixelURL(contactId: Int64, deliveryId: String, expiresAt: Date? = nil) -> String {
        "\(publicURL)/o/\(token(SignedLinkPayload(purpose: "o", contactId: contactId, deliveryId: deliveryId, expiresAt: expiresAt)))"
    }

    /// `{public}/c/{token}`: records a click on `url` in one delivery and redirects there (302) with `utm` added.
    public func clickURL(contactId: Int64, deliveryId: String, url: String, utm: String = "", expiresAt: Date? = nil) -> String {
        let payload = SignedLinkPayload(purpose: "c", contactId: contactId, deliveryId: deliveryId, expiresAt: expiresAt, url: url, utm: utm)
        return "\(publicURL)/c/\(token(payload))"
    }

    /// The signed token for a payload (the last path segment of the URLs above).
    public func token(_ payload: SignedLinkPayload) -> String {
        var text = payload.purpose
        if let expiry = payload.expiresAt { text += "@\(Int64(expiry.timeIntervalSince1970))" }
        text += ":\(payload.contactId)"
        if let delivery = payload.deliveryId { text += ":\(delivery)" }
        if payload.purpose == "c" { text += ":\(payload.utm):\(payload.url ?? "")" }
        let bytes = Array(text.utf8)
        return Base64URL.encode(bytes) + "." + Base64URL.encode(tag(bytes))
    }

    /// The payload of a token this secret signed; nil if it is forged, garbled or signed with another secret.
    /// Expiry is not checked here: see `SignedLinkPayload.isExpired(at:)`.
    public func verify(_ token: String) -> SignedLinkPayload? {
        guard token.utf8.count <= SignedLinks.maximumTokenLength else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Base64URL.decode(parts[0]), let tag = Base64URL.decode(parts[1]),
              tag.count == SignedLinks.tagByteCount else { return nil }
        guard HMACSHA256.constantTimeEquals(self.tag(payload), tag) else { return nil }
        guard String(validating: payload, as: UTF8.self) != nil else { return nil }
        return Self.parse(payload)
    }

    static func parse(_ text: String) -> SignedLinkPayload? { parse(Array(text.utf8)) }

    /// Parses a payload's bytes (the fields are ASCII but for the click URL, which is kept as it was signed).
    static func parse(_ bytes: [UInt8]) -> SignedLinkPayload? {
        let colon = UInt8(ascii: ":")
        func string(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        func int(_ range: Range<Int>) -> Int64? {
            guard !range.isEmpty, range.count <= 19 else { return nil }
            var v: Int64 = 0
            for i in range {
                let d = bytes[i] &- UInt8(ascii: "0")
                guard d < 10 else { return nil }
                v = v * 10 + Int64(d)
            }
            return v
        }
        // purpose[@expiry] ":" rest
        guard let first = bytes.firstIndex(of: colon) else { return nil }
        var purposeEnd = first
        var expiresAt: Date?
        if let at = bytes[..<first].firstIndex(of: UInt8(ascii: "@")) {
            guard let seconds = int(at + 1..<first) else { return nil }
            expiresAt = Date(timeIntervalSince1970: Double(seconds))
            purposeEnd = at
        }
        guard purposeEnd == 1 else { return nil }
        let purpose = bytes[0]
        // The colon-separated fields after the purpose; the last one takes the rest (`maxFields`).
        func fields(_ maxFields: Int) -> [Range<Int>] {
            var out: [Range<Int>] = []
            var start = first + 1
            while out.count < maxFields - 1, let next = bytes[start...].firstIndex(of: colon) {
                out.append(start..<next)
                start = next + 1
            }
            out.append(start..<bytes.count)
            return out
        }
        switch purpose {
        case UInt8(ascii: "u"), UInt8(ascii: "p"):
            let f = fields(2)
            guard let contact = int(f[0]) else { return nil }
            let delivery = f.count == 2 ? string(f[1]) : nil
            if purpose == UInt8(ascii: "p") && delivery != nil { return nil }
            return SignedLinkPayload(purpose: purpose == UInt8(ascii: "u") ? "u" : "p", contactId: contact, deliveryId: delivery,
                                     expiresAt: expiresAt)
        case UInt8(ascii: "o"):
            let f = fields(3)
            guard f.count == 2, let contact = int(f[0]), !f[1].isEmpty else { return nil }
            return SignedLinkPayload(purpose: "o", contactId: contact, deliveryId: string(f[1]), expiresAt: expiresAt)
        case UInt8(ascii: "c"):
            let f = fields(4)
            guard f.count == 4, let contact = int(f[0]), !f[1].isEmpty, !f[3].isEmpty else { return nil }
            return SignedLinkPayload(purpose: "c", contactId: contact, deliveryId: string(f[1]), expiresAt: expiresAt,
                                     url: string(f[3]), utm: string(f[2]))
        default:
            return nil
        }
    }
}

/// RFC 4648 §5 base64url without padding; decoding accepts only the canonical spelling.
enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)
    private static let reverse: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { table[Int(c)] = UInt8(i) }
        return table
    }()

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= bytes.count {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)]); out.append(alphabet[Int(n & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest == 1 {
            let n = UInt32(bytes[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
        } else if rest == 2 {
            let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)]); out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func decode<S: StringProtocol>(_ text: S) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 4 != 1 else { return nil }
        var values: [UInt8] = []
        values.reserveCapacity(chars.count)
        for c in chars {
            let v = reverse[Int(c)]
            if v == 0xFF { return nil }
            values.append(v)
        }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count * 3 / 4)
        var i = 0
        while i + 4 <= values.count {
            let n = UInt32(values[i]) << 18 | UInt32(values[i + 1]) << 12 | UInt32(values[i + 2]) << 6 | UInt32(values[i + 3])
            out.append(UInt8(n >> 16 & 0xFF)); out.append(UInt8(n >> 8 & 0xFF)); out.append(UInt8(n & 0xFF))
            i += 4
        }
        let rest = values.count - i
        if rest == 2 {
            guard values[i + 1] & 0x0F == 0 else { return nil }   // non-canonical trailing bits
            out.append(values[i] << 2 | values[i + 1] >> 4)
        } else if rest == 3 {
            guard values[i + 2] & 0x03 == 0 else { return nil }
            out.append(values[i] << 2 | values[i + 1] >> 4)
            out.append((values[i + 1] & 0x0F) << 4 | values[i + 2] >> 2)
        }
        return out
    }
}
