/// Redis key names of the job system. Every key starts with the namespace (contract §2) and carries the hash tag
/// `{<namespace>}`, so all of a namespace's queue keys live in one Redis Cluster slot and every Lua script below
/// touches exactly one slot (no CROSSSLOT errors). Rate-limit buckets are single-key scripts with their own tag.
public struct QueueKeys: Sendable, Hashable {
    public let namespace: String
    /// `<ns>:{<ns>}`: the prefix shared by every queue key.
    public let prefix: String

    public init(namespace: String) {
        self.namespace = namespace
        self.prefix = "\(namespace):{\(namespace)}"
    }

    /// The stream holding a queue's ready and in-flight jobs.
    public func stream(_ queue: String) -> String { "\(prefix):q:\(queue)" }
    /// Jobs waiting for a time (retries with backoff, `--in`), scored by due time in ms (Redis server clock).
    public func delayed(_ queue: String) -> String { "\(prefix):delayed:\(queue)" }
    /// Dead letters: job id → JSON record (reason, last error, payload, attempts).
    public func dead(_ queue: String) -> String { "\(prefix):dead:\(queue)" }
    /// Dead letters by time of death, for listing oldest/newest first.
    public func deadIndex(_ queue: String) -> String { "\(prefix):deadidx:\(queue)" }
    /// Totals: processed, failed, retried, dead.
    public func stats(_ queue: String) -> String { "\(prefix):stats:\(queue)" }
    /// Jobs processed in one wall-clock minute (expires after two hours).
    public func processedInMinute(_ queue: String, minute: Int64) -> String { "\(prefix):processed:\(queue):\(minute)" }
    /// Every queue name ever enqueued to.
    public var queues: String { "\(prefix):queues" }
    /// Paused queues (hash: queue → time paused).
    public var paused: String { "\(prefix):paused" }
    /// Live worker processes: consumer name → lease expiry (ms, Redis clock). Heartbeats push it forward.
    public var workers: String { "\(prefix):workers" }
    /// Details of one worker process (host, pid, queues, concurrency, busy), expiring with its lease.
    public func workerInfo(_ name: String) -> String { "\(prefix):worker:\(name)" }
    /// A unique-job guard.
    public func unique(_ key: String) -> String { "\(prefix):unique:\(key)" }
    /// A token bucket; its own hash tag, since it is shared by the whole fleet and touched by a one-key script.
    public func rateBucket(_ key: String) -> String { "\(namespace):rate:{\(key)}" }

    /// The consumer group every worker joins.
    public static let group = "workers"
}
