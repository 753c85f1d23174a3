import ArgumentParser
import Domain
import Foundation
import Postgres
import Runtime
import Store

/// `nurture workflows`: the applied workflows with their enrollment counts; pause, resume, show one.
struct WorkflowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflows",
        abstract: "List workflows with enrollment counts; pause, resume or show one.",
        discussion: """
            Workflows are defined with `kind: workflow` documents (`nurture apply`).
            Counts are of enrollments (one per run of a contact through the
            workflow), over every version. Per-step metrics: `nurture report
            workflow NAME`.

            Examples:
              nurture workflows
              nurture workflows --json
              nurture workflows show welcome-series
              nurture workflows pause welcome-series
              nurture workflows resume welcome-series
            """,
        subcommands: [WorkflowsListCommand.self, WorkflowsShowCommand.self, WorkflowsPauseCommand.self, WorkflowsResumeCommand.self],
        defaultSubcommand: WorkflowsListCommand.self)
}

/// `nurture workflows [list]`: one line per applied workflow.
struct WorkflowsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List every applied workflow: version, status, enrollment counts, trigger.",
        discussion: """
            Columns: enrolled (every run ever started), active (running or
            waiting), completed (ran every step), exited (left early: exit_when,
            or the contact was erased), and the trigger. `paused` workflows keep
            their enrollments where they are (see `nurture workflows pause --help`).

            Examples:
              nurture workflows
              nurture workflows list --json
            """)
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let catalog = try WorkflowCatalog.load(on: db)
        let counts = Dictionary(try WorkflowReportStore().counts(on: db).map { ($0.workflow, $0) }, uniquingKeysWith: { a, _ in a })
        let workflows = catalog.workflows.values.sorted { $0.name < $1.name }
        if json {
            try printJSON(WorkflowListJSON(workflows: workflows.map { w in
                WorkflowSummaryJSON(workflow: w, paused: catalog.paused.contains(w.name), counts: counts[w.name] ?? .none(w.name))
            }))
            return
        }
        guard !workflows.isEmpty else {
            print("no workflows: `nurture apply` a `kind: workflow` document to define one")
            return
        }
        printTable(["workflow", "version", "status", "enrolled", "active", "completed", "exited", "trigger"], workflows.map { w in
            let c = counts[w.name] ?? .none(w.name)
            return [w.name, "v\(w.version)", catalog.paused.contains(w.name) ? "paused" : "live", String(c.enrolled), String(c.active),
                    String(c.completed), String(c.exited), w.definition.trigger.summary]
        })
    }
}

/// `nurture workflows show NAME`: the definition with numbered steps.
struct WorkflowsShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a workflow: trigger, re-entry, exit condition and its numbered steps.",
        discussion: """
            Steps are numbered 1, 2, ... in reading order, `then:` and `else:`
            branches included: the numbers `nurture report workflow` and the
            provider's `source.step` use.

            Examples:
              nurture workflows show welcome-series
              nurture workflows show welcome-series --json
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The workflow's name.") var name: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let catalog = try WorkflowCatalog.load(on: db)
        let w = try WorkflowsCLI.applied(name, in: catalog)
        let counts = try WorkflowReportStore().counts(of: name, on: db)
        let paused = catalog.paused.contains(name)
        let steps = WorkflowsCLI.steps(of: w)
        if json {
            try printJSON(WorkflowShowJSON(summary: WorkflowSummaryJSON(workflow: w, paused: paused, counts: counts), steps: steps))
            return
        }
        print("workflow \(w.name) (v\(w.version))\(paused ? " PAUSED" : "")")
        if let description = w.definition.description { print(description) }
        print("trigger:   \(w.definition.trigger.summary)")
        print("reentry:   \(w.definition.reentry.summary)")
        print("exit_when: \(w.definition.exitWhen?.source ?? "-")")
        print("enrolled \(counts.enrolled): \(counts.active) active, \(counts.completed) completed, \(counts.exited) exited, \(counts.failed) failed")
        guard !steps.isEmpty else {
            print("(no steps)")
            return
        }
        print("")
        printTable(["step", "what"], steps.map { s in
            [String(s.step), String(repeating: "  ", count: s.depth) + (s.branch.map { "\($0): " } ?? "") + s.label]
        })
    }
}

/// `nurture workflows pause NAME`.
struct WorkflowsPauseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract: "Pause a workflow: its enrollments stay where they are and nothing new starts.",
        discussion: """
            While a workflow is paused:
              - its active enrollments stay on the step they are at; the
                scheduler skips them (no step runs, nothing is sent);
              - triggers that fire during the pause do not enroll anyone (they are
                not queued for later either);
              - exit_when still ends enrollments on the contact's events (someone
                who bought leaves the abandoned-cart workflow even while it is
                paused), and it is checked again before each step once resumed.
            `nurture workflows resume NAME` continues every enrollment from where
            it stopped; steps that fell due during the pause run right away.
            Pausing a paused workflow changes nothing. Re-applying the workflow
            (a new version) keeps it paused.

            Example:
              nurture workflows pause welcome-series
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The workflow's name.") var name: String

    func run() async throws {
        try WorkflowsCLI.setPaused(name, true, connection: connection)
    }
}

