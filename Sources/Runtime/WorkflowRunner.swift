import Channels
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Store
import Synchronization

/// Runs `workflow.step` jobs: an enrollment's steps from its current one until a `wait`, a deferral or the end.
///
/// Each step is decided in a transaction that locks the enrollment row (`FOR UPDATE`) and checks the job's step
/// sequence (a stale job does nothing), then `exit_when` (before every step). Actions (`tag`, `set`, `score`, `if`)
/// commit with the move to the next step. A `send`:
/// 1. checks quiet hours (in the contact's time zone; the step waits until the window ends), suppression, consent,
///    unsubscribe and erasure (at send time, whatever was enqueued before), the address, and frequency caps
///    (marketing messages per channel across all workflows and broadcasts; the contact row is locked meanwhile);
/// 2. writes the delivery row (`dedupe_key` = `wf:<enrollment>:<seq>`, so the same message always has the same
///    delivery id) and takes its send lock, and commits;
/// 3. renders and calls the provider (outside any transaction), then records the outcome and moves on. A retryable
///    failure keeps the step and sets it due again after a backoff (durably: the scheduler re-enqueues it even if
///    Redis lost the job); a delivery recorded as accepted is never sent again.
public final class WorkflowRunner: Sendable {
    /// A send still failing after this many attempts is recorded as failed and the workflow moves on.
    public static let maxSendAttempts = 40
    /// The send lock on a delivery: longer than any provider call (10 s timeout); a killed worker's lock expires after this.
    static let sendLockSeconds = 30.0

    private let catalogs: WorkflowCatalogCache
    private let config: NurtureConfig
    private let links = Mutex<SignedLinks?>(nil)
    private let limiter: RateLimiter
    private let enrollments = EnrollmentStore()
    private let deliveries = DeliveryStore()

    public init(config: NurtureConfig, catalogs: WorkflowCatalogCache = WorkflowCatalogCache()) {
        self.config = config
        self.catalogs = catalogs
        self.limiter = RateLimiter(namespace: config.namespace)
    }

    /// Registers `workflow.step`.
    public func register(into registry: inout JobHandlerRegistry) {
        registry.register(WorkflowStepJob.kind) { [self] context in
            guard let job = WorkflowStepJob(payload: context.job.payload) else {
                throw JobFailure.permanent("workflow.step needs {\"enrollment\": ID, \"seq\": N}")
            }
            try run(job, context: context)
        }
    }

    // MARK: - the loop

    enum Decision {
        case stop
        case next(seq: Int)
        case send(SendPlan)
    }

    struct SendPlan {
        let enrollment: EnrollmentRow
        let workflow: LoadedWorkflow
        let path: StepPath
        let number: Int
        let template: TemplateDefinition
        let provider: ProviderDefinition
        let delivery: OpenedDelivery
        let intent: DeliveryIntent
        let contact: Value
        let address: String?
        let contactKey: String
    }

    func run(_ job: WorkflowStepJob, context: JobContext) throws {
        let db = try context.database()
        try refreshClockIfStale(context.clock, on: db)
        let floor = job.atMilliseconds.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? .distantPast
        func businessNow() -> Date { max(context.clock.now(), floor) }
        var seq = job.seq
        for _ in 0..<100 {
            let now = businessNow()
            let catalog = try catalogs.current(on: db)
            let rules = try SlotCaches.current.rules.current(on: db)
            let decision = try db.transaction { db in
                try decide(enrollment: job.enrollment, seq: seq, catalog: catalog, rules: rules, now: now, on: db)
            }
            switch decision {
            case .stop: return
            case .next(let s): seq = s
            case .send(let plan):
                guard let s = try send(plan, catalog: catalog, context: context, now: businessNow, on: db) else { return }
                seq = s
            }
        }
        // A very long run of instant steps: leave the rest to the scheduler (it is due now).
        try enrollments.postpone(job.enrollment, until: businessNow(), countAttempt: false, on: db)
    }

    private let clockRefreshedAt = Atomic<Int64>(0)

    /// Worker processes without the ingester (`--no-ingest`) have nobody else refreshing the clock's offset.
    private func refreshClockIfStale(_ clock: InstallationClock, on db: PostgresConnection) throws {
        guard clock.timeTravelAllowed else { return }
        let t = monotonicMilliseconds()
        if t - clockRefreshedAt.load(ordering: .relaxed) < 1_000 { return }
        clockRefreshedAt.store(t, ordering: .relaxed)
        try clock.refresh(from: db)
    }

