import Domain
import Foundation
import Postgres
import Store

/// One ingested message as the behaviour update sees it: the store record and, for track/page, the event as the
/// expression language sees it.
struct BehaviourInput {
    var record: IngestRecord
    var event: ExpressionEvent?
}

/// A stage change of one contact.
public struct StageChange: Sendable, Equatable {
    public var contact: Int64
    public var from: String?
    public var to: String
    public var at: Date
    public var cause: String
}

/// What a batch changed beyond the events themselves.
public struct BehaviourChanges: Sendable, Equatable {
    /// Contacts whose scores changed.
    public var scoredContacts = 0
    public var stageChanges: [StageChange] = []
    /// Segment name → who entered and left.
    public var segments: [String: SegmentChanges] = [:]
    /// Workflow enrollments made by this batch (active ones, whose first step job can be enqueued at once).
    public var enrollments: [Int64] = []
    public init() {}
}

/// Applies scoring, lifecycle and segment rules to one ingested batch, inside its transaction (so a contact
/// enters or leaves a segment in the same commit as the event that caused it):
///
/// 1. **Scoring.** Every rule of every model whose `when` matches an event adds its points. Points are decayed to a
///    common reference time per contact (its latest scored event) and added to the stored value, itself decayed
///    from its own reference time: `value(t) = value(ref) * 0.5^((t - ref) / half_life)`, so no row is ever
///    rewritten just because time passed, and SQL reads the current value with the same formula.
/// 2. **Lifecycle.** A contact without a stage gets the initial one (at its first event). Then, for each of the
///    contact's messages in time order, the rules are tried in order: the first whose target differs from the
///    current stage and whose condition holds moves the contact, and the rules are tried again for the new stage
///    (at most once per stage per message). Every change is a `lifecycle_transitions` row.
/// 3. **Segments**, in dependency order: each segment is re-evaluated (in SQL, the same compiled condition the
///    scheduler's scan uses) for the contacts of the batch whose changes it can see — those with events it counts,
///    new profile data, a new score or stage, merges and new contacts, and members of segments it depends on that
///    changed. Entries and exits are recorded in `segment_transitions`.
///
/// Evaluation in memory reads contact data loaded once per batch (after the batch's writes) and, for `count`/`sum`
/// and `in_segment`, queries within the transaction, so it sees the batch's own events.
struct BehaviourUpdate {
    let rules: BehaviourRules
    let catalog: WorkflowCatalog
    let now: Date
    private let segmentStore = SegmentStore()

    init(rules: BehaviourRules, catalog: WorkflowCatalog = .empty, now: Date) {
        self.rules = rules
        self.catalog = catalog
        self.now = now
    }

    /// What the batch did to each contact (decides which segments need a look).
    private struct Touch {
        var eventNames: Set<String> = []
        var hasEvent = false
        var profile = false
        var created = false
        var merged = false
        var scored = false
        var staged = false
    }

