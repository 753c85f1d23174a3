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

/// The job that sends one batch of a broadcast: `{"broadcast": ID, "batch": N}` on the `bulk` queue.
public struct BroadcastBatchJob: Sendable, Hashable {
    public static let kind = "broadcast.batch"
    public static let queue = "bulk"
    /// Recipients per batch (and so per job): a batching provider's usual request size.
    public static let batchSize = 500
    /// How long (wall clock) an enqueued batch is left to its job before the scheduler may enqueue it again, which
    /// it does only while the bulk queue is nearly empty (jobs lost with a flushed Redis). A worker renews it when it
    /// starts the batch; a batch stops calling providers 15 s after taking its send locks.
    public static let leaseSeconds = 30.0

    public var broadcast: Int64
    public var batch: Int

    public init(broadcast: Int64, batch: Int) {
        self.broadcast = broadcast
        self.batch = batch
    }

    public var payload: String { "{\"broadcast\":\(broadcast),\"batch\":\(batch)}" }

    public func newJob() -> NewJob {
        NewJob(kind: Self.kind, payload: payload, queue: Self.queue, maxAttempts: 25, timeoutMilliseconds: 300_000)
    }

    public init?(payload: String) {
        guard let data = payload.data(using: .utf8),
              let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let b = (object["broadcast"] as? NSNumber)?.int64Value, let n = (object["batch"] as? NSNumber)?.intValue else { return nil }
        self.init(broadcast: b, batch: n)
    }
}

/// Starts broadcasts: the audience snapshot, then the batches' jobs (used by `nurture broadcast send` and by the
/// scheduler for scheduled broadcasts, A/B winners and batches whose jobs were lost).
public struct BroadcastLauncher: Sendable {
    let queue: JobQueue
    let store = BroadcastStore()

    public init(namespace: String) {
        self.queue = JobQueue(namespace: namespace)
    }

    public enum LaunchError: Error, CustomStringConvertible {
        case unknownTemplate(String)
        case mixedChannels([String])
        public var description: String {
            switch self {
            case .unknownTemplate(let name): return "template \(name) is not applied (nurture apply it first)"
            case .mixedChannels(let names): return "the templates of one broadcast must share a channel: \(names.joined(separator: ", "))"
            }
        }
    }

    /// Who may get the broadcast's templates: their channel and category, the channel's cap.
    public static func audienceRules(_ b: BroadcastRow, catalog: WorkflowCatalog) throws -> BroadcastAudienceRules {
        var templates: [TemplateDefinition] = []
        for name in b.templates {
            guard let t = catalog.templates[name]?.definition else { throw LaunchError.unknownTemplate(name) }
            templates.append(t)
        }
        guard let first = templates.first, templates.allSatisfy({ $0.channel == first.channel }) else {
            throw LaunchError.mixedChannels(b.templates)
        }
        let marketing = templates.contains { $0.category == .marketing }
        let cap = b.ignoreCaps || !marketing ? nil : catalog.settings?.frequencyCaps[first.channel].map { ($0.count, $0.periodSeconds) }
        var batchSize = BroadcastBatchJob.batchSize
        if case .object(let o)? = try? Value(jsonText: b.options), let n = o["batch_size"]?.numberValue, n >= 1 { batchSize = Int(n) }
        return BroadcastAudienceRules(channel: first.channel.rawValue, category: marketing ? "marketing" : first.category.rawValue,
                                      cap: cap, batchSize: batchSize)
    }

    /// Snapshots the audience if the broadcast is still `scheduled` (returns its size; nil if another launcher did).
    public func snapshot(_ id: Int64, now: Date, on db: PostgresConnection) throws -> Int? {
        guard let b = try store.get(id, on: db) else { return nil }
        let rules = try Self.audienceRules(b, catalog: try WorkflowCatalog.load(on: db))
        return try store.snapshot(id, rules: rules, now: now, on: db)
    }

    /// Leases and enqueues the broadcast's ready batches, `chunk` at a time, calling `progress(enqueued)` after each.
    @discardableResult
    public func enqueueReady(_ id: Int64, now: Date, limit: Int = .max, chunk: Int = 500, redis: RedisConnection, db: PostgresConnection,
                             progress: (Int) -> Void = { _ in }) throws -> Int {
        var total = 0
        while total < limit {
            let batches = try store.leaseReady(id, limit: min(chunk, limit - total), leaseSeconds: BroadcastBatchJob.leaseSeconds, now: now, on: db)
            if batches.isEmpty { break }
            _ = try queue.enqueue(batches.map { BroadcastBatchJob(broadcast: id, batch: $0).newJob() }, on: redis)
            total += batches.count
            progress(total)
        }
        return total
    }

