import Domain

/// What a signed link says: unsubscribe (`"u"`, optionally naming the delivery it came in) or open the preference
/// centre (`"p"`) for one contact.
public struct SignedLinkPayload: Sendable, Equatable {
    /// `"u"` (unsubscribe) or `"p"` (preferences).
    public let purpose: String
    public let contactId: Int64
    public let deliveryId: String?

    public init(purpose: String, contactId: Int64, deliveryId: String? = nil) {
        self.purpose = purpose
        self.contactId = contactId
        self.deliveryId = deliveryId
    }
}

/// Links carried in messages that act for a contact without a login: `{public}/u/{token}` (one-click unsubscribe,
/// RFC 8058) and `{public}/p/{token}` (preference centre). The web endpoints verify the token.
///
/// Token: `base64url(payload) "." base64url(HMAC-SHA256(secret, payload)[0..<16])`, no padding, where the payload
/// is `purpose ":" contactId [":" deliveryId]` in UTF-8. The 128-bit tag is compared in constant time; any other
/// spelling of the same bytes (padding, non-canonical base64 trailing bits) is refused, so one link has one token.
public struct SignedLinks: Sendable {
    public let publicURL: String
    /// HMAC-SHA256 with the key's inner and outer pads already absorbed (RFC 2104), copied for each token.
    private let inner: SHA256
    private let outer: SHA256
    static let tagByteCount = 16

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
    public func unsubscribeURL(contactId: Int64, deliveryId: String?) -> String {
        "\(publicURL)/u/\(token(SignedLinkPayload(purpose: "u", contactId: contactId, deliveryId: deliveryId)))"
    }

    /// `{public}/p/{token}`: the contact's preference centre.
    public func preferencesURL(contactId: Int64) -> String {
        "\(publicURL)/p/\(token(SignedLinkPayload(purpose: "p", contactId: contactId)))"
    }

    /// The signed token for a payload (the last path segment of the URLs above).
    public func token(_ payload: SignedLinkPayload) -> String {
        var text = "\(payload.purpose):\(payload.contactId)"
        if let delivery = payload.deliveryId { text += ":\(delivery)" }
        let bytes = Array(text.utf8)
        return Base64URL.encode(bytes) + "." + Base64URL.encode(tag(bytes))
    }

    /// The payload of a token this secret signed; nil if it is forged, garbled or signed with another secret.
    public func verify(_ token: String) -> SignedLinkPayload? {
        guard token.utf8.count <= 1024 else { return nil }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let payload = Base64URL.decode(parts[0]), let tag = Base64URL.decode(parts[1]),
              tag.count == SignedLinks.tagByteCount else { return nil }
        guard HMACSHA256.constantTimeEquals(self.tag(payload), tag) else { return nil }
        guard let text = String(validating: payload, as: UTF8.self) else { return nil }
        let fields = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard fields.count >= 2, fields[0] == "u" || fields[0] == "p", let contact = Int64(fields[1]) else { return nil }
        let delivery = fields.count == 3 ? String(fields[2]) : nil
        if fields[0] == "p" && delivery != nil { return nil }
        return SignedLinkPayload(purpose: String(fields[0]), contactId: contact, deliveryId: delivery)
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
