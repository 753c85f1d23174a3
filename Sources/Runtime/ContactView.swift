import Domain
import Foundation
import Postgres
import Store

/// A contact as the expression evaluator sees it (`EvaluationContext.contact`): attributes, then the columns over
/// them, `tags` as a list and `score` as the decayed value of the scoring model `contact.score` means.
struct ContactView {
    private(set) var value: Value
    private(set) var stage: String?
    private(set) var stageEnteredAt: Date?
    let firstSeenAt: Date?

    private static let textColumns = ["external_id", "email", "phone", "timezone", "stage", "first_utm_source", "first_utm_medium",
                                      "last_utm_source", "last_utm_medium", "last_device_type", "email_sha256"]
    private static let timeColumns = ["stage_entered_at", "first_seen_at", "last_seen_at", "unsubscribed_at", "created_at", "updated_at"]

    mutating func setScore(_ score: Double) {
        guard case .object(var o) = value else { return }
        o["score"] = .number(score)
        value = .object(o)
    }

    mutating func setStage(_ stage: String, enteredAt: Date) {
        guard case .object(var o) = value else { return }
        o["stage"] = .string(stage)
        o["stage_entered_at"] = .time(enteredAt)
        value = .object(o)
        self.stage = stage
        self.stageEnteredAt = enteredAt
    }

    /// The contact unsubscribed from marketing (`unsubscribed_at` is set).
    var isUnsubscribed: Bool {
        if case .time? = value["unsubscribed_at"] { return true }
        return false
    }

    /// Where a message on `channel` goes: the address (email, phone; for push the contact key; none for webhooks)
    /// and the contact key providers see (`external_id`, else the internal id).
    func recipient(on channel: Channel, contactId: Int64) -> (address: String?, contactKey: String) {
        let key = value["external_id"]?.stringValue ?? String(contactId)
        switch channel {
        case .email: return (value["email"]?.stringValue, key)
        case .sms: return (value["phone"]?.stringValue, key)
        case .push: return (key, key)
        case .webhook: return (nil, key)
        }
    }

    /// Loads the live contacts among `ids` (one query).
    static func load(_ ids: [Int64], now: Date, compilerOptions: SQLCompilerOptions, on db: PostgresConnection) throws -> [Int64: ContactView] {
        if ids.isEmpty { return [:] }
        let columns = (textColumns + timeColumns).map { "c.\($0)" }.joined(separator: ", ")
        let rows = try db.query("""
            SELECT c.id, c.attributes::text, c.tags, s.value, s.reference_at, \(columns)
            FROM contacts c LEFT JOIN contact_scores s ON s.contact_id = c.id AND s.name = $2
            WHERE c.id = ANY($1::int8[]) AND c.merged_into IS NULL AND c.erased_at IS NULL
            """, [.intArray(ids.map { Optional($0) }), .text(compilerOptions.scoreName)]).rows
        var views: [Int64: ContactView] = [:]
        for row in rows {
            guard let id = row[0].int else { continue }
            var object: [String: Value] = [:]
            if let text = row[1].string, case .object(let attributes)? = try? Value(jsonText: text) { object = attributes }
            var n = 5
            for name in textColumns {
                if let s = row[n].string { object[name] = .string(s) } else { object[name] = nil }
                n += 1
            }
            for name in timeColumns {
                if let d = row[n].date { object[name] = .time(d) } else { object[name] = nil }
                n += 1
            }
            object["tags"] = .array((row[2].stringArray ?? []).compactMap { $0.map(Value.string) })
            var score = 0.0
            if let v = row[3].double, let reference = row[4].date {
                score = v * ScoreDecay.factor(from: reference, to: now, halfLife: compilerOptions.scoreHalfLife)
            }
            object["score"] = .number(score)
            func time(_ key: String) -> Date? { if case .time(let d)? = object[key] { return d }; return nil }
            views[id] = ContactView(value: .object(object), stage: object["stage"]?.stringValue, stageEnteredAt: time("stage_entered_at"),
                                    firstSeenAt: time("first_seen_at"))
        }
        return views
    }
}

/// `count`, `sum` and `in_segment` for in-memory evaluation, answered by queries inside the ingest transaction
/// (so they include the batch's own events). Counts and memberships are fetched for every contact of the batch at
/// once, on first use (one query per distinct `count` shape per batch, not one per contact and rule); loading
/// events themselves (a `where:` filter or `sum`) is per contact. Errors are kept and rethrown by `check()`
/// (the history protocol cannot throw).
final class TransactionHistory {
    private let db: PostgresConnection
    private let contacts: [Int64]
    private var error: (any Error)?
    private struct CountKey: Hashable { var name: String?; var since: Date? }
    private var counts: [CountKey: [Int64: Int]] = [:]
    private var memberships: [Int64: Set<String>]?