    /// The scheduler's round: launches due scheduled broadcasts, picks A/B winners whose time has come, enqueues
    /// ready batches nobody holds (lost with Redis, due after a retry, resumed) while the bulk queue is nearly
    /// empty, and completes broadcasts whose batches are all done.
    public func tick(now: Date, redis: RedisConnection, db: PostgresConnection, logger: Logger) throws {
        for id in try store.due(now: now, on: db) {
            do {
                if let n = try snapshot(id, now: now, on: db) {
                    logger.info("broadcast started", metadata: ["broadcast": "\(id)", "recipients": "\(n)"])
                }
            } catch let error as LaunchError {
                logger.error("broadcast cannot start", metadata: ["broadcast": "\(id)", "error": "\(error)"])
                _ = try db.execute("UPDATE broadcasts SET status = 'failed', finished_at = $2, options = options || jsonb_build_object('error', $3::text) WHERE id = $1",
                                   [.int(id), .timestamp(now), .text(error.description)])
            }
        }
        for b in try store.winnersDue(now: now, on: db) {
            let metric = Self.winnerMetric(b)
            let engagement = try store.variantEngagement(b.id, by: metric, on: db)
            let winner = Self.pickWinner(engagement)
            try store.chooseWinner(b.id, variant: winner, now: now, on: db)
            logger.info("A/B winner chosen", metadata: ["broadcast": "\(b.id)", "winner": "\(b.templates[safe: winner] ?? "?")", "by": "\(metric)"])
        }
        let backlog = try redis.execute(RedisCommand("XLEN", .string(queue.keys.stream(BroadcastBatchJob.queue)))).int ?? 0
        if backlog < 100 {
            for id in try store.withUnleasedBatches(now: now, on: db) {
                try enqueueReady(id, now: now, limit: 200, redis: redis, db: db)
            }
        }
        for id in try store.completeFinished(now: now, on: db) {
            logger.info("broadcast completed", metadata: ["broadcast": "\(id)"])
        }
    }

    static func winnerMetric(_ b: BroadcastRow) -> String {
        guard case .object(let o)? = try? Value(jsonText: b.options), let by = o["winner_by"]?.stringValue else { return "clicks" }
        return by
    }

    /// The variant with the highest engagement rate (engaged / accepted); ties go to the earlier variant.
    public static func pickWinner(_ engagement: [(variant: Int, accepted: Int, engaged: Int)]) -> Int {
        var best = (variant: 0, rate: -1.0)
        for e in engagement.sorted(by: { $0.variant < $1.variant }) {
            let rate = e.accepted == 0 ? 0 : Double(e.engaged) / Double(e.accepted)
            if rate > best.rate { best = (e.variant, rate) }
        }
        return best.variant
    }
}

extension Array {
    subscript(safe index: Int) -> Element? { indices.contains(index) ? self[index] : nil }
}

/// Runs `broadcast.batch` jobs: checks every recipient of the batch at send time (suppressed, unsubscribed,
/// erased, consent, caps unless the broadcast ignores them: whatever happened since the snapshot), opens their
/// delivery rows (`bc:<broadcast>:<contact>`: one message per recipient, ever), renders, sends through the
/// template's provider (batching providers get batches) under the broadcast's `--rate`, and stops within a
/// second of a pause or cancel. Messages not sent (a provider that is down, a pause) keep their pending delivery;
/// the batch is due again and resends only those.
public final class BroadcastRunner: Sendable {
    let catalogs: WorkflowCatalogCache
    let config: NurtureConfig
    let limiter: RateLimiter
    let store = BroadcastStore()
    let deliveries = DeliveryStore()
    let signer: LinkSigner

    public init(config: NurtureConfig, catalogs: WorkflowCatalogCache = WorkflowCatalogCache()) {
        self.config = config
        self.catalogs = catalogs
        self.limiter = RateLimiter(namespace: config.namespace)
        self.signer = LinkSigner(config: config)
    }

    public func register(into registry: inout JobHandlerRegistry) {
        registry.register(BroadcastBatchJob.kind) { [self] context in
            guard let job = BroadcastBatchJob(payload: context.job.payload) else {
                throw JobFailure.permanent("broadcast.batch needs {\"broadcast\": ID, \"batch\": N}")
            }
            try run(job, context: context)
        }
    }

