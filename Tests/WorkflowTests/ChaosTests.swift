import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Testing
import TestSupport

/// Every message still goes out when workers are SIGKILLed mid-send and Redis is flushed mid-run: workflow state
/// lives in PostgreSQL, leases run out, the scheduler enqueues again, deliveries keep their ids.
@Suite(.serialized) struct ChaosTests {
    @Test func killedWorkersAndAFlushedRedisLoseAndDuplicateNoMessage() async throws {
        // FLUSHALL needs a Redis of its own: the shared test server carries other tests' queues meanwhile.
        let server = try RedisServerProcess()
        defer { server.stop() }
        let h = try WorkflowHarness(redisURL: server.url)
        defer { h.cleanUp() }
        h.emailPath = "/slow/25"   // every email takes 25 ms at the provider: kills land mid-send
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples"])
        let t0 = try ExampleWorkflowsTests.startAtTenInParis(h)
        let people = 240
        var csv = "id,email,first_name,timezone\n"
        for i in 0..<people { csv += "p\(i),p\(i)@example.com,P\(i),Europe/Paris\n" }
        try csv.write(toFile: h.scratch + "/people.csv", atomically: true, encoding: .utf8)
        try h.cli(["contacts", "import", h.scratch + "/people.csv"])

        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4", "--lease", "2s"])
        try h.start("worker-2", ["worker", "--concurrency", "4", "--lease", "2s"])
        for i in 0..<people { try h.track("p\(i)", "Signed Up", at: t0) }
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
