import Foundation
import JobQueue

/// The job that runs the current steps of a batch of enrollments: `{"steps": [[ENROLLMENT, SEQ], ...], "at": MS}`
/// (the single form `{"enrollment": ID, "seq": N}` of earlier versions is still read). An entry whose `SEQ` is not
/// the enrollment's current step sequence is stale (the step already ran) and does nothing.
public struct WorkflowStepJob: Sendable, Hashable {
    public static let kind = "workflow.step"
    /// Workflow steps share the `default` queue (after `transactional`, before `bulk` broadcasts).
    public static let queue = "default"
    /// How long (wall clock) a claimed enrollment is left to its job before the scheduler enqueues it again.
    public static let leaseSeconds = 30.0
    /// Enrollments per job: one job's steps are decided, sent and settled with a handful of set-based statements
    /// whatever its size; small enough that the fleet's slots share a burst.
    public static let batchSize = 50

    public struct Step: Sendable, Hashable {
        public var enrollment: Int64
        public var seq: Int
        public init(enrollment: Int64, seq: Int) {
            self.enrollment = enrollment
            self.seq = seq
        }
    }

    public var steps: [Step]
    /// Business time (ms) when the job was made: the runner's "now" is never earlier, so a worker whose copy of
    /// the installation clock is a moment behind a jump (`clock advance`) does not compute waits from the past.
    public var atMilliseconds: Int64?

    public init(steps: [Step], atMilliseconds: Int64? = nil) {
        self.steps = steps
        self.atMilliseconds = atMilliseconds
    }

    public init(enrollment: Int64, seq: Int, atMilliseconds: Int64? = nil) {
        self.init(steps: [Step(enrollment: enrollment, seq: seq)], atMilliseconds: atMilliseconds)
    }

    public var payload: String {
        var text = "{\"steps\":["
        for (i, step) in steps.enumerated() {
            if i > 0 { text += "," }
            text += "[\(step.enrollment),\(step.seq)]"
        }
        return text + "]" + (atMilliseconds.map { ",\"at\":\($0)" } ?? "") + "}"
    }

    public func newJob() -> NewJob {
        NewJob(kind: Self.kind, payload: payload, queue: Self.queue, maxAttempts: 25, timeoutMilliseconds: 120_000)
    }

    /// The jobs for these steps, `batchSize` per job.
    public static func jobs(_ steps: [Step], atMilliseconds: Int64?, batchSize: Int = WorkflowStepJob.batchSize) -> [NewJob] {
        stride(from: 0, to: steps.count, by: max(1, batchSize)).map { start in
            WorkflowStepJob(steps: Array(steps[start..<min(steps.count, start + max(1, batchSize))]), atMilliseconds: atMilliseconds).newJob()
        }
    }

    public init?(payload: String) {
        guard let data = payload.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
        let at = (object["at"] as? NSNumber)?.int64Value
        if let list = object["steps"] as? [Any] {
            var steps: [Step] = []
            steps.reserveCapacity(list.count)
            for entry in list {
                guard let pair = entry as? [NSNumber], pair.count == 2 else { return nil }
                steps.append(Step(enrollment: pair[0].int64Value, seq: pair[1].intValue))
            }
            self.init(steps: steps, atMilliseconds: at)
            return
        }
        guard let e = (object["enrollment"] as? NSNumber)?.int64Value, let s = (object["seq"] as? NSNumber)?.intValue else { return nil }
        self.init(enrollment: e, seq: s, atMilliseconds: at)
    }
}
