import Foundation
import JobQueue
import NurtureCore
import Redis
import Runtime
import Synchronization
import Testing
import TestSupport

/// The worker engine in-process, with handlers that record what ran.
@Suite struct WorkerEngineTests {
    static let clock = InstallationClock(timeTravelAllowed: false)

    @Test func fiveThousandJobsRunExactlyOnceWhilePoisonAndUnknownKindsAreDeadLettered() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let recorder = Recorder()
        var registry = JobHandlerRegistry()
        registry.register("record") { context in recorder.record(context.job.id) }
        registry.register("fail") { context in
            throw JobFailure.retryAfter(milliseconds: 50, "poison attempt \(context.job.attempt)")
        }
        let total = 5000
        var expected: [String] = []
        for chunk in stride(from: 0, to: total, by: 1000) {
            let jobs = (chunk..<min(total, chunk + 1000)).map { NewJob(kind: "record", payload: "{}", id: "r-\($0)") }
            expected += jobs.compactMap(\.id)
            try h.queue.enqueue(jobs, on: h.redis)
            if chunk == 0 {
                try h.queue.enqueue([NewJob(kind: "fail", maxAttempts: 3, id: "poison"),
                                     NewJob(kind: "mystery", maxAttempts: 5, id: "unknown")], on: h.redis)
            }
        }
        let engine = WorkerEngine(options: try h.workerOptions(concurrency: 4), registry: registry, clock: Self.clock)
        try engine.start()
        defer { engine.stop() }   // no-op after a normal stop; stops the threads when the test throws
        let done = try await eventually(within: 120, every: 100) {
            try recorder.distinct >= total && h.stats().dead >= 2
        }
        try await blocking { engine.stop() }
        #expect(done, "recorded \(recorder.distinct) of \(total); stats \((try? h.stats()).map { "\($0)" } ?? "-")")
        #expect(recorder.missing(from: expected).isEmpty, "missing \(recorder.missing(from: expected).prefix(10))")
        #expect(recorder.duplicates.isEmpty, "ran more than once: \(recorder.duplicates.prefix(10))")
        #expect(recorder.runs == total)

