import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Store

extension WorkflowRunner {
    /// What the transaction settling a round's sends also decides: the next round, for the enrollments it moves on
    /// to a step that runs now plus `steps` (the round's other enrollments already at their next step).
    struct DecideAhead {
        let steps: [WorkflowStepJob.Step]
        let catalog: WorkflowCatalog
        let rules: BehaviourRules
    }

    enum SendOutcome {
        /// The next round, decided in the transaction that settled this one (its deliveries are open and locked).
        case decided(Round)
        /// The enrollments whose next step runs now (nothing was decided ahead).
        case continuing([WorkflowStepJob.Step])
    }

    /// Renders the round's messages, hands them to their providers (`MessageDispatch`), then settles the deliveries
    /// and moves the enrollments on in one transaction. With `decideAhead`, that transaction then decides the next
    /// round too (the enrollments are locked already; one transaction and one lock fewer per round), under a
    /// savepoint: if deciding fails, the settlement still commits and the steps are returned to run (and fail, and
    /// be isolated) on their own.
    func send(_ plans: [SendPlan], catalog: WorkflowCatalog, context: JobContext, now businessNow: () -> Date,
              decideAhead: DecideAhead?, on db: PostgresConnection) throws -> SendOutcome {
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
            let others = decideAhead?.steps ?? []
            let locked = try enrollments.lock(plans.map(\.enrollment.id) + others.map(\.enrollment), on: db)
            let current = Dictionary(locked.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
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
            guard let ahead = decideAhead, !(round.continuing.isEmpty && others.isEmpty) else { return .continuing(round.continuing + others) }

            // The rows as this transaction leaves them: the ones just moved on (from the moves), the others as locked.
            var rows: [EnrollmentRow] = []
            for move in round.moves where move.kind == .advance && move.keepLeaseSeconds != nil {
                if let e = current[move.id], let path = move.path { rows.append(e.advanced(toSeq: move.seq, path: path, dueAt: move.dueAt ?? now)) }
            }
            let wanted = Dictionary(others.map { ($0.enrollment, $0.seq) }, uniquingKeysWith: { a, _ in a })
            rows += locked.filter { $0.state == "active" && wanted[$0.id] == $0.stepSeq }
            rows.sort { $0.id < $1.id }
            try db.execute("SAVEPOINT decide_ahead")
            do {
                return .decided(try decide(locked: rows, catalog: ahead.catalog, rules: ahead.rules, now: businessNow(), on: db))
            } catch {
                if let e = error as? PostgresError,
                   e.isTransient || e.isSerializationFailure || e.kind == .connect || e.kind == .connectionLost { throw error }
                try db.execute("ROLLBACK TO SAVEPOINT decide_ahead")
                return .continuing(round.continuing + others)
            }
        }
    }
}
