import Foundation
import Postgres

/// What a message is, before its delivery row exists.
public struct DeliveryIntent: Sendable, Hashable {
    /// `wf:<enrollment>:<step_seq>` or `bc:<broadcast>:<contact>`: one message, one row, ever.
    public var dedupeKey: String
    public var contactId: Int64
    public var channel: String
    public var category: String
    public var template: String
    public var templateVersion: Int?
    public var provider: String?
    public var sourceKind: String
    public var sourceName: String?
    public var step: Int?
    public var enrollmentId: Int64?
    public var broadcastId: Int64?

    public init(dedupeKey: String, contactId: Int64, channel: String, category: String, template: String, templateVersion: Int?,
                provider: String?, sourceKind: String, sourceName: String?, step: Int?, enrollmentId: Int64?, broadcastId: Int64?) {
        self.dedupeKey = dedupeKey
        self.contactId = contactId
        self.channel = channel
        self.category = category
        self.template = template
        self.templateVersion = templateVersion
        self.provider = provider
        self.sourceKind = sourceKind
        self.sourceName = sourceName
        self.step = step
        self.enrollmentId = enrollmentId
        self.broadcastId = broadcastId
    }
}

/// The delivery row of a message as `open` found it.
public struct OpenedDelivery: Sendable, Hashable {
    /// The delivery id (uuid): the `Idempotency-Key`, the same on every retry.
    public let id: String
    public let status: String
    public let attempts: Int
    /// True when this caller holds the send lock and must call the provider; false when the delivery is already
    /// settled (`status` says how) or another worker is sending it right now.
    public let mine: Bool
}

/// Deliveries: one row per message, written before the provider is called, so a retry reuses its id and a message
/// recorded as accepted is never sent again. Also the send-time checks (suppressions, consent, caps).
public struct DeliveryStore: Sendable {
    public init() {}

    /// Creates the delivery row if it does not exist, then takes its send lock (wall clock, `lockSeconds`) if it is
    /// still pending and nobody holds it. Call inside a transaction; the lock is a column, so it outlives it.
    public func open(_ intent: DeliveryIntent, now: Date, lockSeconds: Double, on db: PostgresConnection) throws -> OpenedDelivery {
        let results = try db.pipeline([
            Self.insert(intent, status: "pending", reason: nil, now: now),
            ("""
             WITH locked AS (
                 UPDATE deliveries SET locked_until = clock_timestamp() + make_interval(secs => $2), attempts = attempts + 1
                 WHERE dedupe_key = $1 AND status = 'pending' AND (locked_until IS NULL OR locked_until < clock_timestamp())
                 RETURNING id)
             SELECT d.id::text, d.status, d.attempts + CASE WHEN l.id IS NULL THEN 0 ELSE 1 END, l.id IS NOT NULL
             FROM deliveries d LEFT JOIN locked l ON l.id = d.id WHERE d.dedupe_key = $1
             """, [.text(intent.dedupeKey), .double(lockSeconds)]),
        ])
        guard let row = results[1].rows.first, let id = row[0].string else {
            throw PostgresError(.decode, "delivery \(intent.dedupeKey) vanished")
        }
        return OpenedDelivery(id: id, status: row[1].string ?? "pending", attempts: Int(row[2].int ?? 0), mine: row[3].bool ?? false)
    }

    /// Records a delivery that was decided without a provider call (`suppressed`, `skipped`), unless it exists.
    public func record(_ intent: DeliveryIntent, status: String, reason: String, now: Date, on db: PostgresConnection) throws {
        let (sql, parameters) = Self.insert(intent, status: status, reason: reason, now: now)
        try db.execute(sql, parameters)
    }

