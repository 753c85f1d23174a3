import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Testing
import TestSupport

/// Every message still goes out when workers are SIGKILLed mid-send and Redis is flushed mid-run: workflow state
/// lives in PostgreSQL, leases run out, the scheduler enqueues again, deliveries keep their ids. And when PostgreSQL
/// itself crashes mid-send: roles reconnect, send locks run out, the same delivery ids are sent again.
@Suite(.serialized) struct ChaosTests {
    @Test func killedWorkersAndAFlushedRedisLoseAndDuplicateNoMessage() async throws {
        // FLUSHALL needs a Redis of its own: the shared test server carries other tests' queues meanwhile.
        let server = try RedisServerProcess()
        defer { server.stop() }
        let h = try WorkflowHarness(redisURL: server.url)
        defer { h.cleanUp() }
        h.emailPath = "/slow/25"   // every email takes 25 ms at the provider: kills land mid-send
        let people = 240
        try Self.startWelcomeSeries(h, people: people)
        // All enrolled (events ingested) before the chaos starts: events still in Redis are the one thing a flush may lose.
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline,
              (try h.db.query("SELECT count(*) FROM enrollments WHERE workflow = 'welcome-series'").rows.first?[0].int ?? 0) < people {
            try await Task.sleep(nanoseconds: 100_000_000)
        }

        var kills = 0
        var flushed = false
        var expected = (0..<people).map { "p\($0) welcome-1" }
        for (phase, advance) in [(1, 0.0), (2, 2 * 86_400.0), (3, 3 * 86_400.0)] {
            if advance > 0 { try h.advance(seconds: advance) }
            // Chaos while the phase's messages go out.
            for round in 0..<3 {
                try await Task.sleep(nanoseconds: 400_000_000)
                let victim = round % 2 == 0 ? "worker-1" : "worker-2"
                h.kill(victim)
                kills += 1
                try h.start(victim, ["worker", "--concurrency", "4", "--lease", "2s"])
                if phase == 2 && round == 1 && !flushed {
                    _ = try h.redis.execute(RedisCommand("FLUSHALL"))
                    flushed = true
                }
            }
            if phase == 2 { expected += (0..<people).map { "p\($0) welcome-2" } }
            if phase == 3 { expected += (0..<people).map { "p\($0) welcome-3-offer" } }
            try await h.expectUnique(expected, within: 150, "phase \(phase) after \(kills) kills\(flushed ? " and a FLUSHALL" : "")")
        }
        #expect(flushed)
        // One delivery row per message: a message never got two delivery ids.
        let rows = try h.db.query("SELECT count(*), count(DISTINCT dedupe_key) FROM deliveries WHERE status = 'accepted'").rows.first
        #expect(rows?[0].int == Int64(expected.count) && rows?[1].int == Int64(expected.count))
        // A delivery id reaches the sink again only if its request was in flight when its worker was killed (the retry
        // carries the same Idempotency-Key, so the provider drops it): at most one per slot per kill.
        let ids = try h.sunk().map(\.deliveryId)
        let repeats = ids.count - Set(ids).count
        #expect(repeats <= kills * 4, "\(repeats) repeated delivery ids after \(kills) kills")
    }

