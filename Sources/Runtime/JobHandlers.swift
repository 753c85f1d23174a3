import Foundation
import JobQueue
import Logging
import Postgres
import Redis

/// What a handler gets: the job, and the resources of the slot thread it runs on (blocking calls are fine here:
/// slot threads are dedicated OS threads, never the Swift concurrency pool).
public final class JobContext: @unchecked Sendable {
    // Safety: a context belongs to one slot thread and is only used by the handler running on that thread.
    public let job: Job
    public let redis: RedisConnection
    public let queue: JobQueue
    public let logger: Logger
    public let clock: InstallationClock
    private let databaseProvider: () throws -> PostgresConnection
    /// Set by the watchdog when the run passed its timeout; long handlers may check it and stop early.
    public var isCancelled: Bool { cancelled() }
    private let cancelled: () -> Bool

    init(job: Job, redis: RedisConnection, queue: JobQueue, logger: Logger, clock: InstallationClock,
         database: @escaping () throws -> PostgresConnection, cancelled: @escaping () -> Bool) {
        self.job = job
        self.redis = redis
        self.queue = queue
        self.logger = logger
        self.clock = clock
        self.databaseProvider = database
        self.cancelled = cancelled
    }

    /// The slot's PostgreSQL connection, opened on first use.
    public func database() throws -> PostgresConnection { try databaseProvider() }

    /// The payload parsed as a JSON object (empty object for an empty payload).
    public func payloadObject() throws -> [String: Any] {
        if job.payload.isEmpty { return [:] }
        guard let data = job.payload.data(using: .utf8),
              let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw JobFailure.permanent("payload is not a JSON object")
        }
        return object
    }
}

/// How a handler says a run failed, beyond throwing any error (which means "retry with backoff").
public enum JobFailure: Error, CustomStringConvertible {
    /// Will never succeed (bad payload, 4xx from a provider): dead-letter now.
    case permanent(String)
    /// Try again after this many milliseconds (e.g. a provider's Retry-After); counts as an attempt.
    case retryAfter(milliseconds: Int64, String)

    public var description: String {
        switch self {
        case .permanent(let s): return s
        case .retryAfter(let ms, let s): return "\(s) (retry in \(ms) ms)"
        }
    }
}

public typealias JobHandler = @Sendable (JobContext) throws -> Void

/// Job kinds and their handlers. Later features (ingestion, workflow steps, broadcast batches) register theirs.
public struct JobHandlerRegistry: Sendable {
    private var handlers: [String: JobHandler] = [:]

    public init() {}

    public mutating func register(_ kind: String, _ handler: @escaping JobHandler) {
        handlers[kind] = handler
    }

    public func handler(for kind: String) -> JobHandler? { handlers[kind] }

    public var kinds: [String] { handlers.keys.sorted() }

    /// The built-in kinds: `noop`, `sleep` (`{"ms": N}`), `fail` (always fails: demos and tests), and
    /// `probe` (benchmarks: `{"list": KEY, "t_us": T}` or `"due_us"` pushes now − T in µs onto the list).
    public static var builtIn: JobHandlerRegistry {
        var r = JobHandlerRegistry()
        r.register("noop") { _ in }
        r.register("sleep") { context in
            let object = try context.payloadObject()
            guard let ms = (object["ms"] as? NSNumber)?.int64Value, ms >= 0 else {
                throw JobFailure.permanent("sleep needs {\"ms\": N} with N >= 0")
            }
            var left = ms
            while left > 0 && !context.isCancelled {
                let step = min(left, 100)
                Thread.sleep(forTimeInterval: Double(step) / 1000)
                left -= step
            }
        }
        r.register("fail") { context in
            let object = (try? context.payloadObject()) ?? [:]
            throw JobFailureForDemo(message: (object["message"] as? String) ?? "the fail job always fails (attempt \(context.job.attempt))")
        }
        r.register("probe") { context in
            let object = try context.payloadObject()
            guard let list = object["list"] as? String else { throw JobFailure.permanent("probe needs {\"list\": KEY}") }
            // Microseconds from when the job was due (or enqueued) to now; same host, same clock.
            let since = (object["due_us"] as? NSNumber)?.int64Value ?? (object["t_us"] as? NSNumber)?.int64Value
                ?? context.job.enqueuedAtMilliseconds * 1000
            var tv = timeval()
            gettimeofday(&tv, nil)
            let nowMicros = Int64(tv.tv_sec) * 1_000_000 + Int64(tv.tv_usec)
            try context.redis.execute(RedisCommand("RPUSH", .string(list), .int(nowMicros - since)))
        }
        return r
    }
}

struct JobFailureForDemo: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}
