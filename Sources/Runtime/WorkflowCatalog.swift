import Domain
import Foundation
import NurtureCore
import Postgres
import Store
import Synchronization

/// One version of a workflow, ready to run. A class: step batches pass it around per enrollment, and a copy is then
/// one reference count instead of one per field.
public final class LoadedWorkflow: Sendable {
    public let name: String
    public let version: Int
    public let definition: WorkflowDefinition
    public let program: WorkflowProgram
    public let numbers: [String: Int]

    init(name: String, version: Int, definition: WorkflowDefinition) {
        self.name = name
        self.version = version
        self.definition = definition
        self.program = WorkflowProgram(definition.steps)
        var numbers: [String: Int] = [:]
        for entry in program.numbered { numbers[entry.path.description] = entry.number }
        self.numbers = numbers
    }

    /// The 1-based number of the step at `path` (what reports and `source.step` show).
    public func number(of path: StepPath) -> Int { numbers[path.description] ?? 0 }

    /// The hidden segment a `when:` trigger is kept as (entering it fires the trigger).
    public var whenSegmentName: String { LoadedWorkflow.whenSegmentPrefix + name }
    public static let whenSegmentPrefix = "workflow:"
}

/// The installation's current workflows, templates, providers and settings, with the trigger indexes ingestion and
/// the scheduler use. Immutable; `WorkflowCatalogCache` swaps in a new one when definitions change.
public struct WorkflowCatalog: Sendable {
    public let workflows: [String: LoadedWorkflow]
    public let paused: Set<String>
    public let templates: [String: (version: Int, definition: TemplateDefinition)]
    public let providers: [String: ProviderDefinition]
    public let settings: SettingsDefinition?
    /// Event name → workflows it triggers (in name order).
    public let eventTriggers: [String: [LoadedWorkflow]]
    public let segmentEntered: [String: [LoadedWorkflow]]
    public let segmentExited: [String: [LoadedWorkflow]]
    public let dateTriggered: [LoadedWorkflow]
    public let whenTriggered: [LoadedWorkflow]
    /// Workflows with `exit_when`.
    public let exitable: [LoadedWorkflow]

    public static let empty = WorkflowCatalog(definitions: [], paused: [])

    public var isEmpty: Bool { workflows.isEmpty }

    init(definitions: [(Definition, Int)], paused: Set<String>) {
        var workflows: [String: LoadedWorkflow] = [:]
        var templates: [String: (Int, TemplateDefinition)] = [:]
        var providers: [String: ProviderDefinition] = [:]
        var settings: SettingsDefinition?
        for (d, version) in definitions {
            switch d.body {
            case .workflow(let w): workflows[w.name] = LoadedWorkflow(name: w.name, version: version, definition: w)
            case .template(let t): templates[t.name] = (version, t)
            case .provider(let p): providers[p.name] = p
            case .settings(let s): settings = s
            default: break
            }
        }
        self.workflows = workflows
        self.paused = paused
        self.templates = templates.mapValues { (version: $0.0, definition: $0.1) }
        self.providers = providers
        self.settings = settings
        var events: [String: [LoadedWorkflow]] = [:], entered: [String: [LoadedWorkflow]] = [:], exited: [String: [LoadedWorkflow]] = [:]
        var dated: [LoadedWorkflow] = [], when: [LoadedWorkflow] = [], exitable: [LoadedWorkflow] = []
        for w in workflows.values.sorted(by: { $0.name < $1.name }) {
            switch w.definition.trigger {
            case .event(let name, _, _): events[name, default: []].append(w)
            case .segmentEntered(let s): entered[s, default: []].append(w)
            case .segmentExited(let s): exited[s, default: []].append(w)
            case .date: dated.append(w)
            case .when: when.append(w)
            }
            if w.definition.exitWhen != nil { exitable.append(w) }
        }
        eventTriggers = events
        segmentEntered = entered
        segmentExited = exited
        dateTriggered = dated
        whenTriggered = when
        self.exitable = exitable
    }

