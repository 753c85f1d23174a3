import Foundation
import JobQueue
import NurtureCore
import Redis
import Synchronization
import Testing
import TestSupport

/// The queue API against the shared Redis of `ops/test`, each test in its own namespace (they run in parallel).
@Suite struct JobQueueLibraryTests {
    @Test func thousandPlainJobsFlowThroughAndLeaveTheStreamEmpty() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let ids = try h.queue.enqueue(plainJobs(1000), on: h.redis)
        #expect(ids.count == 1000)
        #expect(ids.allSatisfy { $0 != nil })
        #expect(try h.stats().depth == 1000)
        #expect(try h.streamLength() == 1000)

        var seen: [String] = []
        var batches = 0
        while true {
            let jobs = try h.queue.fetch(queues: ["default"], consumer: "c1", count: 64, blockMilliseconds: 0, on: h.redis)
            if jobs.isEmpty { break }
            batches += 1
            #expect(jobs.count <= 64)
            seen += jobs.map(\.id)
            if batches == 1 { #expect(try h.stats().inFlight == jobs.count) }
            try h.queue.complete(jobs, on: h.redis)
            #expect(batches < 100, "fetch never ran dry")
            if batches >= 100 { break }
        }
        #expect(seen == (0..<1000).map { "job-\($0)" }, "FIFO, each job once")
        let s = try h.stats()
        #expect(s.processed == 1000)
        #expect(s.depth == 0)
        #expect(s.inFlight == 0)
        #expect(s.delayed == 0 && s.dead == 0)
        // Memory stays flat: acknowledged entries are deleted, not just acked.
        #expect(try h.streamLength() == 0)
    }

