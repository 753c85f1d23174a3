import Redis

/// A token bucket shared by the whole worker fleet (contract §5 `rate_limit: N/s`), kept in Redis.
///
/// One Lua script per call (`QueueScripts.takeToken`, run by SHA): it reads the Redis server's `TIME` (so hosts
/// with skewed clocks agree), refills the bucket for the time passed, and takes the tokens only when there are
/// enough. The bucket key is `QueueKeys.rateBucket(name)` = `<ns>:rate:{<name>}`: its own hash tag, so each bucket
/// is one Redis Cluster slot, and it expires once it would be full again anyway.
public struct RateLimiter: Sendable {
    public let keys: QueueKeys

    public init(namespace: String) {
        self.keys = QueueKeys(namespace: namespace)
    }

    public struct InvalidRate: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    /// Takes `count` tokens from bucket `name` refilling at `perSecond` with capacity `burst` (default: max(1, perSecond)).
    /// Returns 0 when granted, else the milliseconds to wait before trying again (tokens are NOT taken then).
    /// A `count` larger than the bucket is granted once the bucket is full (the capacity is raised to `count`).
    public func acquire(_ redis: RedisConnection, name: String, perSecond: Double, burst: Double? = nil, count: Int = 1) throws -> Int64 {
        guard perSecond.isFinite, perSecond > 0 else {
            throw InvalidRate(description: "rate limit \(name): \(perSecond)/s is not a positive rate")
        }
        guard count >= 0 else { throw InvalidRate(description: "rate limit \(name): cannot take \(count) tokens") }
        if count == 0 { return 0 }
        var capacity = burst ?? max(1, perSecond)
        if !capacity.isFinite || capacity < 1 { capacity = 1 }
        capacity = max(capacity, Double(count))
        let reply = try redis.evaluate(QueueScripts.takeToken, keys: [.string(keys.rateBucket(name))],
                                       arguments: [.double(perSecond), .double(capacity), .int(Int64(count))])
        return max(0, reply.int ?? 0)
    }
}