    /// The provider a template's messages go through: the template's (or step's) `provider:`; else, among the
    /// providers of its channel, the one named like the channel (`email` for email), else the one whose name
    /// shares the most with the template's name (`notify-sales` → `sales-alerts`), else the first by name.
    public func provider(for template: TemplateDefinition, override: String? = nil) -> ProviderDefinition? {
        if let name = override ?? template.provider { return providers[name] }
        let candidates = providers.values.filter { $0.channel == template.channel }.sorted { $0.name < $1.name }
        if candidates.count <= 1 { return candidates.first }
        if let named = candidates.first(where: { $0.name == template.channel.rawValue }) { return named }
        func words(_ s: String) -> [Substring] { s.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }) }
        func affinity(_ provider: ProviderDefinition) -> Int {
            var best = 0
            for a in words(template.name) {
                for b in words(provider.name) {
                    best = max(best, zip(a, b).prefix(while: { $0 == $1 }).count)
                }
            }
            return best
        }
        return candidates.max(by: { affinity($0) < affinity($1) || (affinity($0) == affinity($1) && $0.name > $1.name) })
    }

    /// Loads the current (not deleted) workflow, template, provider and settings definitions.
    public static func load(on db: PostgresConnection) throws -> WorkflowCatalog {
        var definitions: [(Definition, Int)] = []
        var paused = Set<String>()
        for stored in try DefinitionStore().list(kinds: kinds, on: db) {
            guard let definition = stored.decoded else { continue }
            definitions.append((definition, stored.version))
            if stored.paused && stored.kind == "workflow" { paused.insert(definition.name) }
        }
        return WorkflowCatalog(definitions: definitions, paused: paused)
    }

    private static let kinds = ["workflow", "template", "provider", "settings"]

    /// Changes whenever a workflow, template, provider or settings head changes (or is paused/resumed).
    public static func headsVersion(on db: PostgresConnection) throws -> String {
        try DefinitionStore().headsFingerprint(kinds: kinds, on: db)
    }

    /// One stored version of a workflow (enrollments finish on the version they started on).
    public static func loadVersion(_ name: String, version: Int, on db: PostgresConnection) throws -> LoadedWorkflow? {
        guard let definition = try DefinitionStore().version(kind: "workflow", name: name, version: version, on: db)?.decoded,
              case .workflow(let w) = definition.body else { return nil }
        return LoadedWorkflow(name: name, version: version, definition: w)
    }
}

/// Keeps a `WorkflowCatalog` fresh across threads: re-reads definitions when their heads change (checked at most
/// every `checkEverySeconds`), and caches old workflow versions (immutable) for enrollments still on them.
public final class WorkflowCatalogCache: Sendable {
    private struct State {
        var catalog = WorkflowCatalog.empty
        var heads: String?
        var checkedAt: UInt64 = 0
        var versions: [VersionKey: LoadedWorkflow] = [:]
    }
    private struct VersionKey: Hashable { let name: String; let version: Int }
    private let state = Mutex(State())
    private let checkEveryNanoseconds: UInt64

    public init(checkEverySeconds: Double = 1) {
        checkEveryNanoseconds = UInt64(checkEverySeconds * 1e9)
    }

    /// The current catalog; re-reads it from `db` when it may have changed.
    public func current(on db: PostgresConnection) throws -> WorkflowCatalog {
        let t = monotonicNanoseconds()
        let (cached, heads, fresh) = state.withLock { s in (s.catalog, s.heads, s.heads != nil && t &- s.checkedAt < checkEveryNanoseconds) }
        if fresh { return cached }
        let version = try WorkflowCatalog.headsVersion(on: db)
        if version == heads {
            state.withLock { $0.checkedAt = t }
            return cached
        }
        let catalog = try WorkflowCatalog.load(on: db)
        state.withLock { s in
            s.catalog = catalog
            s.heads = version
            s.checkedAt = t
        }
        return catalog
    }

    /// A workflow at a given version (the head's if it is that version).
    public func workflow(_ name: String, version: Int, on db: PostgresConnection) throws -> LoadedWorkflow? {
        let key = VersionKey(name: name, version: version)
        if let hit = state.withLock({ s -> LoadedWorkflow? in
            if let w = s.catalog.workflows[name], w.version == version { return w }
            return s.versions[key]
        }) { return hit }
        guard let loaded = try WorkflowCatalog.loadVersion(name, version: version, on: db) else { return nil }
        state.withLock { $0.versions[key] = loaded }
        return loaded
    }

    /// Forget what was loaded (the next `current` reloads).
    public func invalidate() { state.withLock { $0.heads = nil } }
}
