import Foundation
import Postgres

/// One parsed, validated event as the store takes it (the ingester converts Segment messages into these; the
/// store stays free of the domain types). `messageId` and `occurredAt` are already resolved (derived from the
/// stream entry when the app did not send them).
public struct IngestRecord: Sendable, Equatable {
    public var messageId: String
    /// `track`, `identify`, `page` or `alias`.
    public var type: String
    public var userId: String?
    public var anonymousId: String?
    /// `alias`: the identity (user or anonymous id) being linked to `userId`.
    public var previousId: String?
    /// The `events.name`; nil: no events row (identify, alias).
    public var eventName: String?
    public var propertiesJSON: String
    public var contextJSON: String
    /// A JSON object merged into `contacts.attributes` (identify traits); nil for none.
    public var traitsJSON: String?
    public var email: String?
    public var emailSHA256: String?
    public var phone: String?
    public var timezone: String?
    public var utmSource: String?
    public var utmMedium: String?
    public var deviceType: String?
    public var occurredAt: Date

    public init(messageId: String, type: String, userId: String? = nil, anonymousId: String? = nil, previousId: String? = nil,
                eventName: String? = nil, propertiesJSON: String = "{}", contextJSON: String = "{}", traitsJSON: String? = nil,
                email: String? = nil, emailSHA256: String? = nil, phone: String? = nil, timezone: String? = nil,
                utmSource: String? = nil, utmMedium: String? = nil, deviceType: String? = nil, occurredAt: Date) {
        self.messageId = messageId
        self.type = type
        self.userId = userId
        self.anonymousId = anonymousId
        self.previousId = previousId
        self.eventName = eventName
        self.propertiesJSON = propertiesJSON
        self.contextJSON = contextJSON
        self.traitsJSON = traitsJSON
        self.email = email
        self.emailSHA256 = emailSHA256
        self.phone = phone
        self.timezone = timezone
        self.utmSource = utmSource
        self.utmMedium = utmMedium
        self.deviceType = deviceType
        self.occurredAt = occurredAt
    }
}

public enum IngestOutcome: Sendable, Equatable {
    /// First time this messageId was seen: applied.
    case new
    /// Already ingested (earlier, or earlier in the same batch): nothing changed.
    case duplicate
}

public struct ContactMerge: Sendable, Equatable {
    public var loser: Int64
    public var survivor: Int64
}

public struct IngestResult: Sendable, Equatable {
    /// One per input record, in input order.
    public var outcomes: [IngestOutcome]
    /// The (surviving) contact each new record was applied to; nil for duplicates.
    public var contactIDs: [Int64?]
    /// Contacts changed by this batch (created, updated, survivors of merges), ascending.
    public var affectedContacts: [Int64]
    public var merges: [ContactMerge]
    /// Contacts created by this batch.
    public var createdContacts: [Int64] = []
    public var newCount: Int { outcomes.filter { $0 == .new }.count }
    public var duplicateCount: Int { outcomes.count - newCount }
}

/// Ingestion of a batch of events in one PostgreSQL transaction and five round trips (BEGIN, a pipeline that
/// locks the batch's identities, claims the messageIds and reads the identities, one `nextval` round trip when
/// contacts are created, a pipeline of multi-row `unnest` statements that writes everything, COMMIT).
///
/// - Idempotency: `event_message_ids` decides (`ON CONFLICT DO NOTHING`): a messageId seen before makes its
///   record a no-op. Identify/alias claim their messageId too, with `event_id = 0` (no events row).
/// - Events rows: track (name = event) and page (name "Page Viewed", `name`/`path` in properties). Identify
///   and alias change the contact (traits, identities, merges) and are not behaviour history.
/// - Identities: user_id and anonymous_id of a record (and an alias' previousId) are linked to one contact —
///   except an anonymous_id already owned by another known user (a shared device), which is left alone so two known
///   people are never merged by an identify (an explicit `alias` still merges).
///   When they resolve to different contacts, those contacts are merged into one survivor (the lowest id among
///   the known ones, i.e. those with a user_id, else the lowest id): identities, events, scores (summed),
///   segment memberships and tags (union) move to it, attributes fill in (the survivor's win), the loser gets
///   `merged_into` and loses its external_id, and an `audit_log` row (`contact.merge`) records it.
///   An identify's email is recorded as identity kind 'email' (its first owner keeps it; email never merges).
/// - Concurrent ingesters serialise on transaction advisory locks of the batch's identities (taken in order).
/// - Business time comes from the caller: `receivedAt` and the records' `occurredAt`; never SQL `now()`.
public struct IngestStore: Sendable {
    public init() {}