    /// PostgreSQL crashes twice (`pg_ctl stop -m immediate`: every backend dies at once, crash recovery on the next
    /// start) while a broadcast goes out and events arrive. Nothing is lost or sent twice: every recipient gets the
    /// message under one delivery id, the broadcast completes, and every event that came in during an outage is
    /// ingested once. Scheduler and workers ride the outages out (they reconnect); nobody restarts them.
    @Test func aPostgresCrashMidSendLosesAndDuplicatesNothing() async throws {
        let postgres = try PostgresServerProcess()
        defer { postgres.stop() }
        let h = try WorkflowHarness(databaseURL: postgres.url)
        defer { h.cleanUp() }
        h.emailPath = "/slow/5"
        let people = 200   // at 20/s: ten seconds of sending, so both crashes land mid-broadcast
        try BroadcastTests.setUp(h, people: people)
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4", "--lease", "2s"])
        try h.start("worker-2", ["worker", "--concurrency", "4", "--lease", "2s"])
        let out = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--rate", "20/s", "--batch-size", "10"])
        let id = Int64(out.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        #expect(id > 0, "broadcast send printed \(out)")

        var sunkAtCrash: [Int] = []
        var events: [String] = []
        for crash in 0..<2 {
            try await Task.sleep(nanoseconds: 1_500_000_000)
            sunkAtCrash.append(try h.sunk().count)
            try postgres.crash()
            // Events that arrive while PostgreSQL is down wait in the stream.
            for i in 0..<20 {
                let messageId = "outage-\(crash)-\(i)"
                try h.track("b\(i)", "Outage Event", at: Date(), id: messageId)
                events.append(messageId)
            }
            try await Task.sleep(nanoseconds: 2_000_000_000)
            try postgres.start()
        }
        #expect(sunkAtCrash[0] < people, "the first crash came after the whole broadcast (\(sunkAtCrash))")
        // The harness's own connection died with the server: its next statements reconnect.
        for _ in 0..<20 where (try? h.db.query("SELECT 1")) == nil { try await Task.sleep(nanoseconds: 250_000_000) }

        let expected = (0..<people).map { "b\($0) news" }
        try await h.expectUnique(expected, within: 180, "broadcast \(id) after two PostgreSQL crashes (sunk at the crashes: \(sunkAtCrash))")
        let deadline = monotonicMilliseconds() + 60_000
        func ingested() throws -> (Int64, Int64) {
            let row = try h.db.query("SELECT count(*), count(DISTINCT message_id) FROM events WHERE name = 'Outage Event'").rows.first
            return (row?[0].int ?? 0, row?[1].int ?? 0)
        }
        while monotonicMilliseconds() < deadline, try ingested().1 < Int64(events.count) { try await Task.sleep(nanoseconds: 200_000_000) }
        let (rows, distinct) = try ingested()
        #expect(rows == Int64(events.count) && distinct == Int64(events.count), "events ingested: \(rows) rows, \(distinct) distinct of \(events.count)")
        while monotonicMilliseconds() < deadline,
              try BroadcastTests.count(h, "SELECT count(*) FROM broadcasts WHERE id = $1 AND status = 'completed'", [.int(id)]) == 0 {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(try BroadcastTests.count(h, "SELECT count(*) FROM broadcasts WHERE id = $1 AND status = 'completed'", [.int(id)]) == 1)
        #expect(try BroadcastTests.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'accepted'", [.int(id)]) == people)
        let exited = h.roles.filter { !$0.value.isRunning }.keys.sorted()
        let tails = try exited.map { "\($0):\n\(try h.logTail($0, lines: 20))" }.joined(separator: "\n")
        #expect(exited.isEmpty, "roles exited during the outages: \(exited)\n\(tails)")
    }

    /// The welcome series' first two sends with PostgreSQL crashing (`-m immediate`) while each goes out: enrollments,
    /// leases and delivery rows are all in PostgreSQL, so a crash interrupts step transactions and settles half-way;
    /// every message still reaches the provider under exactly one delivery id.
    @Test func aPostgresCrashMidWorkflowLosesAndDuplicatesNothing() async throws {
        let postgres = try PostgresServerProcess()
        defer { postgres.stop() }
        let h = try WorkflowHarness(databaseURL: postgres.url)
        defer { h.cleanUp() }
        h.emailPath = "/slow/60"   // 240 emails on 8 slots: about two seconds of sending per step
        let people = 240
        try Self.startWelcomeSeries(h, people: people)

        var expected = (0..<people).map { "p\($0) welcome-1" }
        var sunkAtCrash: [Int] = []
        for phase in 1...2 {
            if phase == 2 {
                try h.advance(seconds: 2 * 86_400)
                expected += (0..<people).map { "p\($0) welcome-2" }
            }
            try await Task.sleep(nanoseconds: 600_000_000)
            sunkAtCrash.append(Set(try h.sunk().map(\.deliveryId)).count)
            try postgres.crash()
            try await Task.sleep(nanoseconds: 2_000_000_000)
            try postgres.start()
            for _ in 0..<20 where (try? h.db.query("SELECT 1")) == nil { try await Task.sleep(nanoseconds: 250_000_000) }
            try await h.expectUnique(expected, within: 150, "phase \(phase) after a PostgreSQL crash (sunk at the crashes: \(sunkAtCrash))")
        }
        // The second crash came before every welcome-2 had gone out (the first may land while events are ingested).
        #expect(sunkAtCrash[1] < 2 * people, "sunk at the crashes: \(sunkAtCrash)")
        let rows = try h.db.query("SELECT count(*), count(DISTINCT dedupe_key) FROM deliveries WHERE status = 'accepted'").rows.first
        #expect(rows?[0].int == Int64(expected.count) && rows?[1].int == Int64(expected.count))
        let exited = h.roles.filter { !$0.value.isRunning }.keys.sorted()
        #expect(exited.isEmpty, "roles exited during the outages: \(exited)")
    }

    /// The examples applied at 10:00 in Paris, `people` contacts p0... imported, scheduler and two workers (2 s
    /// leases) started, and a `Signed Up` event sent for each: the welcome series starts for all of them.
    static func startWelcomeSeries(_ h: WorkflowHarness, people: Int) throws {
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples"])
        let t0 = try ExampleWorkflowsTests.startAtTenInParis(h)
        var csv = "id,email,first_name,timezone\n"
        for i in 0..<people { csv += "p\(i),p\(i)@example.com,P\(i),Europe/Paris\n" }
        try csv.write(toFile: h.scratch + "/people.csv", atomically: true, encoding: .utf8)
        try h.cli(["contacts", "import", h.scratch + "/people.csv"])
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4", "--lease", "2s"])
        try h.start("worker-2", ["worker", "--concurrency", "4", "--lease", "2s"])
        for i in 0..<people { try h.track("p\(i)", "Signed Up", at: t0) }
    }
}

extension WorkflowHarness {
    /// Waits until the sink has received each expected message (`userId template`) under exactly one delivery id
    /// (the same id may arrive twice: a retry after a kill); fails with what is missing or sent under two ids.
    func expectUnique(_ expected: [String], within seconds: Double, _ note: String,
                      sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let want = Set(expected)
        let deadline = monotonicMilliseconds() + Int64(seconds * 1000)
        var got: [String: Set<String>] = [:]
        while monotonicMilliseconds() < deadline {
            got = [:]
            let messages = try sunk()
            let names = try deliveryNames(Array(Set(messages.map(\.deliveryId))))
            for m in messages { got[names[m.deliveryId] ?? "unknown \(m.deliveryId)", default: []].insert(m.deliveryId) }
            // Received, and recorded as accepted (a kill between the two leaves the message to be re-sent, with the
            // same id, once its send lock expires: the next phase's waits count from that send).
            let accepted = try db.query("SELECT count(*) FROM deliveries WHERE status = 'accepted'").rows.first?[0].int ?? 0
            if Set(got.keys) == want && got.values.allSatisfy({ $0.count == 1 }) && accepted == Int64(want.count) { return }
            if got.values.contains(where: { $0.count > 1 }) || !Set(got.keys).isSubset(of: want) { break }
            try await Task.sleep(nanoseconds: 300_000_000)
        }
        let missing = want.subtracting(got.keys).sorted()
        let doubled = got.filter { $0.value.count > 1 }.keys.sorted()
        let unexpected = Set(got.keys).subtracting(want).sorted()
        let users = missing.prefix(5).map { String($0.split(separator: " ")[0]) }
        let state = (try? db.query("""
            SELECT c.external_id || ': ' || e.state || ' seq ' || e.step_seq || ' path ' || e.step_path || ' due ' || COALESCE(e.due_at::text, '-')
                   || ' lease ' || COALESCE(e.lease_until::text, '-') || ' attempts ' || e.attempts || ' now ' || clock_timestamp()
                   || ' deliveries: ' || COALESCE((SELECT string_agg(d.template || '=' || d.status || '/' || d.attempts || '/' || COALESCE(d.locked_until::text, '-') || '/' || COALESCE(d.last_error, ''), ', ')
                                                   FROM deliveries d WHERE d.enrollment_id = e.id), '')
                   || ' steps: ' || COALESCE((SELECT string_agg(s.step || ':' || s.outcome, ', ' ORDER BY s.step_seq) FROM enrollment_steps s WHERE s.enrollment_id = e.id), '')
            FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE c.external_id = ANY($1::text[])
            """, [.textArray(users.map { Optional($0) })]).rows.map { $0[0].string ?? "" }.joined(separator: "\n")) ?? ""
        Issue.record("\(note): \(got.count) of \(want.count) messages; missing \(missing.count): \(missing.prefix(10)); two ids: \(doubled.prefix(10)); unexpected: \(unexpected.prefix(10))\n\(state)\n\(logTail("scheduler", lines: 15))\n\(logTail("worker-1", lines: 15))",
                     sourceLocation: sourceLocation)
        throw HarnessFailure(note)
    }
}
