import Foundation
import Postgres

/// What a step did to its enrollment: applied for a whole batch of enrollments in one statement.
public struct EnrollmentMove: Sendable, Hashable {
    public enum Kind: String, Sendable {
        /// To the step `path` (sequence `seq`), due at `dueAt` (now: it runs in this job).
        case advance
        /// Past the last step: `completed`.
        case complete
        /// Stays on its step, due again at `dueAt` (quiet hours, a provider that is down, a rate limit, a pause).
        case postpone
        /// Ends as `state` (`exited`, `failed`) with `reason`.
        case finish
    }
    public var id: Int64
    public var kind: Kind
    public var seq: Int
    public var path: String?
    public var dueAt: Date?
    public var countAttempt: Bool
    public var state: String?
    public var reason: String?
    /// Keep the enrollment leased (`leaseSeconds` more): its next step runs now, in the same job, and the scheduler
    /// must not enqueue it meanwhile. Its `due_at` stays as it was (already past): the row's indexed columns do
    /// not change, so the update is HOT (no new index entries).
    public var keepLeaseSeconds: Double? = nil

    /// To the next step; `keepLeaseSeconds` when the same job runs it now.
    public static func advance(_ id: Int64, toSeq seq: Int, path: String, dueAt: Date, keepLeaseSeconds: Double? = nil) -> EnrollmentMove {
        EnrollmentMove(id: id, kind: .advance, seq: seq, path: path, dueAt: dueAt, countAttempt: false, state: nil, reason: nil,
                       keepLeaseSeconds: keepLeaseSeconds)
    }
    public static func complete(_ id: Int64, seq: Int) -> EnrollmentMove {
        EnrollmentMove(id: id, kind: .complete, seq: seq, path: nil, dueAt: nil, countAttempt: false, state: nil, reason: nil)
    }
    public static func postpone(_ id: Int64, until dueAt: Date, countAttempt: Bool) -> EnrollmentMove {
        EnrollmentMove(id: id, kind: .postpone, seq: 0, path: nil, dueAt: dueAt, countAttempt: countAttempt, state: nil, reason: nil)
    }
    public static func finish(_ id: Int64, state: String, reason: String?) -> EnrollmentMove {
        EnrollmentMove(id: id, kind: .finish, seq: 0, path: nil, dueAt: nil, countAttempt: false, state: state, reason: reason)
    }
}

/// One `enrollment_steps` row: what step `step` (1-based number) of an enrollment did at sequence `seq`.
public struct EnrollmentStepLog: Sendable, Hashable {
    public var enrollment: EnrollmentRow
    public var step: Int
    public var outcome: String
    public var detail: String?

    public init(_ enrollment: EnrollmentRow, step: Int, outcome: String, detail: String?) {
        self.enrollment = enrollment
        self.step = step
        self.outcome = outcome
        self.detail = detail
    }
}

/// The step runner's set-based statements: a batch of enrollments is locked, moved and logged with one statement
/// each, whatever the batch size.
extension EnrollmentStore {
    /// The enrollments among `ids`, locked for the rest of the transaction in id order (two runners locking
    /// overlapping batches wait for each other instead of deadlocking).
    public func lock(_ ids: [Int64], on db: PostgresConnection) throws -> [EnrollmentRow] {
        if ids.isEmpty { return [] }
        return try db.query("""
            SELECT id, workflow, workflow_version, contact_id, state, step_path, step_seq, trigger::text, attempts, due_at
            FROM enrollments WHERE id = ANY($1::int8[]) ORDER BY id FOR UPDATE
            """, [.intArray(ids.map { Optional($0) })]).rows.compactMap { row in
            guard let rid = row[0].int else { return nil }
            return EnrollmentRow(id: rid, workflow: row[1].string ?? "", version: Int(row[2].int ?? 0), contactId: row[3].int ?? 0,
                                 state: row[4].string ?? "", stepPath: row[5].string ?? "", stepSeq: Int(row[6].int ?? 0),
                                 triggerJSON: row[7].string ?? "{}", attempts: Int(row[8].int ?? 0), dueAt: row[9].date)
        }
    }