    private func decide(enrollment id: Int64, seq: Int, catalog: WorkflowCatalog, rules: BehaviourRules, now: Date,
                        on db: PostgresConnection) throws -> Decision {
        guard let e = try enrollments.lock(id, on: db), e.state == "active", e.stepSeq == seq else { return .stop }
        guard let w = try catalogs.workflow(e.workflow, version: e.version, on: db) else {
            try enrollments.finish(e.id, state: "failed", reason: "workflow \(e.workflow) v\(e.version) is not stored", now: now, on: db)
            return .stop
        }
        if catalog.paused.contains(w.name) {
            // Paused: stays on this step; the scheduler skips paused workflows until they are resumed.
            try enrollments.postpone(e.id, until: e.dueAt ?? now, countAttempt: false, on: db)
            return .stop
        }
        guard let path = StepPath(e.stepPath), let step = w.program.step(at: path) else {
            try enrollments.advance(e.id, toSeq: e.stepSeq + 1, path: nil, dueAt: nil, now: now, on: db)
            return .stop
        }
        let number = w.number(of: path)
        guard let view = try ContactView.load([e.contactId], now: now, compilerOptions: rules.compilerOptions, on: db)[e.contactId] else {
            try enrollments.finish(e.id, state: "exited", reason: "contact erased or merged", now: now, on: db)
            try enrollments.log(e, step: number, outcome: "exited", detail: "contact erased or merged", at: now, on: db)
            return .stop
        }
        let history = TransactionHistory(db: db, contacts: [e.contactId])
        let evaluation = EvaluationContext(contact: view.value, event: nil, now: now, history: history.forContact(e.contactId))
        if let exitWhen = w.definition.exitWhen {
            let exits = exitWhen.matches(in: evaluation)
            try history.check()
            if exits {
                try enrollments.exit([e.id], reason: "exit_when before step \(number)", now: now, on: db)
                return .stop
            }
        }

        /// Moves on from this step (completing the enrollment at the end) and continues in this job.
        func proceed(to next: StepPath?, outcome: String, detail: String? = nil) throws -> Decision {
            try enrollments.log(e, step: number, outcome: outcome, detail: detail, at: now, on: db)
            try enrollments.advance(e.id, toSeq: e.stepSeq + 1, path: next?.description, dueAt: nil, now: now, on: db)
            return next == nil ? .stop : .next(seq: e.stepSeq + 1)
        }

        switch step {
        case .wait(let seconds):
            let next = w.program.next(after: path)
            try enrollments.log(e, step: number, outcome: "done", detail: nil, at: now, on: db)
            try enrollments.advance(e.id, toSeq: e.stepSeq + 1, path: next?.description, dueAt: now.addingTimeInterval(seconds), now: now, on: db)
            // The wait ends when the next step is due (or the enrollment completes if the wait was last).
            if next == nil { return .stop }
            return .stop

        case .branch(let condition, _, _):
            let holds = condition.matches(in: evaluation)
            try history.check()
            return try proceed(to: w.program.enter(holds ? .then : .else, of: path), outcome: "done", detail: holds ? "then" : "else")

        case .tag(let tag):
            try db.execute("""
                UPDATE contacts SET tags = array_append(tags, $2), updated_at = $3 WHERE id = $1 AND NOT ($2 = ANY(tags))
                """, [.int(e.contactId), .text(tag), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.tags }, rules: rules, catalog: catalog, now: now, on: db)
            return try proceed(to: w.program.next(after: path), outcome: "done")

        case .untag(let tag):
            try db.execute("UPDATE contacts SET tags = array_remove(tags, $2), updated_at = $3 WHERE id = $1 AND $2 = ANY(tags)",
                           [.int(e.contactId), .text(tag), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.tags }, rules: rules, catalog: catalog, now: now, on: db)
            return try proceed(to: w.program.next(after: path), outcome: "done")

        case .set(let values):
            let context = renderContext(contact: view.value, enrollment: e, workflow: w, number: number, links: nil, now: now)
            var rendered: [String: Value] = [:]
            for (key, value) in values {
                if case .string(let text) = value, text.contains("{{") || text.contains("{%") {
                    let out = try LiquidTemplate.parse(text).render(context, options: RenderOptions(now: now))
                    rendered[key] = .string(out)
                } else {
                    rendered[key] = value
                }
            }
            try db.execute("UPDATE contacts SET attributes = attributes || $2::jsonb, updated_at = $3 WHERE id = $1",
                           [.int(e.contactId), .text(Value.object(rendered).jsonText), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.profile }, rules: rules, catalog: catalog, now: now, on: db)
            return try proceed(to: w.program.next(after: path), outcome: "done")

        case .score(let points):
            let model = rules.primaryScore
            let halfLife: PostgresValue = model?.halfLifeSeconds.map { .double($0) } ?? .null
            try db.execute("""
                INSERT INTO contact_scores AS s (contact_id, name, value, reference_at) VALUES ($1, $2, $3, $4)
                ON CONFLICT (contact_id, name) DO UPDATE SET
                    value = s.value * CASE WHEN $5::double precision IS NULL OR excluded.reference_at <= s.reference_at THEN 1
                                      ELSE power(0.5::double precision, extract(epoch from (excluded.reference_at - s.reference_at))::double precision / $5::double precision) END
                            + excluded.value,
                    reference_at = GREATEST(s.reference_at, excluded.reference_at)
                """, [.int(e.contactId), .text(model?.name ?? rules.compilerOptions.scoreName), .double(points), .timestamp(now), halfLife])
            try refreshSegments(of: e.contactId, changed: { $0.score }, rules: rules, catalog: catalog, now: now, on: db)
            return try proceed(to: w.program.next(after: path), outcome: "done")

        case .send(let templateName, let providerName):
            guard let (templateVersion, template) = catalog.templates[templateName].map({ ($0.version, $0.definition) }) else {
                return try proceed(to: w.program.next(after: path), outcome: "failed", detail: "template \(templateName) is not applied")
            }
            guard let provider = catalog.provider(for: template, override: providerName) else {
                return try proceed(to: w.program.next(after: path), outcome: "failed",
                                   detail: "no provider for channel \(template.channel.rawValue)")
            }
            let marketing = template.category == .marketing
            let settings = catalog.settings
            if marketing, let quiet = settings?.quietHours {
                let zone = WorkflowSchedule.timeZone(contact: view.value["timezone"]?.stringValue, fallback: settings?.timezone)
                if let end = WorkflowSchedule.quietHoursEnd(quiet, at: now, in: zone) {
                    try enrollments.log(e, step: number, outcome: "deferred_quiet_hours", detail: "until \(Value.iso8601(end))", at: now, on: db)
                    try enrollments.postpone(e.id, until: end, countAttempt: false, on: db)
                    return .stop
                }
            }
            let contactKey = view.value["external_id"]?.stringValue ?? String(e.contactId)
            let address: String?
            switch template.channel {
            case .email: address = view.value["email"]?.stringValue
            case .sms: address = view.value["phone"]?.stringValue
            case .push: address = contactKey
            case .webhook: address = nil
            }
            let intent = DeliveryIntent(dedupeKey: "wf:\(e.id):\(e.stepSeq)", contactId: e.contactId, channel: template.channel.rawValue,
                                        category: template.category.rawValue, template: template.name, templateVersion: templateVersion,
                                        provider: provider.name, sourceKind: "workflow", sourceName: w.name, step: number,
                                        enrollmentId: e.id, broadcastId: nil)
            // One sender per contact at a time (the block check locks the contact row): caps count what the others sent.
            if let reason = try deliveries.blockReason(contactId: e.contactId, channel: template.channel.rawValue,
                                                       category: template.category.rawValue, address: address, lockContact: true, on: db) {
                try deliveries.record(intent, status: "suppressed", reason: reason, now: now, on: db)
                return try proceed(to: w.program.next(after: path), outcome: "suppressed", detail: reason)
            }
            if template.channel != .webhook && (address ?? "").isEmpty {
                let reason = "no \(template.channel == .sms ? "phone number" : "email address")"
                try deliveries.record(intent, status: "skipped", reason: reason, now: now, on: db)
                return try proceed(to: w.program.next(after: path), outcome: "no_address", detail: reason)
            }
            if marketing, let cap = settings?.frequencyCaps[template.channel] {
                let recent = try deliveries.recentMarketingCount(contactId: e.contactId, channel: template.channel.rawValue,
                                                                 since: now.addingTimeInterval(-cap.periodSeconds), excluding: intent.dedupeKey, on: db)
                if recent >= cap.count {
                    let reason = "frequency cap \(cap.count) per \(DurationLabel.text(cap.periodSeconds)) on \(template.channel.rawValue)"
                    try deliveries.record(intent, status: "skipped", reason: reason, now: now, on: db)
                    return try proceed(to: w.program.next(after: path), outcome: "capped", detail: reason)
                }
            }
            let delivery = try deliveries.open(intent, now: now, lockSeconds: Self.sendLockSeconds, on: db)
            if !delivery.mine {
                if delivery.status == "pending" {
                    // Another worker is calling the provider for it right now; it moves the enrollment on.
                    try enrollments.postpone(e.id, until: now.addingTimeInterval(Self.sendLockSeconds), countAttempt: false, on: db)
                    return .stop
                }
                return try proceed(to: w.program.next(after: path), outcome: delivery.status == "accepted" ? "sent" : "failed",
                                   detail: "delivery \(delivery.id) already \(delivery.status)")
            }
            return .send(SendPlan(enrollment: e, workflow: w, path: path, number: number, template: template, provider: provider,
                                  delivery: delivery, intent: intent, contact: view.value, address: address, contactKey: contactKey))
        }
    }