    @Test func completingTheSameJobsTwiceCountsThemOnce() throws {
        // A worker retries its acknowledgement when the reply was lost (Redis restart): the retry must not
        // inflate the processed totals.
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(5), on: h.redis)
        let jobs = try h.queue.fetch(queues: ["default"], consumer: "c1", count: 5, blockMilliseconds: 0, on: h.redis)
        #expect(jobs.count == 5)
        try h.queue.complete(jobs, on: h.redis)
        try h.queue.complete(jobs, on: h.redis)
        #expect(try h.stats().processed == 5)
    }

    @Test func strictPriorityThenFIFO() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(3, queue: "bulk", prefix: "b"), on: h.redis)
        try h.queue.enqueue(plainJobs(3, queue: "default", prefix: "d"), on: h.redis)
        try h.queue.enqueue(plainJobs(3, queue: "transactional", prefix: "t"), on: h.redis)
        var order: [String] = []
        for _ in 0..<10 {
            let jobs = try h.queue.fetch(queues: JobQueue.standardQueues, consumer: "c1", count: 1, blockMilliseconds: 0, on: h.redis)
            #expect(jobs.count <= 1)
            guard let job = jobs.first else { break }
            order.append(job.id)
            #expect(job.queue == String(job.id.first == "t" ? "transactional" : job.id.first == "d" ? "default" : "bulk"))
            try h.queue.complete(jobs, on: h.redis)
        }
        #expect(order == ["t-0", "t-1", "t-2", "d-0", "d-1", "d-2", "b-0", "b-1", "b-2"])

        // A batch spills over into the next queue in priority order.
        try h.queue.enqueue(plainJobs(2, queue: "bulk", prefix: "b2"), on: h.redis)
        try h.queue.enqueue(plainJobs(2, queue: "transactional", prefix: "t2"), on: h.redis)
        let batch = try h.queue.fetch(queues: JobQueue.standardQueues, consumer: "c1", count: 3, blockMilliseconds: 0, on: h.redis)
        #expect(batch.map(\.id) == ["t2-0", "t2-1", "b2-0"])
    }

    @Test func pausedQueueIsSkippedUntilResumed() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(2, queue: "default", prefix: "d"), on: h.redis)
        try h.queue.enqueue(plainJobs(1, queue: "bulk", prefix: "b"), on: h.redis)
        try h.queue.pause("default", on: h.redis)
        #expect(try h.queue.pausedQueues(on: h.redis) == ["default"])
        #expect(try h.stats("default").paused)

        // Skipped both when the caller passes the paused set and when it does not know yet (the script checks).
        let known = try h.queue.pausedQueues(on: h.redis)
        let first = try h.queue.fetch(queues: ["default", "bulk"], consumer: "c1", count: 10, blockMilliseconds: 0, paused: known, on: h.redis)
        #expect(first.map(\.id) == ["b-0"])
        let second = try h.queue.fetch(queues: ["default", "bulk"], consumer: "c1", count: 10, blockMilliseconds: 0, on: h.redis)
        #expect(second.isEmpty)
        // A blocking fetch on paused queues only returns empty (and does not spin).
        let blocked = try h.queue.fetch(queues: ["default"], consumer: "c1", count: 10, blockMilliseconds: 100, paused: ["default"], on: h.redis)
        #expect(blocked.isEmpty)
        #expect(try h.stats("default").depth == 2)

        try h.queue.resume("default", on: h.redis)
        #expect(try h.queue.pausedQueues(on: h.redis).isEmpty)
        let third = try h.queue.fetch(queues: ["default", "bulk"], consumer: "c1", count: 10, blockMilliseconds: 0, on: h.redis)
        #expect(third.map(\.id) == ["d-0", "d-1"])
    }

    @Test func uniqueJobsAreEnqueuedOnce() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let first = try h.queue.enqueue([NewJob(kind: "noop", uniqueKey: "contact-42")], on: h.redis)
        let second = try h.queue.enqueue([NewJob(kind: "noop", uniqueKey: "contact-42")], on: h.redis)
        #expect(first.count == 1 && first[0] != nil)
        #expect(second == [nil])
        // Within one pipelined call too, and other keys are unaffected.
        let mixed = try h.queue.enqueue([NewJob(kind: "noop", uniqueKey: "contact-43"), NewJob(kind: "noop", uniqueKey: "contact-43"),
                                         NewJob(kind: "noop", uniqueKey: "contact-42")], on: h.redis)
        #expect(mixed[0] != nil && mixed[1] == nil && mixed[2] == nil)
        let ids = try h.streamJobIDs()
        #expect(ids.count == 2)
        #expect(Set(ids) == Set([first[0]!, mixed[0]!]))
        // A delayed unique job is guarded the same way.
        let delayed = try h.queue.enqueue([NewJob(kind: "noop", delayMilliseconds: 60_000, uniqueKey: "later"),
                                           NewJob(kind: "noop", delayMilliseconds: 60_000, uniqueKey: "later")], on: h.redis)
        #expect(delayed[0] != nil && delayed[1] == nil)
        #expect(try h.stats().delayed == 1)
    }

    @Test func delayedJobBecomesFetchableWhenDue() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let ids = try h.queue.enqueue([NewJob(kind: "noop", delayMilliseconds: 300, id: "later")], on: h.redis)
        #expect(ids == ["later"])
        #expect(try h.queue.fetch(queues: ["default"], consumer: "c1", count: 10, blockMilliseconds: 0, on: h.redis).isEmpty)
        let early = try h.queue.promoteDue(on: h.redis)
        #expect(early.moved == 0)
        #expect(early.nextDueInMilliseconds != nil)
        #expect((early.nextDueInMilliseconds ?? -1) <= 300)
        #expect(try h.stats().delayed == 1)

        try await Task.sleep(nanoseconds: 350_000_000)
        let due = try h.queue.promoteDue(on: h.redis)
        #expect(due.moved == 1)
        #expect(due.nextDueInMilliseconds == nil)
        let jobs = try h.queue.fetch(queues: ["default"], consumer: "c1", count: 10, blockMilliseconds: 0, on: h.redis)
        #expect(jobs.map(\.id) == ["later"])
        #expect(jobs.first?.attempt == 1)
        #expect(try h.stats().delayed == 0)
    }

    @Test func concurrentPromotersMoveEachJobExactlyOnce() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let total = 2000
        for chunk in stride(from: 0, to: total, by: 500) {
            let jobs = (chunk..<min(total, chunk + 500)).map { NewJob(kind: "noop", delayMilliseconds: 200, id: "d-\($0)") }
            try h.queue.enqueue(jobs, on: h.redis)
        }
        #expect(try h.stats().delayed == total)
        try await Task.sleep(nanoseconds: 300_000_000)

        let moved = Shared<[Int]>([0, 0, 0])
        let url = h.url, queue = h.queue
        try await onThreads(3) { index in
            let redis = try RedisConnection(url: url)
            while true {
                // Small batches so the three really interleave.
                let (n, next) = try queue.promoteDue(limit: 25, on: redis)
                moved.withLock { $0[index] += n }
                if n == 0 && next == nil { break }
            }
        }
        let perThread = moved.withLock { $0 }
        #expect(perThread.reduce(0, +) == total, "moved per promoter: \(perThread)")
        let ids = try h.streamJobIDs()
        #expect(ids.count == total)
        #expect(Set(ids).count == total, "duplicates in the stream")
        #expect(Set(ids) == Set((0..<total).map { "d-\($0)" }))
        #expect(try h.stats().delayed == 0)
    }

    @Test func failRetriesWithBackoffThenDeadLettersThenRedrives() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue([NewJob(kind: "send", payload: "{\"to\":\"a@example.com\"}", maxAttempts: 2, id: "j1")], on: h.redis)
        var job = try #require(try h.queue.fetch(queues: ["default"], consumer: "c1", count: 1, blockMilliseconds: 0, on: h.redis).first)
        #expect(job.attempt == 1 && job.maxAttempts == 2)

        // Default backoff: about a second for the first retry (full jitter: 0.1 s ... 1 s).
        let before = try h.serverMilliseconds()
        let outcome = try h.queue.fail(job, error: "smtp 451 try later", on: h.redis)
        guard case .retried(let dueAt) = outcome else { Issue.record("expected a retry, got \(outcome)"); return }
        #expect(dueAt >= before + 100 - 5 && dueAt <= before + 1_000 + 1_000)
        var s = try h.stats()
        #expect(s.delayed == 1 && s.inFlight == 0 && s.depth == 0)
        #expect(s.failed == 1 && s.retried == 1)
        let parked = try h.delayed()
        #expect(parked.count == 1)
        #expect(parked.first?.record["attempt"] as? String == "2")
        #expect(parked.first?.record["err"] as? String == "smtp 451 try later")
        #expect(parked.first?.record["jid"] as? String == "j1")
        #expect(parked.first?.record["payload"] as? String == "{\"to\":\"a@example.com\"}")
        #expect(parked.first?.dueAt == dueAt)

        // Wait for it, promote, fetch: attempt 2 with the last error.
        #expect(try await eventually(within: 5) { try h.queue.promoteDue(on: h.redis).moved == 1 })
        job = try #require(try h.queue.fetch(queues: ["default"], consumer: "c1", count: 1, blockMilliseconds: 0, on: h.redis).first)
        #expect(job.id == "j1" && job.attempt == 2 && job.lastError == "smtp 451 try later")
        #expect(job.payload == "{\"to\":\"a@example.com\"}")

        // Attempts used up: dead letter with reason, last error and payload.
        let last = try h.queue.fail(job, error: "smtp 550 no such user", on: h.redis)
        #expect(last == .deadLettered)
        s = try h.stats()
        #expect(s.dead == 1 && s.delayed == 0 && s.inFlight == 0 && s.depth == 0)
        let dead = try h.queue.deadLetters(on: h.redis)
        #expect(dead.count == 1)
        let letter = try #require(dead.first)
        #expect(letter.id == "j1" && letter.queue == "default" && letter.kind == "send")
        #expect(letter.reason == "failed 2 of 2 attempts")
        #expect(letter.lastError == "smtp 550 no such user")
        #expect(letter.payload == "{\"to\":\"a@example.com\"}")
        #expect(letter.attempts == 2)
        #expect(letter.diedAtMilliseconds > 0)

        // Re-drive: back on its queue with a fresh attempt count, no error.
        #expect(try h.queue.retryDeadLetters(queue: "default", on: h.redis) == 1)
        #expect(try h.queue.deadLetters(on: h.redis).isEmpty)
        job = try #require(try h.queue.fetch(queues: ["default"], consumer: "c1", count: 1, blockMilliseconds: 0, on: h.redis).first)
        #expect(job.id == "j1" && job.attempt == 1 && job.lastError == nil && job.kind == "send")

        // Permanent failure dead-letters at once; purge removes it.
        #expect(try h.queue.fail(job, error: "bad address", permanent: true, on: h.redis) == .deadLettered)
        let permanent = try h.queue.deadLetters(queue: "default", on: h.redis)
        #expect(permanent.map(\.reason) == ["permanent failure"])
        #expect(try h.queue.purgeDeadLetters(queue: "default", on: h.redis) == 1)
        #expect(try h.queue.deadLetters(on: h.redis).isEmpty)
        s = try h.stats()
        #expect(s.dead == 0 && s.depth == 0 && s.inFlight == 0 && s.delayed == 0)
    }

    @Test func retryWithoutUsingAnAttempt() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue([NewJob(kind: "noop", maxAttempts: 1, id: "r1")], on: h.redis)
        let job = try #require(try h.queue.fetch(queues: ["default"], consumer: "c1", count: 1, blockMilliseconds: 0, on: h.redis).first)
        // maxAttempts 1, but a rate-limit deferral does not count: retried, not dead.
        let outcome = try h.queue.fail(job, error: "rate limited", retryInMilliseconds: 10, countsAsAttempt: false, on: h.redis)
        guard case .retried = outcome else { Issue.record("expected retry, got \(outcome)"); return }
        #expect(try h.delayed().first?.record["attempt"] as? String == "1")
    }

    @Test func deadLetterByIdAndUnknownKind() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue([NewJob(kind: "k", id: "a"), NewJob(kind: "k", id: "b")], on: h.redis)
        let jobs = try h.queue.fetch(queues: ["default"], consumer: "c1", count: 2, blockMilliseconds: 0, on: h.redis)
        for job in jobs { try h.queue.deadLetter(job, reason: "unknown job kind \"k\"", on: h.redis) }
        #expect(Set(try h.queue.deadLetters(on: h.redis).map(\.id)) == ["a", "b"])
        #expect(try h.queue.retryDeadLetters(queue: "default", id: "a", on: h.redis) == 1)
        #expect(try h.queue.purgeDeadLetters(queue: "default", id: "b", on: h.redis) == 1)
        #expect(try h.queue.deadLetters(on: h.redis).isEmpty)
        #expect(try h.streamJobIDs() == ["a"])
    }

    @Test func reclaimTakesBackJobsOfDeadWorkersOnly() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(6), on: h.redis)
        // A: short lease that will run out. B: a live worker (long lease), idle. Ghost: never heartbeated.
        try h.queue.heartbeat(worker: "A", leaseMilliseconds: 200, info: [("pid", "1")], on: h.redis)
        try h.queue.heartbeat(worker: "B", leaseMilliseconds: 600_000, info: [("pid", "2")], on: h.redis)
        let a = try h.queue.fetch(queues: ["default"], consumer: "A", count: 2, blockMilliseconds: 0, on: h.redis)
        let b = try h.queue.fetch(queues: ["default"], consumer: "B", count: 2, blockMilliseconds: 0, on: h.redis)
        let ghost = try h.queue.fetch(queues: ["default"], consumer: "ghost", count: 1, blockMilliseconds: 0, on: h.redis)
        #expect(a.count == 2 && b.count == 2 && ghost.count == 1)
        #expect(try h.queue.workers(on: h.redis).map(\.name).sorted() == ["A", "B"])

        // Nothing is idle long enough yet.
        let none = try h.queue.reclaimDeadWorkers(minimumIdleMilliseconds: 60_000, on: h.redis)
        #expect(none.reclaimed == 0 && none.deadLettered == 0)
        try await Task.sleep(nanoseconds: 400_000_000)
        #expect(try h.queue.workers(on: h.redis).map(\.name) == ["B"], "A's lease ran out")
        let result = try h.queue.reclaimDeadWorkers(minimumIdleMilliseconds: 100, maxLost: 3, on: h.redis)
        #expect(result.reclaimed == 3 && result.deadLettered == 0)
        let pending = try h.pendingByConsumer()
        #expect(pending == ["B": 2], "only the live worker keeps its jobs: \(pending)")

        // The reclaimed ones are waiting again, marked lost once, ahead of nothing else lost.
        let again = try h.queue.fetch(queues: ["default"], consumer: "C", count: 10, blockMilliseconds: 0, on: h.redis)
        let reclaimedIDs = Set((a + ghost).map(\.id))
        #expect(again.count == 4)
        for job in again where reclaimedIDs.contains(job.id) {
            #expect(job.lost == 1)
            #expect(job.lastError?.contains("stopped heartbeating") == true)
            #expect(job.attempt == 1)
        }
        #expect(Set(again.map(\.id)).isSuperset(of: reclaimedIDs))
        #expect(again.filter { !reclaimedIDs.contains($0.id) }.allSatisfy { $0.lost == 0 })
        try h.queue.complete(again, on: h.redis)

        // A job whose workers keep dying: after maxLost it is dead-lettered as poison.
        try h.queue.enqueue([NewJob(kind: "crash", id: "poison")], on: h.redis)
        for round in 1...3 {
            let taken = try h.queue.fetch(queues: ["default"], consumer: "dying-\(round)", count: 1, blockMilliseconds: 0, on: h.redis)
            let poison = try #require(taken.first)
            #expect(poison.id == "poison" && poison.lost == round - 1)
            try await Task.sleep(nanoseconds: 120_000_000)
            let r = try h.queue.reclaimDeadWorkers(minimumIdleMilliseconds: 100, maxLost: 2, on: h.redis)
            let want = round <= 2 ? (1, 0) : (0, 1)
            #expect(r.reclaimed == want.0 && r.deadLettered == want.1, "round \(round): \(r)")
        }
        let dead = try h.queue.deadLetters(on: h.redis)
        #expect(dead.map(\.id) == ["poison"])
        #expect(dead.first?.reason.contains("lost 3 times") == true)
        #expect(try h.stats().dead == 1)
        #expect(try h.pendingByConsumer() == ["B": 2])
    }

    @Test func slotConsumersLiveUnderTheirWorkersLease() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(4), on: h.redis)
        try h.queue.heartbeat(worker: "live", leaseMilliseconds: 60_000, info: [], on: h.redis)
        try h.queue.heartbeat(worker: "gone", leaseMilliseconds: 100, info: [], on: h.redis)
        for consumer in ["live#0", "live#1", "gone#0", "gone#1"] {
            #expect(try h.queue.fetch(queues: ["default"], consumer: consumer, count: 1, blockMilliseconds: 0, on: h.redis).count == 1)
        }
        try await Task.sleep(nanoseconds: 300_000_000)
        let r = try h.queue.reclaimDeadWorkers(minimumIdleMilliseconds: 100, on: h.redis)
        #expect(r.reclaimed == 2 && r.deadLettered == 0)
        #expect(try h.pendingByConsumer() == ["live#0": 1, "live#1": 1])
        #expect(try h.pendingByWorker() == ["live": 2])
    }

    @Test func fetchPendingRecoversDeliveriesWhoseReplyWasLost() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(3, queue: "bulk", prefix: "b") + plainJobs(2, queue: "default", prefix: "d"), on: h.redis)
        // Delivered to slot "w#0" behind its back (as when Redis dies between running the fetch and replying).
        _ = try h.queue.fetch(queues: ["default", "bulk"], consumer: "w#0", count: 3, blockMilliseconds: 0, on: h.redis)
        _ = try h.queue.fetch(queues: ["default"], consumer: "w#1", count: 1, blockMilliseconds: 0, on: h.redis)
        let recovered = try h.queue.fetchPending(queues: ["default", "bulk"], consumer: "w#0", count: 10, on: h.redis)
        #expect(Set(recovered.map(\.id)) == ["d-0", "d-1", "b-0"])
        #expect(recovered.allSatisfy { $0.kind == "noop" && $0.attempt == 1 })
        try h.queue.complete(recovered, on: h.redis)
        #expect(try h.queue.fetchPending(queues: ["default", "bulk"], consumer: "w#0", count: 10, on: h.redis).isEmpty)
        #expect(try h.queue.fetchPending(queues: ["transactional"], consumer: "w#0", count: 10, on: h.redis).isEmpty, "no group yet: empty")
        #expect(try h.stats("bulk").depth == 2)
    }

    @Test func handedBackJobsAreFetchableAtOnce() throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.enqueue(plainJobs(5), on: h.redis)
        let taken = try h.queue.fetch(queues: ["default"], consumer: "A", count: 3, blockMilliseconds: 0, on: h.redis)
        #expect(taken.map(\.id) == ["job-0", "job-1", "job-2"])
        try h.queue.handBack(taken, on: h.redis)
        #expect(try h.pendingByConsumer().isEmpty)
        #expect(try h.stats().depth == 5)
        let next = try h.queue.fetch(queues: ["default"], consumer: "B", count: 10, blockMilliseconds: 0, on: h.redis)
        // Back at the tail of the stream, with all their fields.
        #expect(next.map(\.id) == ["job-3", "job-4", "job-0", "job-1", "job-2"])
        #expect(next.last?.payload == "{\"n\":2}" && next.last?.attempt == 1 && next.last?.kind == "noop")
        #expect(try h.streamLength() == 5)
    }

    @Test func blockingFetchWakesUpOnEnqueue() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        try h.queue.ensureGroups(["default"], on: h.redis)
        let got = Shared<[String]>([])
        let url = h.url, queue = h.queue
        async let waiter: Void = onThreads(1) { _ in
            let redis = try RedisConnection(url: url)
            let jobs = try queue.fetch(queues: ["default"], consumer: "A", count: 1, blockMilliseconds: 5_000, on: redis)
            got.withLock { $0 = jobs.map(\.id) }
        }
        try await Task.sleep(nanoseconds: 200_000_000)
        try h.queue.enqueue([NewJob(kind: "noop", id: "wake")], on: h.redis)
        try await waiter
        #expect(got.withLock { $0 } == ["wake"])
    }
}

