/// A fleet-wide rate limit attached to a job: the worker takes a token from the bucket `key` before running it.
public struct RateLimit: Sendable, Hashable, CustomStringConvertible {
    public var key: String
    public var perSecond: Double
    public var burst: Double

    public init(key: String, perSecond: Double, burst: Double? = nil) {
        self.key = key
        self.perSecond = perSecond
        self.burst = burst ?? max(1, (perSecond / 10).rounded(.down))
    }

    /// Parses `"50/s"`, `"3000/m"`, `"100/h"` (the provider file syntax).
    public static func parse(rate text: String, key: String) -> RateLimit? {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let n = Double(parts[0].trimmed(" ")), n > 0 else { return nil }
        switch parts[1].trimmed(" ") {
        case "s", "sec", "second": return RateLimit(key: key, perSecond: n)
        case "m", "min", "minute": return RateLimit(key: key, perSecond: n / 60)
        case "h", "hour": return RateLimit(key: key, perSecond: n / 3600)
        default: return nil
        }
    }

    var encoded: String { "\(key)|\(perSecond)|\(burst)" }

    init?(encoded: String) {
        let parts = encoded.split(separator: "|", omittingEmptySubsequences: false)
        guard parts.count == 3, let rate = Double(parts[1]), let burst = Double(parts[2]) else { return nil }
        self.init(key: String(parts[0]), perSecond: rate, burst: burst)
    }

    public var description: String { "\(key) \(perSecond)/s (burst \(burst))" }
}

extension StringProtocol {
    func trimmed(_ set: Character) -> String {
        var s = Substring(self)
        while s.first == set { s.removeFirst() }
        while s.last == set { s.removeLast() }
        return String(s)
    }
}

/// A job to put on a queue.
public struct NewJob: Sendable {
    public var kind: String
    /// The job's input, usually JSON. Opaque to the queue.
    public var payload: String
    public var queue: String
    /// Runs (first run + retries) before the job is dead-lettered.
    public var maxAttempts: Int
    /// Run no earlier than this many milliseconds from now (Redis server clock).
    public var delayMilliseconds: Int64
    /// With a unique key, a second enqueue while the key lives (`uniqueForMilliseconds`) is dropped.
    public var uniqueKey: String?
    public var uniqueForMilliseconds: Int64
    /// After this long the worker gives up on the run (it is retried like a failure).
    public var timeoutMilliseconds: Int64?
    public var rateLimit: RateLimit?
    /// Set to choose the job id (e.g. to correlate); otherwise a random one.
    public var id: String?

    public init(kind: String, payload: String = "{}", queue: String = "default", maxAttempts: Int = 20,
                delayMilliseconds: Int64 = 0, uniqueKey: String? = nil, uniqueForMilliseconds: Int64 = 3_600_000,
                timeoutMilliseconds: Int64? = nil, rateLimit: RateLimit? = nil, id: String? = nil) {
        self.kind = kind
        self.payload = payload
        self.queue = queue
        self.maxAttempts = maxAttempts
        self.delayMilliseconds = delayMilliseconds
        self.uniqueKey = uniqueKey
        self.uniqueForMilliseconds = uniqueForMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.rateLimit = rateLimit
        self.id = id
    }
}

/// A job fetched from a queue: its stream entry plus the fields it was enqueued with.
public struct Job: Sendable, Equatable {
    public var queue: String
    /// The stream entry id: the handle for ack, fail and hand-back. Changes when the job is retried.
    public var entryID: String
    /// Stable across retries.
    public var id: String
    public var kind: String
    public var payload: String
    /// 1 on the first run, 2 on the first retry, ...
    public var attempt: Int
    public var maxAttempts: Int
    /// When it was first enqueued (ms since 1970, enqueuer's clock).
    public var enqueuedAtMilliseconds: Int64
    public var timeoutMilliseconds: Int64?
    public var rateLimit: RateLimit?
    /// How many times a worker died while running it (reclaimed after its lease expired).
    public var lost: Int
    public var lastError: String?

    /// The stream fields, in the order they are written.
    func fields() -> [(String, String)] {
        var out: [(String, String)] = [("jid", id), ("kind", kind), ("payload", payload), ("attempt", String(attempt)),
                                       ("max", String(maxAttempts)), ("enq", String(enqueuedAtMilliseconds))]
        if let t = timeoutMilliseconds { out.append(("timeout", String(t))) }
        if let r = rateLimit { out.append(("rate", r.encoded)) }
        if lost > 0 { out.append(("lost", String(lost))) }
        if let e = lastError { out.append(("err", e)) }
        return out
    }

    /// A flat JSON object of the fields (string values), the form kept in the delayed set and dead letters.
    func json(extra: [(String, String)] = []) -> String {
        var s = "{\"queue\":"
        JSONText.appendString(queue, to: &s)
        for (k, v) in fields() + extra {
            s += ","
            JSONText.appendString(k, to: &s)
            s += ":"
            JSONText.appendString(v, to: &s)
        }
        s += "}"
        return s
    }

    /// Parses a stream entry's flat field list; nil when a required field is missing.
    init?(queue: String, entryID: String, fields: [RedisFieldPair]) {
        var jid: String?, kind: String?, payload = "", attempt = 1, max = 1, enq: Int64 = 0
        var timeout: Int64?, rate: RateLimit?, lost = 0, err: String?
        for (k, v) in fields {
            switch k {
            case "jid": jid = v
            case "kind": kind = v
            case "payload": payload = v
            case "attempt": attempt = Int(v) ?? 1
            case "max": max = Int(v) ?? 1
            case "enq": enq = Int64(v) ?? 0
            case "timeout": timeout = Int64(v)
            case "rate": rate = RateLimit(encoded: v)
            case "lost": lost = Int(v) ?? 0
            case "err": err = v
            default: break
            }
        }
        guard let kind else { return nil }
        self.queue = queue
        self.entryID = entryID
        self.id = jid ?? entryID
        self.kind = kind
        self.payload = payload
        self.attempt = attempt
        self.maxAttempts = max
        self.enqueuedAtMilliseconds = enq
        self.timeoutMilliseconds = timeout
        self.rateLimit = rate
        self.lost = lost
        self.lastError = err
    }

    public init(queue: String, entryID: String, id: String, kind: String, payload: String, attempt: Int, maxAttempts: Int,
                enqueuedAtMilliseconds: Int64, timeoutMilliseconds: Int64? = nil, rateLimit: RateLimit? = nil,
                lost: Int = 0, lastError: String? = nil) {
        self.queue = queue
        self.entryID = entryID
        self.id = id
        self.kind = kind
        self.payload = payload
        self.attempt = attempt
        self.maxAttempts = maxAttempts
        self.enqueuedAtMilliseconds = enqueuedAtMilliseconds
        self.timeoutMilliseconds = timeoutMilliseconds
        self.rateLimit = rateLimit
        self.lost = lost
        self.lastError = lastError
    }
}

typealias RedisFieldPair = (String, String)

/// Minimal JSON string escaping (RFC 8259) for the records the queue writes itself.
enum JSONText {
    static func appendString(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}
