import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// The lifecycle used by every test here: five stages, the last of which nobody reaches.
private let lifecycleSpec = #"{"initial":"subscriber","kind":"lifecycle","rules":[],"stages":["subscriber","lead","customer","churned","archived"]}"#

/// Writes the known dataset (times in days relative to `dataset.now`, N below).
///
/// Live contacts and their transitions (stage from day):
///   A  subscriber -20, lead -15, customer -5                          (now customer)
///   B  subscriber -10, lead -4                                        (now lead)
///   C  subscriber -8                                                  (now subscriber)
///   D  subscriber -30, lead -25, customer -24, churned -14, customer -3 (now customer)
///   E  subscriber -6, lead -6 (same instant, recorded second)         (now lead)
///   I  subscriber -12, lead -11, subscriber -10                       (now subscriber)
///   K  subscriber -40, customer -39, lead -1                          (now lead)
///   L  subscriber -3, legacy -2 (a stage not in the definition)      (counts in totals only)
///   H  no transitions, no stage                                       (counts in totals only)
/// Left out everywhere: F (merged into A; subscriber -9, lead -3, events) and G (erased; subscriber -7, events).
///
/// Events (day offsets): A -1 -2 -3 -27 -29; D -0.5 +1; B -4 -3.5; K -1 -28.5; C -8; H -5; F -2; G -1.
private func insertDataset(_ data: Dataset) throws {
    try data.define(kind: "lifecycle", name: "default", spec: lifecycleSpec)
    let a = try data.contact("A", stage: "customer")
    let b = try data.contact("B", stage: "lead")
    let c = try data.contact("C", stage: "subscriber")
    let d = try data.contact("D", stage: "customer")
    let e = try data.contact("E", stage: "lead")
    let i = try data.contact("I", stage: "subscriber")
    let k = try data.contact("K", stage: "lead")
    let h = try data.contact("H", stage: nil)
    let l = try data.contact("L", stage: "legacy")
    let f = try data.contact("F", stage: "lead", merged: a)
    let g = try data.contact("G", stage: "subscriber", erased: true)
    try data.transitions(a, [("subscriber", -20), ("lead", -15), ("customer", -5)])
    try data.transitions(b, [("subscriber", -10), ("lead", -4)])
    try data.transitions(c, [("subscriber", -8)])
    try data.transitions(d, [("subscriber", -30), ("lead", -25), ("customer", -24), ("churned", -14), ("customer", -3)])
    try data.transitions(e, [("subscriber", -6), ("lead", -6)])
    try data.transitions(i, [("subscriber", -12), ("lead", -11), ("subscriber", -10)])
    try data.transitions(k, [("subscriber", -40), ("customer", -39), ("lead", -1)])
    try data.transitions(l, [("subscriber", -3), ("legacy", -2)])
    try data.transitions(f, [("subscriber", -9), ("lead", -3)])
    try data.transitions(g, [("subscriber", -7)])
    try data.events(a, [-1, -2, -3, -27, -29])
    try data.events(d, [-0.5, 1])
    try data.events(b, [-4, -3.5])
    try data.events(k, [-1, -28.5])
    try data.events(c, [-8])
    try data.events(h, [-5])
    try data.events(f, [-2])
    try data.events(g, [-1])
}

/// Hand-computed expectations for the 28-day window.
///
/// contacts (current stage, live): subscriber C I = 2; lead B E K = 3; customer A D = 2; churned 0; archived 0;
///   total A B C D E I K L H = 9.
/// avg_days_in_stage (a stay ends at the next transition, or N):
///   subscriber: A 5, B 6, C 8 (-8 → N), D 5, E 0, I 1 and 10 (-10 → N), K 1, L 1 (ends at legacy) = 37 / 9
///   lead: A 10, B 4 (→ N), D 1, E 6 (→ N), I 1, K 1 (→ N) = 23 / 6
///   customer: A 5 (→ N), D 10 and 3 (→ N), K 38 = 56 / 4 = 14
///   churned: D 11 = 11 / 1;  archived: no stay → null
/// conversion_rate (entered the next stage after first entering this one):
///   subscriber → lead: entered A B C D E I K L = 8; converted all but C and L (E at the same instant, recorded
///     after, counts) = 6 / 8
///   lead → customer: entered A B D E I K = 6; converted A, D (K was a customer before its lead stay) = 2 / 6
///   customer → churned: entered A D K = 3; converted D = 1 / 3
///   churned → archived: entered D = 1; converted 0 = 0
///   archived: last stage → null
/// engagement (events in [N - 28d, N) / contacts / 4 weeks):
///   subscriber: C -8 = 1 / 2 / 4 = 0.125
///   lead: B -4 -3.5, K -1 (K -28.5 outside) = 3 / 3 / 4 = 0.25
///   customer: A -1 -2 -3 -27 (A -29 outside), D -0.5 (D +1 in the future) = 5 / 2 / 4 = 0.625
///   churned, archived: no contacts → null
///   total: 5 + 3 + 1 + H's 1 = 10 / 9 / 4 (F's and G's events are left out)
private struct Expected {
    let stage: String
    let contacts: Int64
    let avgDays: Double?
    let conversion: Double?
    let engagement: Double?
}

