import ArgumentParser
import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Runtime
import Store
import Synchronization

/// `nurture bench workflows`: enrolled contacts run a three-step workflow through the real scheduler, worker
/// processes and an HTTP provider answered by an in-process sink; plus the rendering throughput of `welcome-1`.
struct BenchWorkflowsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "workflows",
        abstract: "Workflow benchmark: due enrollments → scheduler → workers → HTTP provider → sink; template rendering.",
        discussion: """
            Setup (not timed): a fresh schema on NURTURE_DATABASE_URL (dropped afterwards), a private redis-server,
            an in-process HTTP sink (the DevSink of `nurture sink`) on a free loopback port, and definitions applied
            from YAML embedded in the bench: settings without quiet hours or frequency caps, one `type: http` email
            provider pointing at the sink (`batch: 50` by default: 50 messages per request, as ESP batch APIs take them;
            --batch 0 for one plain POST per message), the template welcome-1 (the text
            of examples/templates.yaml) and three identical workflows (bench-warmup, bench-burst, bench-paced) of
            three steps: send welcome-1, send welcome-1, send welcome-1. Every step is a real provider call that the
            sink must accept, so steps/s = messages/s; a `wait` step would be a no-op counted as a step, and its
            duration would sit in the wall time (the scheduler's handling of due steps is measured by the paced
            phase instead). --contacts contacts (email, first_name, time zone) are written with COPY. Then
            --workers `nurture worker --no-ingest --queues default --concurrency C` processes of this binary are
            started, and one scheduler engine runs inside this process (the due-steps loop of `nurture scheduler`,
            with promotion of retries and reclaiming; no behaviour scan or date triggers). A warm-up of
            workers × concurrency × 2 enrollments opens every slot's connections first.

            Burst: every contact is enrolled with one set-based INSERT ... SELECT, all due at one time T a few
            seconds ahead (enrollment time is not in the figure). Measured from T until the sink has accepted every
            message: steps/s (3 × contacts / seconds), messages/s and jobs/s (one workflow.step job runs the three
            sends of an enrollment). Lateness of the due steps (step 1 of each enrollment), three ways:
            claim = due → the scheduler claimed it (the scheduler in this process reports each claim as it returns;
            the first claim of each enrollment at step 0 counts);
            start = due → the worker began the step (deliveries.created_at, the runner's clock at the start of the
            step); accepted = due → the provider call was answered (deliveries.sent_at). In a burst all three
            include draining everything due at the same time (the scheduler claims nothing while the step queue
            holds max_step_backlog jobs), so their p99 is about the burst's length.

            Paced (lateness at a steady load below capacity): --paced-rate enrollments per second (default: half
            the jobs/s the burst measured) fall due one after the other over --paced-seconds (bench-paced; contacts
            1...rate × seconds), the same three lateness figures. --paced-seconds 0 skips the phase.
            `extra_claims`: claims beyond one per enrollment (the scheduler's counter), i.e. workflow.step jobs
            enqueued for an enrollment that was already running (a lease that ran out, or an enrollment left
            claimable between two steps of one job); they end as stale jobs or postponements, never as a second
            message (`duplicates`: delivery ids the sink accepted twice).

            Render: welcome-1 parsed once and composed --renders times on one thread (subject, html and text;
            MessageComposer.compose with a workflow render context, as a worker does) → renders/s per core.
            --render-only runs just that (no servers needed).

            Output: `bench=workflows-... key=value` lines, then a summary. Run a release build:
            swift build -c release && .build/release/nurture bench workflows --contacts 100000
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Contacts, each enrolled once in the burst (3 steps, 3 messages each).") var contacts: Int = 100_000
    @Option(help: "Worker processes (children of this binary).") var workers: Int = 2
    @Option(help: "Slots per worker process.") var concurrency: Int = 16
    @Option(help: "Give the provider `batch: N` (bodies {\"messages\":[...]}); 0: one plain POST per message.") var batch: Int = 50
    @Option(help: "Due enrollments the scheduler claims per round trip.") var dueBatch: Int = 2_000
    @Option(help: "Paced phase: enrollments falling due per second (default: half the burst's jobs/s).") var pacedRate: Int?
    @Option(help: "Paced phase: seconds over which they fall due (capped by --contacts; 0: skip the phase).") var pacedSeconds: Int = 10
    @Option(help: "Renders of welcome-1 on one thread (0: skip).") var renders: Int = 200_000
    @Flag(help: "Only the rendering measurement (no PostgreSQL or Redis needed).") var renderOnly = false
    @Flag(help: "Keep the schema afterwards (its name is printed).") var keepSchema = false
    @Option(help: "Give up when the sink has accepted nothing new for this many seconds.") var stallSeconds: Int = 60

    func validate() throws {
        guard contacts >= 1, workers >= 1, (1...1024).contains(concurrency), batch >= 0, dueBatch >= 1, (pacedRate ?? 1) >= 1,
              pacedSeconds >= 0, renders >= 0, stallSeconds >= 1 else {
            throw ValidationError("need --contacts, --workers, --due-batch, --paced-rate >= 1, --concurrency 1-1024 and non-negative others")
        }
    }

    func run() async throws {
        let config = try connection.config()
        LoggingSetup.once(level: .warning)
        var render: RenderFigures? = nil
        if renders > 0 {
            let figures = try WorkflowsBench.render(count: renders)
            emit("workflows-render", [("template", "welcome-1"), ("renders", "\(figures.renders)"), ("threads", "1"),
                                      ("seconds", fmt(figures.seconds, 3)), ("renders_per_s", fmt(Double(figures.renders) / figures.seconds, 0)),
                                      ("us_per_render", fmt(figures.seconds * 1e6 / Double(figures.renders), 2)),
                                      ("bytes_per_render", "\(figures.bytes / max(1, figures.renders))")])
            render = figures
        }
        if renderOnly {
            if let render { print(WorkflowsBench.renderSummary(render)) }
            return
        }

        let plan = WorkflowsPlan(databaseURL: config.databaseURL, contacts: contacts, workers: workers, concurrency: concurrency,
                                 batch: batch, dueBatch: dueBatch, pacedRate: pacedRate, pacedSeconds: pacedSeconds,
                                 keepSchema: keepSchema, stallSeconds: stallSeconds)
        let probe = SinkProbe()
        let sink = try DevSink(host: "127.0.0.1", port: 0, quiet: true, parseBodies: false, onRequest: { probe.record($0) })
        let sinkTask = Task { try await sink.run() }
        defer { sinkTask.cancel() }
        let port = try await sink.waitUntilListening()
        let result = try await BlockingExecutor.shared.run { try WorkflowsBench(plan: plan, sinkPort: port, probe: probe).run() }

        print(result.summary)
        if let render { print(WorkflowsBench.renderSummary(render)) }
    }
}

/// The options, as a Sendable value for the blocking thread.
struct WorkflowsPlan: Sendable {
    let databaseURL: String
    let contacts: Int
    let workers: Int
    let concurrency: Int
    let batch: Int
    let dueBatch: Int
    /// nil: half the burst's jobs/s.
    let pacedRate: Int?
    let pacedSeconds: Int
    let keepSchema: Bool
    let stallSeconds: Int
}

struct RenderFigures: Sendable {
    let renders: Int
    let seconds: Double
    let bytes: Int
}

/// What the sink saw, updated on its threads: messages accepted, when the last one arrived, and each delivery id
/// (a provider called twice for one delivery shows as a duplicate).
final class SinkProbe: Sendable {
    private let messages = Atomic<Int>(0)
    private let lastMicros = Atomic<Int64>(0)
    private let ids = Mutex<Set<String>>([])
    private let repeats = Atomic<Int>(0)

    func record(_ request: SinkRecord) {
        guard (200..<300).contains(request.status) else { return }
        let again = ids.withLock { seen in request.messageIDs.reduce(0) { $0 + (seen.insert($1).inserted ? 0 : 1) } }
        if again > 0 { repeats.add(again, ordering: .relaxed) }
        let t = Int64(request.at.timeIntervalSince1970 * 1e6)
        var last = lastMicros.load(ordering: .relaxed)
        while t > last {
            let (exchanged, original) = lastMicros.compareExchange(expected: last, desired: t, ordering: .relaxed)
            if exchanged { break }
            last = original
        }
        messages.add(request.messageCount, ordering: .releasing)
    }

    var acceptedMessages: Int { messages.load(ordering: .acquiring) }
    var lastAcceptedMicros: Int64 { lastMicros.load(ordering: .relaxed) }
    var duplicates: Int { repeats.load(ordering: .relaxed) }
}

struct WorkflowsResult: Sendable {
    let summary: String
}

/// One run of the workflow benchmark (on a blocking thread: every call here blocks).
struct WorkflowsBench {
    let plan: WorkflowsPlan
    let sinkPort: Int
    let probe: SinkProbe

    static let stepsPerEnrollment = 3

    /// welcome-1 exactly as in examples/templates.yaml.
    static let welcomeTemplate = """
        kind: template
        name: welcome-1
        channel: email
        subject: "Welcome to Acme{% if contact.first_name %}, {{ contact.first_name }}{% endif %}!"
        html: |
          <h1>Hi {{ contact.first_name | default: "there" }},</h1>
          <p>Thanks for joining Acme. Three things to try first: ...</p>
          <p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>
        text: |
          Hi {{ contact.first_name | default: "there" }}, thanks for joining Acme.
          Unsubscribe: {{ unsubscribe_url }}
        """

    func definitionsYAML() -> String {
        func workflow(_ name: String) -> String {
            """
            kind: workflow
            name: \(name)
            trigger:
              event: Bench Started
            reentry: always
            steps:
              - send: welcome-1
              - send: welcome-1
              - send: welcome-1
            """
        }
        return [
            """
            kind: settings
            timezone: UTC
            from: "Acme <hello@acme.test>"
            """,
            """
            kind: provider
            name: email
            channel: email
            type: http
            url: http://127.0.0.1:\(sinkPort)/email
            """ + (plan.batch > 0 ? "\nbatch: \(plan.batch)" : ""),
            Self.welcomeTemplate,
            workflow("bench-warmup"), workflow("bench-burst"), workflow("bench-paced"),
        ].joined(separator: "\n---\n") + "\n"
    }

    func run() throws -> WorkflowsResult {
        let redisServer = try PrivateRedis()
        defer { redisServer.stop() }
        let schema = "bench_\(JobQueue.newJobID().prefix(8))"
        let admin = try PostgresConnection(url: plan.databaseURL)
        try admin.simpleQuery("CREATE SCHEMA \(schema)")
        defer {
            if plan.keepSchema { print("schema \(schema) kept") } else { _ = try? admin.simpleQuery("DROP SCHEMA \(schema) CASCADE") }
        }
        let url = plan.databaseURL + (plan.databaseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let db = try PostgresConnection(url: url)
        _ = try Migrator().migrate(db)
        let scratch = NSTemporaryDirectory() + "nurture-bench-workflows-\(schema)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { if !plan.keepSchema { try? FileManager.default.removeItem(atPath: scratch) } }
        let definitionsPath = scratch + "/bench-workflows.yaml"
        try definitionsYAML().write(toFile: definitionsPath, atomically: true, encoding: .utf8)
        _ = try applyDefinitions(definitionsPath, on: db)
        var versions: [String: Int] = [:]
        for row in try db.query("SELECT name, version FROM definition_heads WHERE kind = 'workflow'").rows {
            if let name = row[0].string, let version = row[1].int { versions[name] = Int(version) }
        }

        // Contacts.
        let started = monotonicNanoseconds()
        try Self.copyContacts(plan.contacts, into: db)
        try db.simpleQuery("VACUUM (ANALYZE) contacts")
        let copySeconds = Double(monotonicNanoseconds() - started) / 1e9

        // Scheduler (in this process) and workers.
        let namespace = "bench-\(JobQueue.newJobID().prefix(8))"
        var options = SchedulerOptions()
        options.namespace = namespace
        options.redis = try RedisConfig(url: redisServer.url)
        options.databaseURL = url
        options.dueBatch = plan.dueBatch
        var logger = Logger(label: "nurture.bench.scheduler")
        logger.logLevel = .warning
        // The claim tap: the lateness of each enrollment's first claim at step 0, as the scheduler returns it.
        let claims = ClaimTap()
        let scheduler = SchedulerEngine(options: options, tasks: [], clock: InstallationClock(timeTravelAllowed: false), logger: logger,
                                        onClaimed: { due, at in claims.record(due, at: at) })
        try scheduler.start()
        defer { scheduler.stop() }

        let fleet = try BenchWorkerFleet(count: plan.workers, concurrency: plan.concurrency, queue: "default", namespace: namespace,
                                         redisURL: redisServer.url, databaseURL: url, secret: "bench-workflows-secret", scratch: scratch)
        defer { fleet.stop() }
        let redis = try RedisConnection(url: redisServer.url)

        let phases = PhaseRunner(bench: self, db: db, scheduler: scheduler, claims: claims, versions: versions, scratch: scratch,
                                 fleet: fleet, redisPid: redisServer.process.pid, redis: redis, namespace: namespace)
        // Warm-up: every slot opens its connections and loads the catalog.
        let warm = try phases.run(workflow: "bench-warmup", count: min(plan.contacts, plan.workers * plan.concurrency * 2),
                                  spacingSeconds: 0, leadSeconds: 0.5)
        emit("workflows-warmup", [("enrollments", "\(warm.enrollments)"), ("seconds", fmt(warm.seconds, 3))])

        let burst = try phases.run(workflow: "bench-burst", count: plan.contacts, spacingSeconds: 0,
                                   leadSeconds: 2 + Double(plan.contacts) / 20_000)
        emit("workflows", [("phase", "burst"), ("contacts", "\(plan.contacts)"), ("workers", "\(plan.workers)"),
                           ("concurrency", "\(plan.concurrency)"), ("batch", "\(plan.batch)"), ("due_batch", "\(plan.dueBatch)"),
                           ("max_step_backlog", "\(scheduler.options.maxStepBacklog)"),
                           ("steps", "\(burst.steps)"), ("messages", "\(burst.messages)"), ("seconds", fmt(burst.seconds, 3)),
                           ("steps_per_s", fmt(Double(burst.steps) / burst.seconds, 0)),
                           ("messages_per_s", fmt(Double(burst.messages) / burst.seconds, 0)),
                           ("jobs_per_s", fmt(Double(burst.enrollments) / burst.seconds, 0)),
                           ("completed_s", fmt(burst.completedSeconds, 3))] + burst.latenessFields
                          + [("step_ms_p50", fmt(percentile(burst.stepMilliseconds, 50), 2)), ("step_ms_p99", fmt(percentile(burst.stepMilliseconds, 99), 2)),
                             ("extra_claims", "\(burst.extraClaims)"), ("stale_drain_s", fmt(burst.staleDrainSeconds, 3)), ("duplicates", "\(burst.duplicates)"), ("not_accepted", "\(burst.notAccepted)"),
                             ("enroll_s", fmt(burst.enrollSeconds, 3)), ("armed_late_ms", fmt(burst.armedLateMilliseconds, 0)),
                             ("copy_contacts_s", fmt(copySeconds, 3))] + burst.cpu.fields(steps: burst.steps))

        var paced: PhaseFigures? = nil
        let pacedRate = plan.pacedRate ?? max(1, Int(Double(burst.enrollments) / burst.seconds / 2))
        let pacedCount = min(plan.contacts, pacedRate * plan.pacedSeconds)
        if pacedCount > 0 {
            let figures = try phases.run(workflow: "bench-paced", count: pacedCount, spacingSeconds: 1 / Double(pacedRate),
                                         leadSeconds: 2 + Double(pacedCount) / 20_000)
            emit("workflows", [("phase", "paced"), ("rate_per_s", "\(pacedRate)"), ("steps_per_s_offered", "\(pacedRate * WorkflowsBench.stepsPerEnrollment)"), ("enrollments", "\(figures.enrollments)"),
                               ("steps", "\(figures.steps)"), ("messages", "\(figures.messages)"), ("seconds", fmt(figures.seconds, 3))]
                              + figures.latenessFields
                              + [("step_ms_p50", fmt(percentile(figures.stepMilliseconds, 50), 2)), ("step_ms_p99", fmt(percentile(figures.stepMilliseconds, 99), 2)),
                                 ("extra_claims", "\(figures.extraClaims)"), ("stale_drain_s", fmt(figures.staleDrainSeconds, 3)), ("duplicates", "\(figures.duplicates)"),
                                 ("not_accepted", "\(figures.notAccepted)"), ("armed_late_ms", fmt(figures.armedLateMilliseconds, 0))]
                              + figures.cpu.fields(steps: figures.steps))
            paced = figures
        }

        for (i, w) in fleet.children.enumerated() {
            let rss = residentMegabytes(pid: w.pid)
            emit("workflows-worker-rss", [("process", "\(i + 1)"), ("rss_mb", fmt(rss.current)), ("peak_rss_mb", fmt(rss.peak))])
        }
        return WorkflowsResult(summary: summary(burst: burst, paced: paced, pacedRate: pacedRate))
    }

    private func summary(burst: PhaseFigures, paced: PhaseFigures?, pacedRate: Int) -> String {
        func ms(_ values: [Double]) -> String { "p50 \(fmt(percentile(values, 50), 0)) ms, p99 \(fmt(percentile(values, 99), 0)) ms" }
        var lines = [
            "burst: \(burst.enrollments) enrollments × 3 sends = \(burst.steps) steps, due at once, all accepted by the sink \(fmt(burst.seconds, 2)) s later:",
            "  \(fmt(Double(burst.steps) / burst.seconds, 0)) steps/s (= messages/s), \(fmt(Double(burst.enrollments) / burst.seconds, 0)) jobs/s "
                + "on \(plan.workers) worker\(plan.workers == 1 ? "" : "s") × \(plan.concurrency) slots" + (plan.batch > 0 ? " (provider batch: \(plan.batch))" : ""),
            "  due → claimed by the scheduler \(ms(burst.claim)); due → step started \(ms(burst.start)); due → accepted \(ms(burst.accepted))",
            "  CPU per step: " + burst.cpu.perStepText(steps: burst.steps),
        ]
        if let paced {
            lines += [
                "paced: \(pacedRate) enrollments/s (\(pacedRate * 3) steps/s) falling due over \(fmt(Double(paced.enrollments) / Double(pacedRate), 1)) s:",
                "  due → claimed \(ms(paced.claim)); due → step started \(ms(paced.start)) (max \(fmt(paced.start.last ?? .nan, 0)) ms); due → accepted \(ms(paced.accepted))",
            ]
        }
        if burst.extraClaims + (paced?.extraClaims ?? 0) > 0 {
            lines.append("  note: \(burst.extraClaims + (paced?.extraClaims ?? 0)) extra claims of enrollments that were already running (stale jobs)")
        }
        return lines.joined(separator: "\n")
    }

    static func renderSummary(_ r: RenderFigures) -> String {
        "render: welcome-1 (subject + html + text) \(fmt(Double(r.renders) / r.seconds, 0)) renders/s on one core "
            + "(\(fmt(r.seconds * 1e6 / Double(r.renders), 2)) µs each)"
    }

    static func copyContacts(_ count: Int, into db: PostgresConnection) throws {
        let names = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro"]
        let zones = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC"]
        let stamp = Value.iso8601(Date())
        var rows: [[String?]] = []
        rows.reserveCapacity(10_000)
        func flush() throws {
            _ = try db.copyIn("COPY contacts (id, external_id, email, timezone, attributes, tags, created_at, updated_at) FROM STDIN", rows: rows)
            rows.removeAll(keepingCapacity: true)
        }
        for id in 1...count {
            rows.append(["\(id)", "u-\(id)", "user\(id)@example.com", zones[id % zones.count],
                         #"{"first_name":"\#(names[id % names.count])","plan":"\#(id % 5 == 0 ? "pro" : "free")"}"#,
                         id % 3 == 0 ? "{newsletter}" : "{}", stamp, stamp])
            if rows.count == 10_000 { try flush() }
        }
        try flush()
        try db.execute("SELECT setval(pg_get_serial_sequence('contacts', 'id'), $1)", [.int(Int64(count))])
    }

    // MARK: rendering

    static func render(count: Int) throws -> RenderFigures {
        let report = DefinitionLoader.load(file: "welcome-1.yaml", text: welcomeTemplate)
        guard report.isValid, let template = report.definitions.compactMap({ d -> TemplateDefinition? in
            if case .template(let t) = d.body { return t }
            return nil
        }).first else { throw UserError("welcome-1 does not load: \(report.diagnostics)") }
        let now = Date()
        let deliveryId = UUID().uuidString.lowercased()
        let unsubscribe = "http://127.0.0.1:8080/u/\(deliveryId)?sig=0123456789abcdef0123456789abcdef"
        // What WorkflowRunner hands the composer: the contact view, the workflow, now, the trigger's event, links.
        let context: Value = .object([
            "contact": .object([
                "first_name": .string("Ann"), "plan": .string("pro"), "email": .string("ann@example.com"), "external_id": .string("u-42"),
                "timezone": .string("Europe/Paris"), "stage": .string("lead"), "tags": .array([.string("newsletter")]),
                "score": .number(12.5), "first_seen_at": .time(now.addingTimeInterval(-86_400)), "last_seen_at": .time(now),
                "first_utm_source": .string("newsletter"),
            ]),
            "workflow": .object(["name": .string("welcome-series"), "version": .number(1), "step": .number(1)]),
            "now": .time(now),
            "event": .object(["name": .string("Signed Up"), "properties": .object(["plan": .string("pro")])]),
            "preferences_url": .string("http://127.0.0.1:8080/p/42?sig=0123456789abcdef"),
            "unsubscribe_url": .string(unsubscribe),
        ])
        let envelope = Envelope(deliveryId: deliveryId, to: "ann@example.com", contactId: "u-42", from: "Acme <hello@acme.test>",
                                source: .workflow(name: "welcome-series", step: 1), unsubscribeURL: unsubscribe)
        for _ in 0..<min(count, 2_000) { _ = try MessageComposer.compose(template, context: context, envelope: envelope, now: now) }
        var bytes = 0
        let started = monotonicNanoseconds()
        for _ in 0..<count {
            let message = try MessageComposer.compose(template, context: context, envelope: envelope, now: now)
            bytes &+= (message.subject?.utf8.count ?? 0) &+ (message.html?.utf8.count ?? 0) &+ (message.text?.utf8.count ?? 0)
        }
        return RenderFigures(renders: count, seconds: Double(monotonicNanoseconds() - started) / 1e9, bytes: bytes)
    }
}

/// The figures of one phase.
struct PhaseFigures {
    let enrollments: Int
    /// Steps logged as sent (`enrollment_steps`), messages the sink accepted.
    let steps: Int
    let messages: Int
    /// Due → the sink accepted the last message.
    let seconds: Double
    /// Due → every enrollment completed in PostgreSQL.
    let completedSeconds: Double
    /// Lateness of the due steps in ms, sorted: due → claimed by the scheduler, due → started, due → accepted.
    let claim: [Double]
    let start: [Double]
    let accepted: [Double]
    /// Every step: started → accepted (ms), sorted.
    let stepMilliseconds: [Double]
    let extraClaims: Int
    let duplicates: Int
    let notAccepted: Int
    let enrollSeconds: Double
    /// CPU used from enrollment to completion, by process kind.
    let cpu: CPUUse
    /// After completion: until the stale jobs of extra claims had left the queue.
    let staleDrainSeconds: Double
    /// How long after the first due time the enrollments were committed (0 when in time).
    let armedLateMilliseconds: Double

    var latenessFields: [(String, String)] {
        [("claim_p50_ms", fmt(percentile(claim, 50), 1)), ("claim_p99_ms", fmt(percentile(claim, 99), 1)),
         ("start_p50_ms", fmt(percentile(start, 50), 1)), ("start_p99_ms", fmt(percentile(start, 99), 1)),
         ("start_max_ms", fmt(start.last ?? .nan, 1)),
         ("accepted_p50_ms", fmt(percentile(accepted, 50), 1)), ("accepted_p99_ms", fmt(percentile(accepted, 99), 1))]
    }
}

/// Due → claimed, in ms, of each enrollment's first claim at step 0 (told by the scheduler running in this process).
final class ClaimTap: Sendable {
    private let first = Mutex<[Int64: Double]>([:])

    func record(_ due: [DueEnrollment], at: Date) {
        first.withLock { first in
            for d in due where d.stepSeq == 0 && first[d.id] == nil {
                first[d.id] = at.timeIntervalSince(d.dueAt) * 1000
            }
        }
    }

    var lateness: [Int64: Double] { first.withLock { $0 } }
}

/// Enrolls, waits for the sink, and reads the figures back.
struct PhaseRunner {
    let bench: WorkflowsBench
    let db: PostgresConnection
    let scheduler: SchedulerEngine
    let claims: ClaimTap
    let versions: [String: Int]
    let scratch: String
    let fleet: BenchWorkerFleet
    let redisPid: pid_t
    let redis: RedisConnection
    let namespace: String

    /// CPU seconds so far of the workers, this process, the private redis-server and the PostgreSQL backends.
    func cpuSnapshot() -> (workers: Double, bench: Double, redis: Double, postgres: [Int32: Double]) {
        let t = CPUTimes(pids: fleet.pids, redisPid: redisPid, db: db)
        return (t.workers, t.bench, t.redis, t.backends)
    }

    /// `count` enrollments of contacts 1...count in `workflow`, the first due `leadSeconds` from now (whole
    /// milliseconds), the next ones `spacingSeconds` apart.
    func run(workflow: String, count: Int, spacingSeconds: Double, leadSeconds: Double) throws -> PhaseFigures {
        guard let version = versions[workflow] else { throw UserError("workflow \(workflow) was not applied") }
        let plan = bench.plan
        let probe = bench.probe
        let baselineMessages = probe.acceptedMessages
        let baselineClaims = scheduler.dueStepsCount.load(ordering: .relaxed)
        let baselineDuplicates = probe.duplicates
        let expected = baselineMessages + WorkflowsBench.stepsPerEnrollment * count
        let dueMillis = (wallMicros() + Int64(leadSeconds * 1e6)) / 1000
        let dueMicros = dueMillis * 1000
        let due = Date(timeIntervalSince1970: Double(dueMillis) / 1000)

        let cpuBefore = cpuSnapshot()
        let enrollStarted = monotonicNanoseconds()
        try db.execute("""
            INSERT INTO enrollments (workflow, workflow_version, contact_id, state, step_path, step_seq, due_at, trigger, started_at)
            SELECT $1, $2, t.id, 'active', '0', 0, t.due, $3::jsonb, t.due
            FROM (SELECT c.id, $4::timestamptz + make_interval(secs => (c.id - 1) * $5::float8) AS due
                  FROM contacts c WHERE c.id <= $6) t
            ORDER BY t.id
            """, [.text(workflow), .int(Int64(version)), .text(#"{"event":{"name":"Bench Started","properties":{}}}"#),
                  .timestamp(due), .double(spacingSeconds), .int(Int64(count))])
        let committedAt = wallMicros()
        try db.simpleQuery("ANALYZE enrollments")
        let enrollSeconds = Double(monotonicNanoseconds() - enrollStarted) / 1e9

        // Until the sink has every message.
        var lastSeen = baselineMessages
        var lastProgress = monotonicMilliseconds()
        while true {
            let seen = probe.acceptedMessages
            if seen >= expected { break }
            if seen != lastSeen {
                lastSeen = seen
                lastProgress = monotonicMilliseconds()
            } else if wallMicros() > dueMicros && monotonicMilliseconds() - lastProgress > Int64(plan.stallSeconds) * 1000 {
                let statuses = (try? db.query("SELECT status || '=' || count(*) FROM deliveries WHERE source_name = $1 GROUP BY status",
                                              [.text(workflow)]).rows.compactMap { $0[0].string }.joined(separator: " ")) ?? "?"
                throw UserError("\(workflow): the sink accepted \(seen - baselineMessages) of \(expected - baselineMessages) messages "
                                + "and nothing more for \(plan.stallSeconds) s (deliveries: \(statuses))\n\(fleet.logTails())")
            }
            usleep(1_000)
        }
        let lastAccepted = probe.lastAcceptedMicros
        let seconds = Double(lastAccepted - dueMicros) / 1e6

        // Every enrollment completed (the last settle commits just after the sink answered).
        let completeDeadline = monotonicMilliseconds() + 60_000
        while try db.query("SELECT EXISTS (SELECT 1 FROM enrollments WHERE workflow = $1 AND state = 'active')", [.text(workflow)]).rows[0][0].bool == true {
            if monotonicMilliseconds() > completeDeadline { throw UserError("\(workflow): enrollments still active a minute after the last message") }
            sleepMilliseconds(10)
        }
        let completedSeconds = Double(wallMicros() - dueMicros) / 1e6
        let cpuAfter = cpuSnapshot()
        let cpu = CPUUse(workers: cpuAfter.workers - cpuBefore.workers, bench: cpuAfter.bench - cpuBefore.bench,
                         redis: cpuAfter.redis - cpuBefore.redis,
                         postgres: cpuAfter.postgres.isEmpty ? nil
                            : cpuAfter.postgres.reduce(0) { $0 + $1.value - (cpuBefore.postgres[$1.key] ?? 0) })
        // Stale jobs (extra claims) still queued would delay the next phase: wait until the queue is empty.
        let drainStarted = monotonicNanoseconds()
        let drainDeadline = monotonicMilliseconds() + 1_800_000
        while true {
            let busy = try JobQueue(namespace: namespace).stats(on: redis).reduce(0) { $0 + $1.depth + $1.inFlight }
            if busy == 0 { break }
            if monotonicMilliseconds() > drainDeadline { throw UserError("\(workflow): \(busy) jobs still queued 30 minutes after the last message") }
            sleepMilliseconds(20)
        }
        let staleDrainSeconds = Double(monotonicNanoseconds() - drainStarted) / 1e9
        let extraClaims = max(0, scheduler.dueStepsCount.load(ordering: .relaxed) - baselineClaims - count)

        // Claim, start and accepted lateness of step 1 (the due step), and every step's run time.
        var claim: [Double] = []
        claim.reserveCapacity(count)
        let claimed = claims.lateness
        for row in try db.query("SELECT id FROM enrollments WHERE workflow = $1", [.text(workflow)]).rows {
            if let id = row[0].int, let c = claimed[id] { claim.append(c) }
        }
        claim.sort()
        var start: [Double] = [], accepted: [Double] = []
        start.reserveCapacity(count)
        accepted.reserveCapacity(count)
        for row in try db.query("""
            SELECT (extract(epoch FROM d.created_at - e.started_at) * 1000)::float8,
                   (extract(epoch FROM d.sent_at - e.started_at) * 1000)::float8
            FROM deliveries d JOIN enrollments e ON e.id = d.enrollment_id
            WHERE d.source_name = $1 AND d.step = 1
            """, [.text(workflow)]).rows {
            if let s = row[0].double { start.append(s) }
            if let a = row[1].double { accepted.append(a) }
        }
        start.sort()
        accepted.sort()
        let stepMilliseconds = try db.query("""
            SELECT (extract(epoch FROM sent_at - created_at) * 1000)::float8 FROM deliveries WHERE source_name = $1 AND sent_at IS NOT NULL
            """, [.text(workflow)]).rows.compactMap { $0[0].double }.sorted()
        let counts = try db.query("""
            SELECT (SELECT count(*) FROM enrollment_steps WHERE workflow = $1 AND outcome = 'sent'),
                   (SELECT count(*) FROM deliveries WHERE source_name = $1 AND status <> 'accepted')
            """, [.text(workflow)]).rows[0]
        return PhaseFigures(enrollments: count, steps: Int(counts[0].int ?? 0), messages: probe.acceptedMessages - baselineMessages,
                            seconds: seconds, completedSeconds: completedSeconds, claim: claim, start: start, accepted: accepted,
                            stepMilliseconds: stepMilliseconds, extraClaims: extraClaims, duplicates: probe.duplicates - baselineDuplicates,
                            notAccepted: Int(counts[1].int ?? 0), enrollSeconds: enrollSeconds, cpu: cpu, staleDrainSeconds: staleDrainSeconds,
                            armedLateMilliseconds: max(0, Double(committedAt - dueMicros) / 1000))
    }
}

/// CPU seconds a phase used, by process kind.
struct CPUUse {
    let workers: Double
    /// This process: the scheduler engine, the sink, and the bench's own polling.
    let bench: Double
    let redis: Double
    /// The database's backends; nil when PostgreSQL does not run on this host.
    let postgres: Double?

    func perStepText(steps: Int) -> String {
        func us(_ seconds: Double) -> String { fmt(seconds * 1e6 / Double(max(1, steps)), 0) + " µs" }
        var parts: [String] = []
        if let postgres { parts.append("PostgreSQL \(us(postgres))") }
        parts += ["workers \(us(workers))", "scheduler + sink \(us(bench))", "redis \(us(redis))"]
        let total = workers + bench + redis + (postgres ?? 0)
        return parts.joined(separator: ", ") + " = \(us(total)); \(ProcessInfo.processInfo.activeProcessorCount) cores allow about "
            + fmt(Double(ProcessInfo.processInfo.activeProcessorCount) * Double(steps) / max(total, 1e-9), 0) + " steps/s at that cost"
    }

    func fields(steps: Int) -> [(String, String)] {
        func perStep(_ seconds: Double) -> String { fmt(seconds * 1e6 / Double(max(1, steps)), 0) }
        var out = [("cpu_workers_s", fmt(workers, 2)), ("cpu_bench_s", fmt(bench, 2)), ("cpu_redis_s", fmt(redis, 2))]
        if let postgres { out.append(("cpu_postgres_s", fmt(postgres, 2))) }
        out += [("cpu_workers_us_per_step", perStep(workers))]
        if let postgres { out.append(("cpu_postgres_us_per_step", perStep(postgres))) }
        return out
    }
}

/// utime + stime of a process in seconds (Linux /proc), nil when it is not readable.
func processCPUSeconds(_ pid: pid_t) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return nil }
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
