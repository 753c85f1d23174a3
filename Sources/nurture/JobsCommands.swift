import ArgumentParser
import Foundation
import JobQueue
import Redis
import Runtime

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "Enqueue raw jobs (re-driving work, tests, benchmarks).",
        subcommands: [JobsEnqueueCommand.self])
}

struct JobsEnqueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enqueue",
        abstract: "Put jobs of KIND on a queue.",
        discussion: """
            Built-in kinds: noop; sleep ({"ms": N}); fail (always fails: shows retries and dead letters).
            Examples:
              nurture jobs enqueue noop --count 10000
              nurture jobs enqueue sleep --payload '{"ms": 200}' --queue bulk
              nurture jobs enqueue noop --in 30s
              nurture jobs enqueue fail --max-attempts 2
            Jobs are written in pipelined batches (one round trip per 1,000). Prints the job ids (with
            --count above 10, only how many).
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The job kind (a handler registered in the workers).")
    var kind: String

    @Option(help: "The job's payload, a JSON value.")
    var payload: String = "{}"

    @Option(help: "The queue: transactional, default, bulk, maintenance or your own.")
    var queue: String = "default"

    @Option(help: "How many identical jobs to enqueue.")
    var count: Int = 1

    @Option(name: .customLong("in"), help: "Run no earlier than this from now (e.g. 30s, 15m, 2d).")
    var delay: String?

    @Option(help: "Runs before the job goes to the dead letters.")
    var maxAttempts: Int = 20

    @Option(help: "Per-run timeout (e.g. 30s); past it the run counts as failed and is retried.")
    var timeout: String?

    @Option(help: "Drop the job if another with this key was enqueued within --unique-for.")
    var unique: String?

    @Option(help: "How long a --unique key holds (e.g. 1h).")
    var uniqueFor: String = "1h"

    @Option(help: "Fleet-wide rate limit as KEY=N/s (e.g. sms=50/s): workers take a token before each run.")
    var rateLimit: String?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard maxAttempts >= 1 else { throw ValidationError("--max-attempts must be at least 1") }
        do { try JobQueue.validate(queue: queue) } catch { throw ValidationError("--queue: \(error)") }
    }

    func run() async throws {
        guard (try? JSONSerialization.jsonObject(with: Data(payload.utf8), options: [.fragmentsAllowed])) != nil else {
            throw UserError("--payload is not valid JSON: \(payload)")
        }
        let config = try connection.config()
        let redis = try connection.redis(config)
        let queueClient = JobQueue(namespace: config.namespace)
        var limit: RateLimit? = nil
        if let rateLimit {
            let parts = rateLimit.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let parsed = RateLimit.parse(rate: String(parts[1]), key: String(parts[0])) else {
                throw UserError("--rate-limit: expected KEY=N/s, got \(rateLimit)")
            }
            limit = parsed
        }
        let delayMs = try delay.map { try parseDuration($0, flag: "--in") } ?? 0
        let timeoutMs = try timeout.map { try parseDuration($0, flag: "--timeout") }
        let uniqueMs = try parseDuration(uniqueFor, flag: "--unique-for")
        var remaining = count
        var ids: [String?] = []
        while remaining > 0 {
            let n = min(remaining, 1_000)
            let jobs = (0..<n).map { _ in
                NewJob(kind: kind, payload: payload, queue: queue, maxAttempts: maxAttempts, delayMilliseconds: delayMs,
                       uniqueKey: unique, uniqueForMilliseconds: uniqueMs, timeoutMilliseconds: timeoutMs, rateLimit: limit)
            }
            ids += try queueClient.enqueue(jobs, on: redis)
            remaining -= n
        }
        let accepted = ids.compactMap { $0 }
        if count <= 10 {
            for id in ids { print(id ?? "(duplicate of a unique job: dropped)") }
        } else {
            print("enqueued \(accepted.count) \(kind) job(s) on \(queue)\(delayMs > 0 ? " due in \(delay!)" : "")")
        }
    }
}

struct QueuesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queues",
        abstract: "Per-queue depth, in flight, delayed, dead and throughput; pause and resume.",
        discussion: """
            depth: waiting to be fetched · in_flight: fetched, not yet acknowledged · delayed: waiting for a time
            (retries, scheduled) · dead: dead letters (see `nurture dlq`) · done/min: processed in the last full
            minute · lag: age of the oldest waiting job. Also lists live worker processes.
            """,
        subcommands: [QueuesShowCommand.self, QueuesPauseCommand.self, QueuesResumeCommand.self],
        defaultSubcommand: QueuesShowCommand.self)
}

struct QueuesShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show queue statistics (the default).")

    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Machine-readable JSON.")
    var json = false

    struct Report: Encodable {
        var queues: [QueueStats]
        var workers: [WorkerStatus]
    }

    func run() async throws {
        let config = try connection.config()
        let redis = try connection.redis(config)
        let client = JobQueue(namespace: config.namespace)
        let stats = try client.stats(on: redis)
        let workers = try client.workers(on: redis)
        if json { try printJSON(Report(queues: stats, workers: workers)); return }
        if stats.isEmpty { print("no queues yet in namespace \(config.namespace)") } else {
            printTable(["queue", "depth", "in_flight", "delayed", "dead", "processed", "failed", "retried", "done/min", "lag", "state"],
                       stats.map { s in
                           [s.queue, "\(s.depth)", "\(s.inFlight)", "\(s.delayed)", "\(s.dead)", "\(s.processed)", "\(s.failed)",
                            "\(s.retried)", "\(s.processedLastMinute)", String(format: "%.1fs", Double(s.lagMilliseconds) / 1000),
                            s.paused ? "paused" : "active"]
                       })
        }
        print("")
        print("\(workers.count) worker process(es) alive")
        for w in workers {
            print("  \(w.name)  queues=\(w.info["queues"] ?? "?") concurrency=\(w.info["concurrency"] ?? "?") busy=\(w.info["busy"] ?? "?") processed=\(w.info["processed"] ?? "?")")
        }
    }
}

struct QueuesPauseCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause", abstract: "Stop workers fetching from QUEUE (in-flight jobs finish; enqueuing continues).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The queue to pause.") var queue: String

    func run() async throws {
        let config = try connection.config()
        try JobQueue(namespace: config.namespace).pause(queue, on: try connection.redis(config))
        print("paused \(queue) (workers notice within a second)")
    }
}

struct QueuesResumeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume", abstract: "Let workers fetch from QUEUE again.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The queue to resume.") var queue: String

    func run() async throws {
        let config = try connection.config()
        try JobQueue(namespace: config.namespace).resume(queue, on: try connection.redis(config))
        print("resumed \(queue)")
    }
}

struct DLQCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dlq",
        abstract: "Dead letters: jobs that failed every attempt, had an unknown kind, or kept killing workers.",
        subcommands: [DLQListCommand.self, DLQRetryCommand.self, DLQPurgeCommand.self],
        defaultSubcommand: DLQListCommand.self)
}

struct DLQListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List dead letters, newest first.")
    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Only this queue.") var queue: String?
    @Option(help: "At most this many.") var limit: Int = 50
    @Flag(help: "Machine-readable JSON (with payloads).") var json = false

    func run() async throws {
        let config = try connection.config()
        let letters = try JobQueue(namespace: config.namespace).deadLetters(queue: queue, limit: limit, on: try connection.redis(config))
        if json { try printJSON(letters); return }
        if letters.isEmpty { print("no dead letters"); return }
        let formatter = ISO8601DateFormatter()
        printTable(["id", "queue", "kind", "attempts", "died", "reason", "last error"], letters.map { d in
            [d.id, d.queue, d.kind, "\(d.attempts)",
             formatter.string(from: Date(timeIntervalSince1970: Double(d.diedAtMilliseconds) / 1000)),
             d.reason, String(d.lastError.prefix(80))]
        })
    }
}

/// Which dead letters `dlq retry` / `dlq purge` act on: one id, or `--all` (optionally of one `--queue`).
struct DeadLetterSelection: ParsableArguments {
    @Argument(help: "The dead letter's job id (for events: the stream entry id).") var id: String?
    @Flag(help: "Every dead letter (of --queue, or of every queue).") var all = false
    @Option(help: "Only this queue (`events` for malformed events).") var queue: String?

    func validate() throws {
        guard (id != nil) != all else { throw ValidationError("give a job id or --all (not both)") }
    }
}

struct DLQRetryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retry", abstract: "Put dead letters back on their queue with a fresh attempt count.",
        discussion: "Give a job id, or --all (optionally with --queue).")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var selection: DeadLetterSelection
    var id: String? { selection.id }
    var queue: String? { selection.queue }

    func run() async throws {
        let config = try connection.config()
        let redis = try connection.redis(config)
        let jobs = JobQueue(namespace: config.namespace)
        var n = 0
        // Malformed events are not jobs: they go back to the events stream as the app server wrote them.
        if queue == nil || queue == IngestOptions.deadQueue {
            n += try redriveDeadEvents(jobs, namespace: config.namespace, redis: redis)
        }
        if queue != IngestOptions.deadQueue {
            n += try jobs.retryDeadLetters(queue: queue, id: id, except: [IngestOptions.deadQueue], on: redis)
        }
        if n == 0, id != nil { throw UserError("no dead letter with id \(id!)\(queue.map { " in queue \($0)" } ?? "")") }
        print("re-enqueued \(n) dead letter(s)")
    }

    /// XADDs dead-lettered events' payloads back onto `<ns>:events` (e.g. after fixing the app that sent them).
    private func redriveDeadEvents(_ jobs: JobQueue, namespace: String, redis: RedisConnection) throws -> Int {
        let letters = try jobs.deadLetters(queue: IngestOptions.deadQueue, limit: 100_000, on: redis)
            .filter { id == nil || $0.id == id }
        if letters.isEmpty { return 0 }
        let stream = IngestOptions.streamKey(namespace: namespace)
        var commands: [RedisCommand] = []
        for letter in letters {
            commands.append(RedisCommand("XADD", .string(stream), "*", "payload", .string(letter.payload)))
            commands.append(RedisCommand("HDEL", .string(jobs.keys.dead(IngestOptions.deadQueue)), .string(letter.id)))
            commands.append(RedisCommand("ZREM", .string(jobs.keys.deadIndex(IngestOptions.deadQueue)), .string(letter.id)))
        }
        for reply in try redis.pipeline(commands) { try reply.orThrow() }
        return letters.count
    }
}

struct DLQPurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge", abstract: "Delete dead letters for good.",
        discussion: "Give a job id, or --all (optionally with --queue).")
    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var selection: DeadLetterSelection
    var id: String? { selection.id }
    var queue: String? { selection.queue }

    func run() async throws {
        let config = try connection.config()
        let n = try JobQueue(namespace: config.namespace).purgeDeadLetters(queue: queue, id: id, on: try connection.redis(config))
        print("purged \(n) dead letter(s)")
    }
}
