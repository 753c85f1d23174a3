import ArgumentParser
import Domain
import Foundation
import NurtureCore
import Postgres
import Runtime
import Store

/// `nurture report`: metrics as text tables, or JSON with `--json`.
struct ReportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Metrics reports (a text table, or --json for machines).",
        discussion: """
            Examples:
              nurture report lifecycle
              nurture report lifecycle --window 7d --json
              nurture report workflow welcome-series
              nurture report workflow welcome-series --json
              nurture report broadcast 7 --conversion "Order Completed" --within 7d
            """,
        subcommands: [ReportLifecycleCommand.self, ReportWorkflowCommand.self, ReportBroadcastCommand.self])
}

/// `nurture report lifecycle`: per stage of the current lifecycle definition, how many contacts are in it, how
/// long stays in it last, how many go on to the next stage, and how active its contacts are.
struct ReportLifecycleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifecycle",
        abstract: "Per-stage lifecycle metrics: contacts, days in stage, conversion, engagement.",
        discussion: """
            One row per stage, in the order of the applied `kind: lifecycle`
            definition, then a total:
              contacts             live contacts whose current stage it is
              avg days             mean length of every stay in the stage (a stay
                                   ends at the contact's next transition, or now)
              conversion           of the contacts that ever entered the stage,
                                   the share that later entered the next stage
                                   ("-" for the last stage)
              events/contact/week  events of the stage's current contacts during
                                   the window, per contact per week
            Merged and erased contacts are left out. "Now" is the installation
            clock (see `nurture clock`).

            Examples:
              nurture report lifecycle
              nurture report lifecycle --window 7d
              nurture report lifecycle --json | jq '.stages[] | {stage, conversion_rate}'
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Engagement window ending now: 7d, 28d, 4w, ...") var window = "28d"
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if try parseDuration(window, flag: "--window") <= 0 { throw ValidationError("--window must be positive") }
    }

    func run() async throws {
        let windowMilliseconds = try parseDuration(window, flag: "--window")
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let now = try ContactsCLI.clock(config, db).now()
        let found: LifecycleReport?
        do {
            found = try LifecycleReportStore().report(now: now, windowMilliseconds: windowMilliseconds, on: db)
        } catch {
            if let tooMany = error as? LifecycleReportStore.TooManyStages { throw UserError(tooMany.description) }
            throw error
        }
        guard let report = found else {
            throw UserError("no lifecycle is defined: `nurture apply` a `kind: lifecycle` document first (see docs/definitions.md)")
        }
        if json {
            try printJSON(LifecycleReportJSON(report: report))
            return
        }
        print("lifecycle \(report.lifecycle) (v\(report.version)) at \(ContactsCLI.iso(report.now)); "
              + "engagement over the last \(DurationText.format(milliseconds: report.windowMilliseconds))")
        var rows = report.stages.map { stage in
            [stage.stage, String(stage.contacts), Self.number(stage.avgDaysInStage, digits: 1),
             stage.conversionRate.map { Self.number($0 * 100, digits: 1) + "%" } ?? "-", Self.number(stage.engagement, digits: 2)]
        }
        rows.append(["total", String(report.totalContacts), "", "", Self.number(report.totalEngagement, digits: 2)])
        printTable(["stage", "contacts", "avg days", "conversion", "events/contact/week"], rows)
    }

    /// A metric with `digits` decimals, or "-" when it is undefined.
    static func number(_ value: Double?, digits: Int) -> String {
        value.map { String(format: "%.\(digits)f", $0) } ?? "-"
    }
}

/// The `--json` shape: `{"now", "lifecycle", "version", "window_days", "stages": [...], "totals": {...}}`, with
/// undefined metrics as `null` (never omitted) so every key is always present.
private struct LifecycleReportJSON: Encodable {
    let report: LifecycleReport

    private struct Stage: Encodable {
        let metrics: LifecycleStageMetrics
        enum CodingKeys: String, CodingKey { case stage, contacts, avgDaysInStage = "avg_days_in_stage", conversionRate = "conversion_rate", engagement }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(metrics.stage, forKey: .stage)
            try c.encode(metrics.contacts, forKey: .contacts)
            try c.encode(metrics.avgDaysInStage, forKey: .avgDaysInStage)
            try c.encode(metrics.conversionRate, forKey: .conversionRate)
            try c.encode(metrics.engagement, forKey: .engagement)
        }
    }

    private struct Totals: Encodable {
        let contacts: Int64
        let engagement: Double?
        enum CodingKeys: String, CodingKey { case contacts, engagement }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(contacts, forKey: .contacts)
            try c.encode(engagement, forKey: .engagement)
        }
    }

    enum CodingKeys: String, CodingKey { case now, lifecycle, version, windowDays = "window_days", stages, totals }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ContactsCLI.iso(report.now), forKey: .now)
        try c.encode(report.lifecycle, forKey: .lifecycle)
        try c.encode(report.version, forKey: .version)
        try c.encode(report.windowDays, forKey: .windowDays)
        try c.encode(report.stages.map(Stage.init), forKey: .stages)
        try c.encode(Totals(contacts: report.totalContacts, engagement: report.totalEngagement), forKey: .totals)
    }
}

/// `nurture report workflow NAME`: enrollment totals and goal conversion, then per step what happened there.
struct ReportWorkflowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflow",
        abstract: "Per-step workflow metrics: reached, sent, skipped (cap, quiet hours, suppression, no address), failed, exits.",
        discussion: """
            The header counts enrollments (one per run of a contact through the
            workflow): enrolled, active, completed, exited, failed, and
              goal conversion  exits because exit_when held / enrolled
              completion       enrollments that ran every step / enrolled
            Then one row per step, numbered in reading order as in `nurture
            workflows show NAME` (`then:`/`else:` steps included). Each column
            counts distinct enrollments:
              reached      the step ran (or was held back by quiet hours)
              sent         the provider accepted the message
              capped       not sent: a frequency cap was reached
              quiet hours  held back by quiet hours at least once (the step then
                           ran later, so these also count in another column)
              suppressed   not sent: suppressed address, unsubscribed, erased
              no address   not sent: no email address / phone number
              failed       the provider refused the message, or retries ran out
              exited       left the workflow while at this step, before it ran
                           (e.g. during the wait before it), by exit_when or
                           because the contact was erased
            `if` rows show how many took `then` and `else`. Every version of the
            workflow is counted (labels are the current version's);
            --workflow-version N keeps only the enrollments that ran on version N
            (labelled as in version N).

            Examples:
              nurture report workflow welcome-series
              nurture report workflow welcome-series --workflow-version 2
              nurture report workflow welcome-series --json | jq '.steps[] | {step, label, sent}'
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The workflow's name.") var name: String
    @Option(name: .customLong("workflow-version"), help: ArgumentHelp("Only enrollments that ran on this version of the workflow.",
                                                                     valueName: "N")) var version: Int?
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let catalog = try WorkflowCatalog.load(on: db)
        let store = WorkflowReportStore()
        let enrolledVersions = try store.enrolledVersions(of: name, on: db)
        let head = catalog.workflows[name]
        guard head != nil || !enrolledVersions.isEmpty else {
            throw WorkflowsCLI.unknown(name, known: catalog.workflows.keys.sorted())
        }
        // Every version whose step paths matter, loaded once.
        var programs: [Int: LoadedWorkflow] = [:]
        if let head { programs[head.version] = head }
        for v in version.map({ [$0] }) ?? enrolledVersions where programs[v] == nil {
            programs[v] = try WorkflowCatalog.loadVersion(name, version: v, on: db)
        }
        if let version, programs[version] == nil { throw UserError("workflow \(name) has no version \(version)") }
        guard let labelled = version.flatMap({ programs[$0] }) ?? head ?? enrolledVersions.reversed().lazy.compactMap({ programs[$0] }).first else {
            throw UserError("workflow \(name): no stored version to label its steps with")
        }
        let positions = programs.values.flatMap { w in
            w.program.numbered.map { WorkflowStepPosition(version: w.version, path: $0.path.description, number: $0.number) }
        }
        let counts = try store.counts(of: name, version: version, on: db)
        let metrics = Dictionary(try store.steps(of: name, version: version, positions: positions, on: db).map { ($0.step, $0) },
                                 uniquingKeysWith: { a, _ in a })

        // One row per step of the labelling version, then steps only older versions have, then unplaced exits.
        var rows: [WorkflowStepRow] = labelled.program.numbered.map { entry in
            WorkflowStepRow(label: entry.step.label, kind: entry.step.kind, metrics: metrics[entry.number] ?? WorkflowStepMetrics(step: entry.number))
        }
        for (number, m) in metrics.sorted(by: { $0.key < $1.key }) where number > rows.count {
            let other = programs.values.sorted { $0.version > $1.version }.lazy
                .compactMap { w in w.program.numbered.first { $0.number == number }.map { (w.version, $0.step) } }.first
            rows.append(WorkflowStepRow(label: other.map { "\($0.1.label) (v\($0.0))" } ?? "?", kind: other?.1.kind, metrics: m))
        }
        if let unplaced = metrics[0], unplaced.exited > 0 {
            rows.append(WorkflowStepRow(label: "(not at a known step)", kind: nil, metrics: unplaced))
        }
        let labels = labelled.program.numbered.map(\.step.label)
        // Runs on other versions whose steps are numbered differently are counted under these labels.
        let differing = version != nil ? [] : enrolledVersions.filter { v in
            v != labelled.version && programs[v].map { $0.program.numbered.map(\.step.label) != labels } ?? true
        }
        let paused = catalog.paused.contains(name) && head != nil

        if json {
            try printJSON(WorkflowReportJSON(workflow: labelled, current: head != nil, paused: paused, versionFilter: version,
                                             enrolledVersions: enrolledVersions, counts: counts, steps: rows))
            return
        }
        let state = head == nil ? " (no longer applied)" : paused ? " PAUSED" : ""
        print("workflow \(name) (v\(labelled.version))\(state); trigger: \(labelled.definition.trigger.summary)"
              + (version.map { "; only enrollments on v\($0)" } ?? ""))
        print("enrolled \(counts.enrolled): \(counts.active) active, \(counts.completed) completed, "
              + "\(counts.exited) exited (\(counts.goalExits) by exit_when), \(counts.failed) failed")
        let goal = labelled.definition.exitWhen == nil && counts.goalExits == 0
            ? "- (no exit_when)" : ReportLifecycleCommand.percent(counts.goalConversionRate)
        print("goal conversion \(goal); completion \(ReportLifecycleCommand.percent(counts.completionRate))")
        if !differing.isEmpty {
            print("note: steps are labelled as in v\(labelled.version); "
                  + "v\(differing.map(String.init).joined(separator: ", v")) number\(differing.count == 1 ? "s" : "") its steps differently "
                  + "(--workflow-version N reports one version)")
        }
        guard !rows.isEmpty else {
            print("(no steps)")
            return
        }
        print("")
        printTable(["step", "reached", "sent", "capped", "quiet hours", "suppressed", "no address", "failed", "exited", "what"],
                   rows.map { r in
            let m = r.metrics
            var label = r.label
            if r.kind == "if" || m.then > 0 || m.otherwise > 0 { label += "  (then \(m.then), else \(m.otherwise))" }
            return [m.step == 0 ? "-" : String(m.step), String(m.reached), String(m.sent), String(m.capped), String(m.deferredQuietHours),
                    String(m.suppressed), String(m.noAddress), String(m.failed), String(m.exited), label]
        })
    }
}

