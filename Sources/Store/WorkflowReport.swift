import Foundation
import Postgres

/// How many contacts one workflow enrolled and where those runs are now (`nurture workflows`, `report workflow`).
/// Every count is of enrollments (a contact that re-entered counts once per run).
public struct WorkflowEnrollmentCounts: Sendable, Hashable {
    public let workflow: String
    /// Every enrollment ever made.
    public let enrolled: Int64
    public let active: Int64
    /// Ran to the end of the steps.
    public let completed: Int64
    /// Left early: `exit_when`, or the contact was erased or merged.
    public let exited: Int64
    /// Could not run (its workflow version is not stored).
    public let failed: Int64
    /// Exits because `exit_when` held (`exit_reason` starting with `exit_when`): the workflow's goal was reached.
    public let goalExits: Int64

    public init(workflow: String, enrolled: Int64, active: Int64, completed: Int64, exited: Int64, failed: Int64, goalExits: Int64) {
        self.workflow = workflow
        self.enrolled = enrolled
        self.active = active
        self.completed = completed
        self.exited = exited
        self.failed = failed
        self.goalExits = goalExits
    }

    /// A workflow nobody entered yet.
    public static func none(_ workflow: String) -> WorkflowEnrollmentCounts {
        WorkflowEnrollmentCounts(workflow: workflow, enrolled: 0, active: 0, completed: 0, exited: 0, failed: 0, goalExits: 0)
    }

    /// Goal conversion: exits by `exit_when` / enrolled (nil when nobody enrolled).
    public var goalConversionRate: Double? { enrolled > 0 ? Double(goalExits) / Double(enrolled) : nil }
    /// Completed / enrolled (nil when nobody enrolled).
    public var completionRate: Double? { enrolled > 0 ? Double(completed) / Double(enrolled) : nil }
}

/// What happened at one step number of a workflow (the 1-based number in reading order, as in `source.step`).
/// Counts are distinct enrollments.
public struct WorkflowStepMetrics: Sendable, Hashable {
    /// The step number; 0 collects exits that cannot be placed at a step.
    public let step: Int
    /// Enrollments with any row for this step other than an exit (the step ran, or was deferred).
    public let reached: Int64
    /// wait / if / tag / untag / set / score ran.
    public let done: Int64
    /// `if` steps: the condition held (`then`) or not (`else`).
    public let then: Int64
    public let otherwise: Int64
    /// send steps: the provider accepted the message.
    public let sent: Int64
    public let failed: Int64
    /// Not sent: the address is suppressed, the contact unsubscribed or erased.
    public let suppressed: Int64
    /// Not sent: a frequency cap was reached.
    public let capped: Int64
    /// Not sent: the contact has no address for the channel.
    public let noAddress: Int64
    /// Held back by quiet hours at least once (the step then ran later).
    public let deferredQuietHours: Int64
    /// Enrollments that exited while at this step, before it ran (waiting for it, or stopped by `exit_when` just
    /// before it); `goalExits` of them by `exit_when`.
    public let exited: Int64
    public let goalExits: Int64

    public init(step: Int, reached: Int64 = 0, done: Int64 = 0, then: Int64 = 0, otherwise: Int64 = 0, sent: Int64 = 0,
                failed: Int64 = 0, suppressed: Int64 = 0, capped: Int64 = 0, noAddress: Int64 = 0, deferredQuietHours: Int64 = 0,
                exited: Int64 = 0, goalExits: Int64 = 0) {
        self.step = step
        self.reached = reached
        self.done = done
        self.then = then
        self.otherwise = otherwise
        self.sent = sent
        self.failed = failed
        self.suppressed = suppressed
        self.capped = capped
        self.noAddress = noAddress
        self.deferredQuietHours = deferredQuietHours
        self.exited = exited
        self.goalExits = goalExits
    }
}

/// Where a step is in one version of a workflow: its path (`enrollments.step_path`, e.g. `"4.then.0"`) and number.
/// The report uses these to place exits: an exited enrollment keeps the path of the step it was at.
public struct WorkflowStepPosition: Sendable, Hashable {
    public let version: Int
    public let path: String
    public let number: Int

    public init(version: Int, path: String, number: Int) {
        self.version = version
        self.path = path
        self.number = number
    }
}

/// Read-only, set-based queries over workflow runs (`enrollments`, `enrollment_steps`) for the CLI: one statement
/// per call, no per-enrollment work.
public struct WorkflowReportStore: Sendable {
    public init() {}