/// Rate limits are measured in time: kept out of the parallel crowd.
@Suite(.serialized) struct JobQueueRateLimitTests {
    @Test func tokenBucketGrantsTheRateAcrossThreads() async throws {
        let h = try QueueHarness()
        defer { h.cleanUp() }
        let limit = RateLimit(key: TestEnvironment.uniqueName("bucket"), perSecond: 50)
        #expect(limit.burst == 5)
        let granted = Shared<Int>(0)
        let url = h.url, queue = h.queue
        let started = monotonicMilliseconds()
        try await onThreads(3) { _ in
            let redis = try RedisConnection(url: url)
            let deadline = started + 3_000
            while monotonicMilliseconds() < deadline {
                let wait = try queue.takeToken(limit, on: redis)
                if wait == 0 { granted.withLock { $0 += 1 } } else { sleepMilliseconds(min(wait, max(1, deadline - monotonicMilliseconds()))) }
            }
        }
        let elapsed = Double(monotonicMilliseconds() - started) / 1000
        let n = granted.withLock { $0 }
        // 50/s over ~3 s plus the initial burst of 5: 150 ± 10 %.
        let expected = 50 * elapsed + limit.burst
        #expect(Double(n) >= 50 * 3 * 0.9, "granted \(n) in \(elapsed) s")
        #expect(Double(n) <= expected * 1.1, "granted \(n) in \(elapsed) s")
        RedisKeyCleanup.delete(h.queue.keys.rateBucket(limit.key), on: h.redis)
    }

    @Test func rateParsing() {
        #expect(RateLimit.parse(rate: "50/s", key: "k")?.perSecond == 50)
        #expect(RateLimit.parse(rate: "3000/m", key: "k")?.perSecond == 50)
        #expect(RateLimit.parse(rate: "3600 / h", key: "k")?.perSecond == 1)
        #expect(RateLimit.parse(rate: "50/d", key: "k") == nil)
        #expect(RateLimit.parse(rate: "-1/s", key: "k") == nil)
    }
}

enum RedisKeyCleanup {
    static func delete(_ key: String, on redis: RedisConnection) {
        _ = try? redis.execute(RedisCommand("DEL", .string(key)))
    }
}
