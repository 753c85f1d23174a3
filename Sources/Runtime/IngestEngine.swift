import Domain
import Foundation
import JobQueue
import Logging
import Metrics
import NurtureCore
import Postgres
import Redis
import Store
import Synchronization

/// How the events ingester runs.
public struct IngestOptions: Sendable {
    public var namespace: String = "nurture"
    public var redis: RedisConfig = RedisConfig()
    public var databaseURL: String = "postgres://127.0.0.1:5432/nurture"
    /// Entries read (and committed) per batch.
    public var batchSize: Int = 1_000
    public var blockMilliseconds: Int64 = 1_000
    /// Entries pending this long for any consumer (a crashed ingester) are claimed and processed.
    public var claimIdleMilliseconds: Int64 = 30_000
    public var claimEveryMilliseconds: Int64 = 5_000
    /// A batch PostgreSQL rejects this many times in a row is bisected to find and dead-letter the culprit.
    public var rejectionsBeforeBisect: Int = 2
    public var consumerName: String = WorkerOptions.defaultConsumerName()

    public init() {}

    /// `<namespace>:events`: the stream app servers XADD to (contract §3).
    public static func streamKey(namespace: String) -> String { "\(namespace):events" }
    public static let group = "ingest"
    /// The dead-letter "queue" malformed events go to (`nurture dlq list --queue events`).
    public static let deadQueue = "events"
}

/// One entry read from the events stream.
struct StreamEntry: Sendable {
    var id: String
    /// nil: the entry was deleted while pending (nothing to do but acknowledge it).
    var payload: [UInt8]?
    var hasFields: Bool
}

/// The events consumer: reads `<ns>:events` in the consumer group `ingest`, dead-letters malformed entries,
/// ingests the rest in one PostgreSQL transaction per batch, and only after COMMIT acknowledges and deletes the
/// batch's entries. Runs on its own OS thread with its own connections; survives Redis and PostgreSQL restarts;
/// claims entries left pending by crashed consumers; bisects a batch PostgreSQL keeps rejecting so one bad
/// message is dead-lettered instead of blocking the stream.
public final class IngestEngine: Sendable {
    public let options: IngestOptions
    private let clock: InstallationClock
    private let logger: Logger
    private let store = IngestStore()
    private let keys: QueueKeys
    private let stopping = Atomic<Bool>(false)
    private let running = Atomic<Bool>(false)
    private let ingestedCount = Atomic<Int>(0)
    private let duplicateCount = Atomic<Int>(0)
    private let deadCount = Atomic<Int>(0)
    private let finished = NSCondition()
    private let done = Mutex<Bool>(true)

    public init(options: IngestOptions, clock: InstallationClock, logger: Logger = Logger(label: "nurture.ingest")) {
        self.options = options
        self.clock = clock
        self.keys = QueueKeys(namespace: options.namespace)
        var logger = logger
        logger[metadataKey: "consumer"] = "\(options.consumerName)"
        self.logger = logger
    }

    public var stream: String { IngestOptions.streamKey(namespace: options.namespace) }
    public var ingested: Int { ingestedCount.load(ordering: .relaxed) }
    public var duplicates: Int { duplicateCount.load(ordering: .relaxed) }
    public var deadLettered: Int { deadCount.load(ordering: .relaxed) }
    public var isStopping: Bool { stopping.load(ordering: .relaxed) }

    /// Creates the consumer group (if Redis is up) and starts the ingest thread; returns at once.
    public func start() throws {
        if running.exchange(true, ordering: .relaxed) { return }
        if let redis = try? RedisConnection(config: options.redis, logger: logger) {
            try? ensureGroup(redis)
            redis.close()
        }
        done.withLock { $0 = false }
        let thread = Thread { [self] in
            loop()
            done.withLock { $0 = true }
            finished.lock(); finished.broadcast(); finished.unlock()
        }
        thread.name = "nurture-ingest"
        thread.stackSize = 1 << 20
        thread.start()
        logger.info("ingest started", metadata: ["stream": "\(stream)", "batch": "\(options.batchSize)"])
    }