    /// After a step changed the contact (tags, attributes, score): re-evaluates, for this contact, the segments that
    /// read what changed (and the segments that depend on those), in dependency order, in the step's transaction;
    /// entries and exits fire segment and `when:` triggers like any other change.
    private func refreshSegments(of contact: Int64, changed reads: (ConditionReads) -> Bool, rules: BehaviourRules,
                                 catalog: WorkflowCatalog, now: Date, on db: PostgresConnection) throws {
        var selected = Set<String>()
        var changes: [String: SegmentChanges] = [:]
        let store = SegmentStore()
        for segment in rules.segments where reads(segment.reads) || !segment.reads.segments.isDisjoint(with: selected) {
            selected.insert(segment.name)
            let predicate = segmentPredicate(segment.condition, now: now, options: rules.compilerOptions, mode: .perContact)
            let (sql, parameters) = store.reconcileStatement(segment: segment.name, predicate: predicate, scope: .contacts([contact]), at: now)
            let change = SegmentStore.changes(from: try db.query(sql, parameters))
            if !change.entered.isEmpty || !change.exited.isEmpty { changes[segment.name] = change }
        }
        _ = try WorkflowTriggers(catalog: catalog, now: now).applySegmentChanges(changes, on: db)
    }

    // MARK: - sending

