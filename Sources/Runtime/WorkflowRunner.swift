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

/// Runs `workflow.step` jobs: each carries a batch of enrollments, and runs their steps from their current one
/// until a `wait`, a deferral or the end, a round at a time, set-based.
///
/// A round decides the current step of every enrollment of the batch in one transaction: the enrollments are
/// locked (`FOR UPDATE`, id order) and stale entries (a step sequence that already ran) dropped; contacts load in
/// one query; `exit_when` is checked before every step. Actions (`tag`, `set`, `score`, `if`) commit with the moves
/// to the next step. Sends:
/// 1. quiet hours (in the contact's time zone; the step waits until the window ends), then for the whole batch at
///    once: suppression, consent, unsubscribe and erasure (at send time, whatever was enqueued before; the contacts'
///    rows are locked meanwhile, so two senders deciding caps for one contact take turns), the address, frequency
///    caps (marketing messages per channel across all workflows and broadcasts, counting the batch's own);
/// 2. the delivery rows (`dedupe_key` = `wf:<enrollment>:<seq>`, so a message always has the same delivery id) are
///    written and their send locks taken, and the round commits;
/// 3. messages are rendered and handed to their providers (batching providers get batches), outside any
///    transaction; then one transaction settles the deliveries and moves the enrollments on (and, for those whose
///    next step runs now, decides that next round under a savepoint: their rows are locked already). A retryable failure
///    keeps the step and sets it due again after a backoff (durably: the scheduler re-enqueues it even if Redis lost
///    the job); a delivery recorded as accepted is never sent again.
public final class WorkflowRunner: Sendable {
    /// A send still failing after this many attempts is recorded as failed and the workflow moves on.
    public static let maxSendAttempts = 40
    /// The send lock on a delivery: longer than any provider call (10 s timeout); a killed worker's lock expires after this.
    static let sendLockSeconds = 30.0

    let catalogs: WorkflowCatalogCache
    let config: NurtureConfig
    let signer: LinkSigner
    let limiter: RateLimiter
    let enrollments = EnrollmentStore()
    let deliveries = DeliveryStore()

    public init(config: NurtureConfig, catalogs: WorkflowCatalogCache = WorkflowCatalogCache()) {
        self.config = config
        self.catalogs = catalogs
        self.limiter = RateLimiter(namespace: config.namespace)
        self.signer = LinkSigner(config: config)
    }

    /// Registers `workflow.step`.
    public func register(into registry: inout JobHandlerRegistry) {
        registry.register(WorkflowStepJob.kind) { [self] context in
            guard let job = WorkflowStepJob(payload: context.job.payload) else {
                throw JobFailure.permanent("workflow.step needs {\"steps\": [[ENROLLMENT, SEQ], ...]}")
            }
            try run(job, context: context)
        }
    }

    // MARK: - the loop

    /// A send step that passed quiet hours, waiting for the batch's send-time checks.
    struct SendCandidate {
        let enrollment: EnrollmentRow
        let workflow: LoadedWorkflow
        let path: StepPath
        let number: Int
        let template: TemplateDefinition
        let provider: ProviderDefinition
        let intent: DeliveryIntent
        let contact: Value
        let address: String?
        let contactKey: String
    }

    /// A send the round decided on: the delivery row exists and this job holds its send lock.
    @dynamicMemberLookup
    struct SendPlan {
        let candidate: SendCandidate
        let delivery: OpenedDelivery

        subscript<T>(dynamicMember path: KeyPath<SendCandidate, T>) -> T { candidate[keyPath: path] }
    }

    /// What one round wrote and what comes next.
    struct Round {
        var moves: [EnrollmentMove] = []
        var logs: [EnrollmentStepLog] = []
        /// Enrollments whose next step runs now, in this job.
        var continuing: [WorkflowStepJob.Step] = []
        var sends: [SendPlan] = []

        /// Moves on from the step at `e.stepSeq` (completing the enrollment at the end), logging `outcome`.
        mutating func proceed(_ e: EnrollmentRow, number: Int, to next: StepPath?, outcome: String, detail: String? = nil, dueAt: Date? = nil,
                              now: Date) {
            logs.append(EnrollmentStepLog(e, step: number, outcome: outcome, detail: detail))
            if let next {
                moves.append(.advance(e.id, toSeq: e.stepSeq + 1, path: next.description, dueAt: dueAt ?? now,
                                      keepLeaseSeconds: dueAt == nil ? WorkflowStepJob.leaseSeconds : nil))
                if dueAt == nil { continuing.append(.init(enrollment: e.id, seq: e.stepSeq + 1)) }
            } else {
                moves.append(.complete(e.id, seq: e.stepSeq + 1))
            }
        }
    }

