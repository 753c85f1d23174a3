import Domain
import Foundation
import Postgres
import Redis
import Runtime
import Store
import Testing
import TestSupport

/// Scoring, lifecycle and live segments, applied by the ingester in the batch's transaction and by the scheduler's
/// scan as time passes. Expected values are computed by hand in the comments.
@Suite(.serialized) struct BehaviourTests {
    static let day = 86_400.0

    /// Applies YAML definitions (as `nurture apply` does).
    static func apply(_ yaml: String, _ h: IngestHarness) throws {
        var loader = DefinitionLoader()
        loader.load(file: "test.yaml", text: yaml)
        let report = loader.finish()
        #expect(report.errors.isEmpty, "\(report.errors)")
        let records = report.definitions.map {
            DefinitionRecord(kind: $0.kind.rawValue, name: $0.name, checksum: $0.checksum, specJSON: $0.canonicalJSON, source: $0.source)
        }
        _ = try DefinitionStore().apply(records, appliedBy: "test", at: Date(), on: h.db)
    }

    static func iso(_ d: Date) -> String { Value.iso8601(d) }

    static func track(_ user: String, _ event: String, at: Date, id: String, properties: String = "{}") -> String {
        #"{"type":"track","userId":"\#(user)","event":"\#(event)","properties":\#(properties),"timestamp":"\#(iso(at))","messageId":"\#(id)"}"#
    }