extension ReportLifecycleCommand {
    /// A rate as a percentage with one decimal, or "-" when undefined.
    static func percent(_ rate: Double?) -> String {
        rate.map { number($0 * 100, digits: 1) + "%" } ?? "-"
    }
}

/// One row of the workflow report: a step's label and kind (nil when unknown) and its metrics.
struct WorkflowStepRow {
    let label: String
    let kind: String?
    let metrics: WorkflowStepMetrics
}

/// The `--json` shape of `report workflow`; every key always present (null when undefined).
private struct WorkflowReportJSON: Encodable {
    let workflow: LoadedWorkflow
    let current: Bool
    let paused: Bool
    let versionFilter: Int?
    let enrolledVersions: [Int]
    let counts: WorkflowEnrollmentCounts
    let steps: [WorkflowStepRow]

    private struct Step: Encodable {
        let row: WorkflowStepRow
        enum CodingKeys: String, CodingKey {
            case step, label, kind, reached, done, then, `else`, sent, failed, suppressed, capped, noAddress = "no_address",
                 deferredQuietHours = "deferred_quiet_hours", exited, goalExits = "goal_exits"
        }
        func encode(to encoder: any Encoder) throws {
            let m = row.metrics
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(m.step, forKey: .step)
            try c.encode(row.label, forKey: .label)
            try c.encode(row.kind, forKey: .kind)
            try c.encode(m.reached, forKey: .reached)
            try c.encode(m.done, forKey: .done)
            try c.encode(m.then, forKey: .then)
            try c.encode(m.otherwise, forKey: .else)
            try c.encode(m.sent, forKey: .sent)
            try c.encode(m.failed, forKey: .failed)
            try c.encode(m.suppressed, forKey: .suppressed)
            try c.encode(m.capped, forKey: .capped)
            try c.encode(m.noAddress, forKey: .noAddress)
            try c.encode(m.deferredQuietHours, forKey: .deferredQuietHours)
            try c.encode(m.exited, forKey: .exited)
            try c.encode(m.goalExits, forKey: .goalExits)
        }
    }