    func run(_ job: WorkflowStepJob, context: JobContext) throws {
        let db = try context.database()
        try refreshClockIfStale(context.clock, on: db)
        let floor = job.atMilliseconds.map { Date(timeIntervalSince1970: Double($0) / 1000) } ?? .distantPast
        let businessNow: () -> Date = { max(context.clock.now(), floor) }
        var steps = job.steps
        // The next round, when the transaction that settled the last round's sends decided it too.
        var decidedAhead: Round? = nil
        let maxRounds = 100
        for roundNumber in 0..<maxRounds {
            let now = businessNow()
            let catalog = try catalogs.current(on: db)
            let rules = try SlotCaches.current.rules.current(on: db)
            let round: Round
            if let ahead = decidedAhead {
                round = ahead
                decidedAhead = nil
            } else {
                if steps.isEmpty { break }
                do {
                    round = try db.transaction { db in
                        try decide(steps, catalog: catalog, rules: rules, now: now, on: db)
                    }
                } catch {
                    if let e = error as? PostgresError, e.isTransient || e.kind == .connect || e.kind == .connectionLost { throw error }
                    // One enrollment's step fails (bad data, a failing SQL): the others of the batch must not wait on it.
                    steps = try isolate(steps, error: error, catalog: catalog, rules: rules, now: now, context: context, on: db)
                    continue
                }
            }
            steps = round.continuing
            if !round.sends.isEmpty {
                // The last round decides nothing ahead: a round decided ahead must be sent.
                let ahead = roundNumber + 1 < maxRounds ? DecideAhead(steps: steps, catalog: catalog, rules: rules) : nil
                switch try send(round.sends, catalog: catalog, context: context, now: businessNow, decideAhead: ahead, on: db) {
                case .decided(let next):
                    decidedAhead = next
                    steps = []
                case .continuing(let next):
                    steps += next
                }
            }
        }
        if steps.isEmpty { return }
        // A very long run of instant steps: leave the rest to the scheduler (it is due now).
        let now = businessNow()
        try db.transaction { db in
            let current = try enrollments.lock(steps.map(\.enrollment), on: db)
            let wanted = Dictionary(steps.map { ($0.enrollment, $0.seq) }, uniquingKeysWith: { a, _ in a })
            let moves = current.filter { wanted[$0.id] == $0.stepSeq }.map { EnrollmentMove.postpone($0.id, until: now, countAttempt: false) }
            try enrollments.apply(moves: moves, logs: [], now: now, on: db)
        }
    }

    /// A step that failed this many times in a row (not a provider failure: those have their own limit) ends the
    /// enrollment as `failed` with the error.
    public static let maxStepErrors = 10

