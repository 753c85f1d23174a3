import Foundation
import JobQueue
import Logging
import Metrics
import NurtureCore
import Postgres
import Redis
import Synchronization

/// How a worker process runs.
public struct WorkerOptions: Sendable {
    /// Queues in strict priority order.
    public var queues: [String] = JobQueue.standardQueues
    /// Slot threads: jobs run at once in this process.
    public var concurrency: Int = 10
    public var namespace: String = "nurture"
    public var redis: RedisConfig = RedisConfig()
    public var databaseURL: String = "postgres://127.0.0.1:5432/nurture"
    /// A worker whose heartbeat is older than this is dead; its jobs are reclaimed.
    public var leaseMilliseconds: Int64 = 5_000
    public var heartbeatMilliseconds: Int64 = 1_000
    /// SIGTERM: how long in-flight jobs get to finish before they are handed back.
    public var gracePeriodMilliseconds: Int64 = 25_000
    /// How long one blocking fetch waits: also how fast an idle slot notices shutdown.
    public var fetchBlockMilliseconds: Int64 = 1_000
    /// Upper bound of the adaptive prefetch per slot (fast jobs are fetched and acknowledged in batches).
    public var maxBatch: Int = 64
    /// Jobs without their own timeout are abandoned (retried elsewhere) after this long.
    public var defaultJobTimeoutMilliseconds: Int64 = 15 * 60_000
    /// A job whose workers died this many times is dead-lettered as poison.
    public var maxLost: Int = 3
    public var consumerName: String = WorkerOptions.defaultConsumerName()

    public init() {}

    /// The consumer-group name of one slot of worker `worker` (the reclaim script maps it back to the worker's lease).
    public static func slotConsumer(worker: String, slot: Int) -> String { "\(worker)#\(slot)" }

    public static func defaultConsumerName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        let host = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return "\(host):\(getpid()):\(JobQueue.newJobID().prefix(6))"
    }
}

/// Per-slot state shared with the watchdog and the shutdown path (all under the slot's mutex).
final class SlotState: Sendable {
    struct Inner {
        var current: Job?
        var startedAtMs: Int64 = 0
        var timeoutMs: Int64 = 0
        var pending: [Job] = []
        var done: [Job] = []
        /// The job was taken away (timed out, or the grace period ended): its outcome must not be recorded.
        var abandoned = false
        var finished = false
    }
    let inner = Mutex(Inner())
    let index: Int
    init(index: Int) { self.index = index }
}

/// The worker: slot threads that fetch, run and acknowledge jobs, a heartbeat thread that keeps the lease,
/// reclaims dead workers' jobs and promotes due delayed jobs, and a watchdog for job timeouts.
public final class WorkerEngine: Sendable {
    public let options: WorkerOptions
    public let queue: JobQueue
    private let registry: JobHandlerRegistry
    private let logger: Logger
    private let clock: InstallationClock
    private let stopping = Atomic<Bool>(false)
    private let slots = Mutex<[SlotState]>([])
    private let pausedQueues = Mutex<Set<String>>([])
    private let processedCount = Atomic<Int>(0)
    private let busyCount = Atomic<Int>(0)
    private let stuckCount = Atomic<Int>(0)
    private let nextSlotIndex = Atomic<Int>(0)
    private let backgroundDone = Mutex<Int>(0)
    private let finishedCondition = NSCondition()

    public init(options: WorkerOptions, registry: JobHandlerRegistry, clock: InstallationClock,
                logger: Logger = Logger(label: "nurture.worker")) {
        self.options = options
        self.queue = JobQueue(namespace: options.namespace)
        self.registry = registry
        self.clock = clock
        var logger = logger
        logger[metadataKey: "worker"] = "\(options.consumerName)"
        self.logger = logger
    }

