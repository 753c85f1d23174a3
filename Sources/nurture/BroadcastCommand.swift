import ArgumentParser
import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Runtime
import Store

/// `nurture broadcast`: one message to everyone in a segment, now or at a time; A/B tests; progress and controls.
struct BroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "Send a campaign to a segment (now, or at a time; optionally an A/B test); watch, pause, resume, cancel.",
        discussion: """
            The audience is taken once, when the broadcast starts: the segment's members
            minus suppressed addresses, unsubscribed or erased contacts, withdrawn consent,
            and (unless --ignore-caps) contacts over their frequency cap. It is split into
            batches of 500 on the `bulk` queue; workers check every recipient again right
            before sending (someone who unsubscribed meanwhile gets nothing) and send
            through the template's provider. Every recipient gets the message once:
            pause/resume, killed workers and a flushed Redis included (batches live in
            PostgreSQL; the scheduler enqueues lost ones again).

            Examples:
              nurture broadcast send --segment newsletter --template november-news
              nurture broadcast send --segment newsletter --template november-news --at 2026-12-01T09:00:00Z --rate 200/s
              nurture broadcast send --segment newsletter --template subject-a --template subject-b \\
                  --split 10,10 --winner-after 4h --winner-by clicks
              nurture broadcast status 7
              nurture broadcast pause 7 && nurture broadcast resume 7
              nurture broadcast list
            """,
        subcommands: [BroadcastSendCommand.self, BroadcastStatusCommand.self, BroadcastListCommand.self,
                      BroadcastPauseCommand.self, BroadcastResumeCommand.self, BroadcastCancelCommand.self])
}