    /// After a round failed: runs each enrollment's step alone; an enrollment whose step fails on its own is due
    /// again after a backoff (attempts counted), and after `maxStepErrors` ends `failed` with the error. Returns the
    /// enrollments whose next step runs now.
    private func isolate(_ steps: [WorkflowStepJob.Step], error first: any Error, catalog: WorkflowCatalog, rules: BehaviourRules,
                         now: Date, context: JobContext, on db: PostgresConnection) throws -> [WorkflowStepJob.Step] {
        var next: [WorkflowStepJob.Step] = []
        for step in steps {
            let reason: String
            if steps.count == 1 {
                reason = "\(first)"
            } else {
                do {
                    let round = try db.transaction { db in try decide([step], catalog: catalog, rules: rules, now: now, on: db) }
                    next += round.continuing
                    if !round.sends.isEmpty, case .continuing(let more) = try send(round.sends, catalog: catalog, context: context,
                                                                                   now: { now }, decideAhead: nil, on: db) {
                        next += more
                    }
                    continue
                } catch {
                    if let e = error as? PostgresError, e.isTransient || e.kind == .connect || e.kind == .connectionLost { throw error }
                    reason = "\(error)"
                }
            }
            context.logger.error("workflow step failed", metadata: ["enrollment": "\(step.enrollment)", "error": "\(reason)"])
            try db.transaction { db in
                guard let e = try enrollments.lock([step.enrollment], on: db).first, e.state == "active", e.stepSeq == step.seq else { return }
                if e.attempts + 1 >= Self.maxStepErrors {
                    try enrollments.apply(moves: [.finish(e.id, state: "failed", reason: "step failed \(e.attempts + 1) times: \(reason)")],
                                          logs: [EnrollmentStepLog(e, step: 0, outcome: "failed", detail: reason)], now: now, on: db)
                } else {
                    let backoff = MessageDispatch.retryDelay(attempts: e.attempts + 1, providerSaid: nil)
                    try enrollments.apply(moves: [.postpone(e.id, until: now.addingTimeInterval(backoff), countAttempt: true)], logs: [], now: now, on: db)
                }
            }
        }
        return next
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

    /// One round: the current step of each enrollment still at the job's step sequence.
    private func decide(_ steps: [WorkflowStepJob.Step], catalog: WorkflowCatalog, rules: BehaviourRules, now: Date,
                        on db: PostgresConnection) throws -> Round {
        let wanted = Dictionary(steps.map { ($0.enrollment, $0.seq) }, uniquingKeysWith: { a, _ in a })
        let rows = try enrollments.lock(steps.map(\.enrollment), on: db).filter { $0.state == "active" && wanted[$0.id] == $0.stepSeq }
        return try decide(locked: rows, catalog: catalog, rules: rules, now: now, on: db)
    }

    /// One round for enrollments this transaction has locked (active, at the step to run), in id order.
    func decide(locked rows: [EnrollmentRow], catalog: WorkflowCatalog, rules: BehaviourRules, now: Date,
                on db: PostgresConnection) throws -> Round {
        var round = Round()
        if rows.isEmpty { return round }
        let contacts = Array(Set(rows.map(\.contactId)))
        let views = try ContactView.load(contacts, now: now, compilerOptions: rules.compilerOptions, on: db)
        let history = TransactionHistory(db: db, contacts: contacts)
        var candidates: [SendCandidate] = []
        var workflows = RoundWorkflows(cache: catalogs)
        for e in rows {
            if let candidate = try decideStep(e, workflow: try workflows.get(e, on: db), view: views[e.contactId], history: history,
                                              catalog: catalog, rules: rules, now: now, round: &round, on: db) {
                candidates.append(candidate)
            }
        }
        try history.check()
        try checkSends(candidates, catalog: catalog, now: now, round: &round, on: db)
        try enrollments.apply(moves: round.moves, logs: round.logs, now: now, on: db)
        return round
    }

    /// Decides one enrollment's current step: records what it did in `round`, or returns the send to check.
    private func decideStep(_ e: EnrollmentRow, workflow: LoadedWorkflow?, view: ContactView?, history: TransactionHistory,
                            catalog: WorkflowCatalog, rules: BehaviourRules, now: Date, round: inout Round,
                            on db: PostgresConnection) throws -> SendCandidate? {
        guard let w = workflow else {
            round.moves.append(.finish(e.id, state: "failed", reason: "workflow \(e.workflow) v\(e.version) is not stored"))
            return nil
        }
        if catalog.paused.contains(w.name) {
            // Paused: stays on this step; the scheduler skips paused workflows until they are resumed.
            round.moves.append(.postpone(e.id, until: e.dueAt ?? now, countAttempt: false))
            return nil
        }
        guard let path = StepPath(e.stepPath), let step = w.program.step(at: path) else {
            round.moves.append(.complete(e.id, seq: e.stepSeq + 1))
            return nil
        }
        let number = w.number(of: path)
        guard let view else {
            round.moves.append(.finish(e.id, state: "exited", reason: "contact erased or merged"))
            round.logs.append(EnrollmentStepLog(e, step: number, outcome: "exited", detail: "contact erased or merged"))
            return nil
        }
        let evaluation = EvaluationContext(contact: view.value, event: nil, now: now, history: history.forContact(e.contactId))
        if let exitWhen = w.definition.exitWhen, exitWhen.matches(in: evaluation) {
            let reason = "exit_when before step \(number)"
            round.moves.append(.finish(e.id, state: "exited", reason: reason))
            round.logs.append(EnrollmentStepLog(e, step: 0, outcome: "exited", detail: reason))
            return nil
        }

        switch step {
        case .wait(let seconds):
            // The wait ends when the next step is due (or the enrollment completes if the wait was last).
            round.proceed(e, number: number, to: w.program.next(after: path), outcome: "done", dueAt: now.addingTimeInterval(seconds), now: now)

        case .branch(let condition, _, _):
            let holds = condition.matches(in: evaluation)
            round.proceed(e, number: number, to: w.program.enter(holds ? .then : .else, of: path), outcome: "done",
                          detail: holds ? "then" : "else", now: now)

        case .tag(let tag):
            try db.execute("""
                UPDATE contacts SET tags = array_append(tags, $2), updated_at = $3 WHERE id = $1 AND NOT ($2 = ANY(tags))
                """, [.int(e.contactId), .text(tag), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.tags }, rules: rules, catalog: catalog, now: now, on: db)
            round.proceed(e, number: number, to: w.program.next(after: path), outcome: "done", now: now)

        case .untag(let tag):
            try db.execute("UPDATE contacts SET tags = array_remove(tags, $2), updated_at = $3 WHERE id = $1 AND $2 = ANY(tags)",
                           [.int(e.contactId), .text(tag), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.tags }, rules: rules, catalog: catalog, now: now, on: db)
            round.proceed(e, number: number, to: w.program.next(after: path), outcome: "done", now: now)

        case .set(let values):
            let context = renderContext(contact: view.value, enrollment: e, workflow: w, number: number, links: nil, now: now)
            var rendered: [String: Value] = [:]
            for (key, value) in values {
                if case .string(let text) = value, text.contains("{{") || text.contains("{%") {
                    rendered[key] = .string(try LiquidTemplate.parse(text).render(context, options: RenderOptions(now: now)))
                } else {
                    rendered[key] = value
                }
            }
            try db.execute("UPDATE contacts SET attributes = attributes || $2::jsonb, updated_at = $3 WHERE id = $1",
                           [.int(e.contactId), .text(Value.object(rendered).jsonText), .timestamp(now)])
            try refreshSegments(of: e.contactId, changed: { $0.profile }, rules: rules, catalog: catalog, now: now, on: db)
            round.proceed(e, number: number, to: w.program.next(after: path), outcome: "done", now: now)

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
            round.proceed(e, number: number, to: w.program.next(after: path), outcome: "done", now: now)

        case .send(let templateName, let providerName):
            let next = w.program.next(after: path)
            guard let (templateVersion, template) = catalog.templates[templateName].map({ ($0.version, $0.definition) }) else {
                round.proceed(e, number: number, to: next, outcome: "failed", detail: "template \(templateName) is not applied", now: now)
                return nil
            }
            guard let provider = catalog.provider(for: template, override: providerName) else {
                round.proceed(e, number: number, to: next, outcome: "failed", detail: "no provider for channel \(template.channel.rawValue)", now: now)
                return nil
            }
            let settings = catalog.settings
            if template.category == .marketing, let quiet = settings?.quietHours {
                let zone = WorkflowSchedule.timeZone(contact: view.value["timezone"]?.stringValue, fallback: settings?.timezone)
                if let end = WorkflowSchedule.quietHoursEnd(quiet, at: now, in: zone) {
                    round.logs.append(EnrollmentStepLog(e, step: number, outcome: "deferred_quiet_hours", detail: "until \(Value.iso8601(end))"))
                    round.moves.append(.postpone(e.id, until: end, countAttempt: false))
                    return nil
                }
            }
            let (address, contactKey) = view.recipient(on: template.channel, contactId: e.contactId)
            let intent = DeliveryIntent(dedupeKey: "wf:\(e.id):\(e.stepSeq)", contactId: e.contactId, channel: template.channel.rawValue,
                                        category: template.category.rawValue, template: template.name, templateVersion: templateVersion,
                                        provider: provider.name, sourceKind: "workflow", sourceName: w.name, step: number,
                                        enrollmentId: e.id, broadcastId: nil)
            return SendCandidate(enrollment: e, workflow: w, path: path, number: number, template: template, provider: provider,
                                 intent: intent, contact: view.value, address: address, contactKey: contactKey)
        }
        return nil
    }

    /// The send-time checks for the round's sends, set-based: blocks (suppression, consent, unsubscribe, erasure;
    /// the contacts are locked), addresses, frequency caps (the batch's own messages count), then the delivery rows
    /// and their send locks.
    private func checkSends(_ candidates: [SendCandidate], catalog: WorkflowCatalog, now: Date, round: inout Round,
                            on db: PostgresConnection) throws {
        if candidates.isEmpty { return }
        let reasons = try deliveries.blockReasons(candidates.map {
            SendCheck(contactId: $0.enrollment.contactId, channel: $0.template.channel.rawValue, category: $0.template.category.rawValue,
                      address: $0.address)
        }, lockContacts: true, on: db)
        var records: [(intent: DeliveryIntent, status: String, reason: String?)] = []
        var passed: [SendCandidate] = []
        for (c, reason) in zip(candidates, reasons) {
            let next = c.workflow.program.next(after: c.path)
            if let reason {
                records.append((c.intent, "suppressed", reason))
                round.proceed(c.enrollment, number: c.number, to: next, outcome: "suppressed", detail: reason, now: now)
            } else if c.template.channel != .webhook && (c.address ?? "").isEmpty {
                let reason = "no \(c.template.channel == .sms ? "phone number" : "email address")"
                records.append((c.intent, "skipped", reason))
                round.proceed(c.enrollment, number: c.number, to: next, outcome: "no_address", detail: reason, now: now)
            } else {
                passed.append(c)
            }
        }

        // Frequency caps: what went out before (one query for the batch) plus what this batch lets through.
        let caps = catalog.settings?.frequencyCaps ?? [:]
        let capped = passed.filter { $0.template.category == .marketing && caps[$0.template.channel] != nil }
        var recent: [Int64: Int] = [:]   // by enrollment id
        if !capped.isEmpty {
            let counts = try deliveries.recentMarketingCounts(capped.map {
                ($0.enrollment.contactId, $0.template.channel.rawValue, now.addingTimeInterval(-caps[$0.template.channel]!.periodSeconds))
            }, excluding: candidates.map(\.intent.dedupeKey), on: db)
            for (c, n) in zip(capped, counts) { recent[c.enrollment.id] = n }
        }
        struct ContactChannel: Hashable { let contact: Int64; let channel: Channel }
        var admitted: [ContactChannel: Int] = [:]
        var opening: [SendCandidate] = []
        for c in passed {
            if c.template.category == .marketing, let cap = caps[c.template.channel] {
                let key = ContactChannel(contact: c.enrollment.contactId, channel: c.template.channel)
                if (recent[c.enrollment.id] ?? 0) + admitted[key, default: 0] >= cap.count {
                    let reason = "frequency cap \(cap.count) per \(DurationLabel.text(cap.periodSeconds)) on \(c.template.channel.rawValue)"
                    records.append((c.intent, "skipped", reason))
                    round.proceed(c.enrollment, number: c.number, to: c.workflow.program.next(after: c.path), outcome: "capped", detail: reason, now: now)
                    continue
                }
                admitted[key, default: 0] += 1
            }
            opening.append(c)
        }
        try deliveries.record(records, now: now, on: db)

        let opened = try deliveries.open(opening.map(\.intent), now: now, lockSeconds: Self.sendLockSeconds, on: db)
        for (c, delivery) in zip(opening, opened) {
            if delivery.mine {
                round.sends.append(SendPlan(candidate: c, delivery: delivery))
            } else if delivery.status == "pending" {
                // Another worker is calling the provider for it right now; it moves the enrollment on.
                round.moves.append(.postpone(c.enrollment.id, until: now.addingTimeInterval(Self.sendLockSeconds), countAttempt: false))
            } else {
                round.proceed(c.enrollment, number: c.number, to: c.workflow.program.next(after: c.path),
                              outcome: delivery.status == "accepted" ? "sent" : "failed",
                              detail: "delivery \(delivery.id) already \(delivery.status)", now: now)
            }
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

    /// What templates see: `contact`, `event` (the trigger's), `workflow`, `unsubscribe_url`, `preferences_url`, `now`.
    func renderContext(contact: Value, enrollment e: EnrollmentRow, workflow: LoadedWorkflow, number: Int,
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
}

/// The workflow versions a round's enrollments run on, looked up once per version (a batch is usually one): the
/// shared cache takes a lock per lookup.
struct RoundWorkflows {
    let cache: WorkflowCatalogCache
    private var last: LoadedWorkflow?
    private var others: [String: LoadedWorkflow?] = [:]

    init(cache: WorkflowCatalogCache) { self.cache = cache }

    mutating func get(_ e: EnrollmentRow, on db: PostgresConnection) throws -> LoadedWorkflow? {
        if let last, last.name == e.workflow, last.version == e.version { return last }
        let key = "\(e.workflow)@\(e.version)"
        if let known = others[key] { return known }
        let found = try cache.workflow(e.workflow, version: e.version, on: db)
        others[key] = found
        if let found { last = found }
        return found
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