    public var processed: Int { processedCount.load(ordering: .relaxed) }
    public var busy: Int { busyCount.load(ordering: .relaxed) }
    /// Slot threads stuck in a handler past its timeout (replaced, but still holding a thread).
    public var stuck: Int { stuckCount.load(ordering: .relaxed) }
    public var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Starts the threads; returns at once. Registers the lease first, so no job is fetched without one.
    public func start() throws {
        let redis = try RedisConnection(config: options.redis, logger: logger)
        try queue.ensureGroups(options.queues, on: redis)
        try queue.heartbeat(worker: options.consumerName, leaseMilliseconds: options.leaseMilliseconds, info: info(), on: redis)
        pausedQueues.withLock { $0 = (try? queue.pausedQueues(on: redis)) ?? [] }
        spawn(name: "nurture-heartbeat") { self.heartbeatLoop(redis) }
        for _ in 0..<max(1, options.concurrency) { startSlot() }
        spawn(name: "nurture-watchdog") { self.watchdogLoop() }
        logger.info("worker started", metadata: ["queues": "\(options.queues.joined(separator: ","))",
                                                  "concurrency": "\(options.concurrency)", "redis": "\(options.redis)"])
    }

    private func info() -> [(String, String)] {
        [("pid", String(getpid())), ("queues", options.queues.joined(separator: ",")), ("concurrency", String(options.concurrency)),
         ("busy", String(busy)), ("processed", String(processed)), ("stuck", String(stuck))]
    }