    /// Stops after the batch in hand (committed and acknowledged, or left pending for the next start). Blocking.
    public func stop() {
        if stopping.exchange(true, ordering: .relaxed) { return }
        finished.lock()
        while !done.withLock({ $0 }) { _ = finished.wait(until: Date().addingTimeInterval(0.05)) }
        finished.unlock()
        logger.info("ingest stopped", metadata: ["ingested": "\(ingested)", "duplicates": "\(duplicates)", "dead": "\(deadLettered)"])
    }

    // MARK: - Loop

    private struct Connections {
        var redis: RedisConnection?
        var db: PostgresConnection?
        /// The scoring/segment/lifecycle definitions, re-read when they change.
        let rules = BehaviourRulesCache()
        /// The workflows, templates and providers (triggers and exits are applied at ingestion).
        let workflows = WorkflowCatalogCache()
        mutating func dropRedis() { redis?.close(); redis = nil }
        mutating func dropDB() { db?.close(); db = nil }
    }

    private func loop() {
        var c = Connections()
        var failures = 0
        var lastClaim: Int64 = 0
        var lastClock: Int64 = 0
        let metrics = IngestMetrics()
        defer { c.redis?.close(); c.db?.close() }
        while !isStopping {
            do {
                if c.redis == nil {
                    c.redis = try RedisConnection(config: options.redis, logger: logger)
                    try ensureGroup(c.redis!)
                }
                let now = monotonicMilliseconds()
                if clock.timeTravelAllowed && now - lastClock >= 1_000 {
                    lastClock = now
                    do { try clock.refresh(from: try database(&c)) } catch { c.dropDB(); throw error }
                }
                var entries: [StreamEntry]
                if now - lastClaim >= options.claimEveryMilliseconds {
                    lastClaim = now
                    entries = try claimIdle(c.redis!)
                    if !entries.isEmpty {
                        logger.warning("claimed events pending for a stalled consumer", metadata: ["entries": "\(entries.count)"])
                    }
                } else {
                    entries = []
                }
                if entries.isEmpty { entries = try read(c.redis!) }
                failures = 0
                if entries.isEmpty { continue }
                process(entries, connections: &c, metrics: metrics)
            } catch {
                failures += 1
                if failures == 1 || failures % 30 == 0 {
                    logger.warning("ingest read failed; retrying with backoff", metadata: ["error": "\(error)", "failures": "\(failures)"])
                }
                if let e = error as? RedisError {
                    if e.serverCode == "NOGROUP" {
                        // The stream or group vanished (Redis flushed): recreate it.
                        if let r = c.redis { try? ensureGroup(r) }
                    } else if e.isTransient || e.kind == .unexpectedReply {
                        c.dropRedis()
                    }
                }
                pause(Int64(Backoff(baseMilliseconds: 100, capMilliseconds: 2_000).delay(attempt: failures)))
            }
        }
    }

    private func pause(_ ms: Int64) {
        var slept: Int64 = 0
        while slept < ms && !isStopping { let step = min(50, ms - slept); sleepMilliseconds(step); slept += step }
    }

    private func database(_ c: inout Connections) throws -> PostgresConnection {
        if let db = c.db, db.isConnected { return db }
        let db = try PostgresConnection(url: options.databaseURL)
        // Ingest statements touch a few hundred hot rows each by key: index probes, never scans. With the default
        // random_page_cost (4, tuned for spinning disks) the planner prefers hashing whole tables of up to a few
        // hundred thousand rows for a 500-row batch; and JIT compilation only adds latency to such statements.
        try db.simpleQuery("SET random_page_cost = 1.1; SET jit = off")
        c.db = db
        return db
    }

    /// `XGROUP CREATE ... 0 MKSTREAM` (a group already there is fine).
    func ensureGroup(_ redis: RedisConnection) throws {
        do {
            try redis.execute(RedisCommand("XGROUP", "CREATE", .string(stream), .string(IngestOptions.group), "0", "MKSTREAM"))
        } catch {
            if error.serverCode != "BUSYGROUP" { throw error }
        }
    }

