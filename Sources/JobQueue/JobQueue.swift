import Foundation
import NurtureCore
import Redis

/// The job queue: named queues as Redis streams with one consumer group, a delayed set per queue for retries and
/// scheduled jobs, dead letters, leases for crash recovery, pause/resume, unique jobs and fleet-wide rate limits.
///
/// It holds no connection: every operation takes the `RedisConnection` of the calling thread, so a worker slot,
/// the scheduler and the CLI each use their own (hiredis connections are not thread-safe). It knows nothing about
/// marketing: job kinds and payloads are opaque strings.
public struct JobQueue: Sendable {
    public let keys: QueueKeys
    public var group: String { QueueKeys.group }

    /// Priority order used when a worker is not told otherwise: transactional > default > bulk > maintenance.
    public static let standardQueues = ["transactional", "default", "bulk", "maintenance"]

    public init(namespace: String) {
        self.keys = QueueKeys(namespace: namespace)
    }

    public struct InvalidQueueName: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "invalid queue name \"\(name)\": use 1-64 characters from a-z, 0-9, _ and -" }
    }

    public static func validate(queue: String) throws {
        guard !queue.isEmpty, queue.utf8.count <= 64,
              queue.utf8.allSatisfy({ ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 || $0 == 45 })
        else { throw InvalidQueueName(name: queue) }
    }

    // MARK: - Enqueue

    /// Enqueues jobs in one round trip (plain jobs are pipelined XADDs; delayed and unique ones go through a
    /// script). Returns the job ids, nil for a unique job dropped as a duplicate.
    @discardableResult
    public func enqueue(_ jobs: [NewJob], on redis: RedisConnection) throws -> [String?] {
        if jobs.isEmpty { return [] }
        let now = JobQueue.wallClockMilliseconds()
        var commands: [RedisCommand] = []
        commands.reserveCapacity(jobs.count + 4)
        var ids: [String] = []
        ids.reserveCapacity(jobs.count)
        var queuesSeen = Set<String>()
        var usesScript = false
        for job in jobs {
            try JobQueue.validate(queue: job.queue)
            queuesSeen.insert(job.queue)
            let id = job.id ?? JobQueue.newJobID()
            ids.append(id)
            let record = Job(queue: job.queue, entryID: "", id: id, kind: job.kind, payload: job.payload, attempt: 1,
                             maxAttempts: max(1, job.maxAttempts), enqueuedAtMilliseconds: now,
                             timeoutMilliseconds: job.timeoutMilliseconds, rateLimit: job.rateLimit)
            if job.delayMilliseconds <= 0 && job.uniqueKey == nil {
                var args: [RedisArgument] = [.string(keys.stream(job.queue)), "*"]
                for (k, v) in record.fields() { args.append(.string(k)); args.append(.string(v)) }
                commands.append(RedisCommand("XADD", args))
            } else {
                usesScript = true
                var scriptKeys: [RedisArgument] = [.string(keys.stream(job.queue)), .string(keys.delayed(job.queue)), .string(keys.queues)]
                if let u = job.uniqueKey { scriptKeys.append(.string(keys.unique(u))) }
                var args: [RedisArgument] = [.string(job.queue), .int(max(0, job.delayMilliseconds)), .string(record.json()),
                                             .int(max(1, job.uniqueForMilliseconds)), .string(id)]
                for (k, v) in record.fields() { args.append(.string(k)); args.append(.string(v)) }
                commands.append(QueueScripts.enqueue.command(keys: scriptKeys, arguments: args))
            }
        }
        commands.append(RedisCommand("SADD", [.string(keys.queues)] + queuesSeen.sorted().map { .string($0) }))
        let replies = usesScript ? try redis.pipeline(commands, scripts: [QueueScripts.enqueue]) : try redis.pipeline(commands)
        var result: [String?] = []
        result.reserveCapacity(jobs.count)
        for (index, reply) in replies.prefix(jobs.count).enumerated() {
            try reply.orThrow()
            if case .integer(0) = reply { result.append(nil) } else { result.append(ids[index]) }
        }
        return result
    }

    // MARK: - Fetch

    /// Takes up to `count` jobs in strict priority order (the order of `queues`), skipping paused queues.
    /// If none is ready and `blockMilliseconds` > 0, waits up to that long for the first one to arrive.
    public func fetch(queues: [String], consumer: String, count: Int, blockMilliseconds: Int64,
                      paused: Set<String> = [], on redis: RedisConnection) throws -> [Job] {
        let active = queues.filter { !paused.contains($0) }
        if active.isEmpty || count <= 0 {
            if blockMilliseconds > 0 { sleepMilliseconds(min(blockMilliseconds, 250)) }
            return []
        }
        var scriptKeys: [RedisArgument] = [.string(keys.paused)]
        scriptKeys.append(contentsOf: active.map { .string(keys.stream($0)) })
        var args: [RedisArgument] = [.string(group), .string(consumer), .int(Int64(count))]
        args.append(contentsOf: active.map { .string($0) })
        let reply = try redis.evaluate(QueueScripts.fetch, keys: scriptKeys, arguments: args)
        var jobs: [Job] = []
        if let flat = reply.array {
            var i = 0
            while i + 1 < flat.count {
                let queue = flat[i].string ?? ""
                if let entries = flat[i + 1].array { parseEntries(entries, queue: queue, into: &jobs) }
                i += 2
            }
        }
        if !jobs.isEmpty || blockMilliseconds <= 0 { return jobs }

        // Nothing ready: block on every active stream at once (one slot, so one command).
        var blocking: [RedisArgument] = ["GROUP", .string(group), .string(consumer), "COUNT", .int(Int64(count)),
                                         "BLOCK", .int(blockMilliseconds), "STREAMS"]
        blocking.append(contentsOf: active.map { .string(keys.stream($0)) })
        blocking.append(contentsOf: active.map { _ in ">" })
        let blocked: RedisReply
        do {
            blocked = try redis.execute(RedisCommand("XREADGROUP", blocking), timeoutMilliseconds: blockMilliseconds)
        } catch {
            guard error.serverCode == "NOGROUP" else { throw error }
            try ensureGroups(active, on: redis)
            return []
        }
        guard let streams = blocked.array else { return [] }
        let byStream = Dictionary(uniqueKeysWithValues: active.map { (keys.stream($0), $0) })
        for stream in streams {
            guard let pair = stream.array, pair.count == 2, let name = pair[0].string, let entries = pair[1].array else { continue }
            parseEntries(entries, queue: byStream[name] ?? name, into: &jobs)
        }
        return jobs
    }

    /// The entries already delivered to `consumer` and not yet acknowledged, oldest first (`XREADGROUP ... 0`):
    /// how a consumer recovers jobs whose fetch reply it never received.
    public func fetchPending(queues: [String], consumer: String, count: Int, on redis: RedisConnection) throws -> [Job] {
        if queues.isEmpty || count <= 0 { return [] }
        var args: [RedisArgument] = ["GROUP", .string(group), .string(consumer), "COUNT", .int(Int64(count)), "STREAMS"]
        args.append(contentsOf: queues.map { .string(keys.stream($0)) })
        args.append(contentsOf: queues.map { _ in "0" })
        let reply: RedisReply
        do {
            reply = try redis.execute(RedisCommand("XREADGROUP", args))
        } catch {
            guard error.serverCode == "NOGROUP" else { throw error }
            try ensureGroups(queues, on: redis)
            return []
        }
        var jobs: [Job] = []
        let byStream = Dictionary(uniqueKeysWithValues: queues.map { (keys.stream($0), $0) })
        for stream in reply.array ?? [] {
            guard let pair = stream.array, pair.count == 2, let name = pair[0].string, let entries = pair[1].array else { continue }
            parseEntries(entries, queue: byStream[name] ?? name, into: &jobs)
        }
        return jobs
    }

    /// Creates the consumer group of each queue's stream if missing (a fresh or flushed Redis).
    public func ensureGroups(_ queues: [String], on redis: RedisConnection) throws {
        let commands = queues.map { RedisCommand("XGROUP", "CREATE", .string(keys.stream($0)), .string(group), "0", "MKSTREAM") }
        for reply in try redis.pipeline(commands) {
            if case .error(let message) = reply, !message.hasPrefix("BUSYGROUP") { throw RedisError(.server, message) }
        }
    }

    private func parseEntries(_ entries: [RedisReply], queue: String, into jobs: inout [Job]) {
        for entry in entries {
            guard let pair = entry.array, pair.count == 2, let id = pair[0].string else { continue }
            guard let flat = pair[1].array else {
                // The entry was deleted while pending (should not happen: we XDEL only after XACK). Keep a
                // visible placeholder so the worker acks it instead of leaving it pending forever.
                jobs.append(Job(queue: queue, entryID: id, id: id, kind: "", payload: "", attempt: 1, maxAttempts: 1,
                                enqueuedAtMilliseconds: 0))
                continue
            }
            var fields: [RedisFieldPair] = []
            fields.reserveCapacity(flat.count / 2)
            var i = 0
            while i + 1 < flat.count {
                fields.append((flat[i].string ?? "", flat[i + 1].string ?? ""))
                i += 2
            }
            if let job = Job(queue: queue, entryID: id, fields: fields) {
                jobs.append(job)
            } else {
                // Malformed entry (written by hand?): surface it as a job of kind "" so the worker dead-letters it.
                jobs.append(Job(queue: queue, entryID: id, id: id, kind: "",
                                payload: fields.map { "\($0.0)=\($0.1)" }.joined(separator: " "),
                                attempt: 1, maxAttempts: 1, enqueuedAtMilliseconds: 0))
            }
        }
    }

    // MARK: - Outcomes

    /// Acknowledges finished jobs (any queues) in one round trip. Call only after the job's effects are committed.
    public func complete(_ jobs: [Job], on redis: RedisConnection) throws {
        if jobs.isEmpty { return }
        let minute = JobQueue.wallClockMilliseconds() / 60_000
        var byQueue: [String: [RedisArgument]] = [:]
        for job in jobs { byQueue[job.queue, default: []].append(.string(job.entryID)) }
        let commands = byQueue.map { queue, ids in
            QueueScripts.complete.command(
                keys: [.string(keys.stream(queue)), .string(keys.stats(queue)), .string(keys.processedInMinute(queue, minute: minute))],
                arguments: [.string(group)] + ids)
        }
        for reply in try redis.pipeline(commands, scripts: [QueueScripts.complete]) { try reply.orThrow() }
    }

    public enum FailureOutcome: Sendable, Equatable {
        /// Will run again when the retry is due (ms since 1970, Redis clock).
        case retried(dueAtMilliseconds: Int64)
        case deadLettered
    }

    /// Records a failed run: a retry after `retryInMilliseconds` (default: exponential backoff with jitter), or a
    /// dead letter when attempts are used up or `permanent` is set.
    @discardableResult
    public func fail(_ job: Job, error: String, permanent: Bool = false, retryInMilliseconds: Int64? = nil,
                     countsAsAttempt: Bool = true, on redis: RedisConnection) throws -> FailureOutcome {
        let trimmedError = String(error.prefix(2_000))
        let exhausted = countsAsAttempt && job.attempt >= job.maxAttempts
        if permanent || exhausted {
            let reason = permanent ? "permanent failure" : "failed \(job.attempt) of \(job.maxAttempts) attempts"
            var record = job
            record.lastError = trimmedError
            let json = record.json(extra: [("reason", reason), ("died_at", String(JobQueue.wallClockMilliseconds()))])
            try run(QueueScripts.fail, queue: job.queue, arguments: [.string(group), .string(job.entryID), "dead", 0, .string(json), .string(job.id)], on: redis)
            return .deadLettered
        }
        var next = job
        if countsAsAttempt { next.attempt += 1 }
        next.lastError = trimmedError
        let delay = retryInMilliseconds ?? JobQueue.retryDelay(attempt: job.attempt)
        let due = try run(QueueScripts.fail, queue: job.queue,
                          arguments: [.string(group), .string(job.entryID), "retry", .int(delay), .string(next.json()), .string(job.id)], on: redis)
        return .retried(dueAtMilliseconds: due.int ?? 0)
    }

    /// Dead-letters a job without running it (unknown kind, unreadable entry).
    public func deadLetter(_ job: Job, reason: String, on redis: RedisConnection) throws {
        var record = job
        record.lastError = reason
        let json = record.json(extra: [("reason", reason), ("died_at", String(JobQueue.wallClockMilliseconds()))])
        try run(QueueScripts.fail, queue: job.queue, arguments: [.string(group), .string(job.entryID), "dead", 0, .string(json), .string(job.id)], on: redis)
    }

    @discardableResult
    private func run(_ script: RedisScript, queue: String, arguments: [RedisArgument], on redis: RedisConnection) throws -> RedisReply {
        try redis.evaluate(script, keys: [.string(keys.stream(queue)), .string(keys.delayed(queue)), .string(keys.dead(queue)),
                                          .string(keys.deadIndex(queue)), .string(keys.stats(queue))], arguments: arguments)
    }

    /// Puts jobs this worker fetched but will not run back on their queues, for another worker to take now.
    public func handBack(_ jobs: [Job], on redis: RedisConnection) throws {
        var byQueue: [String: [RedisArgument]] = [:]
        for job in jobs { byQueue[job.queue, default: []].append(.string(job.entryID)) }
        let commands = byQueue.map { queue, ids in
            QueueScripts.handBack.command(keys: [.string(keys.stream(queue))], arguments: [.string(group)] + ids)
        }
        for reply in try redis.pipeline(commands, scripts: [QueueScripts.handBack]) { try reply.orThrow() }
    }

    /// Exponential backoff with jitter for retry number `attempt` (1-based): about 1 s, 2 s, 4 s, ... capped at 1 h.
    public static func retryDelay(attempt: Int) -> Int64 {
        Int64(Backoff(baseMilliseconds: 1_000, capMilliseconds: 3_600_000).delay(attempt: max(0, attempt - 1)))
    }

    // MARK: - Scheduler duties

    /// Moves due delayed jobs of every known queue into their streams (at most `limit`).
    /// Returns how many moved and how long until the next one is due (nil: none waiting).
    public func promoteDue(limit: Int = 1_000, on redis: RedisConnection) throws -> (moved: Int, nextDueInMilliseconds: Int64?) {
        let queues = try knownQueues(on: redis)
        if queues.isEmpty { return (0, nil) }
        var scriptKeys: [RedisArgument] = []
        for q in queues { scriptKeys.append(.string(keys.delayed(q))); scriptKeys.append(.string(keys.stream(q))) }
        let reply = try redis.evaluate(QueueScripts.promote, keys: scriptKeys, arguments: [.int(Int64(limit))])
        let parts = reply.array ?? []
        let moved = Int(parts.first?.int ?? 0)
        let next = parts.count > 1 ? parts[1].int ?? -1 : -1
        return (moved, next < 0 ? nil : next)
    }

    /// Reclaims the in-flight jobs of workers whose lease ran out. `maxLost`: how many dead workers a job may take
    /// down before it is dead-lettered as poison.
    public func reclaimDeadWorkers(minimumIdleMilliseconds: Int64 = 5_000, maxLost: Int = 3, on redis: RedisConnection) throws -> (reclaimed: Int, deadLettered: Int) {
        let queues = try knownQueues(on: redis)
        if queues.isEmpty { return (0, 0) }
        var scriptKeys: [RedisArgument] = [.string(keys.workers)]
        for q in queues {
            scriptKeys += [.string(keys.stream(q)), .string(keys.dead(q)), .string(keys.deadIndex(q)), .string(keys.stats(q))]
        }
        let args: [RedisArgument] = [.string(group), .int(minimumIdleMilliseconds), .int(Int64(maxLost)), 500] + queues.map { .string($0) }
        let parts = try redis.evaluate(QueueScripts.reclaim, keys: scriptKeys, arguments: args).array ?? []
        return (Int(parts.first?.int ?? 0), Int(parts.count > 1 ? parts[1].int ?? 0 : 0))
    }

    /// Registers or extends a worker process's lease (its jobs are safe from reclaim while it lasts).
    public func heartbeat(worker: String, leaseMilliseconds: Int64, info: [(String, String)], on redis: RedisConnection) throws {
        var args: [RedisArgument] = [.string(worker), .int(leaseMilliseconds)]
        for (k, v) in info { args.append(.string(k)); args.append(.string(v)) }
        try redis.evaluate(QueueScripts.heartbeat, keys: [.string(keys.workers), .string(keys.workerInfo(worker))], arguments: args)
    }

    /// Removes a worker's lease at clean shutdown (after it handed back its jobs).
    public func unregister(worker: String, on redis: RedisConnection) throws {
        _ = try redis.pipeline([RedisCommand("ZREM", .string(keys.workers), .string(worker)),
                                RedisCommand("DEL", .string(keys.workerInfo(worker)))])
    }

    // MARK: - Rate limits

    /// Takes `tokens` from the fleet-wide bucket; returns 0 when granted, else the milliseconds to wait before asking again.
    public func takeToken(_ limit: RateLimit, tokens: Double = 1, on redis: RedisConnection) throws -> Int64 {
        let reply = try redis.evaluate(QueueScripts.takeToken, keys: [.string(keys.rateBucket(limit.key))],
                                       arguments: [.double(limit.perSecond), .double(limit.burst), .double(tokens)])
        return reply.int ?? 0
    }

    // MARK: - Operations

    public func knownQueues(on redis: RedisConnection) throws -> [String] {
        let members = try redis.execute(RedisCommand("SMEMBERS", .string(keys.queues))).array ?? []
        let names = members.compactMap(\.string)
        // Standard queues first in priority order, then the rest by name.
        return JobQueue.standardQueues.filter(names.contains) + names.filter { !JobQueue.standardQueues.contains($0) }.sorted()
    }

    public func pause(_ queue: String, on redis: RedisConnection) throws {
        try JobQueue.validate(queue: queue)
        _ = try redis.pipeline([RedisCommand("HSET", .string(keys.paused), .string(queue), .int(JobQueue.wallClockMilliseconds())),
                                RedisCommand("SADD", .string(keys.queues), .string(queue))])
    }

    public func resume(_ queue: String, on redis: RedisConnection) throws {
        try redis.execute(RedisCommand("HDEL", .string(keys.paused), .string(queue)))
    }

    public func pausedQueues(on redis: RedisConnection) throws -> Set<String> {
        Set((try redis.execute(RedisCommand("HKEYS", .string(keys.paused))).array ?? []).compactMap(\.string))
    }

    /// Removes every key of this namespace's job system (tests, benchmarks).
    public func destroy(on redis: RedisConnection) throws {
        var cursor = "0"
        repeat {
            let reply = try redis.execute(RedisCommand("SCAN", .string(cursor), "MATCH", .string(keys.prefix.replacingOccurrences(of: "{", with: "\\{").replacingOccurrences(of: "}", with: "\\}") + ":*"), "COUNT", 1000))
            let parts = reply.array ?? []
            cursor = parts.first?.string ?? "0"
            let found = (parts.count > 1 ? parts[1].array ?? [] : []).compactMap(\.string)
            if !found.isEmpty { try redis.execute(RedisCommand("DEL", found.map { .string($0) })) }
        } while cursor != "0"
    }

    // MARK: - Helpers

    public static func wallClockMilliseconds() -> Int64 {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000
    }

    /// 16 random bytes as 32 hex characters.
    public static func newJobID() -> String {
        var generator = SystemRandomNumberGenerator()
        let a = generator.next() as UInt64
        let b = generator.next() as UInt64
        return hex(a) + hex(b)
    }

    private static func hex(_ v: UInt64) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}
