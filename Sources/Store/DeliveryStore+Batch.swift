import Foundation
import Postgres

/// What the send-time checks need to know about one message.
public struct SendCheck: Sendable, Hashable {
    public var contactId: Int64
    public var channel: String
    public var category: String
    public var address: String?

    public init(contactId: Int64, channel: String, category: String, address: String?) {
        self.contactId = contactId
        self.channel = channel
        self.category = category
        self.address = address
    }
}

/// A settled provider answer for one delivery.
public struct DeliverySettlement: Sendable, Hashable {
    public var id: String
    /// `accepted`, `rejected`, `failed` (gave up), or `pending` (to be retried: the send lock is released).
    public var status: String
    public var error: String?
    public var providerMessageId: String?
    /// The provider was not called after all (the send lock is handed back): the attempt `open` counted is undone.
    public var refundAttempt = false

    public init(id: String, status: String, error: String?, providerMessageId: String?) {
        self.id = id
        self.status = status
        self.error = error
        self.providerMessageId = providerMessageId
    }
}

/// Set-based versions of the delivery statements: a batch of messages costs the same round trips as one.
extension DeliveryStore {
    /// Why each message must not go out (nil: it may), as `blockReason` decides it, for a batch. `lockContacts`
    /// locks the contacts' rows in id order for the rest of the transaction (senders deciding frequency caps for the
    /// same contact take turns).
    ///
    /// `liveContacts`: the caller has just loaded these contacts in this transaction and found each one neither
    /// erased nor merged, with `unsubscribed` as given per check: the contacts are not read again (only suppressions
    /// and consents are). Only without `lockContacts` (a locked contact must be re-read after the lock).
    public func blockReasons(_ checks: [SendCheck], lockContacts: Bool, liveContacts unsubscribed: [Bool]? = nil,
                             on db: PostgresConnection) throws -> [String?] {
        if checks.isEmpty { return [] }
        precondition(unsubscribed == nil || (!lockContacts && unsubscribed!.count == checks.count), "liveContacts: one per check, no lock")
        var statements: [(String, [PostgresValue])] = []
        if lockContacts {
            let ids = Array(Set(checks.map(\.contactId))).sorted()
            statements.append(("SELECT id FROM contacts WHERE id = ANY($1::int8[]) ORDER BY id FOR UPDATE",
                               [.intArray(ids.map { Optional($0) })]))
        }
        // The contact's own state (does it exist, erased, merged, unsubscribed) is read here unless the caller has it.
        let readContacts = unsubscribed == nil
        statements.append(("""
            SELECT u.n, \(readContacts ? "c.id IS NULL, c.erased_at IS NOT NULL, c.merged_into IS NOT NULL, c.unsubscribed_at IS NOT NULL"
                                        : "false, false, false, false"),
                   EXISTS (SELECT 1 FROM suppressions s WHERE s.channel = u.ch AND s.address = lower(u.addr)),
                   (SELECT k.granted FROM consents k WHERE k.contact_id = u.cid AND k.category = u.cat AND k.channel IN (u.ch, '*')
                    ORDER BY k.at DESC, k.id DESC LIMIT 1)
            FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(cid, ch, cat, addr, n)
            \(readContacts ? "LEFT JOIN contacts c ON c.id = u.cid" : "")
            """, [.intArray(checks.map { $0.contactId }), .textArray(checks.map { $0.channel }),
                  .textArray(checks.map { $0.category }), .textArray(checks.map { $0.address })]))
        let results = try db.pipeline(statements)
        var reasons = [String?](repeating: nil, count: checks.count)
        for row in results[results.count - 1].rows {
            guard let n = row[0].int, n >= 1, Int(n) <= checks.count else { continue }
            let i = Int(n) - 1
            if row[1].bool == true { reasons[i] = "contact \(checks[i].contactId) does not exist"; continue }
            if row[2].bool == true { reasons[i] = "erased"; continue }
            if row[3].bool == true { reasons[i] = "merged into another contact"; continue }
            if row[5].bool == true { reasons[i] = "address suppressed"; continue }
            if checks[i].category != "transactional" {
                if row[4].bool == true || unsubscribed?[i] == true { reasons[i] = "unsubscribed"; continue }
                if row[6].bool == false { reasons[i] = "no consent for \(checks[i].category) on \(checks[i].channel)" }
            }
        }
        return reasons
    }

