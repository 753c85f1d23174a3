import ArgumentParser
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
            """,
        subcommands: [ReportLifecycleCommand.self])
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