    enum CodingKeys: String, CodingKey {
        case workflow, version, current, paused, trigger, exitWhen = "exit_when", versionFilter = "version_filter",
             enrolledVersions = "enrolled_versions", enrolled, active, completed, exited, failed, goalExits = "goal_exits",
             goalConversionRate = "goal_conversion_rate", completionRate = "completion_rate", steps
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(workflow.name, forKey: .workflow)
        try c.encode(workflow.version, forKey: .version)
        try c.encode(current, forKey: .current)
        try c.encode(paused, forKey: .paused)
        try c.encode(workflow.definition.trigger.summary, forKey: .trigger)
        try c.encode(workflow.definition.exitWhen?.source, forKey: .exitWhen)
        try c.encode(versionFilter, forKey: .versionFilter)
        try c.encode(enrolledVersions, forKey: .enrolledVersions)
        try c.encode(counts.enrolled, forKey: .enrolled)
        try c.encode(counts.active, forKey: .active)
        try c.encode(counts.completed, forKey: .completed)
        try c.encode(counts.exited, forKey: .exited)
        try c.encode(counts.failed, forKey: .failed)
        try c.encode(counts.goalExits, forKey: .goalExits)
        try c.encode(counts.goalConversionRate, forKey: .goalConversionRate)
        try c.encode(counts.completionRate, forKey: .completionRate)
        try c.encode(steps.map(Step.init), forKey: .steps)
    }
}