    private func read(_ redis: RedisConnection) throws -> [StreamEntry] {
        let reply = try redis.execute(RedisCommand("XREADGROUP", "GROUP", .string(IngestOptions.group), .string(options.consumerName),
                                                   "COUNT", .int(Int64(options.batchSize)), "BLOCK", .int(options.blockMilliseconds),
                                                   "STREAMS", .string(stream), ">"),
                                      timeoutMilliseconds: options.blockMilliseconds + redis.config.commandTimeoutMilliseconds)
        guard let streams = reply.array, let first = streams.first?.array, first.count == 2, let list = first[1].array else { return [] }
        return list.compactMap(Self.entry)
    }

    /// XAUTOCLAIM entries idle longer than `claimIdleMilliseconds` from any consumer (up to one batch).
    private func claimIdle(_ redis: RedisConnection) throws -> [StreamEntry] {
        var cursor = "0-0"
        var out: [StreamEntry] = []
        var deleted: [String] = []
        repeat {
            let reply = try redis.execute(RedisCommand("XAUTOCLAIM", .string(stream), .string(IngestOptions.group), .string(options.consumerName),
                                                       .int(options.claimIdleMilliseconds), .string(cursor),
                                                       "COUNT", .int(Int64(options.batchSize - out.count))))
            guard let parts = reply.array, parts.count >= 2 else { break }
            cursor = parts[0].string ?? "0-0"
            out += (parts[1].array ?? []).compactMap(Self.entry)
            if parts.count >= 3 { deleted += (parts[2].array ?? []).compactMap(\.string) }
        } while cursor != "0-0" && out.count < options.batchSize
        if !deleted.isEmpty {
            // Entries deleted while pending (acknowledged elsewhere after a partial failure): just acknowledge.
            try redis.execute(RedisCommand("XACK", [.string(stream), .string(IngestOptions.group)] + deleted.map { .string($0) }))
        }
        return out
    }

    static func entry(_ reply: RedisReply) -> StreamEntry? {
        guard let parts = reply.array, parts.count == 2, let id = parts[0].string else { return nil }
        guard let fields = parts[1].array else { return StreamEntry(id: id, payload: nil, hasFields: false) }
        var payload: [UInt8]? = nil
        var index = 0
        while index + 1 < fields.count {
            if fields[index].string == "payload" { payload = fields[index + 1].bytes }
            index += 2
        }
        return StreamEntry(id: id, payload: payload, hasFields: true)
    }

    // MARK: - Batch

    private struct Parsed {
        var entry: StreamEntry
        var record: IngestRecord
        /// track/page: the event as conditions see it.
        var event: ExpressionEvent?
    }

    private struct DeadLetter {
        var entry: StreamEntry
        var reason: String
        var error: String
    }

    /// Parses, dead-letters, ingests and acknowledges one batch; retries (the batch stays pending) until it
    /// succeeds or the engine stops.
    private func process(_ entries: [StreamEntry], connections c: inout Connections, metrics: IngestMetrics) {
        var valid: [Parsed] = []
        var dead: [DeadLetter] = []
        for entry in entries where entry.hasFields {
            guard let payload = entry.payload else {
                dead.append(DeadLetter(entry: entry, reason: "entry has no payload field", error: "")); continue
            }
            do {
                let message = try SegmentMessage.parse(payload)
                let record = record(message, entryID: entry.id)
                let event = record.eventName.map {
                    ExpressionEvent(name: $0, properties: message.storedProperties, context: message.context, occurredAt: record.occurredAt)
                }
                valid.append(Parsed(entry: entry, record: record, event: event))
            } catch {
                dead.append(DeadLetter(entry: entry, reason: error.reason, error: ""))
            }
        }
        var attempt = 0
        var rejections = 0
        while true {
            do {
                if !dead.isEmpty {
                    try writeDeadLetters(dead, redis: try redisConnection(&c))
                    deadCount.add(dead.count, ordering: .relaxed)
                    metrics.dead.increment(by: Int64(dead.count))
                    dead = []
                }
                if !valid.isEmpty {
                    if rejections >= options.rejectionsBeforeBisect {
                        let (rejected, _) = try isolate(valid, connections: &c, metrics: metrics)
                        if !rejected.isEmpty {
                            try writeDeadLetters(rejected, redis: try redisConnection(&c))
                            deadCount.add(rejected.count, ordering: .relaxed)
                            metrics.dead.increment(by: Int64(rejected.count))
                        }
                    } else {
                        try ingest(valid, connections: &c, metrics: metrics)
                    }
                    valid = []
                }
                try acknowledge(entries.map(\.id), redis: try redisConnection(&c))
                return
            } catch {
                attempt += 1
                if let e = error as? PostgresError, !e.isTransient, e.kind == .server { rejections += 1 }
                if let e = error as? PostgresError, e.isTransient { c.dropDB() }
                if let e = error as? RedisError, e.isTransient { c.dropRedis() }
                if attempt == 1 || attempt % 20 == 0 {
                    logger.warning("ingest batch failed; retrying", metadata: ["error": "\(error)", "attempt": "\(attempt)",
                                                                               "entries": "\(entries.count)"])
                }
                if isStopping { return }   // stays pending: claimed again after restart
                pause(Int64(Backoff(baseMilliseconds: 100, capMilliseconds: 5_000).delay(attempt: attempt)))
            }
        }
    }