    /// The delivery row of `intent` with `status` (and `last_error`), unless its dedupe key exists.
    private static func insert(_ intent: DeliveryIntent, status: String, reason: String?, now: Date) -> (String, [PostgresValue]) {
        ("""
         INSERT INTO deliveries (id, dedupe_key, contact_id, channel, category, template, template_version, provider, source_kind,
                                 source_name, step, enrollment_id, broadcast_id, status, last_error, created_at, updated_at)
         VALUES (gen_random_uuid(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
         ON CONFLICT (dedupe_key) DO NOTHING
         """,
         [.text(intent.dedupeKey), .int(intent.contactId), .text(intent.channel), .text(intent.category), .text(intent.template),
          intent.templateVersion.map { .int(Int64($0)) } ?? .null, intent.provider.map { .text($0) } ?? .null, .text(intent.sourceKind),
          intent.sourceName.map { .text($0) } ?? .null, intent.step.map { .int(Int64($0)) } ?? .null,
          intent.enrollmentId.map { .int($0) } ?? .null, intent.broadcastId.map { .int($0) } ?? .null,
          .text(status), reason.map { .text($0) } ?? .null, .timestamp(now)])
    }

    /// Settles a delivery after the provider answered: `accepted`, `rejected` or `failed` (gave up), or back to
    /// `pending` (a retry: releases the lock and keeps the error).
    public func settle(id: String, status: String, error: String?, providerMessageId: String?, now: Date, on db: PostgresConnection) throws {
        try db.execute("""
            UPDATE deliveries SET status = $2, last_error = COALESCE($3, last_error), provider_message_id = COALESCE($4, provider_message_id),
                   sent_at = CASE WHEN $2 = 'accepted' THEN $5 ELSE sent_at END, locked_until = NULL, updated_at = $5
            WHERE id = $1::uuid
            """, [.text(id), .text(status), error.map { .text($0) } ?? .null, providerMessageId.map { .text($0) } ?? .null, .timestamp(now)])
    }

    /// Why a contact must not get a message on `channel` in `category` now, or nil when it may: erased or merged
    /// contacts; an address on the suppression list; for marketing, a global unsubscribe or a withdrawn consent
    /// (the latest consent row for the category and channel, or for the category on every channel, `*`).
    /// `lockContact`: the contact row is locked (`FOR UPDATE`) for the rest of the transaction, so that two senders
    /// deciding frequency caps for the same contact take turns.
    public func blockReason(contactId: Int64, channel: String, category: String, address: String?, lockContact: Bool = false,
                            on db: PostgresConnection) throws -> String? {
        guard let row = try db.query("""
            SELECT c.erased_at IS NOT NULL, c.merged_into IS NOT NULL, c.unsubscribed_at IS NOT NULL,
                   EXISTS (SELECT 1 FROM suppressions s WHERE s.channel = $2 AND s.address = lower($4)),
                   (SELECT k.granted FROM consents k WHERE k.contact_id = c.id AND k.category = $3 AND k.channel IN ($2, '*')
                    ORDER BY k.at DESC, k.id DESC LIMIT 1)
            FROM contacts c WHERE c.id = $1\(lockContact ? " FOR UPDATE OF c" : "")
            """, [.int(contactId), .text(channel), .text(category), address.map { .text($0) } ?? .null]).rows.first else {
            return "contact \(contactId) does not exist"
        }
        if row[0].bool == true { return "erased" }
        if row[1].bool == true { return "merged into another contact" }
        if row[3].bool == true { return "address suppressed" }
        if category != "transactional" {
            if row[2].bool == true { return "unsubscribed" }
            if row[4].bool == false { return "no consent for \(category) on \(channel)" }
        }
        return nil
    }

    /// Marketing messages of the contact on `channel` since `since` that went out or are going (pending, accepted),
    /// other than `excluding` (the message being decided).
    public func recentMarketingCount(contactId: Int64, channel: String, since: Date, excluding dedupeKey: String,
                                     on db: PostgresConnection) throws -> Int {
        Int(try db.query("""
            SELECT count(*) FROM deliveries
            WHERE contact_id = $1 AND channel = $2 AND category = 'marketing' AND created_at > $3
              AND status IN ('pending', 'accepted') AND dedupe_key <> $4
            """, [.int(contactId), .text(channel), .timestamp(since), .text(dedupeKey)]).rows.first?[0].int ?? 0)
    }
}
