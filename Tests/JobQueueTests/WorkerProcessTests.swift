import Foundation
import JobQueue
import NurtureCore
import Redis
import Testing
import TestSupport

/// The built `nurture` binary: `NURTURE_BINARY`, else `<repo>/.build/debug/nurture`, else
/// `<repo>/.build-jq/debug/nurture`. Missing is a failure, never a skip.
enum NurtureBinary {
    static var repositoryRoot: String {
        // <repo>/Tests/JobQueueTests/WorkerProcessTests.swift
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    static func path() throws -> String {
        let candidates = [ProcessInfo.processInfo.environment["NURTURE_BINARY"],
                          repositoryRoot + "/.build/debug/nurture",
                          repositoryRoot + "/.build-jq/debug/nurture"].compactMap { $0 }.filter { !$0.isEmpty }
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw HarnessError("the nurture binary is missing (looked at \(candidates.joined(separator: ", "))): build it with `swift build` (ops/test does)")
    }
}

/// A `nurture` child process on a test's namespace, logging to a file the failure messages quote.
final class NurtureProcess {
    let child: ChildProcess
    let logPath: String
    let arguments: [String]

    init(_ arguments: [String], harness h: QueueHarness, name: String) throws {
        let binary = try NurtureBinary.path()
        logPath = TestEnvironment.scratchDirectory + "/\(h.namespace)-\(name).log"
        self.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NURTURE_REDIS_URL"] = h.url
        environment["NURTURE_NAMESPACE"] = h.namespace
        environment["NURTURE_DATABASE_URL"] = (try? TestEnvironment.databaseURL()) ?? "postgres://127.0.0.1:5432/nurture"
        environment["NURTURE_LOG_LEVEL"] = "info"
        environment["NURTURE_METRICS_PORT"] = String(TestEnvironment.freePort())
        child = try ChildProcess(executable: binary, arguments: arguments, environment: environment, stdoutPath: logPath)
    }

    var pid: pid_t { child.pid }
    var isRunning: Bool { child.isRunning }

    /// The last lines of the log, for failure messages.
    func logTail(_ lines: Int = 15) -> String {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "(no log at \(logPath))"
        return "nurture \(arguments.joined(separator: " ")) log tail:\n" + text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// SIGTERM, then SIGKILL if it does not exit in time. Returns whether it exited on its own.
    @discardableResult
    func terminate(waitMilliseconds: Int = 30_000) -> Bool {
        child.signal(SIGTERM)
        if child.wait(milliseconds: waitMilliseconds) { return true }
        child.signal(SIGKILL)
        child.wait()
        return false
    }

    deinit {
        if child.isRunning { child.signal(SIGKILL); child.wait() }
    }
}

/// Worker and scheduler processes, killed and signalled: serialized (they compete for two cores and measure time).
@Suite(.serialized) struct WorkerProcessTests {
    /// Waits until a worker process with this pid holds a lease, and returns its consumer name.
    func consumerName(of process: NurtureProcess, _ h: QueueHarness) async throws -> String {
        var name: String?
        let registered = try await eventually(within: 30, every: 50) {
            name = try h.queue.workers(on: h.redis).first(where: { $0.info["pid"] == String(process.pid) })?.name
            return name != nil || !process.isRunning
        }
        guard registered, let name else { throw HarnessError("worker pid \(process.pid) never registered\n\(process.logTail())") }
        return name
    }

    @Test func sigkilledWorkersJobsAreReclaimedAndFinishedByAnother() async throws {
        let h = try QueueHarness(prefix: "kill")
        defer { h.cleanUp() }
        let first = try NurtureProcess(["worker", "--concurrency", "2", "--queues", "default"], harness: h, name: "worker1")
        let firstName = try await consumerName(of: first, h)
        try h.queue.enqueue((0..<4).map { NewJob(kind: "sleep", payload: "{\"ms\":3000}", id: "sleep-\($0)") }, on: h.redis)
        let busy = try await eventually(within: 30) { (try h.pendingByWorker()[firstName] ?? 0) >= 2 }
        #expect(busy, "worker 1 never took two jobs\n\(first.logTail())")
        let killedAt = monotonicMilliseconds()
        first.child.signal(SIGKILL)
        first.child.wait()
        #expect(try h.pendingByWorker()[firstName] == 2, "the killed worker's jobs are stuck in flight")

        let second = try NurtureProcess(["worker", "--concurrency", "2", "--queues", "default"], harness: h, name: "worker2")
        _ = try await consumerName(of: second, h)
        // Reclaimed once the dead worker's 5 s lease runs out (and a live worker's reclaim pass sees it).
        let reclaimed = try await eventually(within: 30) { try h.pendingByWorker()[firstName] == nil }
        let reclaimAfter = monotonicMilliseconds() - killedAt
        print("SIGKILL: dead worker's jobs reclaimed \(reclaimAfter) ms after the kill")
        #expect(reclaimed, "\(second.logTail())")
        #expect(reclaimAfter <= 10_000, "first reclaim \(reclaimAfter) ms after the kill")
        let finished = try await eventually(within: 60, every: 100) { try h.stats().processed == 4 }
        let s = try h.stats()
        #expect(finished, "stats \(s)\n\(second.logTail())")
        #expect(s.processed == 4 && s.depth == 0 && s.inFlight == 0 && s.dead == 0 && s.delayed == 0, "\(s)")
        #expect(second.terminate(), "worker 2 did not stop on SIGTERM\n\(second.logTail())")
        #expect(second.child.exitCode == 0)
    }