    func apply(_ inputs: [BehaviourInput], result: IngestResult, on db: PostgresConnection) throws -> BehaviourChanges {
        var changes = BehaviourChanges()
        if rules.isEmpty && catalog.isEmpty { return changes }
        // Fresh messages per contact, in time order.
        var byContact: [Int64: [Int]] = [:]
        for (i, outcome) in result.outcomes.enumerated() where outcome == .new {
            guard let contact = result.contactIDs[i] else { continue }
            byContact[contact, default: []].append(i)
        }
        for (c, list) in byContact {
            byContact[c] = list.sorted { (inputs[$0].record.occurredAt, $0) < (inputs[$1].record.occurredAt, $1) }
        }
        let contacts = byContact.keys.sorted()
        var touch: [Int64: Touch] = [:]
        for c in contacts {
            var t = Touch()
            for i in byContact[c]! {
                let r = inputs[i].record
                if let name = r.eventName { t.eventNames.insert(name); t.hasEvent = true }
                if r.type == "identify" || r.type == "alias" || r.traitsJSON != nil || r.email != nil || r.phone != nil { t.profile = true }
            }
            touch[c] = t
        }
        for c in result.createdContacts { touch[c]?.created = true }
        for m in result.merges { touch[m.survivor]?.merged = true }

        let needsContacts = rules.lifecycle != nil || rules.scoring.contains { !$0.eventOnly } || !catalog.isEmpty
        var views = needsContacts ? try ContactView.load(contacts, now: now, compilerOptions: rules.compilerOptions, on: db) : [:]
        let history = TransactionHistory(db: db, contacts: contacts)

        // ── 1. scoring ──
        for model in rules.scoring {
            var points: [Int64: [(Double, Date)]] = [:]
            for c in contacts {
                for i in byContact[c]! {
                    guard let event = inputs[i].event else { continue }
                    let context = EvaluationContext(contact: views[c]?.value ?? .object([:]), event: event, now: now,
                                                    history: history.forContact(c))
                    for rule in model.rules where rule.when.matches(in: context) {
                        points[c, default: []].append((rule.points, event.occurredAt))
                    }
                }
            }
            try history.check()
            if points.isEmpty { continue }
            let scored = try upsertScores(model, points: points, on: db)
            for (c, value) in scored {
                touch[c]?.scored = true
                if model.name == rules.primaryScore?.name { views[c]?.setScore(value) }
            }
            changes.scoredContacts += scored.count
        }

        // ── 2. lifecycle ──
        if let lifecycle = rules.lifecycle {
            for c in contacts {
                guard var view = views[c] else { continue }
                let moves = lifecycleMoves(lifecycle, view: &view, messages: byContact[c]!.map { inputs[$0] },
                                           history: history.forContact(c))
                try history.check()
                if !moves.isEmpty {
                    changes.stageChanges += moves.map { StageChange(contact: c, from: $0.from, to: $0.to, at: $0.at, cause: $0.cause) }
                    touch[c]?.staged = true
                    views[c] = view
                }
            }
            if !changes.stageChanges.isEmpty { try writeStages(changes.stageChanges, on: db) }
        }

        // ── 3. segments ──
        var candidatesOf: [String: Set<Int64>] = [:]
        var statements: [(String, [PostgresValue])] = []
        var names: [String] = []
        for segment in rules.segments {
            let reads = segment.reads
            var candidates = Set<Int64>()
            for c in contacts {
                let t = touch[c]!
                if t.created || t.merged || reads.activity
                    || (reads.anyEvent && t.hasEvent) || !reads.eventNames.isDisjoint(with: t.eventNames)
                    || (reads.profile && t.profile) || (reads.score && t.scored) || (reads.stage && t.staged) {
                    candidates.insert(c)
                }
            }
            for dependency in reads.segments { candidates.formUnion(candidatesOf[dependency] ?? []) }
            candidatesOf[segment.name] = candidates
            if candidates.isEmpty { continue }
            let predicate = segmentPredicate(segment.condition, now: now, options: rules.compilerOptions, mode: .perContact)
            statements.append(segmentStore.reconcileStatement(segment: segment.name, predicate: predicate,
                                                              scope: .contacts(candidates.sorted()), at: now))
            names.append(segment.name)
        }
        if !statements.isEmpty {
            for (name, result) in zip(names, try db.pipeline(statements)) {
                let c = SegmentStore.changes(from: result)
                if !c.entered.isEmpty || !c.exited.isEmpty { changes.segments[name] = c }
            }
        }

        // ── 4. workflows: exits and event triggers, then segment and `when:` triggers ──
        if !catalog.isEmpty {
            let perContact: [WorkflowTriggers.ContactEvents] = contacts.compactMap { c in
                guard let view = views[c] else { return nil }
                let events = byContact[c]!.compactMap { i in inputs[i].event.map { (event: $0, messageId: inputs[i].record.messageId) } }
                if events.isEmpty { return nil }
                return WorkflowTriggers.ContactEvents(contact: c, contactValue: view.value, history: history.forContact(c), events: events)
            }
            let triggers = WorkflowTriggers(catalog: catalog, now: now)
            changes.enrollments = try triggers.applyEvents(perContact, on: db)
            try history.check()
            changes.enrollments += try triggers.applySegmentChanges(changes.segments, on: db)
        }
        return changes
    }

    // MARK: scoring