    /// Runs an ingester until `count` messages are ingested.
    static func ingest(_ h: IngestHarness, _ payloads: [String], batch: Int = 500) async throws {
        for p in payloads { try h.add(p) }
        let engine = try h.engine(batch: batch)
        try engine.start()
        let done = try await eventually(within: 30) { engine.ingested + engine.duplicates >= payloads.count }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested) of \(payloads.count)")
    }

    static func contactID(_ h: IngestHarness, _ user: String) throws -> Int64 {
        try h.count("SELECT id FROM contacts WHERE external_id = $1", [.text(user)])
    }

    static func members(_ h: IngestHarness, _ segment: String) throws -> [String] {
        try h.db.query("""
            SELECT c.external_id FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id
            WHERE m.segment = $1 ORDER BY 1
            """, [.text(segment)]).rows.map { $0[0].string ?? "" }
    }

    static func transitions(_ h: IngestHarness, _ segment: String) throws -> [String] {
        try h.db.query("""
            SELECT c.external_id, t.entered FROM segment_transitions t JOIN contacts c ON c.id = t.contact_id
            WHERE t.segment = $1 ORDER BY t.id
            """, [.text(segment)]).rows.map { "\($0[0].string ?? "")\($0[1].bool == true ? "+" : "-")" }
    }

    static let scoring = """
        kind: scoring
        name: engagement
        rules:
          - when: 'event.name == "Page Viewed" and event.properties.path == "/pricing"'
            points: 10
          - when: 'event.name == "Page Viewed"'
            points: 1
          - when: 'event.name == "Whitepaper Downloaded"'
            points: 15
          - when: 'event.name == "Unsubscribed"'
            points: -20
        decay:
          half_life: 30d
        """

    @Test func scoresAddUpAndDecayByHalfLifeInAnyArrivalOrder() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try Self.apply(Self.scoring, h)
        let t0 = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 90 * Self.day).rounded())
        // Batch 1: a pricing view at t0 (both Page Viewed rules: 10 + 1 = 11) and a plain view at t0+30d (1).
        // Stored at reference t0+30d: 11 * 0.5^(30/30) + 1 = 6.5.
        try await Self.ingest(h, [
            Self.track("u1", "Page Viewed", at: t0, id: "s1", properties: #"{"path":"/pricing"}"#),
            Self.track("u1", "Page Viewed", at: t0.addingTimeInterval(30 * Self.day), id: "s2", properties: #"{"path":"/blog"}"#),
        ])
        let u1 = try Self.contactID(h, "u1")
        var row = try h.db.query("SELECT value, reference_at FROM contact_scores WHERE contact_id = $1 AND name = 'engagement'", [.int(u1)]).rows[0]
        #expect(abs(row[0].double! - 6.5) < 1e-9)
        #expect(row[1].date == t0.addingTimeInterval(30 * Self.day))
        // Batch 2, out of order: a whitepaper at t0+15d (15), older than the reference: 6.5 + 15 * 0.5^(15/30) = 17.10660...
        // Then an unsubscribe at t0+60d (-20): (6.5 + 10.6066) * 0.5^(30/30) - 20 = -11.44669...
        try await Self.ingest(h, [
            Self.track("u1", "Whitepaper Downloaded", at: t0.addingTimeInterval(15 * Self.day), id: "s3"),
        ])
        row = try h.db.query("SELECT value, reference_at FROM contact_scores WHERE contact_id = $1", [.int(u1)]).rows[0]
        #expect(abs(row[0].double! - (6.5 + 15 * pow(0.5, 0.5))) < 1e-9)
        #expect(row[1].date == t0.addingTimeInterval(30 * Self.day))
        try await Self.ingest(h, [Self.track("u1", "Unsubscribed", at: t0.addingTimeInterval(60 * Self.day), id: "s4")])
        row = try h.db.query("SELECT value, reference_at FROM contact_scores WHERE contact_id = $1", [.int(u1)]).rows[0]
        #expect(abs(row[0].double! - ((6.5 + 15 * pow(0.5, 0.5)) * 0.5 - 20)) < 1e-9)
        #expect(row[1].date == t0.addingTimeInterval(60 * Self.day))
        // A duplicate messageId scores nothing.
        try await Self.ingest(h, [Self.track("u1", "Unsubscribed", at: t0.addingTimeInterval(60 * Self.day), id: "s4")])
        #expect(abs(try h.db.query("SELECT value FROM contact_scores WHERE contact_id = $1", [.int(u1)]).rows[0][0].double!
                    - ((6.5 + 15 * pow(0.5, 0.5)) * 0.5 - 20)) < 1e-9)
    }

    @Test func anonymousScoreAndSegmentsFollowTheContactIntoTheKnownOne() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try Self.apply(Self.scoring + "\n---\nkind: segment\nname: pricing-curious\nwhere: 'contact.score >= 10'\n", h)
        let now = Date()
        try await Self.ingest(h, [
            #"{"type":"page","anonymousId":"anon-1","name":"Pricing","properties":{"path":"/pricing"},"timestamp":"\#(Self.iso(now))","messageId":"a1"}"#,
        ])
        #expect(try h.count("SELECT count(*) FROM segment_memberships WHERE segment = 'pricing-curious'") == 1)
        try await Self.ingest(h, [
            #"{"type":"identify","userId":"known-1","anonymousId":"anon-1","traits":{"email":"k@example.com"},"messageId":"a2"}"#,
        ])
        let known = try Self.contactID(h, "known-1")
        // The page view scored 11 (pricing 10 + any page 1), decayed by seconds only.
        let score = try h.db.query("SELECT value FROM contact_scores WHERE contact_id = $1", [.int(known)]).rows[0][0].double!
        #expect(abs(score - 11) < 1e-6)
        #expect(try Self.members(h, "pricing-curious") == ["known-1"])
    }

    @Test func aSharedDeviceNeverMergesTwoKnownPeople() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        // Ann signs in on a shared laptop (anonymous id "laptop"), then Bob signs in on the same laptop.
        try await Self.ingest(h, [#"{"type":"identify","userId":"ann","anonymousId":"laptop","traits":{"email":"ann@example.com"},"messageId":"d1"}"#])
        try await Self.ingest(h, [
            #"{"type":"identify","userId":"bob","anonymousId":"laptop","traits":{"email":"bob@example.com"},"messageId":"d2"}"#,
            Self.track("bob", "Page Viewed", at: Date(), id: "d3"),
        ])
        let ann = try Self.contactID(h, "ann"), bob = try Self.contactID(h, "bob")
        #expect(ann > 0 && bob > 0 && ann != bob)
        #expect(try h.count("SELECT count(*) FROM contacts WHERE merged_into IS NOT NULL") == 0)
        #expect(try h.count("SELECT contact_id FROM identities WHERE kind = 'anonymous_id' AND value = 'laptop'") == ann)
        #expect(try h.db.query("SELECT email FROM contacts WHERE id = $1", [.int(bob)]).rows[0][0].string == "bob@example.com")
        #expect(try h.count("SELECT count(*) FROM events WHERE contact_id = $1", [.int(bob)]) == 1)
    }

    @Test func segmentsAreEnteredAndLeftInTheTransactionOfTheCausingEvent() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try Self.apply("""
            kind: segment
            name: frequent-buyers
            where: 'count("Order Completed", within: "30d") >= 2'
            ---
            kind: segment
            name: never-bought
            where: 'count("Order Completed") == 0'
            ---
            kind: segment
            name: big-frequent
            where: 'in_segment("frequent-buyers") and sum("Order Completed", "total") > 100'
            """, h)
        let now = Date()
        let order = { (user: String, id: String, total: Int) in
            Self.track(user, "Order Completed", at: now.addingTimeInterval(-Self.day), id: id, properties: #"{"total":\#(total)}"#)
        }
        // ann browses (enters never-bought), bob orders once (never enters it: his first batch has an order).
        try await Self.ingest(h, [Self.track("ann", "Page Viewed", at: now, id: "e1"), order("bob", "e2", 80)])
        #expect(try Self.members(h, "never-bought") == ["ann"])
        #expect(try Self.members(h, "frequent-buyers").isEmpty)
        // ann's first order: she leaves never-bought; bob's second: he enters frequent-buyers and (80 + 30 > 100) big-frequent.
        try await Self.ingest(h, [order("ann", "e3", 10), order("bob", "e4", 30)])
        #expect(try Self.members(h, "never-bought").isEmpty)
        #expect(try Self.members(h, "frequent-buyers") == ["bob"])
        #expect(try Self.members(h, "big-frequent") == ["bob"])
        #expect(try Self.transitions(h, "never-bought") == ["ann+", "ann-"])
        #expect(try Self.transitions(h, "frequent-buyers") == ["bob+"])

        // Time passes: 30 days after the orders the window no longer holds two; the scheduler's scan sees it.
        let later = now.addingTimeInterval(30 * Self.day)
        let report = try BehaviourScan().run(now: later, on: h.db)
        #expect(report.ran)
        #expect(try Self.members(h, "frequent-buyers").isEmpty)
        #expect(try Self.members(h, "big-frequent").isEmpty)
        #expect(try Self.transitions(h, "frequent-buyers") == ["bob+", "bob-"])
        // Nothing else changed: a second scan right after records nothing.
        _ = try BehaviourScan().run(now: later.addingTimeInterval(61), on: h.db)
        #expect(try Self.transitions(h, "frequent-buyers") == ["bob+", "bob-"])
        #expect(try Self.transitions(h, "never-bought") == ["ann+", "ann-"])
    }

    @Test func aNewOrChangedSegmentIsBuiltByTheScanAndADeletedOneEmptied() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let now = Date()
        try await Self.ingest(h, [
            Self.track("ann", "Order Completed", at: now, id: "o1", properties: #"{"total":60}"#),
            Self.track("bob", "Order Completed", at: now, id: "o2", properties: #"{"total":20}"#),
        ])
        try Self.apply("kind: segment\nname: buyers\nwhere: 'sum(\"Order Completed\", \"total\", within: \"365d\") > 50'\n", h)
        _ = try BehaviourScan().run(now: now, on: h.db)
        #expect(try Self.members(h, "buyers") == ["ann"])
        try Self.apply("kind: segment\nname: buyers\nwhere: 'sum(\"Order Completed\", \"total\", within: \"365d\") > 10'\n", h)
        _ = try BehaviourScan().run(now: now, on: h.db)
        #expect(try Self.members(h, "buyers") == ["ann", "bob"])
        try h.db.execute("UPDATE definition_heads SET deleted_at = $1 WHERE kind = 'segment' AND name = 'buyers'", [.timestamp(now)])
        let report = try BehaviourScan().run(now: now, on: h.db)
        #expect(report.dropped == ["buyers"])
        #expect(try Self.members(h, "buyers").isEmpty)
    }

    static let lifecycle = """
        kind: lifecycle
        stages: [subscriber, lead, mql, sql, customer, at_risk, churned]
        initial: subscriber
        rules:
          - to: lead
            when: 'event.name == "Signed Up"'
          - to: mql
            when: 'contact.stage == "lead" and contact.score >= 50'
          - to: sql
            when: 'event.name == "Demo Booked"'
          - to: customer
            when: 'event.name == "Order Completed"'
          - to: at_risk
            when: 'contact.stage == "customer" and count("*", within: "60d") == 0'
          - to: churned
            when: 'contact.stage == "at_risk" and count("*", within: "120d") == 0'
        """

    @Test func lifecycleMovesOnEventsAndAsTimePasses() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try Self.apply(Self.scoring + "\n---\n" + Self.lifecycle, h)
        let t = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 10 * Self.day).rounded())
        // Signed Up → lead; five pricing views score 5 * 11 = 55 (decay over minutes is negligible... but not zero:
        // all five happen at t+1h, so the score at now (≈ 10 days later) is 55 * 0.5^(10/30) ≈ 43.6 < 50 — so the
        // mql rule waits for more interest); a whitepaper (15 at t+2h, ≈ 11.9 now) lifts it over 50 → mql.
        var payloads = [Self.track("p1", "Signed Up", at: t, id: "l1")]
        for n in 0..<5 {
            payloads.append(Self.track("p1", "Page Viewed", at: t.addingTimeInterval(3600), id: "l2-\(n)", properties: #"{"path":"/pricing"}"#))
        }
        try await Self.ingest(h, payloads)
        let p1 = try Self.contactID(h, "p1")
        #expect(try h.db.query("SELECT stage FROM contacts WHERE id = $1", [.int(p1)]).rows[0][0].string == "lead")
        try await Self.ingest(h, [Self.track("p1", "Whitepaper Downloaded", at: t.addingTimeInterval(7200), id: "l3")])
        #expect(try h.db.query("SELECT stage FROM contacts WHERE id = $1", [.int(p1)]).rows[0][0].string == "mql")
        try await Self.ingest(h, [
            Self.track("p1", "Demo Booked", at: t.addingTimeInterval(3 * Self.day), id: "l4"),
            Self.track("p1", "Order Completed", at: t.addingTimeInterval(5 * Self.day), id: "l5", properties: #"{"total":99}"#),
        ])
        let path = try h.db.query("""
            SELECT COALESCE(from_stage, '-') || '>' || to_stage, at FROM lifecycle_transitions WHERE contact_id = $1 ORDER BY id
            """, [.int(p1)]).rows
        #expect(path.map { $0[0].string ?? "" } == ["->subscriber", "subscriber>lead", "lead>mql", "mql>sql", "sql>customer"])
        #expect(path[0][1].date == t)                                  // the first event
        #expect(path[1][1].date == t)                                  // Signed Up
        #expect(path[2][1].date == t.addingTimeInterval(7200))         // the whitepaper
        #expect(path[4][1].date == t.addingTimeInterval(5 * Self.day)) // the order

        // Time passes (the scheduler's scan): 61 days after the last event → at_risk; 121 days → churned.
        let lastEvent = t.addingTimeInterval(5 * Self.day)
        _ = try BehaviourScan().run(now: lastEvent.addingTimeInterval(59 * Self.day), on: h.db)
        #expect(try h.db.query("SELECT stage FROM contacts WHERE id = $1", [.int(p1)]).rows[0][0].string == "customer")
        _ = try BehaviourScan().run(now: lastEvent.addingTimeInterval(61 * Self.day), on: h.db)
        #expect(try h.db.query("SELECT stage FROM contacts WHERE id = $1", [.int(p1)]).rows[0][0].string == "at_risk")
        _ = try BehaviourScan().run(now: lastEvent.addingTimeInterval(121 * Self.day), on: h.db)
        let final = try h.db.query("SELECT stage, stage_entered_at FROM contacts WHERE id = $1", [.int(p1)]).rows[0]
        #expect(final[0].string == "churned")
        #expect(final[1].date == lastEvent.addingTimeInterval(121 * Self.day))
        #expect(try h.count("SELECT count(*) FROM lifecycle_transitions WHERE contact_id = $1", [.int(p1)]) == 7)
    }

    @Test func theSchedulerReEvaluatesWhenTheInstallationClockJumps() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try Self.apply("kind: segment\nname: recent\nwhere: 'count(\"*\", within: \"7d\") > 0'\n", h)
        try await Self.ingest(h, [Self.track("ann", "Page Viewed", at: Date(), id: "c1")])
        #expect(try Self.members(h, "recent") == ["ann"])
        // A scan now records the periodic run: with a one-hour interval, the next is due only by the clock's jump.
        _ = try BehaviourScan(intervalSeconds: 3600).run(now: Date(), on: h.db)
        #expect(try Self.members(h, "recent") == ["ann"])
        // The clock of contract §7: advance the installation 8 days; a running scheduler notices within a second.
        let clock = InstallationClock(timeTravelAllowed: true)
        _ = try clock.advance(by: 8 * 86_400_000, db: h.db)
        var options = SchedulerOptions()
        options.namespace = h.namespace
        options.redis = try RedisConfig(url: h.redisURL)
        options.databaseURL = h.database.url
        let scheduler = SchedulerEngine(options: options, tasks: [.behaviourScan(BehaviourScan(intervalSeconds: 3600))], clock: clock)
        try scheduler.start()
        let left = try await eventually(within: 20) { try Self.members(h, "recent").isEmpty }
        await blocking { scheduler.stop() }
        #expect(left)
        #expect(try Self.transitions(h, "recent") == ["ann+", "ann-"])
    }
}
