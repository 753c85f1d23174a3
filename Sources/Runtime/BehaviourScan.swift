import Domain
import Foundation
import Logging
import Postgres
import Store

/// What one scan did.
public struct BehaviourScanReport: Sendable, Equatable {
    /// False when another scheduler held the scan lock (nothing was done).
    public var ran = false
    public var stageChanges = 0
    /// Segment name → entered/exited counts of the segments evaluated.
    public var segments: [String: (entered: Int, exited: Int)] = [:]
    public var dropped: [String] = []
    /// Workflow enrollments made by segment entries/exits the scan found.
    public var enrollments = 0

    public static func == (a: Self, b: Self) -> Bool {
        a.ran == b.ran && a.stageChanges == b.stageChanges && a.dropped == b.dropped && a.enrollments == b.enrollments
            && a.segments.mapValues { [$0.entered, $0.exited] } == b.segments.mapValues { [$0.entered, $0.exited] }
    }
}

/// The scheduler's side of live segments and lifecycle: what ingestion cannot see because nothing happened but time.
///
/// - A segment that is new or whose definition changed is evaluated over every contact once (by one scheduler;
///   `behaviour_scan_state` remembers the checksum evaluated). A deleted segment's memberships are removed
///   (exits recorded).
/// - Every `interval` of business time (and at once after the installation clock jumps forward), segments whose
///   condition is time-relative (`now()`, `within:`) — and the segments that depend on them — are re-evaluated over
///   every contact; so are lifecycle rules that need no event (e.g. `count("*", within: "60d") == 0`), and contacts
///   without a stage (imported ones) get the initial stage.
/// - Full evaluations are set-based SQL (`SQLCompiler.compileScan`: history aggregates joined once, not probed per
///   contact), in contact-id ranges of `chunk` ids (2M by default: each range re-reads the events of the window, so
///   fewer, larger ranges are faster; the range bounds how long one statement runs at very large sizes).
/// - One scan at a time across the fleet: a session advisory lock; others skip.
public struct BehaviourScan: Sendable {
    public var intervalSeconds: Double
    public var chunk: Int64

    public init(intervalSeconds: Double = 60, chunk: Int64 = 2_000_000) {
        self.intervalSeconds = intervalSeconds
        self.chunk = chunk
    }

    private static let lockKey = "nurture.behaviour-scan"

    /// Does what is due. `everything`: every segment and the lifecycle scan regardless of what is due (after a bulk
    /// import, which changes contacts without events).
    public func run(now: Date, on db: PostgresConnection, logger: Logger? = nil, everything: Bool = false) throws -> BehaviourScanReport {
        var report = BehaviourScanReport()
        guard try db.query("SELECT pg_try_advisory_lock(hashtextextended(current_schema() || ':' || $1, 0))", [.text(Self.lockKey)]).rows.first?[0].bool == true else {
            return report
        }
        defer { _ = try? db.query("SELECT pg_advisory_unlock(hashtextextended(current_schema() || ':' || $1, 0))", [.text(Self.lockKey)]) }
        report.ran = true
        let rules = try BehaviourRules.load(on: db)
        var state: [String: (fingerprint: String, at: Date)] = [:]
        for row in try db.query("SELECT subject, fingerprint, scanned_at FROM behaviour_scan_state").rows {
            state[row[0].string ?? ""] = (row[1].string ?? "", row[2].date ?? .distantPast)
        }
        let last = state["periodic"]?.at
        let periodicDue = everything || last == nil || now.timeIntervalSince(last!) >= intervalSeconds || now < last!
        let store = SegmentStore()
        let ranges = try idRanges(store, on: db)

        // ── lifecycle ──
        if periodicDue, let lifecycle = rules.lifecycle {
            report.stageChanges = try scanLifecycle(lifecycle, rules: rules, now: now, ranges: ranges, on: db)
        }

        // ── segments ──
        var selected = Set<String>()
        for segment in rules.segments {
            let changed = state["segment:\(segment.name)"]?.fingerprint != segment.checksum
            let timely = periodicDue && (segment.reads.timeRelative || (segment.reads.stage && report.stageChanges > 0))
            if everything || changed || timely || !segment.reads.segments.isDisjoint(with: selected) { selected.insert(segment.name) }
        }
        let catalog = try WorkflowCatalog.load(on: db)
        let triggers = WorkflowTriggers(catalog: catalog, now: now)
        for segment in rules.segments where selected.contains(segment.name) {
            var entered = 0, exited = 0
            // A segment's first build, or its rebuild after its definition changed, is a baseline: nobody "entered"
            // it by doing something, so it fires no segment or `when:` triggers.
            let baseline = state["segment:\(segment.name)"]?.fingerprint != segment.checksum
            for (lo, hi) in ranges {
                let predicate = segmentPredicate(segment.condition, now: now, options: rules.compilerOptions, mode: .scan)
                let changes = try db.transaction { db in
                    let changes = try store.reconcile(segment: segment.name, predicate: predicate, scope: .idRange(lo, hi), at: now, on: db)
                    if !baseline { report.enrollments += try triggers.applySegmentChanges([segment.name: changes], on: db).count }
                    return changes
                }
                entered += changes.entered.count
                exited += changes.exited.count
            }
            report.segments[segment.name] = (entered, exited)
            try db.execute("""
                INSERT INTO behaviour_scan_state (subject, fingerprint, scanned_at) VALUES ($1, $2, $3)
                ON CONFLICT (subject) DO UPDATE SET fingerprint = excluded.fingerprint, scanned_at = excluded.scanned_at
                """, [.text("segment:\(segment.name)"), .text(segment.checksum), .timestamp(now)])
            logger?.info("segment evaluated", metadata: ["segment": "\(segment.name)", "entered": "\(entered)", "exited": "\(exited)"])
        }
        let current = Set(rules.segments.map(\.name))
        for subject in state.keys.sorted() where subject.hasPrefix("segment:") {
            let name = String(subject.dropFirst("segment:".count))
            guard !current.contains(name) else { continue }
            _ = try store.drop(segment: name, at: now, on: db)
            try db.execute("DELETE FROM behaviour_scan_state WHERE subject = $1", [.text(subject)])
            report.dropped.append(name)
        }
        if periodicDue {
            try db.execute("""
                INSERT INTO behaviour_scan_state (subject, fingerprint, scanned_at) VALUES ('periodic', '', $1)
                ON CONFLICT (subject) DO UPDATE SET scanned_at = excluded.scanned_at
                """, [.timestamp(now)])
        }
        return report
    }