    /// Renders and sends; records the outcome. Returns the next step sequence to run in this job, or nil to stop.
    private func send(_ plan: SendPlan, catalog: WorkflowCatalog, context: JobContext, now businessNow: () -> Date,
                      on db: PostgresConnection) throws -> Int? {
        let e = plan.enrollment
        let links = try signedLinks(on: db)
        var outcome: DeliveryOutcome
        do {
            let unsubscribe = links.unsubscribeURL(contactId: e.contactId, deliveryId: plan.delivery.id)
            var renderContext = renderContext(contact: plan.contact, enrollment: e, workflow: plan.workflow, number: plan.number,
                                              links: links, now: businessNow())
            if case .object(var o) = renderContext { o["unsubscribe_url"] = .string(unsubscribe); renderContext = .object(o) }
            let envelope = Envelope(deliveryId: plan.delivery.id, to: plan.address, contactId: plan.contactKey,
                                    from: plan.template.from ?? plan.provider.from ?? catalog.settings?.from,
                                    source: .workflow(name: plan.workflow.name, step: plan.number),
                                    unsubscribeURL: unsubscribe)
            let message = try MessageComposer.compose(plan.template, context: renderContext, envelope: envelope, now: businessNow())
            if let limit = plan.provider.rateLimit {
                while true {
                    let wait = try limiter.acquire(context.redis, name: "provider:\(plan.provider.name)", perSecond: limit.perSecond)
                    if wait == 0 { break }
                    if wait > 1_000 || context.isCancelled {
                        let now = businessNow()
                        try db.transaction { db in
                            try deliveries.settle(id: plan.delivery.id, status: "pending", error: nil, providerMessageId: nil, now: now, on: db)
                            try enrollments.postpone(e.id, until: now.addingTimeInterval(Double(wait) / 1000), countAttempt: false, on: db)
                        }
                        return nil
                    }
                    Thread.sleep(forTimeInterval: Double(wait) / 1000)
                }
            }
            outcome = SlotCaches.current.client(for: plan.provider).send([message]).first ?? .retry(reason: "no outcome", afterMilliseconds: nil)
        } catch {
            // A template that does not render will not render on retry either.
            outcome = .rejected(reason: "render failed: \(error)")
        }
        let now = businessNow()
        return try db.transaction { db -> Int? in
            let next = plan.workflow.program.next(after: plan.path)
            func moveOn(_ status: String, outcome: String, detail: String?, providerMessageId: String?) throws -> Int? {
                try deliveries.settle(id: plan.delivery.id, status: status, error: status == "accepted" ? nil : detail,
                                      providerMessageId: providerMessageId, now: now, on: db)
                guard let current = try enrollments.lock(e.id, on: db), current.state == "active", current.stepSeq == e.stepSeq else { return nil }
                try enrollments.log(e, step: plan.number, outcome: outcome, detail: detail, at: now, on: db)
                try enrollments.advance(e.id, toSeq: e.stepSeq + 1, path: next?.description, dueAt: nil, now: now, on: db)
                return next == nil ? nil : e.stepSeq + 1
            }
            switch outcome {
            case .accepted(let providerMessageId):
                return try moveOn("accepted", outcome: "sent", detail: "delivery \(plan.delivery.id)", providerMessageId: providerMessageId)
            case .rejected(let reason):
                return try moveOn("rejected", outcome: "failed", detail: reason, providerMessageId: nil)
            case .retry(let reason, let after):
                if plan.delivery.attempts >= Self.maxSendAttempts {
                    return try moveOn("failed", outcome: "failed", detail: "gave up after \(plan.delivery.attempts) attempts: \(reason)", providerMessageId: nil)
                }
                try deliveries.settle(id: plan.delivery.id, status: "pending", error: reason, providerMessageId: nil, now: now, on: db)
                let backoff = Double(after ?? Int64(Backoff(baseMilliseconds: 1_000, capMilliseconds: 900_000).delay(attempt: plan.delivery.attempts))) / 1000
                try enrollments.postpone(e.id, until: now.addingTimeInterval(backoff), countAttempt: true, on: db)
                context.logger.warning("provider failed; retrying later", metadata: [
                    "provider": "\(plan.provider.name)", "delivery": "\(plan.delivery.id)", "error": "\(reason)",
                    "attempt": "\(plan.delivery.attempts)", "retry_in_s": "\(Int(backoff))",
                ])
                return nil
            }
        }
    }

