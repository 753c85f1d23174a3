import Foundation
import JobQueue

/// The job that runs an enrollment's current step: `{"enrollment": ID, "seq": N}`. A job whose `seq` is not the
/// enrollment's current step sequence is stale (the step already ran) and does nothing.
public struct WorkflowStepJob: Sendable, Hashable {
    public static let kind = "workflow.step"
    /// Workflow steps share the `default` queue (after `transactional`, before `bulk` broadcasts).
    public static let queue = "default"
    /// How long (wall clock) a claimed enrollment is left to its job before the scheduler enqueues it again.
    public static let leaseSeconds = 30.0

    public var enrollment: Int64
    public var seq: Int
    /// Business time (ms) when the job was made: the runner's "now" is never earlier, so a worker whose copy of
    /// the installation clock is a moment behind a jump (`clock advance`) does not compute waits from the past.
    public var atMilliseconds: Int64?

    public init(enrollment: Int64, seq: Int, atMilliseconds: Int64? = nil) {
        self.enrollment = enrollment
        self.seq = seq
        self.atMilliseconds = atMilliseconds
    }

    public var payload: String {
        "{\"enrollment\":\(enrollment),\"seq\":\(seq)" + (atMilliseconds.map { ",\"at\":\($0)" } ?? "") + "}"
    }

    public func newJob() -> NewJob {
        NewJob(kind: Self.kind, payload: payload, queue: Self.queue, maxAttempts: 25, timeoutMilliseconds: 120_000)
    }

    public init?(payload: String) {
        guard let data = payload.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let e = (object["enrollment"] as? NSNumber)?.int64Value, let s = (object["seq"] as? NSNumber)?.intValue else { return nil }
        self.init(enrollment: e, seq: s, atMilliseconds: (object["at"] as? NSNumber)?.int64Value)
    }
}