    /// `recentMarketingCount` for a batch: marketing messages per (contact, channel) since each item's `since`,
    /// pending or accepted, other than the batch's own messages (`excluding`: their dedupe keys; the caller counts
    /// the ones it lets through itself).
    public func recentMarketingCounts(_ items: [(contactId: Int64, channel: String, since: Date)], excluding keys: [String],
                                      on db: PostgresConnection) throws -> [Int] {
        if items.isEmpty { return [] }
        let rows = try db.query("""
            SELECT u.n, (SELECT count(*) FROM deliveries d
                         WHERE d.contact_id = u.cid AND d.channel = u.ch AND d.category = 'marketing'
                           AND d.created_at > to_timestamp(u.since::float8) AND d.status IN ('pending', 'accepted')
                           AND d.dedupe_key <> ALL($4::text[]))
            FROM unnest($1::int8[], $2::text[], $3::text[]) WITH ORDINALITY AS u(cid, ch, since, n)
            """, [.intArray(items.map { $0.contactId }), .textArray(items.map { $0.channel }),
                  .textArray(items.map { String($0.since.timeIntervalSince1970) }), .textArray(keys.map { Optional($0) })]).rows
        var counts = [Int](repeating: 0, count: items.count)
        for row in rows {
            if let n = row[0].int, n >= 1, Int(n) <= items.count { counts[Int(n) - 1] = Int(row[1].int ?? 0) }
        }
        return counts
    }

    /// Inserts the delivery rows that do not exist yet (by dedupe key), each with its own status and reason;
    /// `lockSeconds`: with their send lock taken (and the attempt counted), returning `dedupe_key, id` of each.
    ///
    /// A column whose value is the same in every row (a broadcast batch's template, provider, source, status...)
    /// travels as one parameter instead of an array the server parses and unnests element by element.
    private static func insertMany(_ rows: [(intent: DeliveryIntent, status: String, reason: String?)], now: Date,
                                   lockSeconds: Double? = nil) -> (String, [PostgresValue]) {
        let intents = rows.map(\.intent)
        var parameters: [PostgresValue] = [.timestamp(now), lockSeconds.map { .double($0) } ?? .null]
        var unnested: [(argument: String, alias: String)] = []
        var expressions: [String] = []
        func column<T: Equatable>(_ alias: String, _ values: [T?], type: String, always array: Bool = false,
                                  scalar: (T) -> PostgresValue, array makeArray: ([T?]) -> PostgresValue) {
            if !array, let first = values.first, values.allSatisfy({ $0 == first }) {
                parameters.append(first.map(scalar) ?? .null)
                expressions.append("$\(parameters.count)::\(type)")
            } else {
                parameters.append(makeArray(values))
                unnested.append(("$\(parameters.count)::\(type)[]", alias))
                expressions.append("u.\(alias)")
            }
        }
        func text(_ alias: String, _ values: [String?], always array: Bool = false) {
            column(alias, values, type: "text", always: array, scalar: PostgresValue.text, array: PostgresValue.textArray)
        }
        func int(_ alias: String, _ values: [Int64?], always array: Bool = false) {
            column(alias, values, type: "int8", always: array, scalar: PostgresValue.int, array: PostgresValue.intArray)
        }
        text("id", intents.map { _ in DeliveryID.next() }, always: true)
        text("k", intents.map { $0.dedupeKey }, always: true)
        int("c", intents.map { $0.contactId }, always: true)
        text("ch", intents.map { $0.channel })
        text("cat", intents.map { $0.category })
        text("t", intents.map { $0.template })
        int("tv", intents.map { $0.templateVersion.map(Int64.init) })
        text("p", intents.map { $0.provider })
        text("sk", intents.map { $0.sourceKind })
        text("sn", intents.map { $0.sourceName })
        int("st", intents.map { $0.step.map(Int64.init) })
        int("e", intents.map { $0.enrollmentId })
        int("b", intents.map { $0.broadcastId })
        text("s", rows.map { $0.status })
        text("r", rows.map { $0.reason })
        let e = expressions
        return ("""
            INSERT INTO deliveries (id, dedupe_key, contact_id, channel, category, template, template_version, provider, source_kind,
                                    source_name, step, enrollment_id, broadcast_id, status, last_error, created_at, updated_at,
                                    locked_until, attempts)
            SELECT \(e[0])::uuid, \(e[1]), \(e[2]), \(e[3]), \(e[4]), \(e[5]), \(e[6])::int, \(e[7]), \(e[8]), \(e[9]), \(e[10])::int,
                   \(e[11]), \(e[12]), \(e[13]), \(e[14]), $1, $1,
                   clock_timestamp() + make_interval(secs => $2::float8), CASE WHEN $2::float8 IS NULL THEN 0 ELSE 1 END
            FROM unnest(\(unnested.map(\.argument).joined(separator: ", "))) WITH ORDINALITY
                 AS u(\(unnested.map(\.alias).joined(separator: ", ")), n)
            ORDER BY u.n
            ON CONFLICT (dedupe_key) DO NOTHING
            \(lockSeconds == nil ? "" : "RETURNING dedupe_key, id::text")
            """, parameters)
    }