    /// What templates see: `contact`, `event` (the trigger's), `workflow`, `unsubscribe_url`, `preferences_url`, `now`.
    private func renderContext(contact: Value, enrollment e: EnrollmentRow, workflow: LoadedWorkflow, number: Int,
                               links: SignedLinks?, now: Date) -> Value {
        var root: [String: Value] = [
            "contact": contact,
            "workflow": .object(["name": .string(workflow.name), "version": .number(Double(workflow.version)), "step": .number(Double(number))]),
            "now": .time(now),
        ]
        if case .object(let trigger)? = try? Value(jsonText: e.triggerJSON) {
            root["event"] = trigger["event"] ?? .object([:])
            if let segment = trigger["segment"] { root["segment"] = segment }
        }
        if let links {
            root["preferences_url"] = .string(links.preferencesURL(contactId: e.contactId))
        }
        return .object(root)
    }

    /// Links are signed with NURTURE_SECRET, or (without it, with a warning at start) the installation's own key.
    private func signedLinks(on db: PostgresConnection) throws -> SignedLinks {
        if let known = links.withLock({ $0 }) { return known }
        var secret = config.secret
        if secret == nil {
            secret = try db.query("SELECT secret FROM installation_secret WHERE id = 1").rows.first?[0].string
        }
        let made = SignedLinks(publicURL: config.publicURL, secret: secret ?? "")
        links.withLock { $0 = made }
        return made
    }
}

/// What a worker slot thread keeps between jobs: provider clients (their curl handles keep connections alive) and
/// the behaviour rules cache. Slot threads are long-lived OS threads; each gets its own.
final class SlotCaches {
    let rules = BehaviourRulesCache()
    private var clients: [String: (ProviderDefinition, ProviderClient)] = [:]

    func client(for provider: ProviderDefinition) -> ProviderClient {
        if let (definition, client) = clients[provider.name], definition.url == provider.url, definition.type == provider.type,
           definition.batch == provider.batch {
            return client
        }
        clients[provider.name]?.1.close()
        let client = ProviderClient(provider)
        clients[provider.name] = (provider, client)
        return client
    }

    private static let key = "nurture.slot-caches"

    /// This thread's caches.
    static var current: SlotCaches {
        let dictionary = Thread.current.threadDictionary
        if let existing = dictionary[key] as? SlotCaches { return existing }
        let made = SlotCaches()
        dictionary[key] = made
        return made
    }
}
