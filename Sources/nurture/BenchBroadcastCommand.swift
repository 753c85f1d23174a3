import ArgumentParser
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Runtime
import Store

/// `nurture bench broadcast`: a broadcast to N imported contacts through the real snapshot, bulk queue, workers and
/// a local batching HTTP sink.
struct BenchBroadcastCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "broadcast",
        abstract: "Broadcast to N contacts end to end; prints snapshot, enqueue and delivery figures.",
        discussion: """
            In a scratch schema of NURTURE_DATABASE_URL and a private redis-server: COPYs N
            contacts, applies a segment of all of them, a provider with `batch: 500` pointing at
            an in-process HTTP sink, and a personalised template the size of welcome-1; starts
            --workers `nurture worker` processes; then runs `broadcast send` as the CLI does
            (snapshot in one statement, batches leased and enqueued) and waits until the sink
            has accepted every message. No rate limit.

            Output: `bench=broadcast key=value` lines: contacts, snapshot_s, enqueue_s,
            deliver_s (first enqueue → last message accepted), total_s (send → last accepted),
            messages_per_s (end to end), duplicates (delivery ids the sink saw twice),
            cpu_*_us_per_message (workers, PostgreSQL, Redis, this process = the sink),
            machine_renders_per_s (this machine's speed at the time). Run a release build:
              swift build -c release && .build/release/nurture bench broadcast --contacts 1000000
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Contacts in the audience.") var contacts: Int = 1_000_000
    @Option(help: "Worker processes.") var workers: Int = 2
    @Option(help: "Slots per worker.") var concurrency: Int = 8
    @Option(help: "Messages per provider request (the provider's `batch:`).") var providerBatch: Int = 500
    @Option(help: "Recipients per batch job.") var batchSize: Int = 500
    @Flag(help: "Keep the scratch schema (for inspection).") var keepSchema = false
    @Flag(help: "The sink parses every body in full, as `nurture sink` does (default: it reads only the message ids).")
    var sinkParsesBodies = false

    func validate() throws {
        guard contacts >= 1, workers >= 1, (1...256).contains(concurrency), providerBatch >= 1, batchSize >= 1 else {
            throw ValidationError("--contacts, --workers, --concurrency (1...256), --provider-batch and --batch-size must be positive")
        }
    }

    func run() async throws {
        let config = try connection.config()
        LoggingSetup.once(level: .warning)
        let probe = SinkProbe()
        let sink = try DevSink(host: "127.0.0.1", port: 0, quiet: true, parseBodies: sinkParsesBodies, onRequest: { probe.record($0) })
        let sinkTask = Task { try await sink.run() }
        defer { sinkTask.cancel() }
        let port = try await sink.waitUntilListening()
        let plan = self
        let summary = try await BlockingExecutor.shared.run {
            try BroadcastBench(databaseURL: config.databaseURL, contacts: plan.contacts, workers: plan.workers, concurrency: plan.concurrency,
                               providerBatch: plan.providerBatch, batchSize: plan.batchSize, keepSchema: plan.keepSchema,
                               sinkPort: port, probe: probe).run()
        }
        print(summary)
    }
}

struct BroadcastBench: Sendable {
    let databaseURL: String
    let contacts: Int
    let workers: Int
    let concurrency: Int
    let providerBatch: Int
    let batchSize: Int
    let keepSchema: Bool
    let sinkPort: Int
    let probe: SinkProbe

    func definitions() -> String {
        """
        kind: settings
        timezone: UTC
        from: "Acme <hello@acme.test>"
        ---
        kind: provider
        name: email
        channel: email
        type: http
        url: http://127.0.0.1:\(sinkPort)/email
        batch: \(providerBatch)
        ---
        kind: segment
        name: everyone
        where: 'contact.email != null'
        ---
        \(WorkflowsBench.welcomeTemplate)
        """
    }

    func run() throws -> String {
        let redisServer = try PrivateRedis()
        defer { redisServer.stop() }
        let schema = "bench_\(JobQueue.newJobID().prefix(8))"
        let admin = try PostgresConnection(url: databaseURL)
        try admin.simpleQuery("CREATE SCHEMA \(schema)")
        defer {
            if keepSchema { print("schema \(schema) kept") } else { _ = try? admin.simpleQuery("DROP SCHEMA \(schema) CASCADE") }
        }
        let url = databaseURL + (databaseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let db = try PostgresConnection(url: url)
        _ = try Migrator().migrate(db)
        let scratch = NSTemporaryDirectory() + "nurture-bench-broadcast-\(schema)"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { if !keepSchema { try? FileManager.default.removeItem(atPath: scratch) } }

        // Contacts and the segment of all of them (what `contacts import` + the scheduler's first build do).
        var started = monotonicNanoseconds()
        try WorkflowsBench.copyContacts(contacts, into: db)
        try db.simpleQuery("VACUUM (ANALYZE) contacts")
        try (definitions()).write(toFile: scratch + "/bench.yaml", atomically: true, encoding: .utf8)
        _ = try applyDefinitions(scratch + "/bench.yaml", on: db)
        _ = try BehaviourScan().run(now: Date(), on: db, everything: true)
        let members = Int(try db.query("SELECT count(*) FROM segment_memberships WHERE segment = 'everyone'").rows.first?[0].int ?? 0)
        let importSeconds = Double(monotonicNanoseconds() - started) / 1e9

        let namespace = "bench-\(JobQueue.newJobID().prefix(8))"
        let fleet = try BenchWorkerFleet(count: workers, concurrency: concurrency, queue: "bulk", namespace: namespace,
                                         redisURL: redisServer.url, databaseURL: url, secret: "bench-broadcast-secret", scratch: scratch)
        defer { fleet.stop() }
        let redis = try RedisConnection(url: redisServer.url)
        let cpuBefore = CPUTimes(pids: fleet.pids, redisPid: redisServer.process.pid, db: db)

        // broadcast send, as the CLI runs it.
        let store = BroadcastStore()
        let launcher = BroadcastLauncher(namespace: namespace)
        started = monotonicNanoseconds()
        let options = #"{"winner_by":"clicks","batch_size":\#(batchSize)}"#
        let id = try store.create(name: "bench", segment: "everyone", templates: ["welcome-1"], split: nil, ratePerSecond: nil, ignoreCaps: true,
                                  scheduledAt: Date(), options: options, now: Date(), on: db)
        let recipients = try launcher.snapshot(id, now: Date(), on: db) ?? 0
        let snapshotDone = monotonicNanoseconds()
        let batches = try launcher.enqueueReady(id, now: Date(), redis: redis, db: db)
        let enqueueDone = monotonicNanoseconds()

        var lastProgress = monotonicMilliseconds()
        var lastCount = 0
        while probe.acceptedMessages < recipients {
            sleepMilliseconds(50)
            let n = probe.acceptedMessages
            if n != lastCount { lastCount = n; lastProgress = monotonicMilliseconds() }
            if monotonicMilliseconds() - lastProgress > 60_000 {
                throw UserError("stalled at \(n)/\(recipients) messages for 60 s; worker logs in \(scratch)")
            }
        }
        let lastAccepted = probe.lastAcceptedMicros
        let endNanos = UInt64(max(0, Int64(monotonicNanoseconds()) - (wallMicros() - lastAccepted) * 1000))
        let cpu = CPUTimes(pids: fleet.pids, redisPid: redisServer.process.pid, db: db).minus(cpuBefore)
        let snapshotSeconds = Double(snapshotDone - started) / 1e9
        let enqueueSeconds = Double(enqueueDone - snapshotDone) / 1e9
        let totalSeconds = Double(endNanos - started) / 1e9
        let deliverSeconds = Double(endNanos - snapshotDone) / 1e9
        // The sink has them all; the last batches' settles may still be committing.
        var accepted = 0
        let settleDeadline = monotonicMilliseconds() + 30_000
        repeat {
            accepted = Int(try db.query("SELECT count(*) FROM deliveries d WHERE \(BroadcastStore.deliveriesOf("$1")) AND status = 'accepted'", [.int(id)]).rows.first?[0].int ?? 0)
            if accepted < recipients { sleepMilliseconds(50) }
        } while accepted < recipients && monotonicMilliseconds() < settleDeadline
        let perMessage = { (seconds: Double) in fmt(seconds * 1e6 / Double(max(1, recipients)), 0) }
        // The machine's speed right now (a shared VM's varies by a third from hour to hour): welcome-1 renders per
        // second on one thread, the same figure `bench workflows` prints, to compare runs made at different times.
        let calibration = try WorkflowsBench.render(count: 100_000)
        let rendersPerSecond = Double(calibration.renders) / calibration.seconds
        emit("broadcast", [("contacts", "\(contacts)"), ("members", "\(members)"), ("recipients", "\(recipients)"), ("batches", "\(batches)"),
                           ("workers", "\(workers)"), ("concurrency", "\(concurrency)"), ("provider_batch", "\(providerBatch)"),
                           ("import_s", fmt(importSeconds, 2)), ("snapshot_s", fmt(snapshotSeconds, 2)), ("enqueue_s", fmt(enqueueSeconds, 2)),
                           ("deliver_s", fmt(deliverSeconds, 2)), ("total_s", fmt(totalSeconds, 2)),
                           ("messages_per_s", fmt(Double(recipients) / totalSeconds, 0)), ("sink_messages", "\(probe.acceptedMessages)"),
                           ("accepted_rows", "\(accepted)"), ("duplicates", "\(probe.duplicates)"),
                           ("cpu_workers_us_per_message", perMessage(cpu.workers)), ("cpu_postgres_us_per_message", perMessage(cpu.postgres)),
                           ("cpu_redis_us_per_message", perMessage(cpu.redis)), ("cpu_bench_us_per_message", perMessage(cpu.bench)),
                           ("machine_renders_per_s", fmt(rendersPerSecond, 0))])
        return """
            broadcast to \(recipients) recipients (\(batches) batches of \(batchSize), provider batch \(providerBatch), \(workers) workers × \(concurrency) slots):
              snapshot \(fmt(snapshotSeconds, 2)) s, enqueue \(fmt(enqueueSeconds, 2)) s, delivered \(fmt(deliverSeconds, 2)) s later;
              total \(fmt(totalSeconds, 2)) s = \(fmt(Double(recipients) / totalSeconds, 0)) messages/s end to end; duplicates \(probe.duplicates)
              CPU per message: workers \(perMessage(cpu.workers)) µs, PostgreSQL \(perMessage(cpu.postgres)) µs, Redis \(perMessage(cpu.redis)) µs,
                this process (the sink) \(perMessage(cpu.bench)) µs
              machine speed: \(fmt(rendersPerSecond, 0)) welcome-1 renders/s on one thread (compare runs by it)
            """
    }
}