enum BroadcastCLI {
    static func stderr(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    static func clock(_ config: NurtureConfig, _ db: PostgresConnection) throws -> InstallationClock {
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        try clock.refresh(from: db)
        return clock
    }

    /// `200/s`, `1000/m`, `50000/h`, or a bare number (per second).
    static func rate(_ text: String) throws -> Double {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let n = Double(parts[0]), n > 0 else { throw UserError("--rate \(text): expected N/s, N/m or N/h with N > 0") }
        switch parts.count == 2 ? String(parts[1]) : "s" {
        case "s": return n
        case "m": return n / 60
        case "h": return n / 3600
        default: throw UserError("--rate \(text): expected N/s, N/m or N/h")
        }
    }

    static func progressLine(_ p: BroadcastProgress, status: String) -> String {
        let done = p.sent + p.failed + p.suppressed
        let fraction = p.recipients == 0 ? 1 : Double(done) / Double(p.recipients)
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let eta = p.ratePerSecond > 0 ? " eta \(Int(Double(p.remaining) / p.ratePerSecond))s" : ""
        return "[\(bar)] \(done)/\(p.recipients) sent \(p.sent) failed \(p.failed) suppressed \(p.suppressed) "
            + "\(String(format: "%.0f", p.ratePerSecond))/s \(status)\(eta)"
    }

    static func parseID(_ text: String) throws -> Int64 {
        guard let id = Int64(text), id > 0 else { throw UserError("broadcast id must be a positive number, got \(text)") }
        return id
    }

    /// Waits until the broadcast is finished, drawing progress on stderr; returns its final status.
    static func wait(_ id: Int64, clock: InstallationClock, db: PostgresConnection) throws -> String {
        let store = BroadcastStore()
        let tty = isatty(2) == 1
        while true {
            try clock.refresh(from: db)
            let status = try store.status(id, on: db) ?? "missing"
            let p = try store.progress(id, now: clock.now(), on: db)
            stderr((tty ? "\r" : "") + progressLine(p, status: status) + (tty ? "" : "\n"))
            if ["completed", "cancelled", "failed", "missing"].contains(status) {
                if tty { stderr("\n") }
                return status
            }
            usleep(tty ? 250_000 : 2_000_000)
        }
    }
}

struct BroadcastSendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Start a broadcast to a segment now (or schedule it with --at); prints its id.",
        discussion: """
            Prints the broadcast id on stdout (progress goes to stderr). Without --at the
            audience is taken and the batches enqueued right away (running workers start
            sending at once); with --at the broadcast is stored and the scheduler starts it
            at that time (business time: `nurture clock` applies).

            A/B test: give --template twice or more with --split (percent of the audience
            per variant, e.g. 10,10) and --winner-after; after that time the variant with
            the best --winner-by rate (unique clicks or opens per accepted message, from the
            `Email Clicked` / `Email Opened` events) goes to the rest. With --split summing
            to 100 there is no rest and no winner phase.

            Examples:
              nurture broadcast send --segment newsletter --template november-news --wait
              nurture broadcast send --segment vip --template launch --at 2026-12-01T09:00:00Z --rate 100/s --name launch-vip
              nurture broadcast send --segment all --template a --template b --split 10,10 --winner-after 4h --winner-by opens
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "The segment whose members get it (taken once, when the broadcast starts).") var segment: String
    @Option(name: .customLong("template"), help: "The template to send; repeat for an A/B test.") var templates: [String] = []
    @Option(help: "When to start (ISO 8601, e.g. 2026-12-01T09:00:00Z); default now.") var at: String?
    @Option(help: "Fleet-wide send rate for this broadcast: N/s, N/m or N/h (default: as fast as providers allow).") var rate: String?
    @Option(help: "A name for reports (default: the template and segment).") var name: String?
    @Option(help: "A/B: percent of the audience per variant, comma-separated, e.g. 10,10.") var split: String?
    @Option(help: "A/B: how long the test runs before the winner goes to the rest, e.g. 4h.") var winnerAfter: String?
    @Option(help: "A/B: clicks or opens.") var winnerBy: String = "clicks"
    @Option(help: "Recipients per batch job (a batching provider's request size is a good choice).") var batchSize: Int = BroadcastBatchJob.batchSize
    @Flag(help: "Send even to contacts over their frequency cap.") var ignoreCaps = false
    @Flag(help: "Wait until every recipient is settled, showing progress.") var wait = false

    func validate() throws {
        if templates.isEmpty { throw ValidationError("--template is required") }
        if templates.count > 1 && split == nil { throw ValidationError("an A/B test (several --template) needs --split, e.g. --split 10,10") }
        if templates.count == 1 && (split != nil || winnerAfter != nil) { throw ValidationError("--split and --winner-after need two or more --template") }
        if !["clicks", "opens"].contains(winnerBy) { throw ValidationError("--winner-by must be clicks or opens") }
        if !(1...100_000).contains(batchSize) { throw ValidationError("--batch-size must be 1...100000") }
    }

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let clock = try BroadcastCLI.clock(config, db)
        let now = clock.now()
        var splitValues: [Int]? = nil
        if let split {
            let values = split.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard values.count == templates.count, values.allSatisfy({ ($0 ?? 0) > 0 }), values.reduce(0, { $0 + ($1 ?? 0) }) <= 100 else {
                throw UserError("--split \(split): one positive percentage per --template (\(templates.count)), summing to at most 100")
            }
            splitValues = values.map { $0! }
        }
        var options: [String: Value] = ["winner_by": .string(winnerBy), "batch_size": .number(Double(batchSize))]
        if let winnerAfter {
            options["winner_after"] = .number(Double(try parseDuration(winnerAfter, flag: "--winner-after")) / 1000)
        } else if let splitValues, splitValues.reduce(0, +) < 100 {
            throw UserError("--split \(split!) leaves \(100 - splitValues.reduce(0, +))% for the winner: give --winner-after (e.g. 4h)")
        }
        var scheduledAt = now
        if let at {
            guard let date = Value.parseTime(at) else { throw UserError("--at \(at): expected ISO 8601, e.g. 2026-12-01T09:00:00Z") }
            scheduledAt = date
        }
        let catalog = try WorkflowCatalog.load(on: db)
        for t in templates where catalog.templates[t] == nil { throw UserError("template \(t) is not applied (nurture apply it first)") }
        let exists = try db.query("SELECT 1 FROM definition_heads WHERE kind = 'segment' AND name = $1 AND deleted_at IS NULL", [.text(segment)]).rows.isEmpty == false
        if !exists { throw UserError("segment \(segment) is not applied (see `nurture segments`)") }
        let store = BroadcastStore()
        let id = try store.create(name: name ?? "\(templates.joined(separator: "/")) to \(segment)", segment: segment, templates: templates,
                                  split: splitValues, ratePerSecond: try rate.map(BroadcastCLI.rate), ignoreCaps: ignoreCaps,
                                  scheduledAt: scheduledAt, options: Value.object(options).jsonText, now: now, on: db)
        FileHandle.standardOutput.write(Data("\(id)\n".utf8))
        if scheduledAt > now {
            BroadcastCLI.stderr("broadcast \(id) scheduled for \(Value.iso8601(scheduledAt)) (the scheduler starts it)\n")
            return
        }
        let launcher = BroadcastLauncher(namespace: config.namespace)
        let started = monotonicMilliseconds()
        if let n = try launcher.snapshot(id, now: now, on: db) {
            BroadcastCLI.stderr("broadcast \(id): \(n) recipients (snapshot \(monotonicMilliseconds() - started) ms)\n")
        }
        let redis = try connection.redis(config)
        let batches = Int(try db.query("SELECT count(*) FROM broadcast_batches WHERE broadcast_id = $1 AND state = 'ready'", [.int(id)]).rows.first?[0].int ?? 0)
        let tty = isatty(2) == 1
        let enqueued = try launcher.enqueueReady(id, now: now, redis: redis, db: db) { done in
            if tty { BroadcastCLI.stderr("\renqueued \(done)/\(batches) batches") }
        }
        BroadcastCLI.stderr((tty ? "\r" : "") + "enqueued \(enqueued)/\(batches) batches in \(monotonicMilliseconds() - started) ms\n")
        if wait {
            let status = try BroadcastCLI.wait(id, clock: clock, db: db)
            if status != "completed" { throw UserError("broadcast \(id) ended \(status)") }
        }
    }
}

struct BroadcastStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Progress of one broadcast: recipients, sent, failed, suppressed, remaining, rate, ETA.",
        discussion: """
            sent = accepted by the provider; failed = rejected or given up; suppressed =
            not sent because of a send-time check (unsubscribed, suppressed address,
            erased, cap, no address); remaining = not settled yet.