private let expected28d: [Expected] = [
    Expected(stage: "subscriber", contacts: 2, avgDays: 37.0 / 9, conversion: 6.0 / 8, engagement: 0.125),
    Expected(stage: "lead", contacts: 3, avgDays: 23.0 / 6, conversion: 2.0 / 6, engagement: 0.25),
    Expected(stage: "customer", contacts: 2, avgDays: 14, conversion: 1.0 / 3, engagement: 0.625),
    Expected(stage: "churned", contacts: 0, avgDays: 11, conversion: 0, engagement: nil),
    Expected(stage: "archived", contacts: 0, avgDays: nil, conversion: nil, engagement: nil),
]

private func close(_ a: Double?, _ b: Double?, tolerance: Double) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return abs(x - y) <= tolerance
    default: return false
    }
}

@Suite struct LifecycleReportTests {
    @Test func metricsMatchTheHandComputedValues() throws {
        let (database, db) = try migratedDatabase("lifecycle_report")
        defer { db.close(); database.drop() }
        let now = Date(timeIntervalSince1970: 1_790_000_000)
        let data = Dataset(db: db, now: now)
        try insertDataset(data)
        let store = LifecycleReportStore()

        let report = try #require(try store.report(now: now, windowMilliseconds: 28 * 86_400_000, on: db))
        #expect(report.lifecycle == "default" && report.version == 1)
        #expect(report.now == now && report.windowDays == 28)
        #expect(report.stages.map(\.stage) == expected28d.map(\.stage))
        for (got, want) in zip(report.stages, expected28d) {
            #expect(got.contacts == want.contacts, "\(want.stage)")
            #expect(close(got.avgDaysInStage, want.avgDays, tolerance: 1e-9), "\(want.stage): \(String(describing: got.avgDaysInStage))")
            #expect(close(got.conversionRate, want.conversion, tolerance: 1e-12), "\(want.stage): \(String(describing: got.conversionRate))")
            #expect(close(got.engagement, want.engagement, tolerance: 1e-12), "\(want.stage): \(String(describing: got.engagement))")
        }
        #expect(report.totalContacts == 9)
        #expect(close(report.totalEngagement, 10.0 / 9 / 4, tolerance: 1e-12))

        // A 7-day window (1 week): subscriber C -8 is outside = 0 / 2 / 1 = 0; lead B -4 -3.5, K -1 = 3 / 3 / 1 = 1;
        // customer A -1 -2 -3, D -0.5 = 4 / 2 / 1 = 2; total + H -5 = 8 / 9 / 1.
        let week = try #require(try store.report(now: now, windowMilliseconds: 7 * 86_400_000, on: db))
        #expect(week.stages.map(\.engagement) == [0, 1, 2, nil, nil])
        #expect(close(week.totalEngagement, 8.0 / 9, tolerance: 1e-12))

        // The window is [N - 28d, N): an event exactly at N - 28d counts, one exactly at N does not.
        // subscriber: C -8 -28 = 2 / 2 / 4 = 0.25; total 11 / 9 / 4.
        try data.events(try #require(try db.query("SELECT id FROM contacts WHERE external_id = 'C'").first?[0].int), [-28, 0])
        let edges = try #require(try store.report(now: now, windowMilliseconds: 28 * 86_400_000, on: db))
        #expect(edges.stages[0].engagement == 0.25)
        #expect(close(edges.totalEngagement, 11.0 / 9 / 4, tolerance: 1e-12))
    }

    @Test func noUsableLifecycleIsAUserError() throws {
        let (database, db) = try migratedDatabase("lifecycle_none")
        defer { db.close(); database.drop() }
        #expect(try LifecycleReportStore().report(now: Date(), windowMilliseconds: 86_400_000, on: db) == nil)

        let run = try nurture(["report", "lifecycle"], database: database)
        #expect(run.exitCode == 1)
        #expect(run.stderr.contains("nurture apply") && run.stderr.contains("kind: lifecycle"), "\(run.stderr)")
        #expect(run.stdout.isEmpty)

        // More stages than the SQL's bit set holds: refused, not miscounted.
        let stages = (1...63).map { "\"s\($0)\"" }.joined(separator: ",")
        try Dataset(db: db, now: Date()).define(kind: "lifecycle", name: "default",
                                                spec: #"{"initial":"s1","kind":"lifecycle","rules":[],"stages":[\#(stages)]}"#)
        #expect(throws: LifecycleReportStore.TooManyStages.self) {
            try LifecycleReportStore().report(now: Date(), windowMilliseconds: 86_400_000, on: db)
        }
        let tooMany = try nurture(["report", "lifecycle"], database: database)
        #expect(tooMany.exitCode == 1)
        #expect(tooMany.stderr.contains("63 stages"), "\(tooMany.stderr)")
    }

    /// The CLI on the real clock: the dataset is written relative to the current time, so the child's `now` is
    /// a few seconds later than N (ongoing stays are a few seconds longer: compared to 0.01 day).
    @Test func cliPrintsTheSameMetrics() throws {
        let (database, db) = try migratedDatabase("lifecycle_cli")
        defer { db.close(); database.drop() }
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        try insertDataset(Dataset(db: db, now: now))

        let run = try nurture(["report", "lifecycle", "--json"], database: database)
        #expect(run.exitCode == 0, "\(run.stderr)")
        let json = try run.json()
        #expect(json["window_days"] as? Double == 28)
        #expect(json["lifecycle"] as? String == "default")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let nowText = try #require(json["now"] as? String)
        let reported = try #require(formatter.date(from: nowText))
        #expect(reported >= now && reported < now.addingTimeInterval(120))
        let stages = try #require(json["stages"] as? [[String: Any]])
        #expect(stages.map { $0["stage"] as? String } == expected28d.map(\.stage))
        func number(_ value: Any?) -> Double? { value as? Double }
        for (got, want) in zip(stages, expected28d) {
            #expect(Set(got.keys) == ["stage", "contacts", "avg_days_in_stage", "conversion_rate", "engagement"])
            #expect(got["contacts"] as? Int64 == want.contacts, "\(want.stage)")
            #expect(close(number(got["avg_days_in_stage"]), want.avgDays, tolerance: 0.01), "\(want.stage): \(got)")
            #expect(close(number(got["conversion_rate"]), want.conversion, tolerance: 1e-9), "\(want.stage): \(got)")
            #expect(close(number(got["engagement"]), want.engagement, tolerance: 1e-9), "\(want.stage): \(got)")
            // Undefined metrics are explicit nulls, never missing.
            for key in ["avg_days_in_stage", "conversion_rate", "engagement"] { #expect(got[key] != nil) }
        }
        let totals = try #require(json["totals"] as? [String: Any])
        #expect(totals["contacts"] as? Int64 == 9)
        #expect(close(number(totals["engagement"]), 10.0 / 9 / 4, tolerance: 1e-9))

        let text = try nurture(["report", "lifecycle"], database: database)
        #expect(text.exitCode == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("lifecycle default (v1) at ") == true, "\(text.stdout)")
        #expect(lines.first?.hasSuffix("engagement over the last 28d") == true, "\(text.stdout)")
        let rows = Dictionary(lines.dropFirst(2).map { line in
            let cells = line.split(separator: " ").map(String.init)
            return (cells[0], cells)
        }, uniquingKeysWith: { first, _ in first })
        #expect(lines[1].split(separator: " ", omittingEmptySubsequences: true).first == "stage")
        #expect(rows["lead"] == ["lead", "3", "3.8", "33.3%", "0.25"])
        #expect(rows["churned"] == ["churned", "0", "11.0", "0.0%", "-"])
        #expect(rows["archived"] == ["archived", "0", "-", "-", "-"])
        #expect(rows["total"] == ["total", "9", "0.28"])

        let badWindow = try nurture(["report", "lifecycle", "--window", "soon"], database: database)
        #expect(badWindow.exitCode == 2, "\(badWindow.stderr)")
    }
}
