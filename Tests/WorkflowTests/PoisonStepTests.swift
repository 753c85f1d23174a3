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
        try Self.poisonTaggingOfPoison(h)
        let people = ["p1", "p2", "poison", "p3", "p4"]
        let t0 = try h.now()
        // All events before the worker starts: one ingest batch, one step job for all five enrollments.
        for p in people { try h.track(p, "Poked", at: t0) }
        try h.start("scheduler", ["scheduler"])
        try h.start("worker", ["worker", "--concurrency", "2"])
        let (completed, attempts) = try await Self.pokeOutcome(h)
        #expect(completed == 4)
        #expect(attempts >= 1, "the poisoned enrollment's failure is counted")
        let state = try h.db.query("""
            SELECT e.state FROM enrollments e JOIN contacts c ON c.id = e.contact_id WHERE e.workflow = 'poke' AND c.external_id = 'poison'
            """).rows.first?[0].string
        #expect(state == "active", "retried with backoff, not dropped")
        let tagged = try h.db.query("SELECT count(*) FROM contacts WHERE 'done' = ANY(tags)").rows.first?[0].int ?? 0
        #expect(tagged == 4)
    }

    /// The step after a send fails for one contact. The transaction that settles the sends also decides the next
    /// round (under a savepoint): its failure must not undo the settlement. Every message goes out once and is
    /// recorded as accepted; the other four finish; the poisoned enrollment is retried with backoff.
    @Test func aStepFailingRightAfterASendKeepsTheSendSettled() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples"])
        try """
            kind: workflow
            name: poke
            trigger:
              event: Poked
            steps:
              - send: welcome-1
              - tag: poked
              - tag: done
            """.write(toFile: h.scratch + "/poke.yaml", atomically: true, encoding: .utf8)
        try h.cli(["apply", h.scratch + "/poke.yaml"])
        try Self.poisonTaggingOfPoison(h)
        let people = ["p1", "p2", "poison", "p3", "p4"]
        let t0 = try ExampleWorkflowsTests.startAtTenInParis(h)
        try ("id,email,first_name,timezone\n" + people.map { "\($0),\($0)@example.com,\($0),Europe/Paris\n" }.joined())
            .write(toFile: h.scratch + "/people.csv", atomically: true, encoding: .utf8)
        try h.cli(["contacts", "import", h.scratch + "/people.csv"])
        // All events before the worker starts: one step job for all five enrollments.
        for p in people { try h.track(p, "Poked", at: t0) }
        try h.start("scheduler", ["scheduler"])
        try h.start("worker", ["worker", "--concurrency", "2"])
        try await h.expectUnique(people.map { "\($0) welcome-1" }, within: 60, "each contact's send, once, settled as accepted")
        let (completed, attempts) = try await Self.pokeOutcome(h)
        #expect(completed == 4)
        #expect(attempts >= 1, "the poisoned enrollment's failure is counted")
        let row = try h.db.query("""
            SELECT e.state, e.step_seq FROM enrollments e JOIN contacts c ON c.id = e.contact_id
            WHERE e.workflow = 'poke' AND c.external_id = 'poison'
            """).rows.first
        #expect(row?[0].string == "active" && row?[1].int == 1, "retried at the tag step, after its send: \(String(describing: row))")
        let pending = try h.db.query("SELECT count(*) FROM deliveries WHERE status <> 'accepted'").rows.first?[0].int ?? -1
        #expect(pending == 0, "no delivery left pending")
        #expect(try h.sunk().count == people.count, "nothing sent twice")
    }

    /// Makes tagging the contact `poison` with `poked` fail (an SQL error from a trigger).
    static func poisonTaggingOfPoison(_ h: WorkflowHarness) throws {
        try h.db.simpleQuery("""
            CREATE FUNCTION poison_guard() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.external_id = 'poison' AND 'poked' = ANY(NEW.tags) THEN RAISE EXCEPTION 'poisoned contact'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER poison_guard BEFORE UPDATE ON contacts FOR EACH ROW EXECUTE FUNCTION poison_guard();
            """)
    }

    /// Waits (up to 60 s) for the four healthy `poke` enrollments to complete and the poisoned one's failure to be
    /// counted; returns the completed count and the poisoned enrollment's attempts.
    static func pokeOutcome(_ h: WorkflowHarness) async throws -> (completed: Int, attempts: Int64) {
        let deadline = monotonicMilliseconds() + 60_000
        func completed() throws -> Int {
            Int(try h.db.query("SELECT count(*) FROM enrollments WHERE workflow = 'poke' AND state = 'completed'").rows.first?[0].int ?? 0)
        }
        while monotonicMilliseconds() < deadline, try completed() < 4 { try await Task.sleep(nanoseconds: 200_000_000) }
        var attempts: Int64 = 0
        while monotonicMilliseconds() < deadline, attempts < 1 {
            attempts = try h.db.query("""
                SELECT e.attempts FROM enrollments e JOIN contacts c ON c.id = e.contact_id
                WHERE e.workflow = 'poke' AND c.external_id = 'poison'
                """).rows.first?[0].int ?? 0
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        return (try completed(), attempts)
    }
}
