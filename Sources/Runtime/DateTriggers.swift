import Domain
import Foundation
import Logging
import Postgres
import Store

/// Yearly date triggers (`date: contact.birthday` + `at: "09:00"`): every contact whose anniversary, at that local
/// time in the contact's time zone (else the settings' default), fell since the last check enrolls once for that
/// year (`trigger_key` `date:<year>`). Set-based SQL per workflow; a missed check (scheduler down, clock jumped) is
/// caught up because the window starts a day before the previous check.
public struct DateTriggers: Sendable {
    public init() {}

    /// Returns the number of enrollments made.
    @discardableResult
    public func run(now: Date, on db: PostgresConnection, logger: Logger? = nil) throws -> Int {
        let catalog = try WorkflowCatalog.load(on: db)
        var made = 0
        for w in catalog.dateTriggered where !catalog.paused.contains(w.name) {
            guard case .date(let attribute, let at) = w.definition.trigger else { continue }
            let subject = "date:\(w.name)"
            let last = try db.query("SELECT scanned_at FROM behaviour_scan_state WHERE subject = $1", [.text(subject)]).rows.first?[0].date
            let since = min(last ?? now, now).addingTimeInterval(-86_400)
            let reentry = WorkflowTriggers.reentry(w)
            let rows = try db.query("""
                WITH zones AS (SELECT name FROM pg_timezone_names),
                candidates AS (
                    SELECT c.id, COALESCE(z.name, $6) AS tz,
                           CASE WHEN v ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' THEN substr(v, 6, 2)::int
                                WHEN v ~ '^-{0,2}[0-9]{2}-[0-9]{2}$' THEN substr(ltrim(v, '-'), 1, 2)::int END AS m,
                           CASE WHEN v ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}' THEN substr(v, 9, 2)::int
                                WHEN v ~ '^-{0,2}[0-9]{2}-[0-9]{2}$' THEN substr(ltrim(v, '-'), 4, 2)::int END AS d
                    FROM contacts c
                    CROSS JOIN LATERAL (SELECT c.attributes->>$1 AS v) a
                    LEFT JOIN zones z ON z.name = c.timezone
                    WHERE c.attributes ? $1 AND c.merged_into IS NULL AND c.erased_at IS NULL
                ), occurrences AS (
                    SELECT id, y, make_timestamptz(y, m, LEAST(d, extract(day from (make_date(y, m, 1) + interval '1 month - 1 day'))::int),
                                                   $2::int, $3::int, 0::double precision, tz) AS at
                    FROM candidates
                    CROSS JOIN LATERAL (SELECT extract(year from ($4::timestamptz AT TIME ZONE tz))::int AS y) yy
                    WHERE m BETWEEN 1 AND 12 AND d BETWEEN 1 AND 31
                )
                INSERT INTO enrollments (workflow, workflow_version, contact_id, state, step_path, step_seq, due_at, trigger, trigger_key, started_at)
                SELECT $7, $8, o.id, 'active', $9, 0, $4, jsonb_build_object('date', $1::text, 'occurrence', o.at), 'date:' || o.y, $4
                FROM occurrences o
                WHERE o.at <= $4 AND o.at > $5
                  AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.workflow = $7 AND e.contact_id = o.id
                                    AND (e.state = 'active' OR $10 = 'never' OR ($10 = 'after' AND e.started_at > $4::timestamptz - make_interval(secs => $11))))
                ON CONFLICT DO NOTHING
                """, [.text(attribute), .int(Int64(at.hour)), .int(Int64(at.minute)), .timestamp(now), .timestamp(since),
                      .text(catalog.settings?.timezone ?? "UTC"), .text(w.name), .int(Int64(w.version)),
                      .text(w.program.start?.description ?? ""), .text(reentry.sqlKind), .double(reentry.seconds ?? 0)])
            made += rows.affectedRows
            try db.execute("""
                INSERT INTO behaviour_scan_state (subject, fingerprint, scanned_at) VALUES ($1, '', $2)
                ON CONFLICT (subject) DO UPDATE SET scanned_at = GREATEST(behaviour_scan_state.scanned_at, excluded.scanned_at)
                """, [.text(subject), .timestamp(now)])
            if rows.affectedRows > 0 {
                logger?.info("date trigger", metadata: ["workflow": "\(w.name)", "enrolled": "\(rows.affectedRows)"])
            }
        }
        return made
    }
}

extension PeriodicTask {
    /// Checks yearly date triggers every 5 seconds (one scheduler per tick).
    public static func dateTriggers(logger: Logger = Logger(label: "nurture.date-triggers")) -> PeriodicTask {
        PeriodicTask(name: "date-triggers", intervalMilliseconds: 5_000) { db, clock in
            try DateTriggers().run(now: clock.now(), on: db, logger: logger)
        }
    }
}
