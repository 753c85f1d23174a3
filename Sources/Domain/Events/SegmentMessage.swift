import Foundation

/// The four Segment-spec call types the engine ingests (contract §3).
public enum SegmentType: String, Sendable, Equatable, CaseIterable {
    case track, identify, page, alias
}

/// Why an events-stream entry cannot be ingested; it goes to the dead letters with this reason.
public struct MalformedEvent: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// One validated Segment-spec message (`track`, `identify`, `page`, `alias`) as an app server sent it.
/// `messageId` and `timestamp` may be missing: the ingester derives them from the stream entry.
public struct SegmentMessage: Sendable, Equatable {
    /// Larger payloads are refused (contract §3).
    public static let maxPayloadBytes = 64 * 1024

    public var type: SegmentType
    public var userId: String?
    public var anonymousId: String?
    /// `alias`: the identity being linked to `userId`.
    public var previousId: String?
    /// `track`: the event name.
    public var event: String?
    /// `page`: the page name.
    public var name: String?
    /// Always an object (empty when absent).
    public var properties: Value
    public var traits: Value
    public var context: Value
    public var timestamp: Date?
    public var messageId: String?

    public init(type: SegmentType, userId: String? = nil, anonymousId: String? = nil, previousId: String? = nil,
                event: String? = nil, name: String? = nil, properties: Value = .object([:]), traits: Value = .object([:]),
                context: Value = .object([:]), timestamp: Date? = nil, messageId: String? = nil) {
        self.type = type
        self.userId = userId
        self.anonymousId = anonymousId
        self.previousId = previousId
        self.event = event
        self.name = name
        self.properties = properties
        self.traits = traits
        self.context = context
        self.timestamp = timestamp
        self.messageId = messageId
    }

    /// Parses and validates one payload. Never throws anything but a `MalformedEvent` with a precise reason.
    public static func parse(_ bytes: [UInt8]) throws(MalformedEvent) -> SegmentMessage {
        if bytes.count > maxPayloadBytes { throw MalformedEvent("over 64 KiB (\(bytes.count) bytes)") }
        let value: Value
        do {
            value = try ValueJSON.parse(bytes)
        } catch {
            throw MalformedEvent("payload is not JSON: \(error)")
        }
        guard case .object(let fields) = value else { throw MalformedEvent("payload is not a JSON object") }
        return try parse(fields: fields)
    }

    public static func parse(_ text: String) throws(MalformedEvent) -> SegmentMessage { try parse(Array(text.utf8)) }

    static func parse(fields: [String: Value]) throws(MalformedEvent) -> SegmentMessage {
        guard let typeValue = fields["type"], case .string(let typeText) = typeValue,
              let type = SegmentType(rawValue: typeText) else {
            throw MalformedEvent("type must be one of track, identify, page, alias")
        }
        let userId = try identifier(fields, "userId")
        let anonymousId = try identifier(fields, "anonymousId")
        if userId == nil && anonymousId == nil { throw MalformedEvent("missing userId and anonymousId") }
        var message = SegmentMessage(type: type, userId: userId, anonymousId: anonymousId)
        message.messageId = try optionalString(fields, "messageId")
        message.properties = try object(fields, "properties")
        message.context = try object(fields, "context")
        message.traits = try object(fields, "traits")
        if message.traits == .object([:]), case .object(let t)? = message.context["traits"] { message.traits = .object(t) }
        if let ts = fields["timestamp"], ts != .null {
            guard case .string(let text) = ts else { throw MalformedEvent("timestamp is not ISO-8601: \(ts.jsonText.prefix(64))") }
            guard let date = Value.parseTime(text) else { throw MalformedEvent("timestamp is not ISO-8601: \(text.prefix(64))") }
            message.timestamp = date
        }
        switch type {
        case .track:
            guard case .string(let event)? = fields["event"] else { throw MalformedEvent("event must be a string") }
            guard !event.unicodeScalars.allSatisfy(\.properties.isWhitespace) else { throw MalformedEvent("event must not be empty") }
            message.event = event
        case .page:
            message.name = try optionalString(fields, "name")
        case .alias:
            guard let previous = try identifier(fields, "previousId") else { throw MalformedEvent("alias needs previousId") }
            guard userId != nil else { throw MalformedEvent("alias needs userId") }
            message.previousId = previous
        case .identify:
            break
        }
        return message
    }

