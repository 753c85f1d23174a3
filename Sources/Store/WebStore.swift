import Foundation
import Postgres

/// A contact as the public web endpoints see it: always the surviving contact (a link sent before a merge acts on
/// the contact it was merged into), with the identity its events go out under.
public struct WebContact: Sendable, Equatable {
    public let id: Int64
    /// `userId` for events (the app's id), or nil.
    public let userId: String?
    /// `anonymousId` for events when the contact has no user id.
    public let anonymousId: String?
    public let erased: Bool
    public let unsubscribedAt: Date?
}

/// What the open pixel needs from a delivery row.
public struct WebDelivery: Sendable, Equatable {
    public let id: String
    public let contactId: Int64?
    public let channel: String
    public let template: String
    public let sourceKind: String
    public let sourceName: String?
    public let step: Int?
    public let broadcastId: Int64?
    public let sentAt: Date?
}

/// One (channel, category) a person can choose in the preference centre, and whether they get it now.
public struct WebPreference: Sendable, Equatable, Hashable {
    public let channel: String
    public let category: String
    public var granted: Bool

    public init(channel: String, category: String, granted: Bool) {
        self.channel = channel
        self.category = category
        self.granted = granted
    }
}

/// The SQL of `nurture web`: reads for links and pages, and the consent changes (each one a `consents` row with
/// who, what, when and the source; a global unsubscribe also sets `contacts.unsubscribed_at`, which the send-time
/// checks honour for every category but `transactional`).
public struct WebStore: Sendable {
    public init() {}

    /// The surviving contact for a contact id from a link, or nil when there is no such contact.
    public func contact(_ id: Int64, on db: PostgresConnection) throws -> WebContact? {
        guard let row = try db.query("""
            SELECT s.id, s.external_id,
                   (SELECT i.value FROM identities i WHERE i.contact_id = s.id AND i.kind = 'user_id' ORDER BY i.created_at LIMIT 1),
                   (SELECT i.value FROM identities i WHERE i.contact_id = s.id AND i.kind = 'anonymous_id' ORDER BY i.created_at LIMIT 1),
                   s.erased_at IS NOT NULL, s.unsubscribed_at
            FROM contacts c JOIN contacts s ON s.id = COALESCE(c.merged_into, c.id)
            WHERE c.id = $1
            """, [.int(id)]).rows.first, let survivor = row[0].int else { return nil }
        return WebContact(id: survivor, userId: row[1].string ?? row[2].string, anonymousId: row[3].string,
                          erased: row[4].bool ?? false, unsubscribedAt: row[5].date)
    }

    public func delivery(_ id: String, on db: PostgresConnection) throws -> WebDelivery? {
        guard UUID(uuidString: id) != nil else { return nil }
        guard let row = try db.query("""
            SELECT id::text, contact_id, channel, template, source_kind, source_name, step, broadcast_id, sent_at
            FROM deliveries WHERE id = $1::uuid
            """, [.text(id)]).rows.first else { return nil }
        return WebDelivery(id: row[0].string ?? id, contactId: row[1].int, channel: row[2].string ?? "email",
                           template: row[3].string ?? "", sourceKind: row[4].string ?? "manual", sourceName: row[5].string,
                           step: row[6].int.map { Int($0) }, broadcastId: row[7].int, sentAt: row[8].date)
    }

    /// The (channel, category) pairs people can choose: those of the applied templates, for the channels that reach
    /// a person (email, sms, push), without `transactional` (always sent). Sorted by channel, then category.
    public func choices(on db: PostgresConnection) throws -> [(channel: String, category: String)] {
        try db.query("""
            SELECT DISTINCT d.spec->>'channel' AS channel, COALESCE(d.spec->>'category', 'marketing') AS category
            FROM definition_heads h JOIN definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version
            WHERE h.kind = 'template' AND h.deleted_at IS NULL
              AND d.spec->>'channel' IN ('email', 'sms', 'push')
              AND COALESCE(d.spec->>'category', 'marketing') <> 'transactional'
            ORDER BY 1, 2
            """).rows.compactMap { row in
            guard let channel = row[0].string, let category = row[1].string else { return nil }
            return (channel, category)
        }
    }