    private struct Recipient {
        let contact: Int64
        let view: ContactView
        let template: TemplateDefinition
        let provider: ProviderDefinition
        let intent: DeliveryIntent
        let address: String?
        let contactKey: String
    }

    func run(_ job: BroadcastBatchJob, context: JobContext) throws {
        let db = try context.database()
        guard let b = try store.get(job.broadcast, on: db), b.status == "sending" else { return }
        guard try store.startBatch(b.id, batch: job.batch, leaseSeconds: BroadcastBatchJob.leaseSeconds, on: db) else { return }
        let catalog = try catalogs.current(on: db)
        let rules = try SlotCaches.current.rules.current(on: db)
        let now = context.clock.now()
        let (plans, retryAt) = try db.transaction { db in
            try prepare(b, batch: job.batch, catalog: catalog, rules: rules, now: now, on: db)
        }
        var retry = retryAt
        if !plans.isEmpty {
            let links = try signer.links(on: db)
            let items = plans.map { (r, delivery) -> DispatchItem in
                do {
                    let unsubscribe = links.unsubscribeURL(contactId: r.contact, deliveryId: delivery.id)
                    var fields: [String: Value] = [
                        "contact": r.view.value,
                        "broadcast": .object(["id": .number(Double(b.id)), "name": .string(b.name)]),
                        "unsubscribe_url": .string(unsubscribe),
                        "now": .time(now),
                    ]
                    if r.template.mentionsPreferencesURL { fields["preferences_url"] = .string(links.preferencesURL(contactId: r.contact)) }
                    let context: Value = .object(fields)
                    let envelope = Envelope(deliveryId: delivery.id, to: r.address, contactId: r.contactKey,
                                            from: r.template.from ?? r.provider.from ?? catalog.settings?.from,
                                            source: .broadcast(id: b.id, name: b.name), unsubscribeURL: unsubscribe)
                    var message = try MessageComposer.compose(r.template, context: context, envelope: envelope, now: now)
                    LinkTracking.apply(to: &message, template: r.template, contactId: r.contact, links: links)
                    return DispatchItem(deliveryId: delivery.id, attempts: delivery.attempts, provider: r.provider, message: message, failure: nil)
                } catch {
                    return DispatchItem(deliveryId: delivery.id, attempts: delivery.attempts, provider: r.provider, message: nil,
                                        failure: "render failed: \(error)")
                }
            }
            // A pause or cancel is seen within a second: the status is read at most every 250 ms between calls.
            let lastCheck = Mutex<(at: Int64, stop: Bool)>((monotonicMilliseconds(), false))
            var dispatch = MessageDispatch(context: context, limiter: limiter)
            if let rate = b.ratePerSecond { dispatch.extraLimit = ("broadcast:\(b.id)", rate) }
            let store = self.store
            dispatch.shouldStop = {
                let due = lastCheck.withLock { monotonicMilliseconds() - $0.at >= 250 && !$0.stop }
                if due {
                    let status = try store.status(b.id, on: db)
                    lastCheck.withLock { $0 = (monotonicMilliseconds(), status != "sending") }
                }
                return lastCheck.withLock { $0.stop }
            }
            let (results, settled) = try dispatch.run(items, lockedAt: monotonicMilliseconds(), now: { context.clock.now() }, on: db)
            var settlements: [DeliverySettlement] = []
            for (n, item) in items.enumerated() {
                let settlement = MessageDispatch.settlement(item, results[n], maxAttempts: WorkflowRunner.maxSendAttempts)
                if !settled[n] { settlements.append(settlement) }
                if settlement.status == "pending" {
                    let after: Double
                    switch results[n] {
                    case .outcome(.retry(_, let ms)): after = MessageDispatch.retryDelay(attempts: item.attempts, providerSaid: ms)
                    case .notTried(_, let s): after = s
                    default: after = 0
                    }
                    let at = context.clock.now().addingTimeInterval(after)
                    retry = min(retry ?? at, at)
                }
            }
            try deliveries.settle(settlements, now: context.clock.now(), on: db)
        }
        try store.finishBatch(b.id, batch: job.batch, retryAt: retry, on: db)
    }

