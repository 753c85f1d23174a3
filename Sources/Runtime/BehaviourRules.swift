import Domain
import Foundation
import NurtureCore
import Postgres
import Store

/// The installation's current scoring models, segments and lifecycle, decoded from `definitions` and compiled once:
/// what ingestion applies to every batch and the scheduler's scan applies as time passes.
public struct BehaviourRules: Sendable {
    public struct Segment: Sendable {
        public let name: String
        public let condition: Condition
        public let reads: ConditionReads
        /// The definition's checksum: a changed segment is rebuilt in full.
        public let checksum: String
    }
    public struct Scoring: Sendable {
        public let name: String
        public let rules: [ScoringDefinition.Rule]
        public let halfLifeSeconds: Double?
        /// True when every rule reads only the triggering event (no contact data or history needed).
        public let eventOnly: Bool
    }

    public let scoring: [Scoring]
    /// In dependency order: a segment comes after every segment its condition names with `in_segment`.
    public let segments: [Segment]
    public let lifecycle: LifecycleDefinition?
    /// `kind/name@version` of every definition used: equal fingerprints mean equal rules.
    public let fingerprint: String

    public static let empty = BehaviourRules(scoring: [], segments: [], lifecycle: nil, fingerprint: "")

    public var isEmpty: Bool { scoring.isEmpty && segments.isEmpty && lifecycle == nil }

    /// The score `contact.score` means: the model named `engagement`, else the only/first model by name.
    public var primaryScore: Scoring? {
        scoring.first(where: { $0.name == "engagement" }) ?? scoring.min(by: { $0.name < $1.name })
    }

    /// Options for compiling conditions to SQL (which score `contact.score` reads and its half-life).
    public var compilerOptions: SQLCompilerOptions {
        SQLCompilerOptions(scoreName: primaryScore?.name ?? "engagement", scoreHalfLife: primaryScore?.halfLifeSeconds)
    }

    init(scoring: [Scoring], segments: [Segment], lifecycle: LifecycleDefinition?, fingerprint: String) {
        self.scoring = scoring
        self.segments = segments
        self.lifecycle = lifecycle
        self.fingerprint = fingerprint
    }

    public init(definitions: [Definition]) {
        var scoring: [Scoring] = []
        var segments: [Segment] = []
        var lifecycle: LifecycleDefinition?
        for d in definitions {
            switch d.body {
            case .scoring(let s):
                scoring.append(Scoring(name: s.name, rules: s.rules, halfLifeSeconds: s.decayHalfLifeSeconds,
                                       eventOnly: s.rules.allSatisfy { $0.when.reads.eventOnly }))
            case .segment(let s):
                segments.append(Segment(name: s.name, condition: s.where, reads: s.where.reads, checksum: d.checksum))
            case .lifecycle(let l):
                lifecycle = l
            default: break
            }
        }
        segments += Self.whenSegments(definitions)
        self.init(scoring: scoring.sorted { $0.name < $1.name }, segments: Self.dependencyOrder(segments), lifecycle: lifecycle,
                  fingerprint: definitions.map { "\($0.key)#\($0.checksum)" }.sorted().joined(separator: ","))
    }

    /// Topological order by `in_segment` references (names in alphabetical order among equals; a reference to an
    /// unknown segment or a cycle — refused by `validate` — leaves the rest in name order).
    static func dependencyOrder(_ segments: [Segment]) -> [Segment] {
        let byName = Dictionary(segments.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var ordered: [Segment] = []
        var state: [String: Bool] = [:]   // false: visiting, true: done
        func visit(_ name: String) {
            guard state[name] == nil, let segment = byName[name] else { return }
            state[name] = false
            for dependency in segment.reads.segments.sorted() { visit(dependency) }
            state[name] = true
            ordered.append(segment)
        }
        for name in byName.keys.sorted() { visit(name) }
        return ordered
    }

    /// Loads the current (not deleted) scoring, segment and lifecycle definitions, and the `when:` triggers of workflows
    /// (as hidden segments).
    public static func load(on db: PostgresConnection) throws -> BehaviourRules {
        BehaviourRules(definitions: try DefinitionStore().list(kinds: kinds, on: db).compactMap(\.decoded))
    }

    private static let kinds = ["scoring", "segment", "lifecycle", "workflow"]

    /// A cheap fingerprint query: changes whenever a scoring, segment or lifecycle head changes.
    public static func headsVersion(on db: PostgresConnection) throws -> String {
        try DefinitionStore().headsFingerprint(kinds: kinds, on: db)
    }
}

/// Keeps a `BehaviourRules` fresh: re-reads the definitions when their heads change (checked at most every
/// `checkEvery` seconds). One per thread; not shared.
final class BehaviourRulesCache {
    private(set) var rules = BehaviourRules.empty
    private var heads: String?
    private var checkedAt: UInt64 = 0
    private let checkEveryNanoseconds: UInt64

    init(checkEverySeconds: Double = 1) {
        checkEveryNanoseconds = UInt64(checkEverySeconds * 1e9)
    }

    /// The current rules; re-reads them from `db` when they may have changed.
    func current(on db: PostgresConnection) throws -> BehaviourRules {
        let t = monotonicNanoseconds()
        if heads != nil && t &- checkedAt < checkEveryNanoseconds { return rules }
        let version = try BehaviourRules.headsVersion(on: db)
        checkedAt = t
        if version != heads {
            rules = try BehaviourRules.load(on: db)
            heads = version
        }
        return rules
    }

    /// Forget what was loaded (the next `current` reloads).
    func invalidate() { heads = nil }
}

extension StoredDefinition {
    /// The typed definition of this stored spec (nil if it no longer decodes).
    var decoded: Definition? {
        guard let spec = try? Value(jsonText: specJSON) else { return nil }
        return DefinitionLoader.decode(spec: spec, source: source)
    }
}