    /// Adds each contact's points (decayed to its latest scored event) to its stored score; returns the current
    /// (decayed to `now`) values.
    private func upsertScores(_ model: BehaviourRules.Scoring, points: [Int64: [(Double, Date)]], on db: PostgresConnection) throws -> [Int64: Double] {
        var ids: [Int64?] = [], values: [String?] = [], references: [String?] = []
        for (c, list) in points.sorted(by: { $0.key < $1.key }) {
            let reference = list.map(\.1).max()!
            var value = 0.0
            for (p, t) in list { value += p * ScoreDecay.factor(from: t, to: reference, halfLife: model.halfLifeSeconds) }
            ids.append(c); values.append(String(value)); references.append(TimestampText().format(reference))
        }
        let halfLife: PostgresValue = model.halfLifeSeconds.map { .double($0) } ?? .null
        let decay = { (from: String, to: String) in
            "CASE WHEN $5::double precision IS NULL THEN 1 ELSE power(0.5::double precision, extract(epoch from (\(to) - \(from)))::double precision / $5::double precision) END"
        }
        let rows = try db.query("""
            INSERT INTO contact_scores AS s (contact_id, name, value, reference_at)
            SELECT u.c, $4, u.v::double precision, u.r::timestamptz FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(c, v, r)
            ON CONFLICT (contact_id, name) DO UPDATE SET
                value = CASE WHEN excluded.reference_at >= s.reference_at
                             THEN s.value * \(decay("s.reference_at", "excluded.reference_at")) + excluded.value
                             ELSE s.value + excluded.value * \(decay("excluded.reference_at", "s.reference_at")) END,
                reference_at = GREATEST(s.reference_at, excluded.reference_at)
            RETURNING contact_id, value, reference_at
            """, [.intArray(ids), .textArray(values), .textArray(references), .text(model.name), halfLife]).rows
        var current: [Int64: Double] = [:]
        for row in rows {
            guard let c = row[0].int, let v = row[1].double, let r = row[2].date else { continue }
            current[c] = v * ScoreDecay.factor(from: r, to: now, halfLife: model.halfLifeSeconds)
        }
        return current
    }

    // MARK: lifecycle

    private struct Move {
        var from: String?
        var to: String
        var at: Date
        var cause: String
    }

    private func lifecycleMoves(_ lifecycle: LifecycleDefinition, view: inout ContactView, messages: [BehaviourInput],
                                history: any ExpressionHistory) -> [Move] {
        var moves: [Move] = []
        var stage = view.stage
        var enteredAt = view.stageEnteredAt
        func move(to target: String, at time: Date, cause: String) {
            let at = max(time, enteredAt ?? time)
            moves.append(Move(from: stage, to: target, at: at, cause: cause))
            stage = target
            enteredAt = at
            view.setStage(target, enteredAt: at)
        }
        if stage == nil {
            let first = [view.firstSeenAt, messages.first?.record.occurredAt].compactMap { $0 }.min() ?? now
            move(to: lifecycle.initial, at: first, cause: "initial stage")
        }
        for message in messages {
            var tried: Set<String> = [stage ?? ""]
            var moved = true
            while moved {
                moved = false
                for (n, rule) in lifecycle.rules.enumerated() where rule.to != stage && !tried.contains(rule.to) {
                    let context = EvaluationContext(contact: view.value, event: message.event, now: now, history: history)
                    if rule.when.matches(in: context) {
                        let what = message.event?.name ?? message.record.type
                        move(to: rule.to, at: message.record.occurredAt, cause: "rule \(n + 1) on \(what) (\(message.record.messageId))")
                        tried.insert(rule.to)
                        moved = true
                        break
                    }
                }
            }
        }
        return moves
    }

    private func writeStages(_ moves: [StageChange], on db: PostgresConnection) throws {
        var last: [Int64: StageChange] = [:]
        for m in moves { last[m.contact] = m }
        let finals = last.values.sorted { $0.contact < $1.contact }
        _ = try db.pipeline([
            ("""
             UPDATE contacts c SET stage = u.s, stage_entered_at = u.t::timestamptz, updated_at = $4
             FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(id, s, t) WHERE c.id = u.id
             """,
             [.intArray(finals.map { $0.contact }), .textArray(finals.map { $0.to }),
              .textArray(finals.map { TimestampText().format($0.at) }), .timestamp(now)]),
            ("""
             INSERT INTO lifecycle_transitions (contact_id, from_stage, to_stage, at, cause)
             SELECT u.c, u.f, u.s, u.t::timestamptz, u.why FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u(c, f, s, t, why)
             """,
             [.intArray(moves.map { $0.contact }), .textArray(moves.map { $0.from }), .textArray(moves.map { $0.to }),
              .textArray(moves.map { TimestampText().format($0.at) }), .textArray(moves.map { $0.cause })]),
        ])
    }
}

/// Score decay: points earned at `from` are worth `0.5^((to - from) / halfLife)` of themselves at `to`.
enum ScoreDecay {
    static func factor(from: Date, to: Date, halfLife: Double?) -> Double {
        guard let halfLife, halfLife > 0 else { return 1 }
        return pow(0.5, to.timeIntervalSince(from) / halfLife)
    }
}