    /// In one transaction: the batch's recipients checked at send time, skipped/suppressed ones recorded, the
    /// rest's delivery rows opened. Returns the messages this job must send, and when to look at the batch again
    /// if some deliveries are being sent by another worker right now.
    private func prepare(_ b: BroadcastRow, batch: Int, catalog: WorkflowCatalog, rules: BehaviourRules, now: Date,
                         on db: PostgresConnection) throws -> ([(Recipient, OpenedDelivery)], Date?) {
        let recipients = try store.recipients(b.id, batch: batch, on: db)
        let views = try ContactView.load(recipients.map(\.contact), now: now, compilerOptions: rules.compilerOptions, on: db)
        var records: [(intent: DeliveryIntent, status: String, reason: String?)] = []
        var candidates: [Recipient] = []
        for (contact, variant) in recipients {
            guard let name = b.template(variant: variant), let (version, template) = catalog.templates[name].map({ ($0.version, $0.definition) }),
                  let provider = catalog.provider(for: template) else {
                let name = b.template(variant: variant) ?? "?"
                let intent = Self.intent(b, contact: contact, template: name, version: nil, channel: "email", category: "marketing", provider: nil)
                records.append((intent, "skipped", "template \(name) or its provider is not applied"))
                continue
            }
            let intent = Self.intent(b, contact: contact, template: name, version: version, channel: template.channel.rawValue,
                                     category: template.category.rawValue, provider: provider.name)
            guard let view = views[contact] else {
                records.append((intent, "skipped", "contact erased or merged"))
                continue
            }
            let (address, contactKey) = view.recipient(on: template.channel, contactId: contact)
            candidates.append(Recipient(contact: contact, view: view, template: template, provider: provider, intent: intent,
                                        address: address, contactKey: contactKey))
        }
        let caps = b.ignoreCaps ? [:] : (catalog.settings?.frequencyCaps ?? [:])
        // Without caps nothing is locked, and the contacts were just read (live, with their unsubscribe state).
        let reasons = try deliveries.blockReasons(candidates.map {
            SendCheck(contactId: $0.contact, channel: $0.template.channel.rawValue, category: $0.template.category.rawValue, address: $0.address)
        }, lockContacts: !caps.isEmpty, liveContacts: caps.isEmpty ? candidates.map { $0.view.isUnsubscribed } : nil, on: db)
        var passed: [Recipient] = []
        for (r, reason) in zip(candidates, reasons) {
            if let reason {
                records.append((r.intent, "suppressed", reason))
            } else if r.template.channel != .webhook && (r.address ?? "").isEmpty {
                records.append((r.intent, "skipped", "no \(r.template.channel == .sms ? "phone number" : "email address")"))
            } else {
                passed.append(r)
            }
        }
        let capped = passed.filter { $0.template.category == .marketing && caps[$0.template.channel] != nil }
        var over = Set<Int64>()
        if !capped.isEmpty {
            let counts = try deliveries.recentMarketingCounts(capped.map {
                ($0.contact, $0.template.channel.rawValue, now.addingTimeInterval(-caps[$0.template.channel]!.periodSeconds))
            }, excluding: candidates.map(\.intent.dedupeKey), on: db)
            for (r, n) in zip(capped, counts) where n >= caps[r.template.channel]!.count {
                over.insert(r.contact)
                let cap = caps[r.template.channel]!
                records.append((r.intent, "skipped", "frequency cap \(cap.count) per \(DurationLabel.text(cap.periodSeconds)) on \(r.template.channel.rawValue)"))
            }
        }
        passed.removeAll { over.contains($0.contact) }
        try deliveries.record(records, now: now, on: db)
        let opened = try deliveries.open(passed.map(\.intent), now: now, lockSeconds: WorkflowRunner.sendLockSeconds, on: db)
        var plans: [(Recipient, OpenedDelivery)] = []
        var retryAt: Date? = nil
        for (r, delivery) in zip(passed, opened) {
            if delivery.mine {
                plans.append((r, delivery))
            } else if delivery.status == "pending" {
                retryAt = now.addingTimeInterval(WorkflowRunner.sendLockSeconds)
            }
        }
        return (plans, retryAt)
    }

    static func intent(_ b: BroadcastRow, contact: Int64, template: String, version: Int?, channel: String, category: String,
                       provider: String?) -> DeliveryIntent {
        DeliveryIntent(dedupeKey: "bc:\(b.id):\(contact)", contactId: contact, channel: channel, category: category, template: template,
                       templateVersion: version, provider: provider, sourceKind: "broadcast", sourceName: b.name, step: nil,
                       enrollmentId: nil, broadcastId: b.id)
    }
}