    private func redisConnection(_ c: inout Connections) throws -> RedisConnection {
        if let r = c.redis { return r }
        let r = try RedisConnection(config: options.redis, logger: logger)
        c.redis = r
        return r
    }

    private func ingest(_ items: [Parsed], connections c: inout Connections, metrics: IngestMetrics) throws {
        let db = try database(&c)
        let started = monotonicNanoseconds()
        let rules = try c.rules.current(on: db)
        let now = clock.now()
        var changes = BehaviourChanges()
        let catalog = try c.workflows.current(on: db)
        let result = try store.ingest(items.map(\.record), receivedAt: now, on: db) { result, db in
            changes = try BehaviourUpdate(rules: rules, catalog: catalog, now: now)
                .apply(items.map { BehaviourInput(record: $0.record, event: $0.event) }, result: result, on: db)
            // New enrollments get their first step job from here, after COMMIT; the lease keeps the scheduler off
            // them meanwhile (and hands them to it if that enqueue never happens).
            try EnrollmentStore().lease(changes.enrollments, seconds: WorkflowStepJob.leaseSeconds, on: db)
        }
        metrics.commit.recordNanoseconds(Int64(monotonicNanoseconds() - started))
        if !changes.enrollments.isEmpty {
            do {
                let redis = try redisConnection(&c)
                _ = try JobQueue(namespace: options.namespace).enqueue(WorkflowStepJob.jobs(changes.enrollments.map { .init(enrollment: $0, seq: 0) }, atMilliseconds: Int64(now.timeIntervalSince1970 * 1000)), on: redis)
            } catch {
                logger.warning("could not enqueue first workflow steps; the scheduler will", metadata: ["error": "\(error)", "enrollments": "\(changes.enrollments.count)"])
            }
        }
        if !changes.stageChanges.isEmpty || !changes.segments.isEmpty {
            metrics.stageChanges.increment(by: Int64(changes.stageChanges.count))
            for (segment, c) in changes.segments {
                logger.debug("segment changed", metadata: ["segment": "\(segment)", "entered": "\(c.entered.count)", "exited": "\(c.exited.count)"])
            }
        }
        ingestedCount.add(result.newCount, ordering: .relaxed)
        duplicateCount.add(result.duplicateCount, ordering: .relaxed)
        metrics.ingested.increment(by: Int64(result.newCount))
        metrics.duplicate.increment(by: Int64(result.duplicateCount))
    }