    @Test func sigtermDrainsAndExitsCleanly() async throws {
        let h = try QueueHarness(prefix: "term")
        defer { h.cleanUp() }
        let total = 40
        let worker = try NurtureProcess(["worker", "--concurrency", "2", "--queues", "default"], harness: h, name: "worker")
        _ = try await consumerName(of: worker, h)
        // 1 s jobs: 40 of them take 20 s on 2 slots, so a loaded machine still signals long before the end.
        try h.queue.enqueue((0..<total).map { NewJob(kind: "sleep", payload: "{\"ms\":1000}", id: "s-\($0)") }, on: h.redis)
        let running = try await eventually(within: 30) { try h.stats().processed >= 4 }
        #expect(running, "\(worker.logTail())")
        worker.child.signal(SIGTERM)
        // Grace is 25 s by default; 1 s jobs finish long before.
        let exited = worker.child.wait(milliseconds: 30_000)
        #expect(exited, "still running 30 s after SIGTERM\n\(worker.logTail())")
        if !exited { worker.child.signal(SIGKILL); worker.child.wait() }
        #expect(worker.child.exitCode == 0, "exit status \(worker.child.exitStatus ?? -1)\n\(worker.logTail())")
        let s = try h.stats()
        print("SIGTERM: exited \(worker.child.exitCode.map(String.init) ?? "?") with \(s.processed) processed, \(s.depth) handed back / waiting")
        #expect(s.inFlight == 0, "\(s)")
        #expect(s.depth + s.processed == total, "\(s)")
        #expect(s.processed < total, "SIGTERM came after everything was done: the test proves nothing (\(s))")
        #expect(s.dead == 0 && s.delayed == 0)
        #expect(try h.queue.workers(on: h.redis).isEmpty, "lease removed at clean shutdown")
    }

    @Test func threeSchedulersPromoteEachDelayedJobOnce() async throws {
        let h = try QueueHarness(prefix: "sched")
        defer { h.cleanUp() }
        let schedulers = try (0..<3).map { try NurtureProcess(["scheduler", "--no-periodic"], harness: h, name: "scheduler\($0)") }
        try await Task.sleep(nanoseconds: 1_000_000_000)
        for s in schedulers { #expect(s.isRunning, "scheduler exited at start\n\(s.logTail())") }
        let total = 5000
        let jobs = (0..<total).map { NewJob(kind: "noop", delayMilliseconds: 1_000, id: "p-\($0)") }
        try h.queue.enqueue(jobs, on: h.redis)
        let promoted = try await eventually(within: 60, every: 100) { try h.stats().delayed == 0 }
        #expect(promoted, "stats \((try? h.stats()).map { "\($0)" } ?? "-")\n\(schedulers[0].logTail())")
        // A double promotion would show up as extra entries: give stragglers a moment.
        try await Task.sleep(nanoseconds: 500_000_000)
        let ids = try h.streamJobIDs()
        #expect(ids.count == total, "stream holds \(ids.count) entries for \(total) jobs")
        #expect(Set(ids).count == total, "duplicates: \(ids.count - Set(ids).count)")
        #expect(Set(ids) == Set(jobs.compactMap(\.id)))
        for s in schedulers {
            #expect(s.isRunning, "a scheduler died during the run\n\(s.logTail())")
            #expect(s.terminate(), "scheduler did not stop on SIGTERM\n\(s.logTail())")
            #expect(s.child.exitCode == 0)
        }
    }

    @Test func rateLimitHoldsAcrossThreeWorkerProcesses() async throws {
        let h = try QueueHarness(prefix: "rate")
        defer { h.cleanUp() }
        let workers = try (0..<3).map { try NurtureProcess(["worker", "--concurrency", "4", "--queues", "default"], harness: h, name: "worker\($0)") }
        for w in workers { _ = try await consumerName(of: w, h) }
        let total = 300
        let limit = RateLimit(key: TestEnvironment.uniqueName("provider"), perSecond: 50)
        try h.queue.enqueue((0..<total).map { NewJob(kind: "noop", rateLimit: limit, id: "n-\($0)") }, on: h.redis)
        let started = monotonicMilliseconds()
        var samples: [(ms: Int64, processed: Int)] = []
        let finished = try await eventually(within: 60, every: 50) {
            let p = try h.stats().processed
            samples.append((monotonicMilliseconds() - started, p))
            return p >= total
        }
        #expect(finished, "processed \(samples.last?.processed ?? 0) of \(total)\n\(workers[0].logTail())")
        // Steady state: from the first sample past 10 % to the last sample below 90 % (the burst of 5 and the
        // tail excluded).
        guard let from = samples.first(where: { $0.processed >= total / 10 }),
              let to = samples.last(where: { $0.processed <= total * 9 / 10 }), to.ms > from.ms else {
            Issue.record("not enough samples: \(samples)")
            return
        }
        let rate = Double(to.processed - from.processed) / (Double(to.ms - from.ms) / 1000)
        print("rate limit across 3 workers: \(rate)/s steady (\(from.processed)→\(to.processed) in \(to.ms - from.ms) ms), total \(samples.last?.ms ?? 0) ms")
        #expect(abs(rate - 50) <= 5, "steady rate \(rate)/s between \(from) and \(to)")
        let s = try h.stats()
        #expect(s.processed == total && s.dead == 0 && s.inFlight == 0 && s.depth == 0, "\(s)")
        for w in workers { #expect(w.terminate(), "\(w.logTail())") }
        RedisKeyCleanup.delete(h.queue.keys.rateBucket(limit.key), on: h.redis)
    }
}