    init(db: PostgresConnection, contacts: [Int64]) {
        self.db = db
        self.contacts = contacts
    }

    func forContact(_ contact: Int64) -> any ExpressionHistory { ContactHistory(owner: self, contact: contact) }

    /// Rethrows the first error a query met.
    func check() throws {
        if let error { self.error = nil; throw error }
    }

    fileprivate func run<T>(_ fallback: T, _ body: (PostgresConnection) throws -> T) -> T {
        if error != nil { return fallback }
        do { return try body(db) } catch { self.error = error; return fallback }
    }

    /// Contacts asked about one at a time per count shape before the rest of the batch is fetched in one query
    /// (a few probes by index are cheaper than counting for hundreds of contacts that may never ask).
    private static let singleQueriesPerShape = 16
    private var singleQueries: [CountKey: Int] = [:]

    fileprivate func count(contact: Int64, name: String?, since: Date?) -> Int {
        let key = CountKey(name: name, since: since)
        if let known = counts[key] { return known[contact] ?? 0 }
        if singleQueries[key, default: 0] < Self.singleQueriesPerShape {
            singleQueries[key, default: 0] += 1
            return run(0) { db in
                let (sql, parameters) = Self.countSQL(contacts: [contact], name: name, since: since)
                return Int(try db.query(sql, parameters).rows.first?[1].int ?? 0)
            }
        }
        let loaded: [Int64: Int] = run([:]) { db in
            let (sql, parameters) = Self.countSQL(contacts: contacts, name: name, since: since)
            var result: [Int64: Int] = [:]
            for row in try db.query(sql, parameters).rows {
                if let c = row[0].int { result[c] = Int(row[1].int ?? 0) }
            }
            return result
        }
        if error == nil { counts[key] = loaded }
        return loaded[contact] ?? 0
    }

    private static func countSQL(contacts: [Int64], name: String?, since: Date?) -> (String, [PostgresValue]) {
        let (condition, parameters) = eventFilter(contacts: contacts, name: name, since: since)
        return ("SELECT contact_id, count(*) FROM events WHERE \(condition) GROUP BY contact_id", parameters)
    }

    /// `events` rows of `contacts`, named `name` (nil: any), at or after `since` (nil: ever).
    fileprivate static func eventFilter(contacts: [Int64], name: String?, since: Date?) -> (String, [PostgresValue]) {
        var sql = "contact_id = ANY($1::int8[])"
        var parameters: [PostgresValue] = [.intArray(contacts.map { Optional($0) })]
        if let name { parameters.append(.text(name)); sql += " AND name = $\(parameters.count)" }
        if let since { parameters.append(.timestamp(since)); sql += " AND occurred_at >= $\(parameters.count)" }
        return (sql, parameters)
    }

    fileprivate func isMember(contact: Int64, segment: String) -> Bool {
        if memberships == nil {
            let loaded: [Int64: Set<String>] = run([:]) { db in
                var result: [Int64: Set<String>] = [:]
                for row in try db.query("SELECT contact_id, segment FROM segment_memberships WHERE contact_id = ANY($1::int8[])",
                                        [.intArray(contacts.map { Optional($0) })]).rows {
                    if let c = row[0].int, let s = row[1].string { result[c, default: []].insert(s) }
                }
                return result
            }
            if error == nil { memberships = loaded }
            return loaded[contact]?.contains(segment) ?? false
        }
        return memberships![contact]?.contains(segment) ?? false
    }

    private struct ContactHistory: ExpressionHistory {
        let owner: TransactionHistory
        let contact: Int64

        func events(named name: String?, since: Date?) -> [ExpressionEvent] {
            owner.run([]) { db in
                let (condition, parameters) = TransactionHistory.eventFilter(contacts: [contact], name: name, since: since)
                return try db.query("SELECT name, properties::text, context::text, occurred_at FROM events WHERE \(condition)",
                                    parameters).rows.map { row in
                    ExpressionEvent(name: row[0].string ?? "", properties: (try? Value(jsonText: row[1].string ?? "{}")) ?? .object([:]),
                                    context: (try? Value(jsonText: row[2].string ?? "{}")) ?? .object([:]), occurredAt: row[3].date ?? Date(timeIntervalSince1970: 0))
                }
            }
        }

        func count(named name: String?, since: Date?) -> Int { owner.count(contact: contact, name: name, since: since) }

        func isMember(ofSegment segment: String) -> Bool { owner.isMember(contact: contact, segment: segment) }
    }
}