            Examples:
              nurture broadcast status 7
              nurture broadcast status 7 --wait
              nurture broadcast status 7 --json
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The broadcast id (`nurture broadcast list`).") var id: String
    @Flag(help: "Print JSON.") var json = false
    @Flag(help: "Follow until the broadcast is finished.") var wait = false

    struct StatusJSON: Encodable {
        let broadcast: BroadcastRow
        let progress: BroadcastProgress
        let etaSeconds: Double?
    }

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let id = try BroadcastCLI.parseID(self.id)
        let clock = try BroadcastCLI.clock(config, db)
        guard let b = try BroadcastStore().get(id, on: db) else { throw UserError("no broadcast \(id)") }
        if wait { _ = try BroadcastCLI.wait(id, clock: clock, db: db) }
        let b2 = try BroadcastStore().get(id, on: db) ?? b
        let p = try BroadcastStore().progress(id, now: clock.now(), on: db)
        let eta = p.ratePerSecond > 0 ? Double(p.remaining) / p.ratePerSecond : nil
        if json {
            try printJSON(StatusJSON(broadcast: b2, progress: p, etaSeconds: eta))
            return
        }
        print("broadcast \(b2.id) \(b2.name): \(b2.status)")
        print("  segment \(b2.segment), template\(b2.templates.count > 1 ? "s" : "") \(b2.templates.joined(separator: ", "))"
              + (b2.winner.map { ", winner \(b2.templates[$0])" } ?? ""))
        printTable(["recipients", "sent", "failed", "suppressed", "remaining", "rate/s", "eta"],
                   [["\(p.recipients)", "\(p.sent)", "\(p.failed)", "\(p.suppressed)", "\(p.remaining)",
                     String(format: "%.1f", p.ratePerSecond), eta.map { "\(Int($0))s" } ?? "-"]])
    }
}

struct BroadcastListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Every broadcast: id, name, status, segment, templates, recipients, when.",
        discussion: """
            Examples:
              nurture broadcast list
              nurture broadcast list --json
            """)
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let all = try BroadcastStore().list(on: db)
        if json { try printJSON(all); return }
        printTable(["id", "name", "status", "segment", "templates", "recipients", "scheduled", "finished"], all.map { b in
            ["\(b.id)", b.name, b.status, b.segment, b.templates.joined(separator: ","), "\(b.recipients)", Value.iso8601(b.scheduledAt),
             b.finishedAt.map(Value.iso8601) ?? "-"]
        })
    }
}

/// pause / resume / cancel.
protocol BroadcastControl: AsyncParsableCommand {
    var connection: ConnectionOptions { get }
    var id: String { get }
    static var action: String { get }
}

extension BroadcastControl {
    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let id = try BroadcastCLI.parseID(self.id)
        let clock = try BroadcastCLI.clock(config, db)
        let store = BroadcastStore()
        guard let b = try store.get(id, on: db) else { throw UserError("no broadcast \(id)") }
        guard let status = try store.control(id, Self.action, now: clock.now(), on: db) else {
            throw UserError("broadcast \(id) is \(b.status): cannot \(Self.action) it")
        }
        print("broadcast \(id): \(status)")
    }
}

struct BroadcastPauseCommand: BroadcastControl {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract: "Stop sending (within a second); nothing already sent is affected.",
        discussion: "Example: nurture broadcast pause 7   (then `nurture broadcast resume 7`)")
    static let action = "pause"
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The broadcast id.") var id: String
}

struct BroadcastResumeCommand: BroadcastControl {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue a paused broadcast; recipients already sent are never sent again.",
        discussion: "Example: nurture broadcast resume 7")
    static let action = "resume"
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The broadcast id.") var id: String
}

struct BroadcastCancelCommand: BroadcastControl {
    static let configuration = CommandConfiguration(
        commandName: "cancel",
        abstract: "Stop a broadcast for good (within a second); the rest of the audience gets nothing.",
        discussion: "Example: nurture broadcast cancel 7")
    static let action = "cancel"
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The broadcast id.") var id: String
}