        let dead = Dictionary(uniqueKeysWithValues: try h.queue.deadLetters(on: h.redis).map { ($0.id, $0) })
        #expect(dead.count == 2)
        #expect(dead["poison"]?.reason == "failed 3 of 3 attempts")
        #expect(dead["poison"]?.lastError == "poison attempt 3 (retry in 50 ms)" || dead["poison"]?.lastError == "poison attempt 3")
        #expect(dead["poison"]?.attempts == 3)
        #expect(dead["unknown"]?.reason.contains("unknown job kind \"mystery\"") == true, "\(dead["unknown"]?.reason ?? "-")")
        let s = try h.stats()
        #expect(s.processed == total)
        #expect(s.depth == 0 && s.inFlight == 0 && s.delayed == 0)
        #expect(s.retried == 2)
        #expect(engine.processed == total)
        #expect(try h.queue.workers(on: h.redis).isEmpty, "the lease is removed at stop")
    }

    @Test func stopLetsRunningJobsFinishAndHandsBackTheRest() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let started = Recorder(), finished = Recorder(), fast = Recorder()
        var registry = JobHandlerRegistry()
        registry.register("noop") { context in fast.record(context.job.id) }
        registry.register("sleep") { context in
            started.record(context.job.id)
            Thread.sleep(forTimeInterval: 0.3)
            finished.record(context.job.id)
        }
        // Fast jobs first, so the slots' adaptive prefetch grows and a batch reaches into the slow ones.
        // Plenty of slow work (60 s for two slots) so jobs are still waiting at stop even when the test's own
        // polling is starved by other suites on a loaded 2-core machine.
        let fastCount = 150, slowCount = 400
        try h.queue.enqueue(plainJobs(fastCount, kind: "noop", prefix: "fast"), on: h.redis)
        try h.queue.enqueue((0..<slowCount).map { NewJob(kind: "sleep", payload: "{\"ms\":300}", id: "slow-\($0)") }, on: h.redis)
        var options = try h.workerOptions(concurrency: 2)
        options.gracePeriodMilliseconds = 10_000
        let engine = WorkerEngine(options: options, registry: registry, clock: Self.clock)
        try engine.start()
        defer { engine.stop() }   // no-op after a normal stop; stops the threads when the test throws
        #expect(try await eventually(within: 30, every: 20) { started.distinct >= 2 })
        let pendingBefore = try h.stats().inFlight
        let stopStarted = monotonicMilliseconds()
        try await blocking { engine.stop() }
        let stopTook = monotonicMilliseconds() - stopStarted
        // In-flight runs finished within the grace period (never cut short), the rest went back.
        #expect(started.snapshot.keys.sorted() == finished.snapshot.keys.sorted(), "every started job finished")
        #expect(stopTook < 10_000, "stop took \(stopTook) ms")
        let s = try h.stats()
        #expect(s.inFlight == 0, "nothing left pending: \(s)")
        #expect(s.processed == fast.distinct + finished.distinct)
        #expect(s.depth + s.processed == fastCount + slowCount, "\(s)")
        #expect(s.depth > 0)
        #expect(s.dead == 0 && s.delayed == 0)
        #expect(pendingBefore >= 1, "\(pendingBefore) in flight at stop")
        // Everything left is fetchable right away (handed back, not stuck in a dead consumer).
        let rest = try h.queue.fetch(queues: ["default"], consumer: "next", count: 1000, blockMilliseconds: 0, on: h.redis)
        #expect(rest.count == s.depth)
        #expect(Set(rest.map(\.id)).isDisjoint(with: Set(finished.snapshot.keys)))
        #expect(Set(rest.map(\.id)).isDisjoint(with: Set(fast.snapshot.keys)))
    }

    @Test func watchdogFailsJobsThatOverrunTheirTimeout() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let runs = Recorder(), cancelled = Recorder(), quick = Recorder()
        var registry = JobHandlerRegistry()
        registry.register("slow") { context in
            runs.record(context.job.id)
            // Much longer than its timeout; stops early once the watchdog cancels it.
            let deadline = monotonicMilliseconds() + 5_000
            while monotonicMilliseconds() < deadline && !context.isCancelled { Thread.sleep(forTimeInterval: 0.02) }
            if context.isCancelled { cancelled.record(context.job.id) }
        }
        registry.register("quick") { context in quick.record(context.job.id) }
        try h.queue.enqueue([NewJob(kind: "slow", maxAttempts: 2, timeoutMilliseconds: 300, id: "slow")], on: h.redis)
        var options = try h.workerOptions(concurrency: 1)
        options.heartbeatMilliseconds = 200
        let engine = WorkerEngine(options: options, registry: registry, clock: Self.clock)
        try engine.start()
        defer { engine.stop() }   // no-op after a normal stop; stops the threads when the test throws
        // First run times out → retried with backoff (≤ 1 s) → promoted by the heartbeat → times out → dead.
        let dead = try await eventually(within: 20, every: 100) { try h.stats().dead == 1 }
        // The replaced slot keeps working.
        try h.queue.enqueue([NewJob(kind: "quick", id: "after")], on: h.redis)
        let ranAfter = try await eventually(within: 10) { quick.contains("after") }
        try await blocking { engine.stop() }
        #expect(dead, "stats: \((try? h.stats()).map { "\($0)" } ?? "-")")
        #expect(ranAfter)
        #expect(runs.count("slow") == 2)
        #expect(cancelled.count("slow") == 2, "the handler saw isCancelled")
        let letter = try #require(try h.queue.deadLetters(on: h.redis).first)
        #expect(letter.id == "slow")
        #expect(letter.reason == "failed 2 of 2 attempts")
        #expect(letter.lastError.contains("timed out after 300 ms"), "\(letter.lastError)")
        #expect(engine.stuck >= 2)
        let s = try h.stats()
        #expect(s.processed == 1, "only the quick job counts as processed: \(s)")
        #expect(s.inFlight == 0 && s.depth == 0 && s.delayed == 0)
    }

    @Test func schedulerEnginePromotesDelayedJobsForTheWorker() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let recorder = Recorder()
        var registry = JobHandlerRegistry()
        registry.register("record") { context in recorder.record(context.job.id) }
        try h.queue.enqueue((0..<50).map { NewJob(kind: "record", delayMilliseconds: 300, id: "later-\($0)") }, on: h.redis)
        var schedulerOptions = SchedulerOptions()
        schedulerOptions.namespace = h.namespace
        schedulerOptions.redis = try RedisConfig(url: h.url)
        schedulerOptions.runPeriodicTasks = false
        let scheduler = SchedulerEngine(options: schedulerOptions, tasks: [], clock: Self.clock)
        try scheduler.start()
        defer { scheduler.stop() }
        let engine = WorkerEngine(options: try h.workerOptions(concurrency: 2), registry: registry, clock: Self.clock)
        try engine.start()
        defer { engine.stop() }   // no-op after a normal stop; stops the threads when the test throws
        let done = try await eventually(within: 20) { recorder.distinct == 50 }
        try await blocking { engine.stop(); scheduler.stop() }
        #expect(done)
        #expect(recorder.duplicates.isEmpty)
        #expect(scheduler.promotedCount.load(ordering: .relaxed) <= 50)
        #expect(try h.stats().processed == 50)
    }
}

