import Foundation

/// What a condition reads about a contact: which changes can change its truth. Ingestion uses it to re-evaluate a
/// segment only for contacts whose batch touched something the segment reads, and the scheduler to find the
/// conditions that time alone can change.
public struct ConditionReads: Sendable, Hashable {
    /// `contact.score`.
    public var score = false
    /// `contact.stage`, `contact.stage_entered_at`.
    public var stage = false
    /// `has_tag(...)`, `contact.tags`.
    public var tags = false
    /// Traits and identity columns (`contact.email`, `contact.plan`, ...): changed by identify, import, `set:` steps.
    public var profile = false
    /// Columns every event may move (`first_seen_at`, `last_seen_at`, UTM, device, `updated_at`).
    public var activity = false
    /// `count("*")`: any event of the contact.
    public var anyEvent = false
    /// Event names of `count`/`sum`.
    public var eventNames: Set<String> = []
    /// `in_segment(...)`.
    public var segments: Set<String> = []
    /// The triggering event (`event.*` outside `count`/`sum`).
    public var triggeringEvent = false
    /// `now()` or a `within:` window: the truth can change with nothing but time passing.
    public var timeRelative = false

    public init() {}

    /// True when the condition reads nothing but the triggering event (and constants): it can be evaluated with
    /// no contact data and no history.
    public var eventOnly: Bool {
        !score && !stage && !tags && !profile && !activity && !anyEvent && eventNames.isEmpty && segments.isEmpty && !timeRelative
    }

    public mutating func formUnion(_ other: ConditionReads) {
        score = score || other.score
        stage = stage || other.stage
        tags = tags || other.tags
        profile = profile || other.profile
        activity = activity || other.activity
        anyEvent = anyEvent || other.anyEvent
        eventNames.formUnion(other.eventNames)
        segments.formUnion(other.segments)
        triggeringEvent = triggeringEvent || other.triggeringEvent
        timeRelative = timeRelative || other.timeRelative
    }
}

extension Condition {
    /// What this condition reads (see `ConditionReads`).
    public var reads: ConditionReads {
        var reads = ConditionReads()
        Self.collect(root, into: &reads, insideHistory: false)
        return reads
    }

    private static let activityColumns: Set<String> = [
        "first_seen_at", "last_seen_at", "first_utm_source", "first_utm_medium", "last_utm_source", "last_utm_medium",
        "last_device_type", "updated_at",
    ]

    private static func collect(_ node: TypedNode, into reads: inout ConditionReads, insideHistory: Bool) {
        switch node {
        case .literal: break
        case .column(let column):
            if column.column == "stage" || column.column == "stage_entered_at" { reads.stage = true }
            else if activityColumns.contains(column.column) { reads.activity = true }
            else { reads.profile = true }
        case .score: reads.score = true
        case .tags: reads.tags = true
        case .attribute: reads.profile = true
        case .eventName, .eventOccurredAt, .eventProperty, .eventContext:
            if !insideHistory { reads.triggeringEvent = true }
        case .coerce(let inner, _), .not(let inner), .negate(let inner), .isNull(let inner, _, _):
            collect(inner, into: &reads, insideHistory: insideHistory)
        case .and(let l, let r), .or(let l, let r), .compare(_, let l, let r, _), .arithmetic(_, let l, let r):
            collect(l, into: &reads, insideHistory: insideHistory)
            collect(r, into: &reads, insideHistory: insideHistory)
        case .count(let spec), .sum(let spec):
            if let name = spec.eventName { reads.eventNames.insert(name) } else { reads.anyEvent = true }
            if spec.within != nil { reads.timeRelative = true }
            if let filter = spec.filter { collect(filter, into: &reads, insideHistory: true) }
        case .inSegment(let segment): reads.segments.insert(segment)
        case .hasTag: reads.tags = true
        case .now: reads.timeRelative = true
        }
    }
}