    /// A non-empty string (numbers are accepted and written in decimal, as Segment libraries allow numeric ids).
    private static func identifier(_ fields: [String: Value], _ key: String) throws(MalformedEvent) -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s.isEmpty ? nil : s
        case .number(let n)? where n.rounded() == n && abs(n) < 1e15: return Value.format(number: n)
        default: throw MalformedEvent("\(key) must be a string")
        }
    }

    private static func optionalString(_ fields: [String: Value], _ key: String) throws(MalformedEvent) -> String? {
        switch fields[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s.isEmpty ? nil : s
        default: throw MalformedEvent("\(key) must be a string")
        }
    }

    private static func object(_ fields: [String: Value], _ key: String) throws(MalformedEvent) -> Value {
        switch fields[key] {
        case nil, .null?: return .object([:])
        case .object(let o)?: return .object(o)
        default: throw MalformedEvent("\(key) must be an object")
        }
    }

    /// The name stored in `events.name`: the track event, "Page Viewed" for pages; nil for identify/alias
    /// (they change the contact, not its behaviour history).
    public var eventName: String? {
        switch type {
        case .track: return event
        case .page: return "Page Viewed"
        case .identify, .alias: return nil
        }
    }

    /// The properties stored with the event: for pages, `name` and `path` (from properties or context.page) are added.
    public var storedProperties: Value {
        guard type == .page, case .object(var o) = properties else { return properties }
        if let name, o["name"] == nil { o["name"] = .string(name) }
        if o["path"] == nil, let path = context[path: ["page", "path"]], case .string = path { o["path"] = path }
        return .object(o)
    }

    /// What this message says about its contact (pure; the store folds these per contact).
    public var derived: DerivedAttributes { DerivedAttributes(self) }
}

/// Contact columns derived from one message: UTM source/medium (context.campaign), device type
/// (context.device.type), timezone (context.timezone, else traits.timezone), and from identify traits the email
/// (with its SHA-256 of the trimmed lowercased address), phone and the trait patch for `contacts.attributes`.
public struct DerivedAttributes: Sendable, Equatable {
    public var utmSource: String?
    public var utmMedium: String?
    public var deviceType: String?
    public var timezone: String?
    public var email: String?
    public var emailSHA256: String?
    public var phone: String?

    public init(utmSource: String? = nil, utmMedium: String? = nil, deviceType: String? = nil, timezone: String? = nil,
                email: String? = nil, emailSHA256: String? = nil, phone: String? = nil) {
        self.utmSource = utmSource
        self.utmMedium = utmMedium
        self.deviceType = deviceType
        self.timezone = timezone
        self.email = email
        self.emailSHA256 = emailSHA256
        self.phone = phone
    }

    public init(_ message: SegmentMessage) {
        func text(_ v: Value?) -> String? {
            guard case .string(let s)? = v else { return nil }
            let t = s.trimmingWhitespace()
            return t.isEmpty ? nil : t
        }
        self.init()
        utmSource = text(message.context[path: ["campaign", "source"]])
        utmMedium = text(message.context[path: ["campaign", "medium"]])
        deviceType = text(message.context[path: ["device", "type"]])
        timezone = text(message.context["timezone"]) ?? text(message.traits["timezone"])
        if let email = text(message.traits["email"]) {
            self.email = email
            self.emailSHA256 = DerivedAttributes.emailHash(email)
        }
        phone = text(message.traits["phone"])
    }

    /// SHA-256 (hex) of the trimmed, lowercased address: the form ad platforms match on.
    public static func emailHash(_ email: String) -> String {
        SHA256.hex(email.trimmingWhitespace().lowercased())
    }
}

extension String {
    /// `trimmingCharacters(in: .whitespacesAndNewlines)` without Foundation's cost (microseconds per call, on every
    /// ingested message) in the usual case where there is nothing to trim.
    func trimmingWhitespace() -> String {
        guard let first = unicodeScalars.first, let last = unicodeScalars.last else { return self }
        if !first.properties.isWhitespace && !last.properties.isWhitespace { return self }
        return trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// First/last-seen folding of a contact's messages (pure): the earliest and latest time seen, the UTM of the
/// earliest and of the latest message that carried one, the device type of the latest message that carried one.
/// (`Store.ContactDelta` applies the same rules inside the ingest transaction.)
public struct ActivityFold: Sendable, Equatable {
    public var firstSeen: Date?
    public var lastSeen: Date?
    public var firstUTMAt: Date?
    public var firstUTMSource: String?
    public var firstUTMMedium: String?
    public var lastUTMAt: Date?
    public var lastUTMSource: String?
    public var lastUTMMedium: String?
    public var lastDeviceAt: Date?
    public var lastDeviceType: String?

    public init() {}

    public mutating func observe(at time: Date, _ derived: DerivedAttributes) {
        firstSeen = min(firstSeen ?? time, time)
        lastSeen = max(lastSeen ?? time, time)
        if derived.utmSource != nil || derived.utmMedium != nil {
            if firstUTMAt.map({ time < $0 }) ?? true {
                firstUTMAt = time; firstUTMSource = derived.utmSource; firstUTMMedium = derived.utmMedium
            }
            if lastUTMAt.map({ time >= $0 }) ?? true {
                lastUTMAt = time; lastUTMSource = derived.utmSource; lastUTMMedium = derived.utmMedium
            }
        }
        if let device = derived.deviceType, lastDeviceAt.map({ time >= $0 }) ?? true {
            lastDeviceAt = time; lastDeviceType = device
        }
    }
}