    /// Enrollment counts per workflow name (every version, or only `version`), by name; `workflow` nil = all
    /// workflows that ever enrolled anyone. A workflow without enrollments has no entry.
    public func counts(workflow: String? = nil, version: Int? = nil, on db: PostgresConnection) throws -> [WorkflowEnrollmentCounts] {
        try db.query("""
            SELECT workflow,
                   count(*) AS enrolled,
                   count(*) FILTER (WHERE state = 'active') AS active,
                   count(*) FILTER (WHERE state = 'completed') AS completed,
                   count(*) FILTER (WHERE state = 'exited') AS exited,
                   count(*) FILTER (WHERE state = 'failed') AS failed,
                   count(*) FILTER (WHERE state = 'exited' AND exit_reason LIKE 'exit\\_when%') AS goal_exits
            FROM enrollments
            WHERE ($1::text IS NULL OR workflow = $1) AND ($2::int8 IS NULL OR workflow_version = $2)
            GROUP BY workflow
            ORDER BY workflow
            """, [PostgresValue(workflow), PostgresValue(version)]).rows.map { row in
            WorkflowEnrollmentCounts(workflow: row["workflow"].string ?? "", enrolled: row["enrolled"].int ?? 0,
                                     active: row["active"].int ?? 0, completed: row["completed"].int ?? 0,
                                     exited: row["exited"].int ?? 0, failed: row["failed"].int ?? 0,
                                     goalExits: row["goal_exits"].int ?? 0)
        }
    }

    /// One workflow's counts (zeros when nobody enrolled).
    public func counts(of workflow: String, version: Int? = nil, on db: PostgresConnection) throws -> WorkflowEnrollmentCounts {
        try counts(workflow: workflow, version: version, on: db).first ?? .none(workflow)
    }

    /// The versions of `workflow` that enrollments ran on, ascending.
    public func enrolledVersions(of workflow: String, on db: PostgresConnection) throws -> [Int] {
        try db.query("SELECT DISTINCT workflow_version FROM enrollments WHERE workflow = $1 ORDER BY 1",
                     [.text(workflow)]).rows.compactMap { $0[0].int.map(Int.init) }
    }

    /// Per step number of `workflow` (every version, or only `version`), what its enrollments did there, by step
    /// number; only steps with something to count are returned (the caller fills in the rest). Exits are placed at
    /// the step whose (version, path) in `positions` matches the exited enrollment's `step_path`; exits that match
    /// none are returned as step 0.
    public func steps(of workflow: String, version: Int? = nil, positions: [WorkflowStepPosition],
                      on db: PostgresConnection) throws -> [WorkflowStepMetrics] {
        try db.query("""
            WITH logged AS (
                SELECT step,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome <> 'exited') AS reached,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'done') AS done,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'done' AND detail = 'then') AS then_taken,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'done' AND detail = 'else') AS else_taken,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'sent') AS sent,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'failed') AS failed,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'suppressed') AS suppressed,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'capped') AS capped,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'no_address') AS no_address,
                       count(DISTINCT enrollment_id) FILTER (WHERE outcome = 'deferred_quiet_hours') AS deferred
                FROM enrollment_steps
                WHERE workflow = $1 AND step > 0 AND ($2::int8 IS NULL OR workflow_version = $2)
                GROUP BY step
            ),
            positions AS (
                SELECT * FROM unnest($3::int8[], $4::text[], $5::int8[]) AS p(version, path, number)
            ),
            exits AS (
                SELECT coalesce(p.number, 0)::int AS step, count(*) AS exited,
                       count(*) FILTER (WHERE e.exit_reason LIKE 'exit\\_when%') AS goal_exits
                FROM enrollments e
                LEFT JOIN positions p ON p.version = e.workflow_version AND p.path = e.step_path
                WHERE e.workflow = $1 AND e.state = 'exited' AND ($2::int8 IS NULL OR e.workflow_version = $2)
                GROUP BY 1
            )
            SELECT coalesce(l.step, x.step) AS step,
                   coalesce(l.reached, 0) AS reached, coalesce(l.done, 0) AS done,
                   coalesce(l.then_taken, 0) AS then_taken, coalesce(l.else_taken, 0) AS else_taken,
                   coalesce(l.sent, 0) AS sent, coalesce(l.failed, 0) AS failed, coalesce(l.suppressed, 0) AS suppressed,
                   coalesce(l.capped, 0) AS capped, coalesce(l.no_address, 0) AS no_address, coalesce(l.deferred, 0) AS deferred,
                   coalesce(x.exited, 0) AS exited, coalesce(x.goal_exits, 0) AS goal_exits
            FROM logged l FULL JOIN exits x ON x.step = l.step
            ORDER BY 1
            """, [.text(workflow), PostgresValue(version),
                  .intArray(positions.map { Optional(Int64($0.version)) }), .textArray(positions.map { Optional($0.path) }),
                  .intArray(positions.map { Optional(Int64($0.number)) })]).rows.map { row in
            WorkflowStepMetrics(step: Int(row["step"].int ?? 0), reached: row["reached"].int ?? 0, done: row["done"].int ?? 0,
                                then: row["then_taken"].int ?? 0, otherwise: row["else_taken"].int ?? 0,
                                sent: row["sent"].int ?? 0, failed: row["failed"].int ?? 0,
                                suppressed: row["suppressed"].int ?? 0, capped: row["capped"].int ?? 0,
                                noAddress: row["no_address"].int ?? 0, deferredQuietHours: row["deferred"].int ?? 0,
                                exited: row["exited"].int ?? 0, goalExits: row["goal_exits"].int ?? 0)
        }
    }
}
