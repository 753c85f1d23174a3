import Foundation

/// The kinds of definition documents (`kind:` on each YAML document).
public enum DefinitionKind: String, Sendable, Hashable, CaseIterable, Comparable {
    case settings, provider, template, scoring, segment, lifecycle, workflow

    /// Apply order: what others refer to comes first.
    var order: Int { Self.allCases.firstIndex(of: self)! }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.order < rhs.order }
}

public enum Channel: String, Sendable, Hashable, CaseIterable { case email, sms, push, webhook }

/// `HH:MM` on a 24-hour clock.
public struct ClockTime: Sendable, Hashable, CustomStringConvertible {
    public let hour: Int
    public let minute: Int
    public init(hour: Int, minute: Int) {
        self.hour = hour
        self.minute = minute
    }
    public init?(_ text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let h = Int(parts[0]), let m = Int(parts[1]),
              (0...23).contains(h), (0...59).contains(m) else { return nil }
        self.init(hour: h, minute: m)
    }
    public var minutesOfDay: Int { hour * 60 + minute }
    public var description: String { String(format: "%02d:%02d", hour, minute) }
}

// MARK: - settings

public struct SettingsDefinition: Sendable {
    public struct QuietHours: Sendable, Hashable {
        public let from: ClockTime
        public let to: ClockTime
    }
    /// `email: 3/1d` — at most `count` marketing messages per `periodSeconds`.
    public struct FrequencyCap: Sendable, Hashable {
        public let count: Int
        public let periodSeconds: Double
    }
    /// IANA time zone used when a contact has none.
    public let timezone: String
    public let from: String?
    public let quietHours: QuietHours?
    public let frequencyCaps: [Channel: FrequencyCap]
}

// MARK: - provider

public struct ProviderDefinition: Sendable {
    public enum ProviderType: String, Sendable, Hashable, CaseIterable { case smtp, http }
    /// `2000/s` or `100/m`.
    public struct RateLimit: Sendable, Hashable {
        public let count: Int
        public let perSeconds: Double
        public var perSecond: Double { Double(count) / perSeconds }
    }
    public let name: String
    public let channel: Channel
    public let type: ProviderType
    public let url: String
    public let from: String?
    /// Names of environment variables holding the credentials (the secrets never live in the files).
    public let usernameEnv: String?
    public let passwordEnv: String?
    public let rateLimit: RateLimit?
    public let batch: Int?
}

// MARK: - template

public struct TemplateDefinition: Sendable {
    public enum Category: String, Sendable, Hashable, CaseIterable { case marketing, transactional }
    public let name: String
    public let channel: Channel
    public let category: Category
    /// Optional: a provider name to use instead of the channel's default.
    public let provider: String?
    public let from: String?
    public let subject: LiquidTemplate?
    public let html: LiquidTemplate?
    public let text: LiquidTemplate?
    public let body: LiquidTemplate?
    /// Email: a 1×1 open pixel is injected (`tracking: false` or `tracking: {opens: false}` turns it off).
    public var trackOpens: Bool = true
    /// Email: links are rewritten to signed click redirects (`tracking: false` or `tracking: {clicks: false}`).
    public var trackClicks: Bool = true
    /// `utm: {source: newsletter, campaign: spring}`: added to tracked links' destinations as `utm_<name>`.
    public var utm: [String: String] = [:]
    /// Some part of the template's text mentions `preferences_url`: senders sign that link only then (one HMAC per
    /// message saved for the templates that do not show it).
    public var mentionsPreferencesURL = true
}

// MARK: - scoring

public struct ScoringDefinition: Sendable {
    public struct Rule: Sendable, Hashable {
        public let when: Condition
        public let points: Double
    }
    public let name: String
    public let rules: [Rule]
    public let decayHalfLifeSeconds: Double?
}

// MARK: - segment

public struct SegmentDefinition: Sendable {
    public let name: String
    public let description: String?
    public let `where`: Condition
}

// MARK: - lifecycle

public struct LifecycleDefinition: Sendable {
    public struct Rule: Sendable, Hashable {
        public let to: String
        public let when: Condition
    }
    public let name: String
    public let stages: [String]
    public let initial: String
    public let rules: [Rule]
}

// MARK: - workflow

public struct WorkflowDefinition: Sendable {
    public enum Trigger: Sendable {
        /// An event by name, optionally filtered; with `audience`, fans out to every member of that segment.
        case event(name: String, where: Condition?, audience: String?)
        /// Fires when the condition becomes true for a contact.
        case when(Condition)
        case segmentEntered(String)
        case segmentExited(String)
        /// Yearly on the date in `contact.<attribute>`, at `at` in the contact's time zone.
        case date(attribute: String, at: ClockTime)
    }
    public enum Reentry: Sendable, Hashable {
        case never, always
        case after(seconds: Double)
    }
    public indirect enum Step: Sendable {
        case send(template: String, provider: String?)
        case wait(seconds: Double)
        case branch(condition: Condition, then: [Step], else: [Step])
        case tag(String)
        case untag(String)
        /// Attribute → value; string values are Liquid templates rendered when the step runs.
        case set([String: Value])
        case score(Double)
    }
    public let name: String
    public let description: String?
    public let trigger: Trigger
    public let reentry: Reentry
    public let exitWhen: Condition?
    public let steps: [Step]
}

/// A loaded definition of any kind.
public enum DefinitionBody: Sendable {
    case settings(SettingsDefinition)
    case provider(ProviderDefinition)
    case template(TemplateDefinition)
    case scoring(ScoringDefinition)
    case segment(SegmentDefinition)
    case lifecycle(LifecycleDefinition)
    case workflow(WorkflowDefinition)
}

/// One document of a definition file, checked and typed, with its canonical JSON spec and checksum.
public struct Definition: Sendable {
    public let kind: DefinitionKind
    public let name: String
    public let body: DefinitionBody
    /// The document after `${VAR}` substitution and defaults, as JSON (what is stored in `definitions.spec`).
    public let spec: Value
    /// Compact JSON with sorted keys: the canonical form.
    public var canonicalJSON: String { spec.jsonText }
    /// SHA-256 (hex) of `canonicalJSON`: equal checksums mean the same definition.
    public let checksum: String
    /// `file:line` of the document.
    public let source: String

    public var key: String { "\(kind.rawValue)/\(name)" }

    init(kind: DefinitionKind, name: String, body: DefinitionBody, spec: Value, source: String) {
        self.kind = kind
        self.name = name
        self.body = body
        self.spec = spec
        self.checksum = SHA256.hex(spec.jsonText)
        self.source = source
    }
}
