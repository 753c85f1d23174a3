import Foundation
import JobQueue
import Logging
import Metrics
import NurtureCore
import Postgres
import Redis
import Store
import Synchronization

/// How a scheduler runs.
public struct SchedulerOptions: Sendable {
    public var namespace: String = "nurture"
    public var redis: RedisConfig = RedisConfig()
    public var databaseURL: String = "postgres://127.0.0.1:5432/nurture"
    /// Longest sleep between two promotions of due delayed jobs (bounds their lateness).
    public var promoteIntervalMilliseconds: Int64 = 20
    public var promoteBatch: Int = 1_000
    public var reclaimIntervalMilliseconds: Int64 = 1_000
    public var leaseMilliseconds: Int64 = 5_000
    public var maxLost: Int = 3
    /// Periodic tasks need PostgreSQL; off for a Redis-only scheduler (benchmarks).
    public var runPeriodicTasks: Bool = true
    /// Due workflow steps claimed per round trip, and the pause between polls when fewer were due.
    public var dueBatch: Int = 2_000
    public var duePollMilliseconds: Int64 = 200
    /// No due steps are claimed while the step queue holds jobs for this many enrollments (waiting + in flight;
    /// counted as jobs × `WorkflowStepJob.batchSize`).
    public var maxStepBacklog: Int = 4_000

    public init() {}
}

/// Work the fleet must do every so often (partitions ahead of time, time-based rules, ...). Each tick runs on one
/// scheduler only: a Redis `SET NX PX` guard per task and tick, so running several schedulers never doubles it.
public struct PeriodicTask: Sendable {
    public var name: String
    public var intervalMilliseconds: Int64
    public var body: @Sendable (PostgresConnection, InstallationClock) throws -> Void

    public init(name: String, intervalMilliseconds: Int64, body: @escaping @Sendable (PostgresConnection, InstallationClock) throws -> Void) {
        self.name = name
        self.intervalMilliseconds = intervalMilliseconds
        self.body = body
    }

    /// Creates next months' event partitions before events arrive in them.
    public static let eventPartitions = PeriodicTask(name: "event-partitions", intervalMilliseconds: 3_600_000) { db, clock in
        let now = clock.now()
        try db.query("SELECT nurture_ensure_event_partitions($1, $2)",
                     [.timestamp(now.addingTimeInterval(-31 * 86_400)), .timestamp(now.addingTimeInterval(92 * 86_400))])
    }
}

/// The scheduler: promotes due delayed jobs, reclaims dead workers' jobs, runs periodic tasks. Any number may run.
public final class SchedulerEngine: Sendable {
    public let options: SchedulerOptions
    public let queue: JobQueue
    private let tasks: [PeriodicTask]
    private let clock: InstallationClock
    private let logger: Logger
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Int>(0)
    public let promotedCount = Atomic<Int>(0)
    /// Workflow step jobs enqueued for due enrollments.
    public let dueStepsCount = Atomic<Int>(0)
    /// Told of every claim of due enrollments, with the wall-clock time the claim returned (benchmarks measure
    /// claim lateness with it; nil in production).
    private let onClaimed: (@Sendable ([DueEnrollment], Date) -> Void)?

    public init(options: SchedulerOptions, tasks: [PeriodicTask] = [.eventPartitions], clock: InstallationClock,
                logger: Logger = Logger(label: "nurture.scheduler"), onClaimed: (@Sendable ([DueEnrollment], Date) -> Void)? = nil) {
        self.options = options
        self.queue = JobQueue(namespace: options.namespace)
        self.tasks = tasks
        self.clock = clock
        self.logger = logger
        self.onClaimed = onClaimed
    }

    public func start() throws {
        _ = try RedisConnection(config: options.redis, logger: logger)   // fail fast on a wrong URL
        spawn("nurture-promote") { self.promoteLoop() }
        spawn("nurture-reclaim") { self.reclaimLoop() }
        if options.runPeriodicTasks {
            spawn("nurture-periodic") { self.periodicLoop() }
            spawn("nurture-due-steps") { self.dueStepsLoop() }
            spawn("nurture-broadcasts") { self.broadcastsLoop() }
        }
        logger.info("scheduler started", metadata: ["redis": "\(options.redis)"])
    }

