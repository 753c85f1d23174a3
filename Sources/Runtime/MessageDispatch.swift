import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Store

/// One message of a batch, rendered (or not: `message` nil with `failure`), whose delivery row is open and whose
/// send lock this job holds.
struct DispatchItem {
    let deliveryId: String
    /// Provider calls recorded for the delivery so far, this one included (the backoff grows with them).
    let attempts: Int
    let provider: ProviderDefinition
    let message: OutboundMessage?
    /// Why it could not be rendered (then it is rejected without a provider call).
    let failure: String?
}

/// What became of one message of a batch.
enum DispatchResult {
    case outcome(DeliveryOutcome)
    /// Not handed to the provider in this job (the send window ran out, the job is cancelled or its campaign paused,
    /// the provider failed earlier in the batch, the rate limit is exhausted): the send lock is handed back and the
    /// message is due again after `retryAfterSeconds`, without counting an attempt.
    case notTried(reason: String?, retryAfterSeconds: Double)
}

/// Hands a batch of messages to their providers: per provider in order, in the provider's batch size (one message
/// per call otherwise), under the fleet-wide rate limits (the provider's, and the caller's own, e.g. a broadcast's
/// `--rate`). After a retryable failure a provider is not called again for the rest of the batch (its messages
/// wait with the same backoff). What providers took is recorded on the delivery rows as it goes (at most every
/// `interimSettleMilliseconds`), so a worker killed mid-batch leaves only its last few messages to be sent again
/// (with the same delivery id, which providers deduplicate on). The caller settles the rest with the results.
struct MessageDispatch {
    /// No provider call starts once this long has passed since the batch's send locks were taken (30 s).
    static let sendWindowSeconds = 15.0
    /// How often, at most, a batch records what its providers took while it is still sending.
    static let interimSettleMilliseconds: Int64 = 20

    let context: JobContext
    let limiter: RateLimiter
    /// An extra fleet-wide limit over every message of the batch: (token bucket name, messages per second).
    var extraLimit: (name: String, perSecond: Double)? = nil
    /// Asked between provider calls: true stops the batch (the rest are not tried and retried at once).
    var shouldStop: () throws -> Bool = { false }

    /// Seconds until a failed send is tried again: the provider's `Retry-After`, else exponential backoff from 1 s
    /// to 15 min by attempts.
    static func retryDelay(attempts: Int, providerSaid afterMilliseconds: Int64?) -> Double {
        Double(afterMilliseconds ?? Int64(Backoff(baseMilliseconds: 1_000, capMilliseconds: 900_000).delay(attempt: attempts))) / 1000
    }