/// `nurture workflows resume NAME`.
struct WorkflowsResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Resume a paused workflow: its enrollments continue from where they stopped.",
        discussion: """
            Every active enrollment continues at the step it was paused on; steps
            that fell due during the pause run right away (quiet hours and
            frequency caps still apply). Triggers enroll contacts again from now
            on; those that fired during the pause are not replayed.
            Resuming a workflow that is not paused changes nothing.

            Example:
              nurture workflows resume welcome-series
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The workflow's name.") var name: String

    func run() async throws {
        try WorkflowsCLI.setPaused(name, false, connection: connection)
    }
}

enum WorkflowsCLI {
    /// The applied workflow `name`, or a user error naming the known ones.
    static func applied(_ name: String, in catalog: WorkflowCatalog) throws -> LoadedWorkflow {
        if let w = catalog.workflows[name] { return w }
        throw unknown(name, known: catalog.workflows.keys.sorted())
    }

    static func unknown(_ name: String, known: [String]) -> UserError {
        UserError("no workflow \"\(name)\" " + (known.isEmpty ? "(no workflows are applied)" : "(known: \(known.joined(separator: ", ")))"))
    }

    static func setPaused(_ name: String, _ paused: Bool, connection: ConnectionOptions) throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let store = EnrollmentStore()
        let heads = try DefinitionStore().list(kind: "workflow", on: db)
        guard heads.contains(where: { $0.name == name }) else { throw unknown(name, known: heads.map(\.name)) }
        let active = try WorkflowReportStore().counts(of: name, on: db).active
        let enrollments = "\(active) active enrollment\(active == 1 ? "" : "s")"
        if try store.isPaused(name, on: db) == paused {
            print("workflow \(name) is already \(paused ? "paused" : "running") (\(enrollments))")
            return
        }
        guard try store.setPaused(name, paused, on: db) else { throw unknown(name, known: heads.map(\.name)) }
        if paused {
            print("paused workflow \(name): \(enrollments) \(active == 1 ? "stays where it is" : "stay where they are"); "
                  + "new triggers do not enroll (`nurture workflows resume \(name)` continues)")
        } else {
            print("resumed workflow \(name): \(enrollments) \(active == 1 ? "continues" : "continue") from where \(active == 1 ? "it" : "they") stopped")
        }
    }

    struct NumberedStep: Encodable {
        let step: Int
        let label: String
        /// `enrollments.step_path` of the step.
        let path: String
        /// 0 at the top level, +1 inside each `then:` / `else:`.
        let depth: Int
        /// The branch the step is in (innermost), nil at the top level.
        let branch: String?
        let kind: String

        enum CodingKeys: String, CodingKey { case step, label, path, depth, branch, kind }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(step, forKey: .step)
            try c.encode(label, forKey: .label)
            try c.encode(path, forKey: .path)
            try c.encode(depth, forKey: .depth)
            try c.encode(branch, forKey: .branch)
            try c.encode(kind, forKey: .kind)
        }
    }

    static func steps(of w: LoadedWorkflow) -> [NumberedStep] {
        w.program.numbered.map { entry in
            NumberedStep(step: entry.number, label: entry.step.label, path: entry.path.description, depth: entry.path.nested.count,
                         branch: entry.path.nested.last?.0.rawValue, kind: entry.step.kind)
        }
    }
}

extension WorkflowDefinition.Trigger {
    /// One line: `event "Signed Up" where ...`, `when contact.score >= 50`, `segment_entered dormant`, ...
    var summary: String {
        switch self {
        case .event(let name, let filter, let audience):
            return "event \"\(name)\"" + (filter.map { " where \($0.source)" } ?? "") + (audience.map { " audience \($0)" } ?? "")
        case .when(let condition): return "when \(condition.source)"
        case .segmentEntered(let segment): return "segment_entered \(segment)"
        case .segmentExited(let segment): return "segment_exited \(segment)"
        case .date(let attribute, let at): return "date contact.\(attribute) at \(at)"
        }
    }

    var kind: String {
        switch self {
        case .event: return "event"
        case .when: return "when"
        case .segmentEntered: return "segment_entered"
        case .segmentExited: return "segment_exited"
        case .date: return "date"
        }
    }
}

extension WorkflowDefinition.Reentry {
    var summary: String {
        switch self {
        case .never: return "never"
        case .always: return "always"
        case .after(let seconds): return "after \(DurationLabel.text(seconds))"
        }
    }
}

extension WorkflowDefinition.Step {
    var kind: String {
        switch self {
        case .send: return "send"
        case .wait: return "wait"
        case .branch: return "if"
        case .tag: return "tag"
        case .untag: return "untag"
        case .set: return "set"
        case .score: return "score"
        }
    }
}

// MARK: - JSON shapes (snake_case keys; absent values are null, never omitted)

private struct WorkflowListJSON: Encodable {
    let workflows: [WorkflowSummaryJSON]
}

private struct WorkflowShowJSON: Encodable {
    let summary: WorkflowSummaryJSON
    let steps: [WorkflowsCLI.NumberedStep]
    enum CodingKeys: String, CodingKey { case steps }
    func encode(to encoder: any Encoder) throws {
        try summary.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(steps, forKey: .steps)
    }
}

private struct WorkflowSummaryJSON: Encodable {
    let workflow: LoadedWorkflow
    let paused: Bool
    let counts: WorkflowEnrollmentCounts

    enum CodingKeys: String, CodingKey {
        case name, version, paused, description, trigger, triggerKind = "trigger_kind", reentry, exitWhen = "exit_when",
             steps = "step_count", enrolled, active, completed, exited, failed
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(workflow.name, forKey: .name)
        try c.encode(workflow.version, forKey: .version)
        try c.encode(paused, forKey: .paused)
        try c.encode(workflow.definition.description, forKey: .description)
        try c.encode(workflow.definition.trigger.summary, forKey: .trigger)
        try c.encode(workflow.definition.trigger.kind, forKey: .triggerKind)
        try c.encode(workflow.definition.reentry.summary, forKey: .reentry)
        try c.encode(workflow.definition.exitWhen?.source, forKey: .exitWhen)
        try c.encode(workflow.program.numbered.count, forKey: .steps)
        try c.encode(counts.enrolled, forKey: .enrolled)
        try c.encode(counts.active, forKey: .active)
        try c.encode(counts.completed, forKey: .completed)
        try c.encode(counts.exited, forKey: .exited)
        try c.encode(counts.failed, forKey: .failed)
    }
}
