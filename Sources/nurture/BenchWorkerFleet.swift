import Foundation
import JobQueue
import NurtureCore
import Redis

/// `nurture worker` processes of a benchmark (children of this binary) on its private Redis and scratch schema:
/// started, waited for until every one has registered, stopped with SIGTERM (SIGKILL after 30 s).
final class BenchWorkerFleet {
    let children: [ChildProcess]
    let scratch: String

    /// - Parameters:
    ///   - queue: the one queue the workers take jobs from (`default` for workflow steps, `bulk` for broadcasts).
    ///   - scratch: where each worker's log goes (`worker-N.log`).
    init(count: Int, concurrency: Int, queue: String, namespace: String, redisURL: String, databaseURL: String, secret: String,
         scratch: String) throws {
        self.scratch = scratch
        var env = ProcessInfo.processInfo.environment
        env["NURTURE_REDIS_URL"] = redisURL
        env["NURTURE_DATABASE_URL"] = databaseURL
        env["NURTURE_NAMESPACE"] = namespace
        env["NURTURE_LOG_LEVEL"] = "warning"
        env["NURTURE_SECRET"] = secret
        env.removeValue(forKey: "NURTURE_METRICS_PORT")
        env.removeValue(forKey: "NURTURE_ALLOW_TIME_TRAVEL")
        var children: [ChildProcess] = []
        do {
            for i in 0..<count {
                children.append(try ChildProcess(executable: ownExecutable(),
                                                 arguments: ["worker", "--no-ingest", "--queues", queue, "--concurrency", "\(concurrency)"],
                                                 environment: env, stderrPath: scratch + "/worker-\(i + 1).log"))
            }
        } catch {
            Self.stop(children)
            throw error
        }
        self.children = children
        let redis = try RedisConnection(url: redisURL)
        defer { redis.close() }
        let workersKey = JobQueue(namespace: namespace).keys.workers
        let deadline = monotonicMilliseconds() + 30_000
        while (try redis.execute(RedisCommand("ZCARD", .string(workersKey))).int ?? 0) < count {
            if monotonicMilliseconds() > deadline {
                stop()
                throw UserError("workers did not start in 30 s: \(logTails())")
            }
            sleepMilliseconds(20)
        }
    }

    var pids: [Int32] { children.map(\.pid) }

    /// The last lines of every worker's log (for errors).
    func logTails(lines: Int = 5) -> String {
        (1...max(1, children.count)).map { i in
            let text = (try? String(contentsOfFile: scratch + "/worker-\(i).log", encoding: .utf8)) ?? ""
            return "worker \(i): " + text.split(separator: "\n").suffix(lines).joined(separator: "\n")
        }.joined(separator: "\n")
    }

    /// SIGTERM to all (they finish or hand back their jobs), then waits; SIGKILL for any still running after 30 s.
    func stop() { Self.stop(children) }

    private static func stop(_ children: [ChildProcess]) {
        for w in children where w.isRunning { w.signal(SIGTERM) }
        for w in children where !w.wait(milliseconds: 30_000) { w.signal(SIGKILL); w.wait() }
    }
}
