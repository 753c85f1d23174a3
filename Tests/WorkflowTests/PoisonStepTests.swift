import Domain
import Foundation
import NurtureCore
import Postgres
import Testing
import TestSupport

/// A step that fails for one enrollment (here: an SQL error a trigger raises for one contact) does not hold back
/// the other enrollments of its batch job; the failing one is retried with backoff, attempts counted.
@Suite(.serialized) struct PoisonStepTests {
    @Test func oneFailingEnrollmentDoesNotBlockItsBatch() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        try """
            kind: workflow
            name: poke
            trigger:
              event: Poked
            steps:
              - tag: poked
              - tag: done
            """.write(toFile: h.scratch + "/poke.yaml", atomically: true, encoding: .utf8)
        try h.cli(["apply", h.scratch + "/poke.yaml"])
        try h.db.simpleQuery("""
            CREATE FUNCTION poison_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.external_id = 'poison' AND 'poked' = ANY(NEW.tags) THEN RAISE EXCEPTION 'poisoned contact'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER poison_guard BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION poison_guard();
            """)
        let people = ["p1", "p2", "poison", "p3", "p4"]
        let t0 = try h.now()
        // All events before the worker starts: one ingest batch, one step job for all five enrollments.
        for p in people { try h.track(p, "Poked", at: t0) }
        try h.start("scheduler", ["scheduler"])
        try h.start("worker", ["worker", "--concurrency", "2"])
        let deadline = monotonicMilliseconds() + 60_000
        func completed() throws -> Int {
            Int(try h.db.query("SELECT count(*) FROM enrollments WHERE workflow = 'poke' AND state = 'completed'").rows.first?[0].int ?? 0)
        }
        while monotonicMilliseconds() < deadline, try completed() < 4 { try await Task.sleep(nanoseconds: 200_000_000) }
        #expect(try completed() == 4)
        var attempts: Int64 = 0
        while monotonicMilliseconds() < deadline, attempts < 1 {
            attempts = try h.db.query("""
                SELECT e.attempts FROM enrollments e JOIN contacts c ON c.id = e.contact_id
                WHERE e.workflow = 'poke' AND c.external_id = 'poison'
                """).rows.first?[0].int ?? 0
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(attempts >= 1, "the poisoned enrollment's failure is counted")
        let state = try h.db.query("""
            SELECT e.state FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE e.workflow = 'poke' AND c.external_id = 'poison'
            """).rows.first?[0].string
        #expect(state == "active", "retried with backoff, not dropped")
        let tagged = try h.db.query("SELECT count(*) FROM contacts WHERE 'done' = ANY(tags)").rows.first?[0].int ?? 0
        #expect(tagged == 4)
    }
}