    /// Ingests `records` in one transaction. `then`, if given, runs inside the same transaction after everything
    /// is written (scoring, lifecycle and segment maintenance), so what it derives commits or rolls back with the
    /// events. On a retried transaction (serialization failure) both run again.
    public func ingest(_ records: [IngestRecord], receivedAt: Date, on db: PostgresConnection,
                       then: ((IngestResult, PostgresConnection) throws -> Void)? = nil) throws -> IngestResult {
        if records.isEmpty { return IngestResult(outcomes: [], contactIDs: [], affectedContacts: [], merges: []) }
        return try db.transaction { db in
            let result = try ingestInTransaction(records, receivedAt: receivedAt, db: db)
            if let then, result.newCount > 0 { try then(result, db) }
            return result
        }
    }

    private struct Key: Hashable {
        var kind: String
        var value: String
    }

    private func ingestInTransaction(_ records: [IngestRecord], receivedAt: Date, db: PostgresConnection) throws -> IngestResult {
        let time = TimestampText()
        // ── 1. lock identities, claim messageIds, read identities: one pipeline ──
        var firstIndex: [String: Int] = [:]
        var unique: [Int] = []
        for (i, r) in records.enumerated() where firstIndex[r.messageId] == nil {
            firstIndex[r.messageId] = i
            unique.append(i)
        }
        var lookupKinds: [String?] = [], lookupValues: [String?] = [], lockNames: Set<String> = []
        var seenKeys = Set<Key>()
        func lookup(_ kind: String, _ value: String) {
            guard seenKeys.insert(Key(kind: kind, value: value)).inserted else { return }
            lookupKinds.append(kind); lookupValues.append(value)
            lockNames.insert(value)
        }
        for i in unique {
            let r = records[i]
            if let u = r.userId { lookup("user_id", u) }
            if let a = r.anonymousId { lookup("anonymous_id", a) }
            if let p = r.previousId { lookup("user_id", p); lookup("anonymous_id", p) }
        }
        let userIDs = lookupKinds.indices.filter { lookupKinds[$0] == "user_id" }.map { lookupValues[$0] }
        let anonymousIDs = lookupKinds.indices.filter { lookupKinds[$0] == "anonymous_id" }.map { lookupValues[$0] }
        let claim = try db.pipeline([
            ("SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT hashtextextended(current_schema() || ':nurture.identity:' || v, 0) AS h FROM unnest($1::text[]) AS v ORDER BY 1) AS s",
             [.textArray(lockNames.sorted().map { Optional($0) })]),
            ("""
             INSERT INTO event_message_ids (message_id, event_id, occurred_at)
             SELECT u.m, CASE WHEN u.e = 't' THEN nextval(pg_get_serial_sequence('events', 'id')) ELSE 0 END, u.t::timestamptz
             FROM unnest($1::text[], $2::text[], $3::text[]) AS u(m, e, t)
             ON CONFLICT (message_id) DO NOTHING
             RETURNING message_id, event_id
             """,
             [.textArray(unique.map { records[$0].messageId }), .textArray(unique.map { records[$0].eventName == nil ? "f" : "t" }),
              .textArray(unique.map { time.format(records[$0].occurredAt) })]),
            // Two index scans on the primary key (kind, value); a join with unnest() gets hashed against the whole table.
            ("""
             SELECT i.kind, i.value, i.contact_id, c.external_id IS NOT NULL FROM identities i JOIN contacts c ON c.id = i.contact_id
             WHERE (i.kind = 'user_id' AND i.value = ANY($1::text[])) OR (i.kind = 'anonymous_id' AND i.value = ANY($2::text[]))
             """,
             [.textArray(userIDs), .textArray(anonymousIDs)]),
        ])
        var eventIDs: [String: Int64] = [:]
        for row in claim[1].rows { eventIDs[row[0].string ?? ""] = row[1].int ?? 0 }
        var known: [Key: Int64] = [:]
        var knownContacts = Set<Int64>()   // contacts with a user_id
        for row in claim[2].rows {
            guard let contact = row[2].int else { continue }
            known[Key(kind: row[0].string ?? "", value: row[1].string ?? "")] = contact
            if row[0].string == "user_id" || row[3].bool == true { knownContacts.insert(contact) }
        }

        var outcomes = [IngestOutcome](repeating: .duplicate, count: records.count)
        let fresh = unique.filter { eventIDs[records[$0].messageId] != nil }
        for i in fresh { outcomes[i] = .new }
        if fresh.isEmpty {
            return IngestResult(outcomes: outcomes, contactIDs: Array(repeating: nil, count: records.count), affectedContacts: [], merges: [])
        }

        // ── 2. link identities (union-find over identity keys and contacts) ──
        var parent: [String: String] = [:]
        func find(_ x: String) -> String {
            var root = x
            while let p = parent[root], p != root { root = p }
            var node = x
            while let p = parent[node], p != root { parent[node] = root; node = p }
            return root
        }
        func union(_ a: String, _ b: String) {
            if parent[a] == nil { parent[a] = a }
            if parent[b] == nil { parent[b] = b }
            let ra = find(a), rb = find(b)
            if ra != rb { parent[ra] = rb }
        }
        func node(_ key: Key) -> String { key.kind + "\u{1}" + key.value }
        func contactNode(_ id: Int64) -> String { "c\u{1}\(id)" }
        var recordKeys: [Int: [Key]] = [:]
        for i in fresh {
            let r = records[i]
            var keys: [Key] = []
            if let u = r.userId { keys.append(Key(kind: "user_id", value: u)) }
            if let a = r.anonymousId {
                // A shared device: the anonymous id already belongs to another known user. Two known people are
                // never merged because they used the same browser; the message goes to its userId alone.
                let anonymous = Key(kind: "anonymous_id", value: a)
                let owner = known[anonymous]
                let sharedDevice = r.userId != nil && owner != nil && knownContacts.contains(owner!)
                    && owner != known[Key(kind: "user_id", value: r.userId!)]
                if !sharedDevice { keys.append(anonymous) }
            }
            if let p = r.previousId {
                let asUser = Key(kind: "user_id", value: p)
                keys.append(known[asUser] != nil ? asUser : Key(kind: "anonymous_id", value: p))
            }
            recordKeys[i] = keys
            for k in keys {
                union(node(k), node(keys[0]))
                if let c = known[k] { union(node(k), contactNode(c)) }
            }
        }
        // Components: their existing contacts and their identity keys.
        var componentContacts: [String: Set<Int64>] = [:]
        var componentKeys: [String: Set<Key>] = [:]
        var componentOrder: [String] = []
        for i in fresh {
            for k in recordKeys[i]! {
                let root = find(node(k))
                if componentKeys[root] == nil { componentOrder.append(root); componentKeys[root] = [] }
                componentKeys[root]!.insert(k)
                if let c = known[k] { componentContacts[root, default: []].insert(c) }
            }
        }
        let needNew = componentOrder.filter { (componentContacts[$0] ?? []).isEmpty }
        var newIDs: [Int64] = []
        if !needNew.isEmpty {
            newIDs = try db.query("SELECT nextval(pg_get_serial_sequence('contacts', 'id')) FROM generate_series(1, $1::int8)",
                                  [.int(Int64(needNew.count))]).rows.map { $0[0].int ?? 0 }
        }
        var survivorOf: [String: Int64] = [:]
        var merges: [ContactMerge] = []
        for (n, root) in needNew.enumerated() { survivorOf[root] = newIDs[n] }
        for root in componentOrder where survivorOf[root] == nil {
            let contacts = componentContacts[root]!.sorted()
            let survivor = contacts.first(where: knownContacts.contains) ?? contacts[0]
            survivorOf[root] = survivor
            for loser in contacts where loser != survivor { merges.append(ContactMerge(loser: loser, survivor: survivor)) }
        }

        // ── 3. write everything: one pipeline ──
        var statements: [(String, [PostgresValue])] = []
        let now = PostgresValue.timestamp(receivedAt)
        if !newIDs.isEmpty {
            statements.append(("INSERT INTO contacts (id, created_at, updated_at) SELECT unnest($1::int8[]), $2, $2",
                               [.intArray(newIDs.map { Optional($0) }), now]))
        }
        if !merges.isEmpty {
            statements += mergeStatements(merges, now: now, triggeredBy: fresh.map { records[$0].messageId })
        }
        // Identities: every key of every component, plus identify emails.
        var idKinds: [String?] = [], idValues: [String?] = [], idContacts: [Int64?] = []
        for root in componentOrder {
            for k in componentKeys[root]!.sorted(by: { ($0.kind, $0.value) < ($1.kind, $1.value) }) where known[k] == nil {
                idKinds.append(k.kind); idValues.append(k.value); idContacts.append(survivorOf[root]!)
            }
        }
        var contactOfRecord: [Int: Int64] = [:]
        for i in fresh { contactOfRecord[i] = survivorOf[find(node(recordKeys[i]![0]))]! }
        var emailSeen = Set<String>()
        for i in fresh {
            guard let email = records[i].email?.trimmingCharacters(in: .whitespacesAndNewlines).lowercased(), !email.isEmpty,
                  emailSeen.insert(email).inserted else { continue }
            idKinds.append("email"); idValues.append(email); idContacts.append(contactOfRecord[i]!)
        }
        if !idKinds.isEmpty {
            statements.append(("""
                INSERT INTO identities (kind, value, contact_id, created_at)
                SELECT u.k, u.v, u.c, $4 FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(k, v, c)
                ON CONFLICT (kind, value) DO NOTHING
                """, [.textArray(idKinds), .textArray(idValues), .intArray(idContacts), now]))
        }
        // Contact deltas, folded in time order.
        var deltas: [Int64: ContactDelta] = [:]
        var deltaOrder: [Int64] = []
        for i in fresh.sorted(by: { (records[$0].occurredAt, $0) < (records[$1].occurredAt, $1) }) {
            let contact = contactOfRecord[i]!
            if deltas[contact] == nil { deltaOrder.append(contact); deltas[contact] = ContactDelta() }
            deltas[contact]!.observe(records[i])
        }
        statements.append(contactDeltaStatement(deltaOrder.map { ($0, deltas[$0]!) }, now: now, time: time))
        // Events rows.
        let eventRecords = fresh.filter { records[$0].eventName != nil }
        if !eventRecords.isEmpty {
            statements.append(("""
                INSERT INTO events (id, contact_id, message_id, type, name, properties, context, occurred_at, received_at)
                SELECT u.id, u.c, u.m, u.t, u.n, u.p::jsonb, u.x::jsonb, u.o::timestamptz, $9
                FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
                     AS u(id, c, m, t, n, p, x, o)
                """,
                [.intArray(eventRecords.map { eventIDs[records[$0].messageId] }),
                 .intArray(eventRecords.map { contactOfRecord[$0] }),
                 .textArray(eventRecords.map { records[$0].messageId }),
                 .textArray(eventRecords.map { records[$0].type }),
                 .textArray(eventRecords.map { records[$0].eventName }),
                 .textArray(eventRecords.map { records[$0].propertiesJSON }),
                 .textArray(eventRecords.map { records[$0].contextJSON }),
                 .textArray(eventRecords.map { time.format(records[$0].occurredAt) }),
                 now]))
        }
        _ = try db.pipeline(statements)

        var contactIDs = [Int64?](repeating: nil, count: records.count)
        for (i, c) in contactOfRecord { contactIDs[i] = c }
        return IngestResult(outcomes: outcomes, contactIDs: contactIDs,
                            affectedContacts: Set(contactOfRecord.values).sorted(), merges: merges, createdContacts: newIDs)
    }