/// `nurture report broadcast ID`: what happened to a broadcast's messages (sent, accepted, failed by reason,
/// opened, clicked, unsubscribed, converted), in total and per A/B variant.
struct ReportBroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "Broadcast metrics: sent, accepted, failed by reason, opened, clicked, unsubscribed, conversions; per A/B variant.",
        discussion: """
            Counts are of messages (one per recipient, ever); "unique" = distinct messages.
              recipients     contacts in the audience snapshot
              sent           a send was tried and is settled: accepted + failed
              accepted       the provider accepted the message (delivered to it);
                             the rate is of sent
              failed         the provider refused it, retries ran out, or it did
                             not render; listed by reason below the table
              suppressed     not sent: suppressed address, unsubscribed, no
                             consent, erased (checked again at send time)
              skipped        not sent: no address, frequency cap, no template
              pending        being sent or waiting for a retry
              unprocessed    recipients whose batch has not run yet
              opened         messages opened by a person (`Email Opened` events
                             naming the message's delivery id); machine opens
                             (mail privacy proxies, scanners: `machine: true`)
                             are shown apart and never count as opens
              clicked        messages clicked (`Email Clicked`); click-to-open =
                             clicked / opened
              unsubscribed   messages through which someone unsubscribed (an
                             `Unsubscribed` event with the message's delivery id)
              converted      with --conversion NAME: accepted messages whose
                             recipient did NAME within --within (default 7d) of
                             the message being accepted
            Rates are of accepted messages unless said otherwise. An A/B test
            (more than one --template) gets a column per variant (A, B, ...) and
            one for the rest of the audience, who got the winner. "Now" is the
            installation clock (see `nurture clock`).

            Examples:
              nurture report broadcast 7
              nurture report broadcast 7 --conversion "Order Completed" --within 7d
              nurture report broadcast 7 --json | jq '.variants[] | {label, template, open_rate, click_rate}'
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The broadcast's id (as printed by `nurture broadcast send`, or see `nurture broadcast list`).") var id: Int64
    @Option(help: ArgumentHelp("Count recipients who did this event after the message as conversions.", valueName: "EVENT"))
    var conversion: String?
    @Option(help: ArgumentHelp("The conversion window after the message was accepted: 7d, 24h, 30m, ... (default 7d).",
                               valueName: "DURATION"))
    var within: String?
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if id <= 0 { throw ValidationError("the broadcast id must be a positive number") }
        if let conversion, conversion.isEmpty { throw ValidationError("--conversion needs an event name") }
        if let within {
            guard conversion != nil else { throw ValidationError("--within needs --conversion EVENT") }
            if try parseDuration(within, flag: "--within") <= 0 { throw ValidationError("--within must be positive") }
        }
    }

    func run() async throws {
        let rule = try conversion.map { BroadcastConversionRule(event: $0, withinMilliseconds: try parseDuration(within ?? "7d", flag: "--within")) }
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let now = try ContactsCLI.clock(config, db).now()
        guard let report = try BroadcastReportStore().report(id, conversion: rule, now: now, on: db) else {
            throw UserError("no broadcast \(id) (see `nurture broadcast list`)")
        }
        if json {
            try printJSON(report)
            return
        }
        let split = report.split.map { "; split \($0.map(String.init).joined(separator: ","))" } ?? ""
        print("broadcast \(report.broadcast) \"\(report.name)\" (\(report.status)); segment \(report.segment); "
              + "template\(report.templates.count == 1 ? "" : "s") \(report.templates.joined(separator: ", "))\(split)"
              + (report.templates.count > 1 ? "; winner \(report.winner ?? "not chosen yet")" : ""))
        print("created \(ContactsCLI.iso(report.createdAt)); started \(ContactsCLI.iso(report.startedAt)); "
              + "finished \(ContactsCLI.iso(report.finishedAt)); report at \(ContactsCLI.iso(report.now))")
        if let rule = report.conversion {
            print("conversion: \"\(rule.event)\" within \(DurationText.format(milliseconds: rule.withinMilliseconds)) of the message being accepted")
        }
        print("")
        let columns = [report.totals] + report.variants.map(\.figures)
        var header = ["", report.variants.isEmpty ? "count" : "all"]
        header += report.variants.map { v in
            v.variant.map { $0 >= 0 } == true ? "\(v.label) \(v.template ?? "?")" : v.variant == -1 ? "rest → \(v.template ?? "winner")" : v.label
        }
        func row(_ name: String, _ value: (BroadcastFigures) -> String) -> [String] { [name] + columns.map(value) }
        func count(_ n: Int64, _ rate: Double?) -> String { "\(n)" + (rate.map { " (\(ReportLifecycleCommand.percent($0)))" } ?? "") }
        var rows = [
            row("recipients") { "\($0.recipients)" },
            row("sent") { "\($0.sent)" },
            row("accepted") { count($0.accepted, $0.deliveryRate) },
            row("failed") { count($0.failed, $0.sent > 0 ? Double($0.failed) / Double($0.sent) : nil) },
            row("suppressed") { "\($0.suppressed)" },
            row("skipped") { "\($0.skipped)" },
            row("pending") { "\($0.pending)" },
            row("unprocessed") { "\($0.unprocessed)" },
            row("opened") { count($0.uniqueOpens, $0.openRate) },
            row("opens (total)") { "\($0.opens)" },
            row("machine opens") { "\($0.machineOpens) (\($0.machineOpened) messages)" },
            row("clicked") { count($0.uniqueClicks, $0.clickRate) },
            row("clicks (total)") { "\($0.clicks)" },
            row("click-to-open") { ReportLifecycleCommand.percent($0.clickToOpenRate) },
            row("unsubscribed") { count($0.unsubscribed, $0.unsubscribeRate) },
        ]
        if report.conversion != nil {
            rows.append(row("converted") { count($0.converted ?? 0, $0.conversionRate) })
            if report.totals.conversionWindowOpen ?? 0 > 0 {
                rows.append(row("window still open") { "\($0.conversionWindowOpen ?? 0)" })
            }
        }
        printTable(header, rows)
        for (title, reasons) in [("failed by reason", report.totals.failures), ("not sent, by reason", report.totals.notSent)]
        where !reasons.isEmpty {
            print("")
            print(title)
            printTable(["status", "messages", "reason"], reasons.map { [$0.status.isEmpty ? "-" : $0.status, String($0.count), $0.reason.isEmpty ? "(none recorded)" : $0.reason] })
        }
    }
}
