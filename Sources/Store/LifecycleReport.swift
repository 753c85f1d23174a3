import Foundation
import Postgres

/// The lifecycle metrics of one stage (`nurture report lifecycle`). A metric that is undefined for the stage
/// (nobody to average over, no next stage) is nil.
public struct LifecycleStageMetrics: Sendable, Hashable {
    public let stage: String
    /// Live contacts whose current stage is this one.
    public let contacts: Int64
    /// Mean length, in days, of every stay in the stage recorded in `lifecycle_transitions` (a stay ends at the
    /// contact's next transition, or at `now` while it lasts). Nil when nobody ever entered the stage.
    public let avgDaysInStage: Double?
    /// Of the distinct contacts that ever entered the stage, the fraction that entered the next stage (in the
    /// definition's order) after first entering this one. Nil for the last stage and when nobody entered.
    public let conversionRate: Double?
    /// Events per contact per week over the report's window, for the contacts currently in the stage. Nil when
    /// the stage has no contacts.
    public let engagement: Double?

    public init(stage: String, contacts: Int64, avgDaysInStage: Double?, conversionRate: Double?, engagement: Double?) {
        self.stage = stage
        self.contacts = contacts
        self.avgDaysInStage = avgDaysInStage
        self.conversionRate = conversionRate
        self.engagement = engagement
    }
}

/// The lifecycle report: per-stage metrics in the definition's order, plus totals over every live contact.
public struct LifecycleReport: Sendable, Hashable {
    /// The lifecycle definition reported on (name and current version).
    public let lifecycle: String
    public let version: Int
    /// The installation-clock time the report was computed for.
    public let now: Date
    /// Length of the engagement window ending at `now`.
    public let windowMilliseconds: Int64
    public let stages: [LifecycleStageMetrics]
    /// Every live contact, including those whose stage is unset or not in the definition.
    public let totalContacts: Int64
    /// Events per contact per week over the window, over every live contact (nil when there are none).
    public let totalEngagement: Double?

    public var windowDays: Double { Double(windowMilliseconds) / 86_400_000 }
}

/// Computes the lifecycle report with set-based SQL (one statement for all metrics, so it stays fast at millions
/// of contacts). Merged (`merged_into`) and erased (`erased_at`) contacts are left out of every metric. Business
/// time is passed in (`now`), never SQL `now()`.
public struct LifecycleReportStore: Sendable {
    public init() {}

    /// The SQL tracks the stages a contact went through as the bits of a bigint.
    public static let maximumStages = 62

    /// The lifecycle has more stages than the report can track.
    public struct TooManyStages: Error, CustomStringConvertible {
        public let count: Int
        public var description: String {
            "the lifecycle has \(count) stages; the report handles at most \(LifecycleReportStore.maximumStages)"
        }
    }

    /// The report for the current lifecycle definition, or nil when no lifecycle has been applied. When several
    /// lifecycles are live, `default` wins, else the first by name (transitions do not record which one).
    public func report(now: Date, windowMilliseconds: Int64, on db: PostgresConnection) throws -> LifecycleReport? {
        precondition(windowMilliseconds > 0, "the engagement window must be positive")
        // One snapshot for the definition and the metrics.
        return try db.transaction(isolation: .repeatableRead) { db -> LifecycleReport? in
            guard let definition = try db.query("""
                SELECT h.name, h.version, ARRAY(SELECT jsonb_array_elements_text(d.spec -> 'stages')) AS stages
                FROM definition_heads h JOIN definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version
                WHERE h.kind = 'lifecycle' AND h.deleted_at IS NULL
                ORDER BY h.name = 'default' DESC, h.name LIMIT 1
                """).first else { return nil }
            let stages = (definition["stages"].stringArray ?? []).compactMap { $0 }
            guard stages.count <= Self.maximumStages else { throw TooManyStages(count: stages.count) }
            // JIT compilation of this one-off statement costs seconds and saves nothing.
            try db.execute("SET LOCAL jit = off")
            let windowStart = now.addingTimeInterval(-Double(windowMilliseconds) / 1000)
            let rows = try db.query(Self.metricsSQL, [.textArray(stages), .timestamp(now), .timestamp(windowStart)]).rows

            let weeks = Double(windowMilliseconds) / (7 * 86_400_000)
            func perWeek(events: Int64, contacts: Int64) -> Double? {
                contacts > 0 ? Double(events) / Double(contacts) / weeks : nil
            }
            let metrics = rows.enumerated().map { index, row in
                let contacts = row["contacts"].int ?? 0
                let entered = row["entered"].int ?? 0
                let isLast = index == rows.count - 1
                return LifecycleStageMetrics(
                    stage: row["stage"].string ?? "",
                    contacts: contacts,
                    avgDaysInStage: row["avg_days"].double,
                    conversionRate: isLast || entered == 0 ? nil : Double(row["converted"].int ?? 0) / Double(entered),
                    engagement: perWeek(events: row["window_events"].int ?? 0, contacts: contacts))
            }
            let totalContacts = rows.first?["total_contacts"].int ?? 0
            let totalEvents = rows.first?["total_window_events"].int ?? 0
            return LifecycleReport(lifecycle: definition["name"].string ?? "default", version: Int(definition["version"].int ?? 0),
                                   now: now, windowMilliseconds: windowMilliseconds, stages: metrics,
                                   totalContacts: totalContacts, totalEngagement: perWeek(events: totalEvents, contacts: totalContacts))
        }
    }