    private func mergeStatements(_ merges: [ContactMerge], now: PostgresValue, triggeredBy: [String]) -> [(String, [PostgresValue])] {
        let losers = PostgresValue.intArray(merges.map { Optional($0.loser) })
        let survivors = PostgresValue.intArray(merges.map { Optional($0.survivor) })
        let m = "unnest($1::int8[], $2::int8[]) AS m(l, s)"
        return [
            ("UPDATE identities i SET contact_id = m.s FROM \(m) WHERE i.contact_id = m.l", [losers, survivors]),
            ("UPDATE events e SET contact_id = m.s FROM \(m) WHERE e.contact_id = m.l", [losers, survivors]),
            ("""
             INSERT INTO contact_scores (contact_id, name, value, reference_at)
             SELECT m.s, cs.name, sum(cs.value), max(cs.reference_at) FROM contact_scores cs JOIN \(m) ON cs.contact_id = m.l
             GROUP BY m.s, cs.name
             ON CONFLICT (contact_id, name) DO UPDATE SET value = contact_scores.value + excluded.value,
                 reference_at = GREATEST(contact_scores.reference_at, excluded.reference_at)
             """, [losers, survivors]),
            ("DELETE FROM contact_scores cs USING unnest($1::int8[]) AS l(id) WHERE cs.contact_id = l.id", [losers]),
            ("""
             INSERT INTO segment_memberships (segment, contact_id, entered_at)
             SELECT sm.segment, m.s, min(sm.entered_at) FROM segment_memberships sm JOIN \(m) ON sm.contact_id = m.l
             GROUP BY sm.segment, m.s
             ON CONFLICT (segment, contact_id) DO NOTHING
             """, [losers, survivors]),
            ("DELETE FROM segment_memberships sm USING unnest($1::int8[]) AS l(id) WHERE sm.contact_id = l.id", [losers]),
            ("""
             WITH m AS (SELECT * FROM \(m)),
             t AS (SELECT m.s, array_agg(DISTINCT tag) AS tags FROM m JOIN contacts l ON l.id = m.l
                   CROSS JOIN LATERAL unnest(l.tags) AS tag GROUP BY m.s),
             a AS (SELECT m.s,
                          COALESCE(jsonb_object_agg(kv.key, kv.value) FILTER (WHERE kv.key IS NOT NULL), '{}') AS attrs,
                          min(l.first_seen_at) AS first_seen, max(l.last_seen_at) AS last_seen,
                          (array_agg(l.email) FILTER (WHERE l.email IS NOT NULL))[1] AS email,
                          (array_agg(l.email_sha256) FILTER (WHERE l.email_sha256 IS NOT NULL))[1] AS email_sha256,
                          (array_agg(l.phone) FILTER (WHERE l.phone IS NOT NULL))[1] AS phone,
                          (array_agg(l.timezone) FILTER (WHERE l.timezone IS NOT NULL))[1] AS timezone,
                          (array_agg(l.first_utm_source ORDER BY l.first_seen_at) FILTER (WHERE l.first_utm_source IS NOT NULL))[1] AS fus,
                          (array_agg(l.first_utm_medium ORDER BY l.first_seen_at) FILTER (WHERE l.first_utm_medium IS NOT NULL))[1] AS fum,
                          (array_agg(l.last_utm_source ORDER BY l.last_seen_at DESC) FILTER (WHERE l.last_utm_source IS NOT NULL))[1] AS lus,
                          (array_agg(l.last_utm_medium ORDER BY l.last_seen_at DESC) FILTER (WHERE l.last_utm_medium IS NOT NULL))[1] AS lum,
                          (array_agg(l.last_device_type ORDER BY l.last_seen_at DESC) FILTER (WHERE l.last_device_type IS NOT NULL))[1] AS dev
                   FROM m JOIN contacts l ON l.id = m.l LEFT JOIN LATERAL jsonb_each(l.attributes) AS kv ON true
                   GROUP BY m.s)
             UPDATE contacts c SET
                 tags = ARRAY(SELECT DISTINCT x FROM unnest(c.tags || COALESCE(t.tags, '{}')) AS x ORDER BY 1),
                 attributes = a.attrs || c.attributes,
                 email = COALESCE(c.email, a.email), email_sha256 = COALESCE(c.email_sha256, a.email_sha256),
                 phone = COALESCE(c.phone, a.phone), timezone = COALESCE(c.timezone, a.timezone),
                 first_seen_at = LEAST(c.first_seen_at, a.first_seen), last_seen_at = GREATEST(c.last_seen_at, a.last_seen),
                 first_utm_source = CASE WHEN a.first_seen < c.first_seen_at OR c.first_seen_at IS NULL THEN COALESCE(a.fus, c.first_utm_source) ELSE COALESCE(c.first_utm_source, a.fus) END,
                 first_utm_medium = CASE WHEN a.first_seen < c.first_seen_at OR c.first_seen_at IS NULL THEN COALESCE(a.fum, c.first_utm_medium) ELSE COALESCE(c.first_utm_medium, a.fum) END,
                 last_utm_source = CASE WHEN a.last_seen > c.last_seen_at THEN COALESCE(a.lus, c.last_utm_source) ELSE COALESCE(c.last_utm_source, a.lus) END,
                 last_utm_medium = CASE WHEN a.last_seen > c.last_seen_at THEN COALESCE(a.lum, c.last_utm_medium) ELSE COALESCE(c.last_utm_medium, a.lum) END,
                 last_device_type = CASE WHEN a.last_seen > c.last_seen_at THEN COALESCE(a.dev, c.last_device_type) ELSE COALESCE(c.last_device_type, a.dev) END,
                 updated_at = $3
             FROM a LEFT JOIN t ON t.s = a.s
             WHERE c.id = a.s
             """, [losers, survivors, now]),
            ("UPDATE contacts c SET merged_into = m.s, updated_at = $3 FROM \(m) WHERE c.merged_into = m.l", [losers, survivors, now]),
            ("UPDATE contacts c SET merged_into = m.s, external_id = NULL, updated_at = $3 FROM \(m) WHERE c.id = m.l",
             [losers, survivors, now]),
            ("""
             INSERT INTO audit_log (at, actor, action, subject_kind, subject_id, details)
             SELECT $3, 'ingest', 'contact.merge', 'contact', m.s::text,
                    jsonb_build_object('loser', m.l, 'survivor', m.s, 'message_ids', $4::text[])
             FROM \(m)
             """, [losers, survivors, now, .textArray(Array(triggeredBy.prefix(20)).map { Optional($0) })]),
        ]
    }