/// Kills the Redis server under a running worker: serialized, it owns a private server and takes seconds.
@Suite(.serialized) struct WorkerEngineRedisRestartTests {
    @Test func jobsSurviveARedisRestartMidRun() async throws {
        let server = try RedisServerProcess(appendOnly: true)
        let h = try QueueHarness(url: server.url)
        defer { h.cleanUp() }
        let recorder = Recorder()
        var registry = JobHandlerRegistry()
        // Once 400 jobs ran, handlers wait at a gate until the restart is done: the restart lands mid-run however
        // slowly this test's own polling is scheduled (no timing assumption), with jobs in flight during the outage.
        let gate = Shared<Bool>(true)
        registry.register("record") { context in
            recorder.record(context.job.id)
            while gate.value && recorder.distinct >= 400 { Thread.sleep(forTimeInterval: 0.005) }
            Thread.sleep(forTimeInterval: 0.001)
        }
        let initial = 2000
        var expected = Set<String>()
        for chunk in stride(from: 0, to: initial, by: 500) {
            let jobs = (chunk..<min(initial, chunk + 500)).map { NewJob(kind: "record", id: "pre-\($0)") }
            let ids = try h.queue.enqueue(jobs, on: h.redis)
            expected.formUnion(ids.compactMap { $0 })
        }
        #expect(expected.count == initial)

        var options = try h.workerOptions(concurrency: 4)
        options.leaseMilliseconds = 10_000   // the outage must not look like a dead worker
        let engine = WorkerEngine(options: options, registry: registry, clock: WorkerEngineTests.clock)
        try engine.start()
        defer { engine.stop() }   // no-op after a normal stop; stops the threads when the test throws

        // An enqueuer keeps adding jobs through the outage; every call that returned successfully must run.
        let acknowledged = Shared<Set<String>>([])
        let failedCalls = Shared<Int>(0)
        let stopEnqueuer = Shared<Bool>(false)
        let url = h.url, queue = h.queue
        async let enqueuer: Void = onThreads(1) { _ in
            let redis = try RedisConnection(url: url)
            var n = 0
            while !stopEnqueuer.value {
                let id = "live-\(n)"
                n += 1
                do {
                    if try queue.enqueue([NewJob(kind: "record", id: id)], on: redis) == [id] {
                        acknowledged.withLock { _ = $0.insert(id) }
                    }
                } catch {
                    failedCalls.withLock { $0 += 1 }
                    sleepMilliseconds(20)
                }
                sleepMilliseconds(5)
            }
        }
        defer { stopEnqueuer.withLock { $0 = true } }   // before the implicit await of `enqueuer` if the test throws

        #expect(try await eventually(within: 60, every: 10) { recorder.distinct >= 400 })
        let beforeRestart = recorder.distinct
        let acknowledgedBeforeRestart = acknowledged.withLock { $0 }
        try await blocking {
            server.stop()
            sleepMilliseconds(1_000)
            try server.start()
        }
        gate.withLock { $0 = false }
        // The test's own connection was cut too: its next call would report that once, then reconnect.
        _ = try? h.redis.execute("PING")
        #expect(beforeRestart < initial, "the restart happened mid-run (\(beforeRestart) of \(initial) done)")
        try await Task.sleep(nanoseconds: 1_500_000_000)
        stopEnqueuer.withLock { $0 = true }
        try await enqueuer
        let live = acknowledged.withLock { $0 }
        #expect(live.isSuperset(of: acknowledgedBeforeRestart))
        expected.formUnion(live)

        let done = try await eventually(within: 90, every: 100) { recorder.missing(from: expected).isEmpty }
        // Let in-flight acknowledgements land before reading the stats.
        _ = try await eventually(within: 10) { let s = try h.stats(); return s.inFlight == 0 && s.depth == 0 }
        try await blocking { engine.stop() }
        let missing = recorder.missing(from: expected)
        let duplicates = recorder.duplicates
        print("redis restart: \(expected.count) expected (\(live.count) enqueued during the run, \(failedCalls.value) enqueue calls failed), \(duplicates.count) ran twice or more, \(recorder.distinct - expected.count) unacknowledged enqueues ran anyway")
        #expect(done)
        #expect(missing.isEmpty, "\(missing.count) jobs never ran, e.g. \(missing.prefix(10))")
        #expect(acknowledgedBeforeRestart.isSubset(of: Set(recorder.snapshot.keys)))
        let s = try h.stats()
        #expect(s.inFlight == 0 && s.depth == 0 && s.dead == 0, "\(s)")
        #expect(live.count > 0)
    }
}