    /// Contact-id ranges of at most `chunk` ids covering every contact.
    private func idRanges(_ store: SegmentStore, on db: PostgresConnection) throws -> [(Int64, Int64)] {
        guard let (lo, hi) = try store.idBounds(on: db) else { return [] }
        var ranges: [(Int64, Int64)] = []
        var start = lo
        while start <= hi {
            let end = min(hi, start + chunk - 1)
            ranges.append((start, end))
            start = end + 1
        }
        return ranges
    }

    /// Initial stages for contacts without one, then each rule that needs no event, in order, over every contact
    /// (a contact moves at most once per scan). Returns the number of stage changes.
    private func scanLifecycle(_ lifecycle: LifecycleDefinition, rules: BehaviourRules, now: Date,
                               ranges: [(Int64, Int64)], on db: PostgresConnection) throws -> Int {
        var moved = 0
        let live = "c.merged_into IS NULL AND c.erased_at IS NULL"
        for (lo, hi) in ranges {
            moved += try db.query("""
                WITH moved AS (
                    UPDATE contacts c SET stage = $1, stage_entered_at = COALESCE(c.first_seen_at, c.created_at), updated_at = $2
                    WHERE c.stage IS NULL AND \(live) AND c.id BETWEEN $3 AND $4
                    RETURNING c.id, c.stage_entered_at)
                INSERT INTO lifecycle_transitions (contact_id, from_stage, to_stage, at, cause)
                SELECT id, NULL, $1, stage_entered_at, 'initial stage' FROM moved
                """, [.text(lifecycle.initial), .timestamp(now), .int(lo), .int(hi)]).affectedRows
        }
        for (n, rule) in lifecycle.rules.enumerated() where !rule.when.reads.triggeringEvent {
            for (lo, hi) in ranges {
                let predicate = segmentPredicate(rule.when, now: now, options: rules.compilerOptions, mode: .scan)
                let sql = """
                    WITH want AS (
                        SELECT c.id, c.stage AS from_stage FROM contacts c \(predicate.joins)
                        WHERE \(live) AND c.id BETWEEN $3 AND $4 AND c.stage IS DISTINCT FROM $1
                          AND c.stage_entered_at IS DISTINCT FROM $2 AND \(predicate.condition)),
                    moved AS (UPDATE contacts c SET stage = $1, stage_entered_at = $2, updated_at = $2 FROM want WHERE c.id = want.id)
                    INSERT INTO lifecycle_transitions (contact_id, from_stage, to_stage, at, cause)
                    SELECT id, from_stage, $1, $2, 'scan: rule \(n + 1)' FROM want
                    """
                // $3/$4 are also the bounds the scan joins restrict their aggregates to (SegmentStore's convention).
                let parameters: [PostgresValue] = [.text(rule.to), .timestamp(now), .int(lo), .int(hi)]
                moved += try db.query(sql, parameters + predicate.parameters).affectedRows
            }
        }
        return moved
    }
}

extension PeriodicTask {
    /// Runs `BehaviourScan` every second (one scheduler per tick; the scan itself decides what is due).
    public static func behaviourScan(_ scan: BehaviourScan, logger: Logger = Logger(label: "nurture.scan")) -> PeriodicTask {
        PeriodicTask(name: "behaviour-scan", intervalMilliseconds: 1_000) { db, clock in
            let started = Date()
            let report = try scan.run(now: clock.now(), on: db, logger: logger)
            if report.stageChanges > 0 || !report.segments.isEmpty || !report.dropped.isEmpty {
                logger.info("behaviour scan", metadata: [
                    "stage_changes": "\(report.stageChanges)", "segments": "\(report.segments.count)",
                    "dropped": "\(report.dropped.count)", "ms": "\(Int(Date().timeIntervalSince(started) * 1000))",
                ])
            }
        }
    }
}