    private func contactDeltaStatement(_ deltas: [(Int64, ContactDelta)], now: PostgresValue, time: TimestampText) -> (String, [PostgresValue]) {
        func texts(_ f: (ContactDelta) -> String?) -> PostgresValue { .textArray(deltas.map { f($0.1) }) }
        func times(_ f: (ContactDelta) -> Date?) -> PostgresValue { .textArray(deltas.map { f($0.1).map(time.format) }) }
        return ("""
            UPDATE contacts c SET
                external_id = CASE WHEN c.external_id IS NULL AND d.xid IS NOT NULL
                                    AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.external_id = d.xid)
                              THEN d.xid ELSE c.external_id END,
                attributes = c.attributes || COALESCE(d.attrs::jsonb, '{}'),
                email = COALESCE(d.email, c.email), email_sha256 = COALESCE(d.sha, c.email_sha256),
                phone = COALESCE(d.phone, c.phone), timezone = COALESCE(d.tz, c.timezone),
                first_seen_at = LEAST(c.first_seen_at, d.fs::timestamptz),
                last_seen_at = GREATEST(c.last_seen_at, d.ls::timestamptz),
                first_utm_source = CASE WHEN d.fua IS NOT NULL AND (c.first_utm_source IS NULL AND c.first_utm_medium IS NULL
                                        OR d.fua::timestamptz < c.first_seen_at) THEN d.fus ELSE c.first_utm_source END,
                first_utm_medium = CASE WHEN d.fua IS NOT NULL AND (c.first_utm_source IS NULL AND c.first_utm_medium IS NULL
                                        OR d.fua::timestamptz < c.first_seen_at) THEN d.fum ELSE c.first_utm_medium END,
                last_utm_source = CASE WHEN d.lua IS NOT NULL AND d.lua::timestamptz >= COALESCE(c.last_seen_at, '-infinity')
                                  THEN d.lus ELSE c.last_utm_source END,
                last_utm_medium = CASE WHEN d.lua IS NOT NULL AND d.lua::timestamptz >= COALESCE(c.last_seen_at, '-infinity')
                                  THEN d.lum ELSE c.last_utm_medium END,
                last_device_type = CASE WHEN d.dva IS NOT NULL AND d.dva::timestamptz >= COALESCE(c.last_seen_at, '-infinity')
                                   THEN d.dev ELSE c.last_device_type END,
                updated_at = $18
            FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                        $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
                 AS d(id, xid, attrs, email, sha, phone, tz, fs, ls, fua, fus, fum, lua, lus, lum, dva, dev)
            WHERE c.id = d.id
            """,
            [.intArray(deltas.map { Optional($0.0) }), texts(\.externalID), texts { $0.attributesJSON }, texts(\.email),
             texts(\.emailSHA256), texts(\.phone), texts(\.timezone), times(\.firstSeen), times(\.lastSeen),
             times(\.firstUTMAt), texts(\.firstUTMSource), texts(\.firstUTMMedium),
             times(\.lastUTMAt), texts(\.lastUTMSource), texts(\.lastUTMMedium),
             times(\.lastDeviceAt), texts(\.lastDeviceType), now])
    }
}