    /// Writes the step log rows and applies the moves (only to enrollments still active: a trigger fired by one
    /// step of the batch may have ended another), in one pipelined round trip. `now` is when the steps ran.
    public func apply(moves: [EnrollmentMove], logs: [EnrollmentStepLog], now: Date, on db: PostgresConnection) throws {
        var statements: [(String, [PostgresValue])] = []
        if !logs.isEmpty {
            statements.append(("""
                INSERT INTO enrollment_steps (enrollment_id, step_seq, workflow, workflow_version, step, outcome, detail, at)
                SELECT u.id, u.seq::int, u.w, u.v::int, u.step::int, u.outcome, u.detail, $8::timestamptz
                FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[])
                     AS u(id, seq, w, v, step, outcome, detail)
                """, [.intArray(logs.map { $0.enrollment.id }), .intArray(logs.map { Int64($0.enrollment.stepSeq) }),
                      .textArray(logs.map { $0.enrollment.workflow }), .intArray(logs.map { Int64($0.enrollment.version) }),
                      .intArray(logs.map { Int64($0.step) }), .textArray(logs.map { $0.outcome }), .textArray(logs.map { $0.detail }),
                      .timestamp(now)]))
        }
        if !moves.isEmpty {
            statements.append(("""
                UPDATE enrollments e SET
                    step_seq = CASE WHEN u.k IN ('advance', 'complete') THEN u.seq::int ELSE e.step_seq END,
                    step_path = CASE WHEN u.k = 'advance' THEN u.path ELSE e.step_path END,
                    state = CASE u.k WHEN 'complete' THEN 'completed' WHEN 'finish' THEN u.state ELSE e.state END,
                    due_at = CASE WHEN u.k = 'advance' AND u.lease IS NOT NULL THEN COALESCE(e.due_at, to_timestamp(u.due::float8))
                                  WHEN u.k IN ('advance', 'postpone') THEN to_timestamp(u.due::float8) END,
                    finished_at = CASE WHEN u.k IN ('complete', 'finish') THEN $9::timestamptz ELSE e.finished_at END,
                    exit_reason = CASE WHEN u.k = 'finish' THEN u.reason ELSE e.exit_reason END,
                    attempts = CASE WHEN u.k IN ('advance', 'complete') THEN 0 ELSE e.attempts + u.a::int END,
                    lease_until = CASE WHEN u.lease IS NULL THEN NULL ELSE clock_timestamp() + make_interval(secs => u.lease::float8) END
                FROM unnest($1::int8[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::text[], $8::text[], $10::text[])
                     AS u(id, k, seq, path, due, a, state, reason, lease)
                WHERE e.id = u.id AND e.state = 'active'
                """, [.intArray(moves.map { $0.id }), .textArray(moves.map { $0.kind.rawValue }), .intArray(moves.map { Int64($0.seq) }),
                      .textArray(moves.map { $0.path }), .textArray(moves.map { $0.dueAt.map { String($0.timeIntervalSince1970) } }),
                      .intArray(moves.map { $0.countAttempt ? 1 : 0 }), .textArray(moves.map { $0.state }),
                      .textArray(moves.map { $0.reason }), .timestamp(now),
                      .textArray(moves.map { $0.keepLeaseSeconds.map { String($0) } })]))
        }
        if statements.isEmpty { return }
        _ = try db.pipeline(statements)
    }
}

extension EnrollmentRow {
    /// This row as `apply` leaves it after `EnrollmentMove.advance(id, toSeq: seq, path: path, dueAt:,
    /// keepLeaseSeconds:)` (its next step runs in the same job): still active, at `seq` / `path`, attempts reset, due
    /// time kept (or `dueAt` if it had none).
    public func advanced(toSeq seq: Int, path: String, dueAt: Date) -> EnrollmentRow {
        EnrollmentRow(id: id, workflow: workflow, version: version, contactId: contactId, state: "active", stepPath: path, stepSeq: seq,
                      triggerJSON: triggerJSON, attempts: 0, dueAt: self.dueAt ?? dueAt)
    }
}
