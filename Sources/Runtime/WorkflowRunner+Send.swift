import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Store

extension WorkflowRunner {
    /// Renders the round's messages, hands them to their providers (`MessageDispatch`), then settles the deliveries
    /// and moves the enrollments on in one transaction. Returns the enrollments whose next step runs now.
    func send(_ plans: [SendPlan], catalog: WorkflowCatalog, context: JobContext, now businessNow: () -> Date,
              on db: PostgresConnection) throws -> [WorkflowStepJob.Step] {
        let links = try signer.links(on: db)
        let lockedAt = monotonicMilliseconds()
        let renderNow = businessNow()
        let items = plans.map { plan -> DispatchItem in
            let e = plan.enrollment
            do {
                let unsubscribe = links.unsubscribeURL(contactId: e.contactId, deliveryId: plan.delivery.id)
                var context = renderContext(contact: plan.contact, enrollment: e, workflow: plan.workflow, number: plan.number,
                                            links: plan.template.mentionsPreferencesURL ? links : nil, now: renderNow)
                if case .object(var o) = context { o["unsubscribe_url"] = .string(unsubscribe); context = .object(o) }
                let envelope = Envelope(deliveryId: plan.delivery.id, to: plan.address, contactId: plan.contactKey,
                                        from: plan.template.from ?? plan.provider.from ?? catalog.settings?.from,
                                        source: .workflow(name: plan.workflow.name, step: plan.number), unsubscribeURL: unsubscribe)
                var message = try MessageComposer.compose(plan.template, context: context, envelope: envelope, now: renderNow)
                LinkTracking.apply(to: &message, template: plan.template, contactId: e.contactId, links: links)
                return DispatchItem(deliveryId: plan.delivery.id, attempts: plan.delivery.attempts, provider: plan.provider, message: message, failure: nil)
            } catch {
                // A template that does not render will not render on retry either.
                return DispatchItem(deliveryId: plan.delivery.id, attempts: plan.delivery.attempts, provider: plan.provider, message: nil,
                                    failure: "render failed: \(error)")
            }
        }
        let (results, settled) = try MessageDispatch(context: context, limiter: limiter).run(items, lockedAt: lockedAt, now: businessNow, on: db)
        let now = businessNow()
        return try db.transaction { db in
            var settlements: [DeliverySettlement] = []
            var round = Round()
            let current = Dictionary(try enrollments.lock(plans.map(\.enrollment.id), on: db).map { ($0.id, $0) },
                                     uniquingKeysWith: { a, _ in a })
            for (n, plan) in plans.enumerated() {
                let e = plan.enrollment
                let settlement = MessageDispatch.settlement(items[n], results[n], maxAttempts: Self.maxSendAttempts)
                if !settled[n] { settlements.append(settlement) }
                guard current[e.id].map({ $0.state == "active" && $0.stepSeq == e.stepSeq }) ?? false else { continue }
                let next = plan.workflow.program.next(after: plan.path)
                switch (settlement.status, results[n]) {
                case ("accepted", _):
                    round.proceed(e, number: plan.number, to: next, outcome: "sent", detail: "delivery \(plan.delivery.id)", now: now)
                case ("rejected", _), ("failed", _):
                    round.proceed(e, number: plan.number, to: next, outcome: "failed", detail: settlement.error, now: now)
                case (_, .outcome(.retry(_, let after))):
                    let backoff = MessageDispatch.retryDelay(attempts: plan.delivery.attempts, providerSaid: after)
                    round.moves.append(.postpone(e.id, until: now.addingTimeInterval(backoff), countAttempt: true))
                case (_, .notTried(_, let after)):
                    round.moves.append(.postpone(e.id, until: now.addingTimeInterval(after), countAttempt: false))
                default:
                    round.moves.append(.postpone(e.id, until: now, countAttempt: false))
                }
            }
            try deliveries.settle(settlements, now: now, on: db)
            try enrollments.apply(moves: round.moves, logs: round.logs, now: now, on: db)
            return round.continuing
        }
    }
}