/// What one batch says about one contact, folded in time order (the same rules as `Domain.ActivityFold`).
struct ContactDelta {
    var externalID: String?
    var attributes: [String: Any] = [:]
    var email: String?
    var emailSHA256: String?
    var phone: String?
    var timezone: String?
    var firstSeen: Date?
    var lastSeen: Date?
    var firstUTMAt: Date?
    var firstUTMSource: String?
    var firstUTMMedium: String?
    var lastUTMAt: Date?
    var lastUTMSource: String?
    var lastUTMMedium: String?
    var lastDeviceAt: Date?
    var lastDeviceType: String?

    /// Records must come in time order.
    mutating func observe(_ r: IngestRecord) {
        if let u = r.userId, externalID == nil { externalID = u }
        if let traits = r.traitsJSON, let object = try? JSONSerialization.jsonObject(with: Data(traits.utf8)) as? [String: Any] {
            attributes.merge(object) { _, new in new }
        }
        if let e = r.email { email = e }
        if let s = r.emailSHA256 { emailSHA256 = s }
        if let p = r.phone { phone = p }
        if let t = r.timezone { timezone = t }
        let time = r.occurredAt
        firstSeen = min(firstSeen ?? time, time)
        lastSeen = max(lastSeen ?? time, time)
        if r.utmSource != nil || r.utmMedium != nil {
            if firstUTMAt.map({ time < $0 }) ?? true { firstUTMAt = time; firstUTMSource = r.utmSource; firstUTMMedium = r.utmMedium }
            if lastUTMAt.map({ time >= $0 }) ?? true { lastUTMAt = time; lastUTMSource = r.utmSource; lastUTMMedium = r.utmMedium }
        }
        if let d = r.deviceType, lastDeviceAt.map({ time >= $0 }) ?? true { lastDeviceAt = time; lastDeviceType = d }
    }

    var attributesJSON: String? {
        if attributes.isEmpty { return nil }
        guard let data = try? JSONSerialization.data(withJSONObject: attributes, options: [.sortedKeys]) else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

/// ISO-8601 UTC with microseconds (PostgreSQL's precision), for timestamps sent inside text arrays.
public struct TimestampText: Sendable {
    public init() {}
    public func format(_ date: Date) -> String {
        var micros = Int64((date.timeIntervalSince1970 * 1_000_000).rounded())
        var seconds = micros / 1_000_000
        micros %= 1_000_000
        if micros < 0 { micros += 1_000_000; seconds -= 1 }
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(micros), 6))Z"
    }
}