    /// $1 = the stages in order, $2 = now, $3 = now - window. One row per stage, in order.
    ///
    /// The transitions of live contacts are read once, in each contact's order (time, then id: a stage entered
    /// and left within the same instant still orders correctly), through a pipeline of window functions that
    /// share that order (no self-join, no per-contact grouping):
    /// - `ordered`: the stage's position `ord` (NULL for a stage no longer in the definition), when the stay
    ///   ended (the next transition; NULL while it lasts), and `before`, the stages entered earlier as bits
    ///   (bit ord-1 = stage ord);
    /// - `flagged`: `reached_from_previous` = the previous stage's bit when this transition enters stage ord
    ///   after the contact first entered stage ord-1 (a conversion from ord-1), else 0;
    /// - `per_stage`: per stage, the mean stay, the contacts that entered it (their first entry: its bit not yet
    ///   in `before`) and the contacts converted into it from the previous stage (counted at their first
    ///   conversion, when the bit is not yet in `reached_before`). Stage k's conversion rate is then
    ///   converted_in(k+1) / entered(k).
    /// `window_events` counts the window's events per current stage of their contact (any stage, for totals).
    static let metricsSQL = """
        WITH stages AS (
            SELECT s.stage, s.ord FROM unnest($1::text[]) WITH ORDINALITY AS s(stage, ord)
        ),
        live AS NOT MATERIALIZED (
            SELECT id, stage FROM contacts WHERE merged_into IS NULL AND erased_at IS NULL
        ),
        current_counts AS (
            SELECT stage, count(*) AS n FROM live GROUP BY stage
        ),
        ordered AS (
            SELECT t.contact_id, t.id, t.at, array_position($1::text[], t.to_stage) AS ord,
                   lead(t.at) OVER w AS left_at,
                   coalesce(bit_or(1::int8 << (array_position($1::text[], t.to_stage) - 1))
                            OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
            FROM lifecycle_transitions t JOIN live c ON c.id = t.contact_id
            WINDOW w AS (PARTITION BY t.contact_id ORDER BY t.at, t.id)
        ),
        flagged AS (
            SELECT *, CASE WHEN ord > 1 AND before & (1::int8 << (ord - 2)) <> 0 THEN 1::int8 << (ord - 2) ELSE 0 END
                      AS reached_from_previous
            FROM ordered
        ),
        per_stage AS (
            SELECT ord,
                   avg(extract(epoch FROM greatest(coalesce(left_at, $2) - at, interval '0')))::float8 / 86400 AS avg_days,
                   count(*) FILTER (WHERE before & (1::int8 << (ord - 1)) = 0) AS entered,
                   count(*) FILTER (WHERE reached_from_previous <> 0 AND reached_before & reached_from_previous = 0) AS converted_in
            FROM (SELECT *, coalesce(bit_or(reached_from_previous) OVER (PARTITION BY contact_id ORDER BY at, id
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS reached_before
                  FROM flagged) f
            WHERE ord IS NOT NULL
            GROUP BY ord
        ),
        window_events AS (
            SELECT c.stage, count(*) AS n
            FROM events e JOIN live c ON c.id = e.contact_id
            WHERE e.occurred_at >= $3 AND e.occurred_at < $2
            GROUP BY c.stage
        )
        SELECT s.stage,
               coalesce(cc.n, 0) AS contacts,
               ps.avg_days,
               coalesce(ps.entered, 0) AS entered,
               coalesce(nx.converted_in, 0) AS converted,
               coalesce(we.n, 0) AS window_events,
               (SELECT coalesce(sum(n), 0)::int8 FROM current_counts) AS total_contacts,
               (SELECT coalesce(sum(n), 0)::int8 FROM window_events) AS total_window_events
        FROM stages s
        LEFT JOIN current_counts cc ON cc.stage = s.stage
        LEFT JOIN per_stage ps ON ps.ord = s.ord
        LEFT JOIN per_stage nx ON nx.ord = s.ord + 1
        LEFT JOIN window_events we ON we.stage = s.stage
        ORDER BY s.ord
        """
}