    /// What the contact gets now for each choice: the latest consent row for the category on the channel (or on
    /// every channel, `*`), granted when there is none; nothing while globally unsubscribed.
    public func preferences(of contact: WebContact, on db: PostgresConnection) throws -> [WebPreference] {
        let choices = try self.choices(on: db)
        if choices.isEmpty { return [] }
        let rows = try db.query("""
            SELECT u.n, (SELECT k.granted FROM consents k WHERE k.contact_id = $1 AND k.category = u.cat AND k.channel IN (u.ch, '*')
                         ORDER BY k.at DESC, k.id DESC LIMIT 1)
            FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(ch, cat, n)
            """, [.int(contact.id), .textArray(choices.map(\.channel)), .textArray(choices.map(\.category))]).rows
        var granted = [Bool](repeating: true, count: choices.count)
        for row in rows {
            guard let n = row[0].int, n >= 1, Int(n) <= choices.count else { continue }
            granted[Int(n) - 1] = row[1].bool ?? true
        }
        return choices.indices.map {
            WebPreference(channel: choices[$0].channel, category: choices[$0].category,
                          granted: contact.unsubscribedAt == nil && granted[$0])
        }
    }

    /// Unsubscribes the (surviving) contact from everything but transactional messages: `unsubscribed_at` and a
    /// withdrawn consent (`marketing` on every channel) with `source`. Returns false when it already was (nothing
    /// written: a repeated one-click POST changes nothing).
    public func unsubscribe(contactId: Int64, source: String, now: Date, on db: PostgresConnection) throws -> Bool {
        try db.transaction { db in
            let changed = try db.execute("""
                UPDATE contacts SET unsubscribed_at = $2, updated_at = $2
                WHERE id = $1 AND unsubscribed_at IS NULL AND erased_at IS NULL
                """, [.int(contactId), .timestamp(now)])
            if changed == 0 { return false }
            try db.execute("""
                INSERT INTO consents (contact_id, category, channel, granted, source, at) VALUES ($1, 'marketing', '*', false, $2, $3)
                """, [.int(contactId), .text(source), .timestamp(now)])
            return true
        }
    }

    /// Applies the preference centre's form: a consent row for each choice whose value changes; choosing anything
    /// while globally unsubscribed resubscribes (clears `unsubscribed_at`). Returns the choices that changed.
    public func update(contactId: Int64, to wanted: [WebPreference], source: String, now: Date,
                       on db: PostgresConnection) throws -> [WebPreference] {
        try db.transaction { db in
            guard let row = try db.query("SELECT unsubscribed_at, erased_at IS NOT NULL FROM contacts WHERE id = $1 FOR UPDATE",
                                         [.int(contactId)]).rows.first, row[1].bool != true else { return [] }
            let unsubscribedAt = row[0].date
            let current = try preferences(of: WebContact(id: contactId, userId: nil, anonymousId: nil, erased: false,
                                                         unsubscribedAt: unsubscribedAt), on: db)
            let resubscribe = unsubscribedAt != nil && wanted.contains(where: \.granted)
            var changes: [WebPreference] = []
            for want in wanted {
                guard let have = current.first(where: { $0.channel == want.channel && $0.category == want.category }) else { continue }
                // Resubscribing: every choice is written, so the ones left unticked stay off once the global opt-out is lifted.
                if have.granted != want.granted || resubscribe { changes.append(want) }
            }
            if resubscribe {
                try db.execute("UPDATE contacts SET unsubscribed_at = NULL, updated_at = $2 WHERE id = $1", [.int(contactId), .timestamp(now)])
            }
            if !changes.isEmpty {
                try db.execute("""
                    INSERT INTO consents (contact_id, category, channel, granted, source, at)
                    SELECT $1, u.cat, u.ch, u.g, $5, $6 FROM unnest($2::text[], $3::text[], $4::bool[]) AS u(cat, ch, g)
                    """, [.int(contactId), .textArray(changes.map(\.category)), .textArray(changes.map(\.channel)),
                          .textArray(changes.map { $0.granted ? "true" : "false" }), .text(source), .timestamp(now)])
            }
            return changes
        }
    }
}
