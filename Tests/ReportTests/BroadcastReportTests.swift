import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// Rows of `report broadcast` tests, written with plain SQL. Times are relative to `t0` (10 days before the real
/// clock, so the CLI's real "now" is past every conversion window).
private struct BroadcastData {
    let db: PostgresConnection
    let t0 = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 / 3600).rounded(.down) * 3600 - 10 * 86_400)

    func at(hours: Double) -> Date { t0.addingTimeInterval(hours * 3600) }

    @discardableResult
    func contact(_ externalID: String, merged: Int64? = nil) throws -> Int64 {
        try #require(try db.query("""
            INSERT INTO contacts (external_id, email, merged_into, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id
            """, [.text(externalID), .text("\(externalID)@example.com"), PostgresValue(merged), .timestamp(at(hours: -1000))]).first?[0].int)
    }

    func broadcast(name: String, templates: [String], split: String?, winner: Int?) throws -> Int64 {
        try #require(try db.query("""
            INSERT INTO broadcasts (name, segment, templates, split, status, scheduled_at, recipients, created_at, started_at, finished_at, winner)
            VALUES ($1, 'newsletter', $2::text[], $3::int[], 'completed', $4, 0, $4, $4, $5, $6) RETURNING id
            """, [.text(name), .textArray(templates.map { Optional($0) }), PostgresValue(split), .timestamp(at(hours: -1)),
                  .timestamp(at(hours: 5)), PostgresValue(winner.map(Int64.init))]).first?[0].int)
    }

    func recipient(_ broadcast: Int64, _ contact: Int64, variant: Int) throws {
        // Recipients live in their batch's array; a batch belongs to one variant ((variant + 1) * 1,000,000 + n).
        try db.execute("""
            INSERT INTO broadcast_batches (broadcast_id, batch, state, contacts) VALUES ($1, ($3 + 1) * 1000000, 'done', ARRAY[$2::int8])
            ON CONFLICT (broadcast_id, batch) DO UPDATE SET contacts = broadcast_batches.contacts || $2::int8
            """, [.int(broadcast), .int(contact), .int(Int64(variant))])
    }

    /// A delivery of the broadcast to `contact`; returns its id. Accepted ones were sent at `sentHours`.
    @discardableResult
    func delivery(_ broadcast: Int64, _ contact: Int64?, template: String, status: String, error: String? = nil,
                  sentHours: Double = 0) throws -> String {
        let id = UUID().uuidString.lowercased()
        try db.execute("""
            INSERT INTO deliveries (id, dedupe_key, contact_id, channel, template, source_kind, source_name, broadcast_id, status,
                                    last_error, created_at, sent_at, updated_at)
            VALUES ($1::uuid, $2, $3, 'email', $4, 'broadcast', 'b', $5, $6, $7, $8, $9, $8)
            """, [.text(id), .text("bc:\(broadcast):\(contact.map(String.init) ?? id)"), PostgresValue(contact), .text(template),
                  .int(broadcast), .text(status), PostgresValue(error), .timestamp(at(hours: sentHours)),
                  status == "accepted" ? .timestamp(at(hours: sentHours)) : .null])
        return id
    }

    func event(_ contact: Int64, _ name: String, hours: Double, properties: String = "{}") throws {
        try db.execute("""
            INSERT INTO events (contact_id, message_id, type, name, properties, occurred_at, received_at)
            VALUES ($1, $2, 'track', $3, $4::jsonb, $5, $5)
            """, [.int(contact), .text(UUID().uuidString), .text(name), .text(properties), .timestamp(at(hours: hours))])
    }

    func engagement(_ contact: Int64, _ name: String, delivery: String, hours: Double = 1, machine: Bool? = nil) throws {
        let machineJSON = machine.map { #", "machine": \#($0)"# } ?? ""
        try event(contact, name, hours: hours, properties: #"{"delivery_id": "\#(delivery)"\#(machineJSON)}"#)
    }
}

/// The A/B broadcast of the tests (templates subj-a, subj-b; winner subj-b), figured by hand:
///
/// | contact | group | delivery | engagement (events naming the delivery) | Order Completed |
/// |---|---|---|---|---|
/// | c1  | A    | accepted at 0h      | 2 opens, 1 machine open, 1 click, unsubscribed | +2d: converted |
/// | c2  | A    | accepted at 0h      | 1 machine open only | +8d and -1h: outside |
/// | c3  | A    | rejected "HTTP 400: invalid address" | | +1d, but not accepted |
/// | c4  | A    | suppressed "unsubscribed" | | |
/// | c5  | B    | accepted at 0h      | 1 open, 2 clicks | exactly +7d: converted (inclusive) |
/// | c6  | B    | failed "render failed: x" | | |
/// | c7  | B    | pending | | |
/// | c8  | rest | accepted at 4h      | 1 open | +1d: converted |
/// | c9  | rest | accepted at 4h      | | merged into c13 since; c13 at +3d: converted |
/// | c10 | rest | rejected "HTTP 400: invalid address" | | |
/// | c11 | rest | skipped "no email address" | | |
/// | c12 | rest | (no delivery yet) | | |
///
/// Noise that must not count: c1's open of another broadcast's message, a `Page Viewed` naming d1, an
/// `Unsubscribed` without a delivery id (preference centre), a `Signed Up` of c9's survivor.
private func insertABBroadcast(_ data: BroadcastData) throws -> (ab: Int64, single: Int64) {
    let c = try (1...12).map { try data.contact("c\($0)") }
    let c13 = try data.contact("c13")
    let ab = try data.broadcast(name: "november", templates: ["subj-a", "subj-b"], split: "{10,10}", winner: 1)
    for (i, contact) in c.enumerated() { try data.recipient(ab, contact, variant: i < 4 ? 0 : i < 7 ? 1 : -1) }

    let d1 = try data.delivery(ab, c[0], template: "subj-a", status: "accepted")
    let d2 = try data.delivery(ab, c[1], template: "subj-a", status: "accepted")
    try data.delivery(ab, c[2], template: "subj-a", status: "rejected", error: "HTTP 400: invalid address")
    try data.delivery(ab, c[3], template: "subj-a", status: "suppressed", error: "unsubscribed")
    let d5 = try data.delivery(ab, c[4], template: "subj-b", status: "accepted")
    try data.delivery(ab, c[5], template: "subj-b", status: "failed", error: "render failed: x")
    try data.delivery(ab, c[6], template: "subj-b", status: "pending")
    let d8 = try data.delivery(ab, c[7], template: "subj-b", status: "accepted", sentHours: 4)
    try data.delivery(ab, c[8], template: "subj-b", status: "accepted", sentHours: 4)
    try data.delivery(ab, c[9], template: "subj-b", status: "rejected", error: "HTTP 400: invalid address")
    try data.delivery(ab, c[10], template: "subj-b", status: "skipped", error: "no email address")

    try data.engagement(c[0], "Email Opened", delivery: d1, machine: false)
    try data.engagement(c[0], "Email Opened", delivery: d1, hours: 30)
    try data.engagement(c[0], "Email Opened", delivery: d1, hours: 0.01, machine: true)
    try data.engagement(c[0], "Email Clicked", delivery: d1, hours: 2)
    try data.engagement(c[0], "Unsubscribed", delivery: d1, hours: 3)
    try data.engagement(c[1], "Email Opened", delivery: d2, machine: true)
    try data.engagement(c[4], "Email Opened", delivery: d5)
    try data.engagement(c[4], "Email Clicked", delivery: d5)
    try data.engagement(c[4], "Email Clicked", delivery: d5, hours: 5)
    try data.engagement(c[7], "Email Opened", delivery: d8, hours: 6)
    try data.engagement(c[0], "Page Viewed", delivery: d1)
    try data.event(c[8], "Unsubscribed", hours: 8, properties: #"{"source": "preference-centre"}"#)

    try data.event(c[0], "Order Completed", hours: 48)
    try data.event(c[1], "Order Completed", hours: 8 * 24)
    try data.event(c[1], "Order Completed", hours: -1)
    try data.event(c[2], "Order Completed", hours: 24)
    try data.event(c[4], "Order Completed", hours: 7 * 24)
    try data.event(c[7], "Order Completed", hours: 4 + 24)
    try data.db.execute("UPDATE contacts SET merged_into = $2 WHERE id = $1", [.int(c[8]), .int(c13)])
    try data.event(c13, "Order Completed", hours: 4 + 72)
    try data.event(c13, "Signed Up", hours: 5)

    // Another broadcast (one template): c1 plus 60 contacts whose messages failed, each for its own reason.
    let single = try data.broadcast(name: "digest", templates: ["digest"], split: nil, winner: nil)
    try data.recipient(single, c[0], variant: 0)
    let other = try data.delivery(single, c[0], template: "digest", status: "accepted")
    try data.engagement(c[0], "Email Opened", delivery: other)
    for i in 1...60 {
        let contact = try data.contact("f\(i)")
        try data.recipient(single, contact, variant: 0)
        try data.delivery(single, contact, template: "digest", status: "failed", error: String(format: "error %02d", i))
    }
    return (ab, single)
}

@Suite struct BroadcastReportTests {
    @Test func figuresTotalsAndVariantsMatchTheHandComputedFigures() throws {
        let (database, db) = try migratedDatabase("broadcast_report")
        defer { db.close(); database.drop() }
        let data = BroadcastData(db: db)
        let (ab, _) = try insertABBroadcast(data)

        // Now: 7d2h after the first sends; the rest (sent at 4h) still has 2h of its window to go.
        let rule = BroadcastConversionRule(event: "Order Completed", withinMilliseconds: 7 * 86_400_000)
        let report = try #require(try BroadcastReportStore().report(ab, conversion: rule, now: data.at(hours: 7 * 24 + 2), on: db))
        #expect(report.name == "november" && report.segment == "newsletter" && report.status == "completed")
        #expect(report.templates == ["subj-a", "subj-b"] && report.split == [10, 10] && report.winner == "subj-b")
        #expect(report.conversion == rule)

        let t = report.totals
        #expect([t.recipients, t.deliveries, t.sent, t.accepted, t.failed, t.suppressed, t.skipped, t.pending, t.unprocessed]
                == [12, 11, 8, 5, 3, 1, 1, 1, 1])
        #expect([t.uniqueOpens, t.opens, t.machineOpened, t.machineOpens, t.uniqueClicks, t.clicks, t.unsubscribed] == [3, 4, 2, 2, 2, 3, 1])
        #expect(t.converted == 4 && t.conversionWindowOpen == 2)
        #expect(t.deliveryRate == 0.625 && t.openRate == 0.6 && t.clickRate == 0.4 && t.clickToOpenRate == 2.0 / 3.0)
        #expect(t.unsubscribeRate == 0.2 && t.conversionRate == 0.8)
        #expect(t.failures == [BroadcastReasonCount(status: "rejected", reason: "HTTP 400: invalid address", count: 2),
                               BroadcastReasonCount(status: "failed", reason: "render failed: x", count: 1)])
        #expect(t.notSent == [BroadcastReasonCount(status: "skipped", reason: "no email address", count: 1),
                              BroadcastReasonCount(status: "suppressed", reason: "unsubscribed", count: 1)])

        #expect(report.variants.map(\.variant) == [0, 1, -1])
        #expect(report.variants.map(\.label) == ["A", "B", "rest"])
        #expect(report.variants.map(\.template) == ["subj-a", "subj-b", "subj-b"])
        let (a, b, rest) = (report.variants[0].figures, report.variants[1].figures, report.variants[2].figures)
        #expect([a.recipients, a.deliveries, a.accepted, a.failed, a.suppressed, a.skipped, a.pending, a.unprocessed] == [4, 4, 2, 1, 1, 0, 0, 0])
        #expect([a.uniqueOpens, a.opens, a.machineOpened, a.machineOpens, a.uniqueClicks, a.clicks, a.unsubscribed] == [1, 2, 2, 2, 1, 1, 1])
        #expect(a.converted == 1 && a.conversionWindowOpen == 0 && a.openRate == 0.5 && a.conversionRate == 0.5)
        #expect(a.failures == [BroadcastReasonCount(status: "rejected", reason: "HTTP 400: invalid address", count: 1)])
        #expect(a.notSent == [BroadcastReasonCount(status: "suppressed", reason: "unsubscribed", count: 1)])
        #expect([b.recipients, b.deliveries, b.accepted, b.failed, b.suppressed, b.skipped, b.pending, b.unprocessed] == [3, 3, 1, 1, 0, 0, 1, 0])
        #expect([b.uniqueOpens, b.opens, b.machineOpened, b.machineOpens, b.uniqueClicks, b.clicks, b.unsubscribed] == [1, 1, 0, 0, 1, 2, 0])
        #expect(b.converted == 1 && b.conversionWindowOpen == 0 && b.deliveryRate == 0.5 && b.clickRate == 1)
        #expect(b.failures == [BroadcastReasonCount(status: "failed", reason: "render failed: x", count: 1)] && b.notSent.isEmpty)
        #expect([rest.recipients, rest.deliveries, rest.accepted, rest.failed, rest.suppressed, rest.skipped, rest.pending, rest.unprocessed]
                == [5, 4, 2, 1, 0, 1, 0, 1])
        #expect([rest.uniqueOpens, rest.opens, rest.machineOpened, rest.machineOpens, rest.uniqueClicks, rest.clicks, rest.unsubscribed]
                == [1, 1, 0, 0, 0, 0, 0])
        #expect(rest.converted == 2 && rest.conversionWindowOpen == 2 && rest.clickToOpenRate == 0)

        // A shorter window: only conversions within a day (c8 at exactly +1d; c1's at +2d and c5's at +7d are out).
        let day = try #require(try BroadcastReportStore().report(
            ab, conversion: BroadcastConversionRule(event: "Order Completed", withinMilliseconds: 86_400_000), now: data.at(hours: 1000), on: db))
        #expect(day.totals.converted == 1 && day.totals.conversionWindowOpen == 0)
        #expect(day.variants.map { $0.figures.converted } == [0, 0, 1])

        // Without a conversion rule: no conversion figures; another event name converts nobody.
        let plain = try #require(try BroadcastReportStore().report(ab, now: data.at(hours: 1000), on: db))
        #expect(plain.totals.converted == nil && plain.totals.conversionRate == nil && plain.conversion == nil)
        #expect(plain.totals.opens == 4 && plain.variants.count == 3)
        let none = try #require(try BroadcastReportStore().report(
            ab, conversion: BroadcastConversionRule(event: "Nothing", withinMilliseconds: 1000), now: data.at(hours: 1000), on: db))
        #expect(none.totals.converted == 0 && none.totals.conversionRate == 0)

        #expect(try BroadcastReportStore().report(999_999, now: Date(), on: db) == nil)
    }

    @Test func singleTemplateHasNoVariantsAndFoldsRareReasons() throws {
        let (database, db) = try migratedDatabase("broadcast_report_single")
        defer { db.close(); database.drop() }
        let data = BroadcastData(db: db)
        let (_, single) = try insertABBroadcast(data)

        let report = try #require(try BroadcastReportStore().report(single, now: data.at(hours: 1000), on: db))
        #expect(report.variants.isEmpty && report.winner == nil && report.split == nil)
        let t = report.totals
        #expect([t.recipients, t.deliveries, t.accepted, t.failed, t.uniqueOpens, t.opens, t.machineOpens, t.clicks, t.unsubscribed]
                == [61, 61, 1, 60, 1, 1, 0, 0, 0])
        // 50 reasons listed (equal counts: by reason), the other 10 summed.
        let limit = BroadcastReportStore.reasonLimit
        #expect(t.failures.count == limit + 1)
        #expect(t.failures.prefix(3).map(\.reason) == ["error 01", "error 02", "error 03"])
        #expect(t.failures.prefix(limit).allSatisfy { $0.status == "failed" && $0.count == 1 })
        #expect(t.failures.last == BroadcastReasonCount(status: "", reason: BroadcastReportStore.otherReasons, count: Int64(60 - limit)))

        // The JSON round-trips.
        let encoded = try JSONEncoder().encode(report)
        #expect(try JSONDecoder().decode(BroadcastReport.self, from: encoded) == report)
    }

    @Test func reportBroadcastCLI() throws {
        let (database, db) = try migratedDatabase("report_broadcast")
        defer { db.close(); database.drop() }
        let data = BroadcastData(db: db)
        let (ab, single) = try insertABBroadcast(data)

        let run = try nurture(["report", "broadcast", String(ab), "--conversion", "Order Completed", "--within", "7d", "--json"], database: database)
        #expect(run.exitCode == 0, "\(run.stderr)")
        let report = try run.json()
        #expect(report["broadcast"] as? Int64 == ab && report["name"] as? String == "november" && report["winner"] as? String == "subj-b")
        #expect(report["templates"] as? [String] == ["subj-a", "subj-b"] && report["split"] as? [Int] == [10, 10])
        let conversion = try #require(report["conversion"] as? [String: Any])
        #expect(conversion["event"] as? String == "Order Completed" && conversion["within_ms"] as? Int64 == 7 * 86_400_000)
        #expect((report["created_at"] as? String)?.hasSuffix("Z") == true && report["now"] is String)
        let totals = try #require(report["totals"] as? [String: Any])
        func ints(_ figures: [String: Any], _ keys: [String]) -> [Int?] { keys.map { figures[$0] as? Int } }
        let keys = ["recipients", "deliveries", "sent", "accepted", "failed", "suppressed", "skipped", "pending", "unprocessed",
                    "unique_opens", "opens", "machine_opened", "machine_opens", "unique_clicks", "clicks", "unsubscribed", "converted",
                    "conversion_window_open"]
        // The real clock is 10 days past the sends: every window is over.
        #expect(ints(totals, keys) == [12, 11, 8, 5, 3, 1, 1, 1, 1, 3, 4, 2, 2, 2, 3, 1, 4, 0])
        #expect(totals["delivery_rate"] as? Double == 0.625 && totals["open_rate"] as? Double == 0.6)
        #expect(totals["click_rate"] as? Double == 0.4 && totals["unsubscribe_rate"] as? Double == 0.2 && totals["conversion_rate"] as? Double == 0.8)
        let failures = try #require(totals["failures"] as? [[String: Any]])
        #expect(failures.map { $0["status"] as? String } == ["rejected", "failed"])
        #expect(failures.map { $0["reason"] as? String } == ["HTTP 400: invalid address", "render failed: x"])
        #expect(failures.map { $0["count"] as? Int } == [2, 1])
        #expect((totals["not_sent"] as? [[String: Any]])?.map { $0["status"] as? String } == ["skipped", "suppressed"])
        let variants = try #require(report["variants"] as? [[String: Any]])
        #expect(variants.map { $0["label"] as? String } == ["A", "B", "rest"])
        #expect(variants.map { $0["variant"] as? Int } == [0, 1, -1])
        #expect(variants.map { $0["template"] as? String } == ["subj-a", "subj-b", "subj-b"])
        #expect(variants.map { $0["accepted"] as? Int } == [2, 1, 2])
        #expect(variants.map { $0["unique_opens"] as? Int } == [1, 1, 1])
        #expect(variants.map { $0["converted"] as? Int } == [1, 1, 2])
        #expect(variants.map { $0["open_rate"] as? Double } == [0.5, 1, 0.5])

        // Without --conversion every key is still there, null.
        let plain = try nurture(["report", "broadcast", String(single), "--json"], database: database)
        #expect(plain.exitCode == 0, "\(plain.stderr)")
        let plainReport = try plain.json()
        #expect(plainReport["conversion"] is NSNull && plainReport["split"] is NSNull && plainReport["winner"] is NSNull)
        #expect((plainReport["totals"] as? [String: Any])?["converted"] is NSNull)
        #expect((plainReport["variants"] as? [Any])?.isEmpty == true)

        let text = try nurture(["report", "broadcast", String(ab), "--conversion", "Order Completed"], database: database)
        #expect(text.exitCode == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(text.stdout.contains(#"broadcast \#(ab) "november" (completed); segment newsletter; templates subj-a, subj-b; split 10,10; winner subj-b"#),
                "\(text.stdout)")
        #expect(text.stdout.contains(#"conversion: "Order Completed" within 7d"#), "\(text.stdout)")
        let header = try #require(lines.first { $0.hasPrefix(" ") && $0.contains("all") })
        #expect(header.split(separator: " ").map(String.init) == ["all", "A", "subj-a", "B", "subj-b", "rest", "→", "subj-b"], "\(header)")
        let accepted = try #require(lines.first { $0.hasPrefix("accepted ") })
        #expect(accepted.split(separator: " ").map(String.init) == ["accepted", "5", "(62.5%)", "2", "(66.7%)", "1", "(50.0%)", "2", "(66.7%)"])
        let converted = try #require(lines.first { $0.hasPrefix("converted ") })
        #expect(converted.split(separator: " ").map(String.init) == ["converted", "4", "(80.0%)", "1", "(50.0%)", "1", "(100.0%)", "2", "(100.0%)"])
        #expect(text.stdout.contains("failed by reason"), "\(text.stdout)")
        let rejected = try #require(lines.first { $0.hasPrefix("rejected ") })
        #expect(rejected.split(separator: " ").map(String.init) == ["rejected", "2", "HTTP", "400:", "invalid", "address"])

        // Errors: unknown broadcast (1), --within without --conversion and bad durations (2: usage).
        let unknown = try nurture(["report", "broadcast", "424242"], database: database)
        #expect(unknown.exitCode == 1 && unknown.stderr.contains("no broadcast 424242"), "\(unknown.stderr)")
        #expect(try nurture(["report", "broadcast", String(ab), "--within", "7d"], database: database).exitCode == 2)
        #expect(try nurture(["report", "broadcast", String(ab), "--conversion", "X", "--within", "7 parsecs"], database: database).exitCode == 2)
        #expect(try nurture(["report", "broadcast", "abc"], database: database).exitCode == 2)
    }
}
