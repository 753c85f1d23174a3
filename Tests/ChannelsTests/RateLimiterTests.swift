import Foundation
import JobQueue
import Redis
import TestSupport
import Testing

@Suite struct RateLimiterTests {
    let redis: RedisConnection
    let limiter: RateLimiter

    init() throws {
        redis = try RedisConnection(url: try TestEnvironment.redisURL())
        limiter = RateLimiter(namespace: TestEnvironment.uniqueName("ratelimit"))
    }

    /// Grants the whole burst at once, then asks to wait; after waiting that long the next take is granted.
    /// Not timing-dependent: refilling only ever adds tokens, and the wait is measured on the server clock that the
    /// next call reads after the client slept at least that long.
    @Test func grantsUpToBurstThenWaitsThenGrantsAgain() throws {
        // 10/s, burst 3: a token every 100 ms.
        for _ in 0..<3 { #expect(try limiter.acquire(redis, name: "email", perSecond: 10, burst: 3) == 0) }
        var wait: Int64 = 0
        for _ in 0..<1_000 {
            wait = try limiter.acquire(redis, name: "email", perSecond: 10, burst: 3)
            if wait > 0 { break }
        }
        #expect(wait > 0 && wait <= 100)
        usleep(useconds_t(wait * 1000))
        #expect(try limiter.acquire(redis, name: "email", perSecond: 10, burst: 3) == 0)
    }

    @Test func refusedTakesDoNotConsume() throws {
        // 1 token per 100 s: after the burst nothing refills within the test.
        #expect(try limiter.acquire(redis, name: "slow", perSecond: 0.01, burst: 2, count: 2) == 0)
        let first = try limiter.acquire(redis, name: "slow", perSecond: 0.01, burst: 2)
        let second = try limiter.acquire(redis, name: "slow", perSecond: 0.01, burst: 2)
        #expect(first > 90_000 && first <= 100_000)
        // Had the refused take consumed, the second would wait twice as long.
        #expect(second > 90_000 && second <= first)
        // Asking for more than is there waits for the missing tokens.
        let many = try limiter.acquire(redis, name: "slow", perSecond: 0.01, burst: 2, count: 2)
        #expect(many > 190_000 && many <= 200_000)
    }

    @Test func namesAreIndependent() throws {
        #expect(try limiter.acquire(redis, name: "a", perSecond: 0.01) == 0)
        #expect(try limiter.acquire(redis, name: "a", perSecond: 0.01) > 0)
        #expect(try limiter.acquire(redis, name: "b", perSecond: 0.01) == 0)
        #expect(try limiter.acquire(redis, name: "b", perSecond: 0.01) > 0)
        // Same name, other namespace: another bucket.
        let other = RateLimiter(namespace: TestEnvironment.uniqueName("ratelimit"))
        #expect(try other.acquire(redis, name: "a", perSecond: 0.01) == 0)
    }

    @Test func defaultBurstIsTheRateAndCountsAboveItAreGrantedFromAFullBucket() throws {
        // burst defaults to max(1, perSecond) = 5.
        #expect(try limiter.acquire(redis, name: "d", perSecond: 5, count: 5) == 0)
        #expect(try limiter.acquire(redis, name: "d", perSecond: 5) > 0)
        // 0.01/s, one take of 3 from a fresh bucket: the capacity becomes 3 and the bucket starts full.
        #expect(try limiter.acquire(redis, name: "big", perSecond: 0.01, count: 3) == 0)
        #expect(throws: RateLimiter.InvalidRate.self) { try limiter.acquire(redis, name: "x", perSecond: 0) }
    }

    @Test func bucketKeyCarriesAHashTag() throws {
        _ = try limiter.acquire(redis, name: "tagged", perSecond: 1)
        let key = limiter.keys.rateBucket("tagged")
        #expect(key.hasSuffix("{tagged}"))
        #expect(try redis.execute("EXISTS", .string(key)).int == 1)
        let ttl = try redis.execute("PTTL", .string(key)).int ?? -1
        #expect(ttl > 0)
    }
}