    /// Stops the loops and waits for them (each notices within its interval). Blocking.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        while running.load(ordering: .relaxed) > 0 { sleepMilliseconds(10) }
        logger.info("scheduler stopped", metadata: ["promoted": "\(promotedCount.load(ordering: .relaxed))"])
    }

    private var isStopping: Bool { stopping.load(ordering: .relaxed) }

    private func spawn(_ name: String, _ body: @escaping @Sendable () -> Void) {
        running.add(1, ordering: .relaxed)
        let thread = Thread { body(); self.running.subtract(1, ordering: .relaxed) }
        thread.name = name
        thread.start()
    }

    private func promoteLoop() {
        var redis: RedisConnection? = nil
        var failures = 0
        while !isStopping {
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                let (moved, next) = try queue.promoteDue(limit: options.promoteBatch, on: redis!)
                promotedCount.add(moved, ordering: .relaxed)
                failures = 0
                if moved >= options.promoteBatch { continue }
                sleepMilliseconds(min(options.promoteIntervalMilliseconds, max(1, next ?? options.promoteIntervalMilliseconds)))
            } catch {
                failures += 1
                if failures == 1 || failures % 50 == 0 { logger.warning("promote failed", metadata: ["error": "\(error)"]) }
                redis?.close()
                sleepMilliseconds(Int64(Backoff(baseMilliseconds: 100, capMilliseconds: 2_000).delay(attempt: failures)))
            }
        }
    }

    private func reclaimLoop() {
        var redis: RedisConnection? = nil
        var failures = 0
        var lastGauges: Int64 = 0
        while !isStopping {
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                let (reclaimed, dead) = try queue.reclaimDeadWorkers(minimumIdleMilliseconds: options.leaseMilliseconds,
                                                                     maxLost: options.maxLost, on: redis!)
                if reclaimed + dead > 0 {
                    logger.warning("reclaimed jobs of dead workers", metadata: ["reclaimed": "\(reclaimed)", "dead_lettered": "\(dead)"])
                }
                if monotonicMilliseconds() - lastGauges >= 5_000 {
                    lastGauges = monotonicMilliseconds()
                    recordQueueGauges(try queue.stats(on: redis!))
                }
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 50 == 0 { logger.warning("reclaim failed", metadata: ["error": "\(error)"]) }
                redis?.close()
            }
            var slept: Int64 = 0
            while slept < options.reclaimIntervalMilliseconds && !isStopping { sleepMilliseconds(50); slept += 50 }
        }
    }

    /// Fleet-level queue gauges for dashboards and autoscaling (`nurture_queue_lag_seconds` drives the worker HPA).
    private func recordQueueGauges(_ stats: [QueueStats]) {
        for s in stats {
            let d = [("queue", s.queue)]
            Gauge(label: "nurture_queue_lag_seconds", dimensions: d).record(Double(s.lagMilliseconds) / 1000)
            Gauge(label: "nurture_queue_depth", dimensions: d).record(s.depth)
            Gauge(label: "nurture_queue_in_flight", dimensions: d).record(s.inFlight)
            Gauge(label: "nurture_queue_delayed", dimensions: d).record(s.delayed)
            Gauge(label: "nurture_queue_dead", dimensions: d).record(s.dead)
        }
    }

    private func periodicLoop() {
        var redis: RedisConnection? = nil
        var db: PostgresConnection? = nil
        var lastClockRefresh: Int64 = 0
        var lastRun: [String: Int64] = [:]
        while !isStopping {
            let now = monotonicMilliseconds()
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                if db == nil { db = try PostgresConnection(url: options.databaseURL, logger: logger) }
                if now - lastClockRefresh >= 1_000 {
                    try clock.refresh(from: db!)
                    lastClockRefresh = now
                }
                for task in tasks where now - (lastRun[task.name] ?? -task.intervalMilliseconds) >= min(task.intervalMilliseconds, 1_000) {
                    lastRun[task.name] = now
                    // One scheduler per tick across the fleet.
                    let tick = clock.nowMilliseconds() / task.intervalMilliseconds
                    let guardKey = "\(queue.keys.prefix):periodic:\(task.name):\(tick)"
                    let won = try redis!.execute(RedisCommand("SET", .string(guardKey), .string(WorkerOptions.defaultConsumerName()),
                                                              "NX", "PX", .int(task.intervalMilliseconds * 2)))
                    if won.isNull { continue }
                    let started = monotonicMilliseconds()
                    do {
                        try task.body(db!, clock)
                        logger.debug("periodic task ran", metadata: ["task": "\(task.name)", "ms": "\(monotonicMilliseconds() - started)"])
                    } catch {
                        // Give the tick back so another scheduler (or the next loop) tries again.
                        _ = try? redis!.execute(RedisCommand("DEL", .string(guardKey)))
                        logger.error("periodic task failed", metadata: ["task": "\(task.name)", "error": "\(error)"])
                    }
                }
            } catch {
                logger.warning("periodic loop: \(error)")
                if let e = error as? RedisError, e.isTransient { redis = nil }
                if error is PostgresError { db = nil }
                sleepMilliseconds(1_000)
            }
            var slept: Int64 = 0
            while slept < 500 && !isStopping { sleepMilliseconds(50); slept += 50 }
        }
    }

    /// Due workflow steps → `workflow.step` jobs: claims due enrollments (SKIP LOCKED + a wall-clock lease, so any
    /// number of schedulers share the work) and enqueues their jobs; polls every 200 ms, at once again after a full
    /// batch. Enqueue failures leave the lease to run out: the enrollment is claimed again.
    private func dueStepsLoop() {
        var redis: RedisConnection? = nil
        var db: PostgresConnection? = nil
        let store = EnrollmentStore()
        let batch = options.dueBatch
        while !isStopping {
            var claimed = 0
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                if db == nil { db = try PostgresConnection(url: options.databaseURL, logger: logger) }
                // Backpressure: while the step queue already holds a backlog, claim nothing. Claiming more would
                // only let the leases of queued jobs run out and enqueue the same enrollments again.
                let backlog = try redis!.execute(RedisCommand("XLEN", .string(queue.keys.stream(WorkflowStepJob.queue)))).int ?? 0
                if backlog * Int64(WorkflowStepJob.batchSize) >= Int64(options.maxStepBacklog) {
                    sleepMilliseconds(options.duePollMilliseconds)
                    continue
                }
                let at = clock.nowMilliseconds()
                let due = try store.claimDue(now: Date(timeIntervalSince1970: Double(at) / 1000), limit: batch,
                                             leaseSeconds: WorkflowStepJob.leaseSeconds, on: db!)
                claimed = due.count
                if !due.isEmpty {
                    onClaimed?(due, Date())
                    _ = try queue.enqueue(WorkflowStepJob.jobs(due.map { .init(enrollment: $0.id, seq: $0.stepSeq) }, atMilliseconds: at), on: redis!)
                    dueStepsCount.add(due.count, ordering: .relaxed)
                }
            } catch {
                logger.warning("due steps: \(error)")
                if let e = error as? RedisError, e.isTransient { redis = nil }
                if error is PostgresError { db?.close(); db = nil }
                sleepMilliseconds(1_000)
                continue
            }
            if claimed >= batch { continue }
            var slept: Int64 = 0
            while slept < options.duePollMilliseconds && !isStopping { sleepMilliseconds(50); slept += 50 }
        }
    }

    /// Broadcasts: launches scheduled ones when due, picks A/B winners, enqueues batches whose jobs were lost (a
    /// flushed Redis) or are due again, completes finished ones; every 500 ms. Any number of schedulers may run it:
    /// snapshots and leases are claimed in PostgreSQL.
    private func broadcastsLoop() {
        var redis: RedisConnection? = nil
        var db: PostgresConnection? = nil
        let launcher = BroadcastLauncher(namespace: options.namespace)
        while !isStopping {
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                if db == nil { db = try PostgresConnection(url: options.databaseURL, logger: logger) }
                try launcher.tick(now: clock.now(), redis: redis!, db: db!, logger: logger)
            } catch {
                logger.warning("broadcasts: \(error)")
                if let e = error as? RedisError, e.isTransient { redis = nil }
                if error is PostgresError { db?.close(); db = nil }
                sleepMilliseconds(1_000)
                continue
            }
            var slept: Int64 = 0
            while slept < 500 && !isStopping { sleepMilliseconds(50); slept += 50 }
        }
    }
}