    /// Sends; returns one result per item and which items' outcomes are already recorded on their delivery rows.
    func run(_ items: [DispatchItem], lockedAt: Int64, now: () -> Date, on db: PostgresConnection) throws -> (results: [DispatchResult], settled: [Bool]) {
        var results = [DispatchResult?](repeating: nil, count: items.count)
        for (i, item) in items.enumerated() where item.message == nil {
            results[i] = .outcome(.rejected(reason: item.failure ?? "not rendered"))
        }
        var settled = [Bool](repeating: false, count: items.count)
        var unsettled: [(Int, DeliverySettlement)] = []
        var lastSettle = monotonicMilliseconds()
        var order: [String] = []
        var byProvider: [String: [Int]] = [:]
        for (i, item) in items.enumerated() where item.message != nil {
            if byProvider[item.provider.name] == nil { order.append(item.provider.name) }
            byProvider[item.provider.name, default: []].append(i)
        }
        var stopped = false
        for name in order {
            let indices = byProvider[name]!
            let provider = items[indices[0]].provider
            let client = SlotCaches.current.client(for: provider)
            let chunk = max(1, provider.type == .http ? (provider.batch ?? 1) : 1)
            var down: (reason: String, retryAfterSeconds: Double)? = nil
            var start = 0
            while start < indices.count {
                let part = Array(indices[start..<min(indices.count, start + chunk)])
                start += part.count
                if let down {
                    for i in part { results[i] = .notTried(reason: down.reason, retryAfterSeconds: down.retryAfterSeconds) }
                    continue
                }
                if !stopped {
                    stopped = try context.isCancelled || Double(monotonicMilliseconds() - lockedAt) / 1000 > Self.sendWindowSeconds || shouldStop()
                }
                if stopped {
                    for i in part { results[i] = .notTried(reason: nil, retryAfterSeconds: 0) }
                    continue
                }
                var wait: Int64 = 0
                if let limit = provider.rateLimit {
                    wait = try acquire(part.count, name: "provider:\(provider.name)", perSecond: limit.perSecond)
                }
                if wait == 0, let extra = extraLimit {
                    wait = try acquire(part.count, name: extra.name, perSecond: extra.perSecond)
                }
                if wait > 0 {
                    for i in part { results[i] = .notTried(reason: nil, retryAfterSeconds: Double(wait) / 1000) }
                    continue
                }
                let outcomes = client.send(part.map { items[$0].message! })
                for (k, i) in part.enumerated() {
                    let outcome = k < outcomes.count ? outcomes[k] : .retry(reason: "no outcome", afterMilliseconds: nil)
                    results[i] = .outcome(outcome)
                    switch outcome {
                    case .accepted(let providerMessageId):
                        unsettled.append((i, DeliverySettlement(id: items[i].deliveryId, status: "accepted", error: nil, providerMessageId: providerMessageId)))
                    case .rejected(let reason):
                        unsettled.append((i, DeliverySettlement(id: items[i].deliveryId, status: "rejected", error: reason, providerMessageId: nil)))
                    case .retry(let reason, let after):
                        if down == nil { down = (reason, Self.retryDelay(attempts: items[i].attempts, providerSaid: after)) }
                    }
                }
                if !unsettled.isEmpty && monotonicMilliseconds() - lastSettle >= Self.interimSettleMilliseconds {
                    try DeliveryStore().settle(unsettled.map(\.1), now: now(), on: db)
                    for (i, _) in unsettled { settled[i] = true }
                    unsettled.removeAll(keepingCapacity: true)
                    lastSettle = monotonicMilliseconds()
                }
            }
            if let down {
                context.logger.warning("provider failed; its messages are retried later", metadata: [
                    "provider": "\(name)", "error": "\(down.reason)", "messages": "\(indices.count)",
                ])
            }
        }
        return (results.map { $0 ?? .notTried(reason: nil, retryAfterSeconds: 0) }, settled)
    }

    /// Takes `count` tokens of a fleet-wide token bucket; returns 0 when taken, or the wait in ms when it would be
    /// longer than a second (the messages go back and are due again then).
    private func acquire(_ count: Int, name: String, perSecond: Double) throws -> Int64 {
        while true {
            let wait = try limiter.acquire(context.redis, name: name, perSecond: perSecond, burst: max(perSecond, Double(count)), count: count)
            if wait == 0 { return 0 }
            if wait > 1_000 || context.isCancelled { return wait }
            Thread.sleep(forTimeInterval: Double(wait) / 1000)
        }
    }

    /// How a delivery's row records `result`: accepted, rejected, `failed` (a retry out of attempts), or back to
    /// pending (a retry: the error is kept; not tried: the attempt is refunded).
    static func settlement(_ item: DispatchItem, _ result: DispatchResult, maxAttempts: Int) -> DeliverySettlement {
        switch result {
        case .outcome(.accepted(let providerMessageId)):
            return DeliverySettlement(id: item.deliveryId, status: "accepted", error: nil, providerMessageId: providerMessageId)
        case .outcome(.rejected(let reason)):
            return DeliverySettlement(id: item.deliveryId, status: "rejected", error: reason, providerMessageId: nil)
        case .outcome(.retry(let reason, _)):
            if item.attempts >= maxAttempts {
                return DeliverySettlement(id: item.deliveryId, status: "failed", error: "gave up after \(item.attempts) attempts: \(reason)",
                                          providerMessageId: nil)
            }
            return DeliverySettlement(id: item.deliveryId, status: "pending", error: reason, providerMessageId: nil)
        case .notTried(let reason, _):
            var s = DeliverySettlement(id: item.deliveryId, status: "pending", error: reason, providerMessageId: nil)
            s.refundAttempt = true
            return s
        }
    }
}
