import Domain
import Foundation
import Postgres
import Store

/// Turns what happened to contacts into enrollments and exits, inside the transaction that recorded it:
///
/// - **events** (ingestion): per contact, its new events in time order; for each event, first `exit_when` of the
///   workflows the contact is in (the contact's active enrollments, and those this batch just made), then the
///   `event:` triggers whose `where:` holds. An `audience:` trigger enrolls every member of that segment instead
///   of the sender. The event is the enrollment's trigger (templates read `event.*` from it); its messageId
///   makes a re-delivered event enroll once.
/// - **segment changes** (ingestion and the scheduler's scan): `segment_entered:` / `segment_exited:` triggers,
///   and `when:` triggers, kept as hidden segments named `workflow:<name>` (entering one = the condition became
///   true).
///
/// Re-entry rules are applied by `EnrollmentStore.enroll` in SQL.
struct WorkflowTriggers {
    let catalog: WorkflowCatalog
    let now: Date
    private let store = EnrollmentStore()

    init(catalog: WorkflowCatalog, now: Date) {
        self.catalog = catalog
        self.now = now
    }

    /// One contact's new events, in time order.
    struct ContactEvents {
        var contact: Int64
        var contactValue: Value
        var history: any ExpressionHistory
        var events: [(event: ExpressionEvent, messageId: String)]
    }

    /// Exits and enrollments caused by events. Returns the new active enrollments' ids.
    func applyEvents(_ contacts: [ContactEvents], on db: PostgresConnection) throws -> [Int64] {
        if catalog.isEmpty || contacts.isEmpty { return [] }
        // Exits apply to paused workflows too: a contact who bought leaves the cart workflow even while it is paused.
        let exitable = catalog.exitable
        var active: [Int64: [String: Int64]] = [:]   // contact → workflow → enrollment
        if !exitable.isEmpty {
            for row in try store.active(contacts: contacts.map(\.contact), workflows: exitable.map(\.name), on: db) {
                active[row.contact, default: [:]][row.workflow] = row.id
            }
        }
        var exits: [String: [Int64]] = [:]           // reason → enrollments
        var pending: [NewEnrollment] = []
        var audience: [(LoadedWorkflow, String, NewEnrollment)] = []
        for c in contacts {
            var pendingIndex: [String: Int] = [:]     // workflow → index in `pending` (enrolled by this batch)
            for (event, messageId) in c.events {
                let context = EvaluationContext(contact: c.contactValue, event: event, now: now, history: c.history)
                for w in exitable {
                    guard let exitWhen = w.definition.exitWhen else { continue }
                    let existing = active[c.contact]?[w.name]
                    let fresh = pendingIndex[w.name].flatMap { pending[$0].exitReason == nil ? $0 : nil }
                    guard existing != nil || fresh != nil, exitWhen.matches(in: context) else { continue }
                    let reason = "exit_when on \(event.name) (\(messageId))"
                    if let existing {
                        exits[reason, default: []].append(existing)
                        active[c.contact]?[w.name] = nil
                    }
                    if let fresh { pending[fresh].exitReason = reason }
                }
                for w in catalog.eventTriggers[event.name] ?? [] where !catalog.paused.contains(w.name) {
                    guard case .event(_, let filter, let segment) = w.definition.trigger else { continue }
                    if let filter, !filter.matches(in: context) { continue }
                    let enrollment = NewEnrollment(workflow: w.name, version: w.version, contactId: c.contact,
                                                   stepPath: w.program.start?.description, reentry: Self.reentry(w),
                                                   triggerJSON: Self.triggerJSON(event: event, messageId: messageId),
                                                   triggerKey: "event:\(messageId)")
                    if let segment {
                        audience.append((w, segment, enrollment))
                        continue
                    }
                    if active[c.contact]?[w.name] != nil { continue }
                    if let i = pendingIndex[w.name], pending[i].exitReason == nil { continue }
                    pendingIndex[w.name] = pending.count
                    pending.append(enrollment)
                }
            }
        }
        for (reason, ids) in exits { try store.exit(ids, reason: reason, now: now, on: db) }
        let created = try store.enroll(pending, now: now, on: db).map(\.id)
        for (_, segment, template) in audience {
            _ = try store.enrollAudience(segment: segment, template: template, now: now, on: db)
        }
        // Fan-out enrollments can be many: the scheduler picks them up (they are due now); only the others get
        // their first job straight from ingestion.
        return created
    }

    /// Enrollments caused by segment entries and exits (including the hidden segments of `when:` triggers).
    func applySegmentChanges(_ changes: [String: SegmentChanges], on db: PostgresConnection) throws -> [Int64] {
        if catalog.isEmpty || changes.isEmpty { return [] }
        var rows: [NewEnrollment] = []
        for (segment, change) in changes.sorted(by: { $0.key < $1.key }) {
            var entered: [LoadedWorkflow] = catalog.segmentEntered[segment] ?? []
            if segment.hasPrefix(LoadedWorkflow.whenSegmentPrefix),
               let w = catalog.workflows[String(segment.dropFirst(LoadedWorkflow.whenSegmentPrefix.count))], case .when = w.definition.trigger {
                entered.append(w)
            }
            for w in entered where !catalog.paused.contains(w.name) {
                let trigger = Value.object(["segment": .string(segment), "entered": .bool(true), "at": .time(now)]).jsonText
                for c in change.entered {
                    rows.append(NewEnrollment(workflow: w.name, version: w.version, contactId: c, stepPath: w.program.start?.description,
                                              reentry: Self.reentry(w), triggerJSON: trigger, triggerKey: nil))
                }
            }
            for w in catalog.segmentExited[segment] ?? [] where !catalog.paused.contains(w.name) {
                let trigger = Value.object(["segment": .string(segment), "entered": .bool(false), "at": .time(now)]).jsonText
                for c in change.exited {
                    rows.append(NewEnrollment(workflow: w.name, version: w.version, contactId: c, stepPath: w.program.start?.description,
                                              reentry: Self.reentry(w), triggerJSON: trigger, triggerKey: nil))
                }
            }
        }
        return try store.enroll(rows, now: now, on: db).map(\.id)
    }

    static func reentry(_ w: LoadedWorkflow) -> NewEnrollment.Reentry {
        switch w.definition.reentry {
        case .never: return .never
        case .always: return .always
        case .after(let s): return .after(seconds: s)
        }
    }

    /// What templates see as `event`: name, properties, context, timestamp, messageId.
    static func triggerJSON(event: ExpressionEvent, messageId: String) -> String {
        Value.object(["event": .object([
            "name": .string(event.name), "properties": event.properties, "context": event.context,
            "timestamp": .time(event.occurredAt), "messageId": .string(messageId),
        ])]).jsonText
    }
}

extension BehaviourRules {
    /// The hidden segments of `when:` triggers: a segment named `workflow:<name>` per workflow with a `when:`
    /// trigger, kept live like any segment; entering it fires the trigger.
    static func whenSegments(_ definitions: [Definition]) -> [Segment] {
        definitions.compactMap { d in
            guard case .workflow(let w) = d.body, case .when(let condition) = w.trigger else { return nil }
            return Segment(name: LoadedWorkflow.whenSegmentPrefix + w.name, condition: condition, reads: condition.reads, checksum: d.checksum)
        }
    }
}
