import Foundation
import JobQueue
import NurtureCore
import Redis
import Runtime
import Synchronization
import TestSupport

/// One test's private job system: a unique namespace on a Redis server (the shared one from `ops/test` unless a
/// URL is given), a connection for the test's own calls, and a few readers of the raw keys.
struct QueueHarness {
    let url: String
    let namespace: String
    let queue: JobQueue
    let redis: RedisConnection

    init(url: String? = nil, prefix: String = "jq") throws {
        self.url = try url ?? TestEnvironment.redisURL()
        self.namespace = TestEnvironment.uniqueName(prefix)
        self.queue = JobQueue(namespace: namespace)
        self.redis = try RedisConnection(url: self.url)
    }

    /// A new connection (for a second thread or consumer).
    func connect() throws -> RedisConnection { try RedisConnection(url: url) }

    func stats(_ name: String = "default") throws -> QueueStats {
        guard let s = try queue.stats(on: redis).first(where: { $0.queue == name }) else {
            throw HarnessError("no stats for queue \(name) in namespace \(namespace)")
        }
        return s
    }

    func streamLength(_ name: String = "default") throws -> Int {
        Int(try redis.execute(RedisCommand("XLEN", .string(queue.keys.stream(name)))).int ?? -1)
    }

    /// The `jid` field of every entry of a queue's stream, in stream order (paged XRANGE).
    func streamJobIDs(_ name: String = "default") throws -> [String] {
        var out: [String] = []
        var start = "-"
        while true {
            let page = try redis.execute(RedisCommand("XRANGE", .string(queue.keys.stream(name)), .string(start), "+", "COUNT", 1000)).array ?? []
            if page.isEmpty { break }
            for entry in page {
                guard let pair = entry.array, pair.count == 2, let fields = pair[1].array else { continue }
                var i = 0
                while i + 1 < fields.count {
                    if fields[i].string == "jid", let v = fields[i + 1].string { out.append(v) }
                    i += 2
                }
            }
            guard let last = page.last?.array?.first?.string else { break }
            start = "(" + last
        }
        return out
    }

    /// Members (JSON records) and scores of a queue's delayed set.
    func delayed(_ name: String = "default") throws -> [(record: [String: Any], dueAt: Int64)] {
        let flat = try redis.execute(RedisCommand("ZRANGE", .string(queue.keys.delayed(name)), 0, -1, "WITHSCORES")).array ?? []
        var out: [(record: [String: Any], dueAt: Int64)] = []
        var i = 0
        while i + 1 < flat.count {
            let text = flat[i].string ?? ""
            let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] ?? [:]
            out.append((object, Int64(Double(flat[i + 1].string ?? "") ?? -1)))
            i += 2
        }
        return out
    }

    /// Redis server time in ms.
    func serverMilliseconds() throws -> Int64 {
        let parts = try redis.execute("TIME").array ?? []
        return (parts.first?.string.flatMap { Int64($0) } ?? 0) * 1000 + (parts.count > 1 ? parts[1].string.flatMap { Int64($0) } ?? 0 : 0) / 1000
    }

    /// Pending entries per consumer of a queue's group.
    func pendingByConsumer(_ name: String = "default") throws -> [String: Int] {
        let reply = try redis.pipeline([RedisCommand("XPENDING", .string(queue.keys.stream(name)), .string(QueueKeys.group))])
        guard let parts = reply.first?.array, parts.count == 4, let consumers = parts[3].array else { return [:] }
        var out: [String: Int] = [:]
        for c in consumers {
            guard let pair = c.array, pair.count == 2, let name = pair[0].string else { continue }
            out[name] = Int(pair[1].string ?? "") ?? Int(pair[1].int ?? 0)
        }
        return out
    }

    /// Pending entries per worker process (its slots consume as `<worker>#<slot>`).
    func pendingByWorker(_ name: String = "default") throws -> [String: Int] {
        var out: [String: Int] = [:]
        for (consumer, n) in try pendingByConsumer(name) {
            var worker = Substring(consumer)
            if let hash = consumer.lastIndex(of: "#"), consumer[consumer.index(after: hash)...].allSatisfy(\.isNumber) {
                worker = consumer[..<hash]
            }
            out[String(worker), default: 0] += n
        }
        return out
    }

    func cleanUp() { try? queue.destroy(on: redis) }

    func workerOptions(concurrency: Int, queues: [String] = ["default"]) throws -> WorkerOptions {
        var o = WorkerOptions()
        o.namespace = namespace
        o.redis = try RedisConfig(url: url)
        o.concurrency = concurrency
        o.queues = queues
        o.consumerName = TestEnvironment.uniqueName("worker")
        o.fetchBlockMilliseconds = 200
        o.gracePeriodMilliseconds = 10_000
        o.databaseURL = (try? TestEnvironment.databaseURL()) ?? o.databaseURL
        return o
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A mutex-guarded value that escaping closures (threads) can share.
final class Shared<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
    var value: Value { mutex.withLock { $0 } }
}

/// Thread-safe tally of job ids a handler saw.
final class Recorder: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func record(_ id: String) { counts.withLock { $0[id, default: 0] += 1 } }

    var snapshot: [String: Int] { counts.withLock { $0 } }
    var runs: Int { counts.withLock { $0.values.reduce(0, +) } }
    var distinct: Int { counts.withLock { $0.count } }
    func count(_ id: String) -> Int { counts.withLock { $0[id] ?? 0 } }
    func contains(_ id: String) -> Bool { counts.withLock { $0[id] != nil } }

    /// Ids seen more than once.
    var duplicates: [String: Int] { counts.withLock { $0.filter { $0.value > 1 } } }
    func missing(from expected: some Sequence<String>) -> [String] {
        let seen = snapshot
        return expected.filter { seen[$0] == nil }
    }
}

/// Polls `condition` (a few Redis calls at most) until it holds or `seconds` pass; sleeps without blocking the
/// cooperative pool. Returns whether it held.
func eventually(within seconds: Double, every pollMilliseconds: UInt64 = 50, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = monotonicMilliseconds() + Int64(seconds * 1000)
    while true {
        if try condition() { return true }
        if monotonicMilliseconds() >= deadline { return false }
        try await Task.sleep(nanoseconds: pollMilliseconds * 1_000_000)
    }
}

/// Runs `body(index)` on `count` dedicated OS threads at once (blocking Redis calls never sit on the cooperative
/// pool) and waits for all of them; rethrows the first error.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) async throws {
    let errors = Shared<[String]>([])
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            defer { group.leave() }
            do { try body(index) } catch { errors.withLock { $0.append("thread \(index): \(error)") } }
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        group.notify(queue: .global()) { continuation.resume() }
    }
    let failures = errors.value
    if !failures.isEmpty { throw HarnessError(failures.joined(separator: "; ")) }
}

/// Runs one blocking call (engine stop, server restart) on its own thread.
func blocking(_ body: @escaping @Sendable () throws -> Void) async throws {
    try await onThreads(1) { _ in try body() }
}

func plainJobs(_ count: Int, kind: String = "noop", queue: String = "default", prefix: String = "job") -> [NewJob] {
    (0..<count).map { NewJob(kind: kind, payload: "{\"n\":\($0)}", queue: queue, id: "\(prefix)-\($0)") }
}
