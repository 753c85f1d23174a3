import Foundation
import Postgres

/// A segment's condition as SQL over `contacts c` (compiled from the expression by the runtime; the store does
/// not know the expression language).
public struct SegmentPredicate: Sendable {
    /// Appended after `FROM contacts c` (may be ""): the joins of a scan-mode predicate.
    public var joins: String
    /// Boolean, never NULL, over the alias `c` (and the joins).
    public var condition: String
    /// Bound to the placeholders `$N...` starting at `SegmentStore.firstPredicateParameter`.
    public var parameters: [PostgresValue]

    public init(joins: String = "", condition: String, parameters: [PostgresValue]) {
        self.joins = joins
        self.condition = condition
        self.parameters = parameters
    }
}

/// Which contacts a reconciliation looks at; memberships of contacts outside it are left alone.
public enum SegmentScope: Sendable {
    /// These contacts (after their events changed them).
    case contacts([Int64])
    /// Every contact whose id is in the range, inclusive (a full re-evaluation, or one chunk of it).
    case idRange(Int64, Int64)
}

/// Who entered and who left a segment, each ascending.
public struct SegmentChanges: Sendable, Equatable {
    public var entered: [Int64]
    public var exited: [Int64]

    public init(entered: [Int64] = [], exited: [Int64] = []) {
        self.entered = entered
        self.exited = exited
    }
}

/// Keeps `segment_memberships` equal to what the segments' conditions say, recording every entry and exit in
/// `segment_transitions` (what `segment_entered:` / `segment_exited:` triggers and reports read).
///
/// Only live contacts (`merged_into IS NULL AND erased_at IS NULL`) are members: a merged or erased contact in
/// the scope leaves. Business time (`at`) comes from the caller's installation clock.
public struct SegmentStore: Sendable {
    public init() {}

    /// The statement's own parameters come first: `$1` segment, `$2` at, `$3`/`$4` the lowest and highest contact
    /// id of the scope. A predicate's placeholders start here.
    public static let firstPredicateParameter = 5
    /// The scope's lowest and highest contact id as SQL, for predicates that restrict their own subqueries to the
    /// contacts being evaluated (`SQLCompiler.compileScan`'s `contactRange`); valid in `reconcileStatement` only.
    public static let scopeLowerBound = "$3::int8"
    public static let scopeUpperBound = "$4::int8"

    /// One statement (so callers can pipeline several): makes the memberships of `segment` among the contacts in
    /// `scope` equal to the live contacts there that satisfy `predicate`, inserts one `segment_transitions` row
    /// per change (`entered` true/false, `at`), and returns one row `(contact_id int8, entered bool)` per change
    /// (decode with `changes(from:)`).
    ///
    /// Data-modifying CTEs, one round trip: `diff` is a FULL JOIN of the wanted contacts with the current members
    /// in the scope, keeping the rows present on one side only; `entered` inserts the new ones, `exited` deletes
    /// the others, `logged` records both. A re-run where nothing changed writes nothing. Entries are inserted in
    /// contact order, which keeps the index insertions (and foreign-key checks) local. The FULL JOIN can only
    /// be a hash or merge join, so the plan stays linear even when the planner's statistics of
    /// `segment_memberships` are stale (an anti-join planned from statistics taken before the segment filled up
    /// becomes a nested loop, quadratic in the members). `ON CONFLICT DO NOTHING` and `DELETE` make a concurrent reconciliation of the
    /// same contacts harmless: only the statement that inserts or deletes a row reports and records the change.
    public func reconcileStatement(segment: String, predicate: SegmentPredicate, scope: SegmentScope, at: Date) -> (String, [PostgresValue]) {
        let lower: Int64, upper: Int64
        var contactFilter = "", memberFilter = ""
        var parameters: [PostgresValue] = [.text(segment), .timestamp(at)]
        switch scope {
        case .idRange(let first, let last):
            (lower, upper) = (first, last)
        case .contacts(let ids):
            (lower, upper) = (ids.min() ?? 1, ids.max() ?? 0)
            let p = "$\(SegmentStore.firstPredicateParameter + predicate.parameters.count)::int8[]"
            contactFilter = " AND c.id = ANY(\(p))"
            memberFilter = " AND contact_id = ANY(\(p))"
        }
        parameters += [.int(lower), .int(upper)] + predicate.parameters
        if case .contacts(let ids) = scope { parameters.append(.intArray(ids)) }
        let sql = """
            WITH want AS (
                SELECT c.id FROM contacts c \(predicate.joins)
                WHERE c.id BETWEEN $3::int8 AND $4::int8\(contactFilter)
                  AND c.merged_into IS NULL AND c.erased_at IS NULL AND (\(predicate.condition))
            ), diff AS (
                SELECT COALESCE(w.id, m.contact_id) AS contact_id, w.id IS NOT NULL AS entered
                FROM want w
                FULL JOIN (SELECT contact_id FROM segment_memberships
                           WHERE segment = $1::text AND contact_id BETWEEN $3::int8 AND $4::int8\(memberFilter)) m
                  ON m.contact_id = w.id
                WHERE w.id IS NULL OR m.contact_id IS NULL
            ), entered AS (
                INSERT INTO segment_memberships (segment, contact_id, entered_at)
                SELECT $1::text, contact_id, $2::timestamptz FROM diff WHERE entered ORDER BY contact_id
                ON CONFLICT (segment, contact_id) DO NOTHING
                RETURNING contact_id
            ), exited AS (
                DELETE FROM segment_memberships m USING diff d
                WHERE m.segment = $1::text AND m.contact_id = d.contact_id AND NOT d.entered
                RETURNING m.contact_id
            ), changed AS (
                SELECT contact_id, true AS entered FROM entered
                UNION ALL
                SELECT contact_id, false AS entered FROM exited
            ), logged AS (
                INSERT INTO segment_transitions (segment, contact_id, entered, at)
                SELECT $1::text, contact_id, entered, $2::timestamptz FROM changed
            )
            SELECT contact_id, entered FROM changed
            """
        return (sql, parameters)
    }

