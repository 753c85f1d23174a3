import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Store

extension WorkflowRunner {
    /// What became of one planned message.
    private enum Result {
        case outcome(DeliveryOutcome)
        /// Not handed to the provider in this job (the send window ran out, the job is cancelled, the provider
        /// failed earlier in the batch, the rate limit is exhausted): the lock is released and the step is due
        /// again at the time given, without counting an attempt.
        case notTried(reason: String?, retryAfterSeconds: Double)
    }

    /// Renders the round's messages, hands them to their providers (in batches where the provider takes batches),
    /// then settles the deliveries and moves the enrollments on in one transaction. Returns the enrollments whose
    /// next step runs now.
    func send(_ plans: [SendPlan], catalog: WorkflowCatalog, context: JobContext, now businessNow: () -> Date,
              on db: PostgresConnection) throws -> [WorkflowStepJob.Step] {
        let links = try signedLinks(on: db)
        let lockedAt = monotonicMilliseconds()
        var results = [Result?](repeating: nil, count: plans.count)
        var messages = [OutboundMessage?](repeating: nil, count: plans.count)
        let renderNow = businessNow()
        for (i, plan) in plans.enumerated() {
            let e = plan.enrollment
            do {
                let unsubscribe = links.unsubscribeURL(contactId: e.contactId, deliveryId: plan.delivery.id)
                var context = renderContext(contact: plan.contact, enrollment: e, workflow: plan.workflow, number: plan.number,
                                            links: links, now: renderNow)
                if case .object(var o) = context { o["unsubscribe_url"] = .string(unsubscribe); context = .object(o) }
                let envelope = Envelope(deliveryId: plan.delivery.id, to: plan.address, contactId: plan.contactKey,
                                        from: plan.template.from ?? plan.provider.from ?? catalog.settings?.from,
                                        source: .workflow(name: plan.workflow.name, step: plan.number), unsubscribeURL: unsubscribe)
                messages[i] = try MessageComposer.compose(plan.template, context: context, envelope: envelope, now: renderNow)
            } catch {
                // A template that does not render will not render on retry either.
                results[i] = .outcome(.rejected(reason: "render failed: \(error)"))
            }
        }

        var settled = [Bool](repeating: false, count: plans.count)
        var unsettled: [(Int, DeliverySettlement)] = []
        var lastSettle = monotonicMilliseconds()
        // Per provider, in plan order; after a retryable failure the provider is not called again in this job.
        var order: [String] = []
        var byProvider: [String: [Int]] = [:]
        for (i, plan) in plans.enumerated() where messages[i] != nil {
            if byProvider[plan.provider.name] == nil { order.append(plan.provider.name) }
            byProvider[plan.provider.name, default: []].append(i)
        }
        for name in order {
            let indices = byProvider[name]!
            let provider = plans[indices[0]].provider
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
                if context.isCancelled || Double(monotonicMilliseconds() - lockedAt) / 1000 > Self.sendWindowSeconds {
                    for i in part { results[i] = .notTried(reason: nil, retryAfterSeconds: 0) }
                    continue
                }
                if let limit = provider.rateLimit {
                    let wait = try acquire(part.count, perSecond: limit.perSecond, provider: provider.name, context: context)
                    if wait > 0 {
                        for i in part { results[i] = .notTried(reason: nil, retryAfterSeconds: Double(wait) / 1000) }
                        continue
                    }
                }
                let outcomes = client.send(part.map { messages[$0]! })
                for (k, i) in part.enumerated() {
                    let outcome = k < outcomes.count ? outcomes[k] : .retry(reason: "no outcome", afterMilliseconds: nil)
                    results[i] = .outcome(outcome)
                    switch outcome {
                    case .accepted(let providerMessageId):
                        unsettled.append((i, DeliverySettlement(id: plans[i].delivery.id, status: "accepted", error: nil, providerMessageId: providerMessageId)))
                    case .rejected(let reason):
                        unsettled.append((i, DeliverySettlement(id: plans[i].delivery.id, status: "rejected", error: reason, providerMessageId: nil)))
                    case .retry: break
                    }
                    if case .retry(let reason, let after) = outcome, down == nil {
                        down = (reason, Self.retryDelay(attempts: plans[i].delivery.attempts, providerSaid: after))
                    }
                }
                // What providers took is recorded as it goes (every `interimSettleMilliseconds`), not only at the end
                // of the batch: a worker killed mid-batch leaves only the last few messages to be sent again.
                if !unsettled.isEmpty && monotonicMilliseconds() - lastSettle >= Self.interimSettleMilliseconds {
                    try deliveries.settle(unsettled.map(\.1), now: businessNow(), on: db)
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
        return try settle(plans, results: results, settled: settled, now: businessNow(), on: db)
    }

    /// Waits for `count` tokens of the provider's fleet-wide rate limit; returns 0 when taken, or the wait in ms
    /// when it would be longer than a second (the messages go back and are due again then).
    private func acquire(_ count: Int, perSecond: Double, provider: String, context: JobContext) throws -> Int64 {
        while true {
            let wait = try limiter.acquire(context.redis, name: "provider:\(provider)", perSecond: perSecond,
                                           burst: max(perSecond, Double(count)), count: count)
            if wait == 0 { return 0 }
            if wait > 1_000 || context.isCancelled { return wait }
            Thread.sleep(forTimeInterval: Double(wait) / 1000)
        }
    }

    /// Seconds until a failed send is tried again: the provider's `Retry-After`, else exponential backoff from 1 s
    /// to 15 min by attempts.
    static func retryDelay(attempts: Int, providerSaid afterMilliseconds: Int64?) -> Double {
        Double(afterMilliseconds ?? Int64(Backoff(baseMilliseconds: 1_000, capMilliseconds: 900_000).delay(attempt: attempts))) / 1000
    }

    /// Settles the deliveries and moves the enrollments that are still on the step.
    private func settle(_ plans: [SendPlan], results: [Result?], settled: [Bool], now: Date,
                        on db: PostgresConnection) throws -> [WorkflowStepJob.Step] {
        try db.transaction { db in
            var settlements: [DeliverySettlement] = []
            var round = Round()
            let current = Dictionary(try enrollments.lock(plans.map(\.enrollment.id), on: db).map { ($0.id, $0) },
                                     uniquingKeysWith: { a, _ in a })
            for (n, (plan, result)) in zip(plans, results).enumerated() {
                let e = plan.enrollment
                let id = plan.delivery.id
                let onStep = current[e.id].map { $0.state == "active" && $0.stepSeq == e.stepSeq } ?? false
                let next = plan.workflow.program.next(after: plan.path)
                func moveOn(_ status: String, outcome: String, detail: String?, providerMessageId: String?) {
                    if !settled[n] {
                        settlements.append(DeliverySettlement(id: id, status: status, error: status == "accepted" ? nil : detail,
                                                              providerMessageId: providerMessageId))
                    }
                    if onStep { round.proceed(e, number: plan.number, to: next, outcome: outcome, detail: detail, now: now) }
                }
                switch result ?? .notTried(reason: nil, retryAfterSeconds: 0) {
                case .outcome(.accepted(let providerMessageId)):
                    moveOn("accepted", outcome: "sent", detail: "delivery \(id)", providerMessageId: providerMessageId)
                case .outcome(.rejected(let reason)):
                    moveOn("rejected", outcome: "failed", detail: reason, providerMessageId: nil)
                case .outcome(.retry(let reason, let after)):
                    if plan.delivery.attempts >= Self.maxSendAttempts {
                        moveOn("failed", outcome: "failed", detail: "gave up after \(plan.delivery.attempts) attempts: \(reason)", providerMessageId: nil)
                        continue
                    }
                    settlements.append(DeliverySettlement(id: id, status: "pending", error: reason, providerMessageId: nil))
                    let backoff = Self.retryDelay(attempts: plan.delivery.attempts, providerSaid: after)
                    if onStep { round.moves.append(.postpone(e.id, until: now.addingTimeInterval(backoff), countAttempt: true)) }
                case .notTried(let reason, let after):
                    var settlement = DeliverySettlement(id: id, status: "pending", error: reason, providerMessageId: nil)
                    settlement.refundAttempt = true
                    settlements.append(settlement)
                    if onStep { round.moves.append(.postpone(e.id, until: now.addingTimeInterval(after), countAttempt: false)) }
                }
            }
            try deliveries.settle(settlements, now: now, on: db)
            try enrollments.apply(moves: round.moves, logs: round.logs, now: now, on: db)
            return round.continuing
        }
    }
}