    /// Bisects a batch PostgreSQL rejects: halves that commit are done (idempotent if retried), single
    /// messages still rejected are returned as dead letters with the PostgreSQL error. Transient errors throw.
    private func isolate(_ items: [Parsed], connections c: inout Connections, metrics: IngestMetrics) throws -> ([DeadLetter], Int) {
        do {
            try ingest(items, connections: &c, metrics: metrics)
            return ([], items.count)
        } catch {
            guard let e = error as? PostgresError, !e.isTransient, e.kind == .server else { throw error }
            if items.count == 1 {
                logger.error("event rejected by PostgreSQL; dead-lettered", metadata: ["entry": "\(items[0].entry.id)", "error": "\(e)"])
                return ([DeadLetter(entry: items[0].entry, reason: "rejected by PostgreSQL", error: "\(e)")], 0)
            }
            let middle = items.count / 2
            let (a, _) = try isolate(Array(items[..<middle]), connections: &c, metrics: metrics)
            let (b, _) = try isolate(Array(items[middle...]), connections: &c, metrics: metrics)
            return (a + b, 0)
        }
    }

    private func writeDeadLetters(_ letters: [DeadLetter], redis: RedisConnection) throws {
        let died = JobQueue.wallClockMilliseconds()
        var commands: [RedisCommand] = []
        for letter in letters {
            var payload = letter.entry.payload ?? []
            if payload.count > SegmentMessage.maxPayloadBytes { payload = Array(payload.prefix(SegmentMessage.maxPayloadBytes)) }
            let record: [String: String] = [
                "queue": IngestOptions.deadQueue, "jid": letter.entry.id, "kind": "event",
                "payload": String(decoding: payload, as: UTF8.self), "reason": letter.reason, "err": letter.error,
                "died_at": String(died), "attempt": "1",
            ]
            let json = (try? JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            commands.append(RedisCommand("HSET", .string(keys.dead(IngestOptions.deadQueue)), .string(letter.entry.id), .string(json)))
            commands.append(RedisCommand("ZADD", .string(keys.deadIndex(IngestOptions.deadQueue)), .int(died), .string(letter.entry.id)))
            logger.warning("event dead-lettered", metadata: ["entry": "\(letter.entry.id)", "reason": "\(letter.reason)"])
        }
        // Listed among the queues, so `nurture queues` and `nurture dlq list` show event dead letters.
        commands.append(RedisCommand("SADD", .string(keys.queues), .string(IngestOptions.deadQueue)))
        for reply in try redis.pipeline(commands) { try reply.orThrow() }
    }

    private func acknowledge(_ ids: [String], redis: RedisConnection) throws {
        let args = ids.map { RedisArgument.string($0) }
        let replies = try redis.pipeline([
            RedisCommand("XACK", [.string(stream), .string(IngestOptions.group)] + args),
            RedisCommand("XDEL", [.string(stream)] + args),
        ])
        for reply in replies { try reply.orThrow() }
    }

    /// The store's form of a message; a missing messageId comes from the entry id, a missing timestamp from the
    /// entry id's time on the installation clock.
    func record(_ m: SegmentMessage, entryID: String) -> IngestRecord {
        let derived = m.derived
        let entryMs = Int64(entryID.split(separator: "-").first ?? "") ?? clock.nowMilliseconds()
        let occurred = m.timestamp ?? Date(timeIntervalSince1970: Double(entryMs + clock.offsetMilliseconds) / 1000)
        let identify = m.type == .identify
        return IngestRecord(
            messageId: m.messageId ?? "stream:\(entryID)", type: m.type.rawValue, userId: m.userId, anonymousId: m.anonymousId,
            previousId: m.previousId, eventName: m.eventName, propertiesJSON: m.storedProperties.jsonText,
            contextJSON: m.context.jsonText, traitsJSON: identify && m.traits != .object([:]) ? m.traits.jsonText : nil,
            email: identify ? derived.email : nil, emailSHA256: identify ? derived.emailSHA256 : nil,
            phone: identify ? derived.phone : nil, timezone: derived.timezone,
            utmSource: derived.utmSource, utmMedium: derived.utmMedium, deviceType: derived.deviceType, occurredAt: occurred)
    }
}

/// Metric handles, created once per engine thread.
final class IngestMetrics: Sendable {
    let ingested = Counter(label: "nurture_events_ingested_total")
    let duplicate = Counter(label: "nurture_events_duplicate_total")
    let dead = Counter(label: "nurture_events_dead_total")
    let commit = Metrics.Timer(label: "nurture_events_batch_commit_seconds")
    let stageChanges = Counter(label: "nurture_lifecycle_transitions_total")
}