    /// Runs `reconcileStatement` and decodes its rows.
    public func reconcile(segment: String, predicate: SegmentPredicate, scope: SegmentScope, at: Date,
                          on db: PostgresConnection) throws -> SegmentChanges {
        let (sql, parameters) = reconcileStatement(segment: segment, predicate: predicate, scope: scope, at: at)
        return SegmentStore.changes(from: try db.query(sql, parameters))
    }

    /// The changes in the rows of a `reconcileStatement` result, each list ascending.
    public static func changes(from result: PostgresResult) -> SegmentChanges {
        var changes = SegmentChanges()
        for row in result.rows {
            guard let id = row[0].int else { continue }
            if row[1].bool == true { changes.entered.append(id) } else { changes.exited.append(id) }
        }
        changes.entered.sort()
        changes.exited.sort()
        return changes
    }

    public func memberCount(segment: String, on db: PostgresConnection) throws -> Int {
        Int(try db.query("SELECT count(*) FROM segment_memberships WHERE segment = $1", [.text(segment)]).rows[0][0].int ?? 0)
    }

    /// The members of `segment`, ascending.
    public func members(segment: String, on db: PostgresConnection) throws -> [Int64] {
        try db.query("SELECT contact_id FROM segment_memberships WHERE segment = $1 ORDER BY contact_id", [.text(segment)])
            .rows.compactMap { $0[0].int }
    }

    /// The lowest and highest `contacts.id` (nil when there are no contacts): the scope of a full re-evaluation.
    public func idBounds(on db: PostgresConnection) throws -> (Int64, Int64)? {
        let row = try db.query("SELECT min(id), max(id) FROM contacts").rows[0]
        guard let lower = row[0].int, let upper = row[1].int else { return nil }
        return (lower, upper)
    }

    /// Removes every membership of a deleted segment, recording each as an exit at `at`; returns how many.
    public func drop(segment: String, at: Date, on db: PostgresConnection) throws -> Int {
        let result = try db.query("""
            WITH gone AS (
                DELETE FROM segment_memberships WHERE segment = $1::text RETURNING contact_id
            ), logged AS (
                INSERT INTO segment_transitions (segment, contact_id, entered, at)
                SELECT $1::text, contact_id, false, $2::timestamptz FROM gone
            )
            SELECT count(*) FROM gone
            """, [.text(segment), .timestamp(at)])
        return Int(result.rows[0][0].int ?? 0)
    }
}