    private func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        let thread = Thread { body() }
        thread.name = name
        thread.stackSize = 1 << 20
        thread.start()
    }

    private func startSlot() {
        let state = SlotState(index: nextSlotIndex.add(1, ordering: .relaxed).oldValue)
        slots.withLock { $0.append(state) }
        spawn(name: "nurture-slot-\(state.index)") { self.slotLoop(state) }
    }

    // MARK: - Shutdown

    /// Stops fetching, lets in-flight jobs finish for up to the grace period, hands back the rest, removes the
    /// lease. Blocking: call from a dedicated thread (or `BlockingExecutor`).
    public func stop() {
        if stopping.exchange(true, ordering: .relaxed) { return }
        logger.info("worker stopping", metadata: ["busy": "\(busy)", "grace_ms": "\(options.gracePeriodMilliseconds)"])
        let deadline = monotonicMilliseconds() + options.gracePeriodMilliseconds
        finishedCondition.lock()
        while !allSlotsFinished() && monotonicMilliseconds() < deadline {
            _ = finishedCondition.wait(until: Date().addingTimeInterval(0.05))
        }
        finishedCondition.unlock()
        // Whatever is still running after the grace period goes back to the queue for another worker.
        var orphans: [Job] = []
        var unacked: [Job] = []
        for slot in slots.withLock({ $0 }) {
            slot.inner.withLock { s in
                if s.finished { return }
                s.abandoned = true
                if let c = s.current { orphans.append(c) }
                orphans.append(contentsOf: s.pending)
                unacked.append(contentsOf: s.done)
                s.pending = []
                s.done = []
            }
        }
        if !orphans.isEmpty || !unacked.isEmpty {
            withRedisRetrying("hand back at shutdown", until: monotonicMilliseconds() + 10_000) { redis in
                try queue.complete(unacked, on: redis)
                try queue.handBack(orphans, on: redis)
            }
            logger.warning("grace period over: handed back in-flight jobs", metadata: ["jobs": "\(orphans.count)"])
        }
        withRedisRetrying("unregister", until: monotonicMilliseconds() + 5_000) { redis in
            try queue.unregister(worker: options.consumerName, on: redis)
        }
        logger.info("worker stopped", metadata: ["processed": "\(processed)"])
    }

    private func allSlotsFinished() -> Bool {
        slots.withLock { $0.allSatisfy { slot in slot.inner.withLock { $0.finished || $0.abandoned } } }
    }

    // MARK: - Slot

    private func slotLoop(_ state: SlotState) {
        var redis: RedisConnection? = nil
        var database: PostgresConnection? = nil
        var batch = 1
        // Average run time per job (µs, moving average): the prefetch is sized so one batch is ~10 ms of work.
        var averageMicros = 1_000.0
        var failures = 0
        var metrics = SlotMetrics()
        // Each slot is its own consumer of the group (`<worker>#<slot>`; the lease stays per worker), so the
        // entries pending for it are exactly the jobs it holds. A fetch whose reply was lost (Redis restarted
        // after delivering) leaves entries pending for it that it never saw: after a failed fetch the slot takes
        // its own pending entries first, instead of leaving them stuck under a live lease forever.
        let consumer = WorkerOptions.slotConsumer(worker: options.consumerName, slot: state.index)
        var recoverPending = false
        defer {
            state.inner.withLock { $0.finished = true }
            finishedCondition.lock(); finishedCondition.broadcast(); finishedCondition.unlock()
        }
        while !isStopping {
            if state.inner.withLock({ $0.abandoned }) { return }
            do {
                if redis == nil { redis = try RedisConnection(config: options.redis, logger: logger) }
                let jobs: [Job]
                if recoverPending {
                    jobs = try queue.fetchPending(queues: options.queues, consumer: consumer, count: options.maxBatch, on: redis!)
                    recoverPending = !jobs.isEmpty
                    if !jobs.isEmpty { logger.warning("recovered jobs delivered by a fetch whose reply was lost", metadata: ["jobs": "\(jobs.count)"]) }
                } else {
                    jobs = try queue.fetch(queues: options.queues, consumer: consumer, count: batch,
                                           blockMilliseconds: options.fetchBlockMilliseconds,
                                           paused: pausedQueues.withLock { $0 }, on: redis!)
                }
                failures = 0
                if jobs.isEmpty { continue }
                state.inner.withLock { $0.pending = jobs }
                let started = monotonicNanoseconds()
                runBatch(jobs, state: state, redis: redis!, database: &database, metrics: &metrics)
                // Adapt the prefetch: fast jobs in big batches (fewer round trips), slow jobs one at a time
                // (no job waits behind a slow one in this slot while other slots are idle).
                let perJobMicros = Double(monotonicNanoseconds() - started) / Double(jobs.count) / 1_000
                averageMicros = 0.7 * averageMicros + 0.3 * perJobMicros
                if perJobMicros > 10_000 { averageMicros = max(averageMicros, perJobMicros) }
                batch = max(1, min(options.maxBatch, Int(10_000 / max(1, averageMicros))))
            } catch {
                failures += 1
                recoverPending = true
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("fetch failed; retrying with backoff", metadata: ["error": "\(error)", "failures": "\(failures)"])
                }
                if let e = error as? RedisError, e.isTransient { redis?.close() }
                sleepMilliseconds(Int64(Backoff(baseMilliseconds: 100, capMilliseconds: 2_000).delay(attempt: failures)))
            }
        }
    }

    private func runBatch(_ jobs: [Job], state: SlotState, redis: RedisConnection, database: inout PostgresConnection?,
                          metrics: inout SlotMetrics) {
        var firstUnackedAt: UInt64 = 0
        for (index, job) in jobs.enumerated() {
            if isStopping {
                // Stop after the job in hand: acknowledge what is done, hand back what was not started.
                let rest = Array(jobs[index...])
                flush(state: state, redis: redis)
                withRedisRetrying("hand back", until: monotonicMilliseconds() + 10_000) { r in try queue.handBack(rest, on: r) }
                state.inner.withLock { $0.pending = [] }
                return
            }
            let outcome = run(job, state: state, redis: redis, database: &database, metrics: &metrics)
            let abandoned = state.inner.withLock { s -> Bool in
                s.current = nil
                if !s.pending.isEmpty { s.pending.removeFirst() }
                if s.abandoned { return true }
                if case .succeeded = outcome { s.done.append(job) }
                return false
            }
            if abandoned { return }
            switch outcome {
            case .succeeded:
                if firstUnackedAt == 0 { firstUnackedAt = monotonicNanoseconds() }
            case .failed(let message, let permanent, let retryIn, let countsAsAttempt):
                withRedisRetrying("record failure", until: Int64.max) { r in
                    let result = try queue.fail(job, error: message, permanent: permanent, retryInMilliseconds: retryIn,
                                                countsAsAttempt: countsAsAttempt, on: r)
                    metrics.count(result == .deadLettered ? "nurture_jobs_dead_total" : "nurture_jobs_retried_total", job)
                }
            case .unknownKind:
                withRedisRetrying("dead-letter", until: Int64.max) { r in
                    try queue.deadLetter(job, reason: job.kind.isEmpty ? "unreadable job entry: \(job.payload.prefix(200))"
                                                                    : "unknown job kind \"\(job.kind)\" (this worker knows: \(registry.kinds.joined(separator: ", ")))", on: r)
                    metrics.count("nurture_jobs_dead_total", job)
                }
            }
            let doneCount = state.inner.withLock { $0.done.count }
            if doneCount >= 64 || (firstUnackedAt > 0 && monotonicNanoseconds() - firstUnackedAt > 20_000_000) {
                flush(state: state, redis: redis)
                firstUnackedAt = 0
            }
        }
        flush(state: state, redis: redis)
    }

    /// Acknowledges the slot's finished jobs, retrying until Redis takes it (the effects are already committed;
    /// giving up would only make the jobs run again).
    private func flush(state: SlotState, redis: RedisConnection) {
        let done = state.inner.withLock { s -> [Job] in let d = s.done; s.done = []; return d }
        if done.isEmpty { return }
        withRedisRetrying("acknowledge", until: Int64.max, preferred: redis) { r in try queue.complete(done, on: r) }
        processedCount.add(done.count, ordering: .relaxed)
    }

    enum Outcome {
        case succeeded
        case failed(String, permanent: Bool, retryIn: Int64?, countsAsAttempt: Bool)
        case unknownKind
    }

    private func run(_ job: Job, state: SlotState, redis: RedisConnection, database: inout PostgresConnection?,
                     metrics: inout SlotMetrics) -> Outcome {
        guard let handler = registry.handler(for: job.kind) else { return .unknownKind }
        if let limit = job.rateLimit {
            // Fleet-wide token bucket: wait here for short waits; longer ones go back to the delayed set
            // without using an attempt.
            while true {
                let wait: Int64
                do { wait = try queue.takeToken(limit, on: redis) } catch {
                    return .failed("rate limiter unavailable: \(error)", permanent: false, retryIn: 1_000, countsAsAttempt: false)
                }
                if wait == 0 { break }
                if wait > 2_000 || isStopping {
                    return .failed("rate limited by \(limit.key)", permanent: false, retryIn: wait, countsAsAttempt: false)
                }
                sleepMilliseconds(wait)
            }
        }
        let startedNs = monotonicNanoseconds()
        state.inner.withLock { s in
            s.current = job
            s.startedAtMs = monotonicMilliseconds()
            s.timeoutMs = job.timeoutMilliseconds ?? options.defaultJobTimeoutMilliseconds
        }
        busyCount.add(1, ordering: .relaxed)
        defer { busyCount.subtract(1, ordering: .relaxed) }
        var jobLogger = logger
        jobLogger[metadataKey: "job"] = "\(job.id)"
        jobLogger[metadataKey: "kind"] = "\(job.kind)"
        jobLogger[metadataKey: "queue"] = "\(job.queue)"
        var db = database
        let databaseURL = options.databaseURL
        let context = JobContext(job: job, redis: redis, queue: queue, logger: jobLogger, clock: clock, database: {
            if let db, db.isConnected { return db }
            let opened = try PostgresConnection(url: databaseURL)
            db = opened
            return opened
        }, cancelled: { state.inner.withLock { $0.abandoned } })
        let outcome: Outcome
        do {
            try handler(context)
            outcome = .succeeded
            metrics.count("nurture_jobs_processed_total", job)
        } catch let failure as JobFailure {
            switch failure {
            case .permanent(let message): outcome = .failed(message, permanent: true, retryIn: nil, countsAsAttempt: true)
            case .retryAfter(let ms, let message): outcome = .failed(message, permanent: false, retryIn: ms, countsAsAttempt: true)
            }
            metrics.count("nurture_jobs_failed_total", job)
            jobLogger.warning("job failed", metadata: ["error": "\(failure)", "attempt": "\(job.attempt)"])
        } catch {
            outcome = .failed("\(error)", permanent: false, retryIn: nil, countsAsAttempt: true)
            metrics.count("nurture_jobs_failed_total", job)
            jobLogger.warning("job failed", metadata: ["error": "\(error)", "attempt": "\(job.attempt)", "max": "\(job.maxAttempts)"])
        }
        database = db
        metrics.time(job, nanoseconds: monotonicNanoseconds() - startedNs)
        return outcome
    }

    // MARK: - Background

    private func heartbeatLoop(_ redis: RedisConnection) {
        var lastReclaim: Int64 = 0
        var lastPromote: Int64 = 0
        var failures = 0
        while !isStopping {
            let now = monotonicMilliseconds()
            do {
                try queue.heartbeat(worker: options.consumerName, leaseMilliseconds: options.leaseMilliseconds, info: info(), on: redis)
                let paused = try queue.pausedQueues(on: redis)
                pausedQueues.withLock { $0 = paused }
                if now - lastReclaim >= 2_000 {
                    lastReclaim = now
                    let (reclaimed, dead) = try queue.reclaimDeadWorkers(minimumIdleMilliseconds: options.leaseMilliseconds,
                                                                         maxLost: options.maxLost, on: redis)
                    if reclaimed + dead > 0 {
                        logger.warning("reclaimed jobs of dead workers", metadata: ["reclaimed": "\(reclaimed)", "dead_lettered": "\(dead)"])
                    }
                }
                if now - lastPromote >= 1_000 {
                    lastPromote = now
                    _ = try queue.promoteDue(on: redis)
                }
                Gauge(label: "nurture_worker_busy_slots").record(busy)
                Gauge(label: "nurture_worker_stuck_slots").record(stuck)
                failures = 0
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("heartbeat failed", metadata: ["error": "\(error)"])
                }
            }
            var slept: Int64 = 0
            while slept < options.heartbeatMilliseconds && !isStopping { sleepMilliseconds(50); slept += 50 }
        }
    }

    private func watchdogLoop() {
        while !isStopping {
            sleepMilliseconds(250)
            let now = monotonicMilliseconds()
            for slot in slots.withLock({ $0 }) {
                let taken = slot.inner.withLock { s -> (Job, [Job], [Job])? in
                    guard !s.abandoned, !s.finished, let job = s.current, now - s.startedAtMs > s.timeoutMs else { return nil }
                    s.abandoned = true
                    let result = (job, s.pending.filter { $0.entryID != job.entryID }, s.done)
                    s.pending = []
                    s.done = []
                    return result
                }
                guard let (job, pending, done) = taken else { continue }
                stuckCount.add(1, ordering: .relaxed)
                logger.error("job timed out; its slot is replaced", metadata: ["job": "\(job.id)", "kind": "\(job.kind)",
                                                                               "timeout_ms": "\(job.timeoutMilliseconds ?? options.defaultJobTimeoutMilliseconds)"])
                withRedisRetrying("time out job", until: Int64.max) { r in
                    try queue.complete(done, on: r)
                    try queue.fail(job, error: "timed out after \(job.timeoutMilliseconds ?? options.defaultJobTimeoutMilliseconds) ms", on: r)
                    try queue.handBack(pending, on: r)
                }
                if !isStopping { startSlot() }
            }
        }
    }

    /// Runs `body` with a working connection, retrying with backoff through Redis outages until `deadline`
    /// (monotonic ms) or shutdown's hard limit.
    private func withRedisRetrying(_ what: String, until deadline: Int64, preferred: RedisConnection? = nil,
                                   _ body: (RedisConnection) throws -> Void) {
        var attempt = 0
        var connection = preferred
        while true {
            do {
                if connection == nil { connection = try RedisConnection(config: options.redis, logger: logger) }
                try body(connection!)
                return
            } catch {
                attempt += 1
                if attempt == 1 || attempt % 20 == 0 {
                    logger.warning("\(what) failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)"])
                }
                if monotonicMilliseconds() >= deadline {
                    logger.error("\(what) gave up", metadata: ["error": "\(error)"])
                    return
                }
                if (error as? RedisError)?.isTransient ?? true { connection?.close() }
                sleepMilliseconds(Int64(Backoff(baseMilliseconds: 50, capMilliseconds: 2_000).delay(attempt: attempt)))
            }
        }
    }
}

/// Metric handles cached per slot (creating a swift-metrics handle takes a factory lock; jobs must not).
struct SlotMetrics {
    private var counters: [String: Counter] = [:]
    private var timers: [String: Metrics.Timer] = [:]

    mutating func count(_ name: String, _ job: Job) {
        let key = name + "|" + job.queue + "|" + job.kind
        if let c = counters[key] { c.increment(); return }
        let c = Counter(label: name, dimensions: [("queue", job.queue), ("kind", job.kind)])
        counters[key] = c
        c.increment()
    }

    mutating func time(_ job: Job, nanoseconds: UInt64) {
        let key = job.queue + "|" + job.kind
        if let t = timers[key] { t.recordNanoseconds(Int64(nanoseconds)); return }
        let t = Metrics.Timer(label: "nurture_job_duration_seconds", dimensions: [("queue", job.queue), ("kind", job.kind)])
        timers[key] = t
        t.recordNanoseconds(Int64(nanoseconds))
    }
}