    /// Records deliveries decided without a provider call (`suppressed`, `skipped`), unless they exist.
    public func record(_ rows: [(intent: DeliveryIntent, status: String, reason: String?)], now: Date, on db: PostgresConnection) throws {
        if rows.isEmpty { return }
        let (sql, parameters) = Self.insertMany(rows, now: now)
        try db.execute(sql, parameters)
    }

    /// `open` for a batch, in order: creates the rows that do not exist with their send lock taken (one statement);
    /// for the rows that existed (a retry, or another worker's), takes the lock if it is pending and nobody holds it.
    public func open(_ intents: [DeliveryIntent], now: Date, lockSeconds: Double, on db: PostgresConnection) throws -> [OpenedDelivery] {
        if intents.isEmpty { return [] }
        let (sql, parameters) = Self.insertMany(intents.map { ($0, "pending", nil) }, now: now, lockSeconds: lockSeconds)
        var byKey: [String: OpenedDelivery] = [:]
        for row in try db.query(sql, parameters).rows {
            guard let key = row[0].string, let id = row[1].string else { continue }
            byKey[key] = OpenedDelivery(id: id, status: "pending", attempts: 1, mine: true)
        }
        // (Typed `[String]`: as `[String?]` the closure's nil was kept as `.some(nil)`, so every batch paid a useless
        // lookup of NULL keys.)
        let existing: [String] = intents.compactMap { byKey[$0.dedupeKey] == nil ? $0.dedupeKey : nil }
        if !existing.isEmpty {
            for row in try db.query("""
                WITH locked AS (
                    UPDATE deliveries SET locked_until = clock_timestamp() + make_interval(secs => $2), attempts = attempts + 1
                    WHERE dedupe_key = ANY($1::text[]) AND status = 'pending' AND (locked_until IS NULL OR locked_until < clock_timestamp())
                    RETURNING id)
                SELECT d.dedupe_key, d.id::text, d.status, d.attempts + CASE WHEN l.id IS NULL THEN 0 ELSE 1 END, l.id IS NOT NULL
                FROM deliveries d LEFT JOIN locked l ON l.id = d.id WHERE d.dedupe_key = ANY($1::text[])
                """, [.textArray(existing.map { Optional($0) }), .double(lockSeconds)]).rows {
                guard let key = row[0].string, let id = row[1].string else { continue }
                byKey[key] = OpenedDelivery(id: id, status: row[2].string ?? "pending", attempts: Int(row[3].int ?? 0), mine: row[4].bool ?? false)
            }
        }
        return try intents.map { intent in
            guard let opened = byKey[intent.dedupeKey] else { throw PostgresError(.decode, "delivery \(intent.dedupeKey) vanished") }
            return opened
        }
    }

    /// `settle` for a batch, one statement.
    public func settle(_ settlements: [DeliverySettlement], now: Date, on db: PostgresConnection) throws {
        if settlements.isEmpty { return }
        try db.execute("""
            UPDATE deliveries d SET status = u.s, last_error = COALESCE(u.err, d.last_error),
                   provider_message_id = COALESCE(u.pmid, d.provider_message_id),
                   sent_at = CASE WHEN u.s = 'accepted' THEN $5::timestamptz ELSE d.sent_at END, locked_until = NULL, updated_at = $5,
                   attempts = GREATEST(0, d.attempts - u.refund::int)
            FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $6::int8[]) AS u(id, s, err, pmid, refund)
            WHERE d.id = u.id::uuid
            """, [.textArray(settlements.map { $0.id }), .textArray(settlements.map { $0.status }),
                  .textArray(settlements.map { $0.error }), .textArray(settlements.map { $0.providerMessageId }), .timestamp(now),
                  .intArray(settlements.map { $0.refundAttempt ? 1 : 0 })])
    }
}
