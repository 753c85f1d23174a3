import ArgumentParser
import Foundation
import Hummingbird
import JobQueue
import Logging
import NurtureCore
import Postgres
import Runtime
import ServiceLifecycle

struct WorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Run a worker: pull jobs from the queues and run them.",
        discussion: """
            Runs --concurrency slot threads that fetch jobs in strict priority order of --queues
            (default: transactional,default,bulk,maintenance), run them and acknowledge them after their effects
            are committed. Failed jobs are retried with exponential backoff and jitter, then dead-lettered.
            A heartbeat keeps this process's lease; if it dies (even SIGKILL), another worker or a scheduler
            reclaims its jobs within seconds.

            SIGTERM / SIGINT: stop fetching, let in-flight jobs finish for --grace, hand back the rest, exit 0.
            With NURTURE_METRICS_PORT set, serves Prometheus /metrics and /healthz on that port.
            Scale by running more processes (any host) and/or raising --concurrency.
            Unless --no-ingest, also consumes the events stream <namespace>:events (consumer group `ingest`):
            batches of --ingest-batch entries are committed to PostgreSQL in one transaction, then acknowledged;
            malformed entries go to the dead letters (`nurture dlq list --queue events`).
            """)

    @OptionGroup var connection: ConnectionOptions

    @Option(help: "Jobs run at once by this process (slot threads).")
    var concurrency: Int = 10

    @Option(help: "Queues to work, highest priority first, comma-separated.")
    var queues: String = JobQueue.standardQueues.joined(separator: ",")

    @Option(help: "How long in-flight jobs may run after SIGTERM before they are handed back (e.g. 25s).")
    var grace: String = "25s"

    @Option(help: "Lease: a worker silent this long is presumed dead and its jobs are reclaimed (e.g. 5s).")
    var lease: String = "5s"

    @Flag(help: "Do not consume the events stream (<namespace>:events) in this process.")
    var noIngest = false

    @Option(help: "Events read and committed per ingest batch.")
    var ingestBatch: Int = 1_000

    func validate() throws {
        guard (1...1024).contains(concurrency) else { throw ValidationError("--concurrency must be 1-1024") }
        guard (1...10_000).contains(ingestBatch) else { throw ValidationError("--ingest-batch must be 1-10000") }
        for q in queues.split(separator: ",") {
            do { try JobQueue.validate(queue: String(q)) } catch { throw ValidationError("--queues: \(error)") }
        }
    }

    func run() async throws {
        let config = try connection.config()
        NurtureMetrics.bootstrap()
        var options = WorkerOptions()
        options.queues = queues.split(separator: ",").map(String.init)
        options.concurrency = concurrency
        options.namespace = config.namespace
        options.redis = config.redisConfig
        options.databaseURL = config.databaseURL
        options.gracePeriodMilliseconds = try parseDuration(grace, flag: "--grace")
        options.leaseMilliseconds = max(1_000, try parseDuration(lease, flag: "--lease"))
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        let engine = WorkerEngine(options: options, registry: Handlers.registry(config: config), clock: clock)
        let logger = Logger(label: "nurture.worker")
        var ingestOptions = IngestOptions()
        ingestOptions.namespace = config.namespace
        ingestOptions.redis = config.redisConfig
        ingestOptions.databaseURL = config.databaseURL
        ingestOptions.batchSize = ingestBatch
        ingestOptions.consumerName = options.consumerName
        let ingest: IngestEngine? = noIngest ? nil : IngestEngine(options: ingestOptions, clock: clock)
        var services: [any Service] = [EngineService(name: "worker", start: { try engine.start(); try ingest?.start() },
                                                     stop: { ingest?.stop(); engine.stop() })]
        if let port = config.metricsPort {
            let concurrency = options.concurrency
            services.append(MetricsEndpoint(port: port, health: {
                if engine.isStopping { return "stopping" }
                if engine.stuck >= concurrency { return "all \(concurrency) slots are stuck in jobs past their timeout" }
                return nil
            }).application(logger: logger))
        }
        try await runRole(services, logger: logger)
    }
}

struct SchedulerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scheduler",
        abstract: "Run a scheduler: due delayed jobs → queues, reclaim dead workers' jobs, periodic tasks.",
        discussion: """
            Moves due delayed jobs (retries, `jobs enqueue --in`) into their queues in atomic batches (a Lua
            script), reclaims jobs of workers whose lease expired, dead-letters jobs that keep killing workers,
            and runs periodic tasks, each tick on one scheduler only: event partitions ahead of time; new or changed
            segments built over every contact; time-relative segments (now(), within:) and lifecycle rules
            re-evaluated every --scan-interval of business time and right after the clock jumps; initial stages;
            yearly date triggers (birthdays). Workflow steps: enrollments that are due (their wait is over) are
            claimed with FOR UPDATE SKIP LOCKED and a 30 s lease, and enqueued as workflow.step jobs; an enrollment
            whose job was lost (Redis flushed, worker killed) is enqueued again when its lease runs out.
            Any number of schedulers may run at once: every due item is enqueued exactly once.
            SIGTERM / SIGINT: stops within a second, exit 0. NURTURE_METRICS_PORT serves /metrics and /healthz.
            """)

    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Skip periodic PostgreSQL tasks (a Redis-only scheduler, e.g. for queue benchmarks).")
    var noPeriodic = false

    @Option(help: ArgumentHelp("Business time between re-evaluations of time-relative segments and lifecycle rules (e.g. 30s, 5m).",
                               discussion: "A jump of the installation clock (nurture clock advance) triggers one at once."))
    var scanInterval: String = "60s"

    func run() async throws {
        let config = try connection.config()
        NurtureMetrics.bootstrap()
        var options = SchedulerOptions()
        options.namespace = config.namespace
        options.redis = config.redisConfig
        options.databaseURL = config.databaseURL
        options.runPeriodicTasks = !noPeriodic
        guard let ms = try? DurationText.milliseconds(scanInterval), ms >= 1_000 else {
            throw UserError("--scan-interval: '\(scanInterval)' is not a duration of at least 1s (e.g. 30s, 5m)")
        }
        let interval = Double(ms) / 1000
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        let engine = SchedulerEngine(options: options, tasks: [.eventPartitions, .behaviourScan(BehaviourScan(intervalSeconds: interval)), .dateTriggers()],
                                     clock: clock)
        let logger = Logger(label: "nurture.scheduler")
        var services: [any Service] = [EngineService(name: "scheduler", start: { try engine.start() }, stop: { engine.stop() })]
        if let port = config.metricsPort {
            services.append(MetricsEndpoint(port: port, health: { nil }).application(logger: logger))
        }
        try await runRole(services, logger: logger)
    }
}

/// The job kinds this binary's workers know.
enum Handlers {
    static func registry(config: NurtureConfig) -> JobHandlerRegistry {
        var registry = JobHandlerRegistry.builtIn
        let catalogs = WorkflowCatalogCache()
        WorkflowRunner(config: config, catalogs: catalogs).register(into: &registry)
        BroadcastRunner(config: config, catalogs: catalogs).register(into: &registry)
        return registry
    }
}
