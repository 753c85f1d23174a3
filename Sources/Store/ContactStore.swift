import Foundation
import Postgres

/// A CSV line that was not imported.
public struct ContactImportIssue: Sendable, Equatable {
    public var line: Int
    public var reason: String
}

public struct ContactImportReport: Sendable, Equatable {
    /// Contacts created.
    public var imported = 0
    /// Existing contacts updated (found by `id` = external_id / user_id identity, or by email identity).
    public var updated = 0
    public var skipped: Int { issues.count }
    public var issues: [ContactImportIssue] = []
    public var rowsRead = 0
    public init() {}
}

/// The file cannot be imported at all (unreadable, no usable header).
public struct ContactImportError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var description: String { message }
}

/// A contact as `contacts show` prints it.
public struct ContactSummary: Sendable, Codable, Equatable {
    public var id: Int64
    public var externalID: String?
    public var email: String?
    public var phone: String?
    public var timezone: String?
    public var stage: String?
    public var tags: [String]
    public var attributes: String
    public var firstSeenAt: Date?
    public var lastSeenAt: Date?
    public var erasedAt: Date?
    public var unsubscribedAt: Date?
    public var identities: [String]
    public var scores: [String: Double]
    public var segments: [String]
    public var eventCount: Int64

    enum CodingKeys: String, CodingKey {
        case id, email, phone, timezone, stage, tags, identities, scores, segments
        case externalID = "external_id", attributes, firstSeenAt = "first_seen_at", lastSeenAt = "last_seen_at"
        case erasedAt = "erased_at", unsubscribedAt = "unsubscribed_at", eventCount = "event_count"
    }
}

public struct ContactForgetReport: Sendable, Equatable {
    public var contactIDs: [Int64]
    public var counts: [String: Int]
}

/// Contacts administration: bulk CSV import (upsert), show, export (everything held) and GDPR erasure.
/// Business time is always passed in (`at:`), never SQL `now()`.
public struct ContactStore: Sendable {
    public init() {}

    static let knownColumns: Set<String> = ["id", "email", "phone", "timezone", "tags"]

    // MARK: import

    /// Imports a CSV file (header row = attribute names). `id` (the app's userId: external_id and identity
    /// user_id) or `email` (lower-cased; identity email) identifies each row; `phone`, `timezone` go to their
    /// columns, `tags` is split on `;` or `|`, every other column is a string attribute (an empty cell sets
    /// nothing). Existing contacts get attributes merged (`||`) and tags added. Bad rows are reported with
    /// their line and skipped. Each batch is one transaction: COPY into a temp table, then set-based merges.
    public func importCSV(path: String, batchSize: Int = 10_000, at: Date, on db: PostgresConnection,
                          progress: (ContactImportReport) -> Void = { _ in }) throws -> ContactImportReport {
        let reader: CSVReader
        do { reader = try CSVReader(path: path) } catch { throw ContactImportError(message: "\(error)") }
        return try importCSV(reader: reader, batchSize: batchSize, at: at, on: db, progress: progress)
    }

    public func importCSV(reader: CSVReader, batchSize: Int = 10_000, at: Date, on db: PostgresConnection,
                          progress: (ContactImportReport) -> Void = { _ in }) throws -> ContactImportReport {
        let header: CSVRecord
        do {
            guard let first = try reader.next() else { throw ContactImportError(message: "the file is empty (no header row)") }
            header = first
        } catch let error as ContactImportError { throw error } catch { throw ContactImportError(message: "cannot read: \(error)") }
        if let error = header.error { throw ContactImportError(message: "line \(header.line): header: \(error)") }
        let names = header.fields.map { $0.trimmingCharacters(in: .whitespaces) }
        var seen = Set<String>()
        for name in names {
            if name.isEmpty { throw ContactImportError(message: "line \(header.line): header has an empty column name") }
            if !seen.insert(name.lowercased()).inserted {
                throw ContactImportError(message: "line \(header.line): header names column \(name) twice")
            }
        }
        let lower = names.map { $0.lowercased() }
        let idColumn = lower.firstIndex(of: "id"), emailColumn = lower.firstIndex(of: "email")
        if idColumn == nil && emailColumn == nil {
            throw ContactImportError(message: "line \(header.line): the header needs an id or an email column")
        }
        let phoneColumn = lower.firstIndex(of: "phone"), tzColumn = lower.firstIndex(of: "timezone")
        let tagsColumn = lower.firstIndex(of: "tags")

        var report = ContactImportReport()
        var batch: [[String?]] = []
        var batchKeys = Set<String>()
        func flush() throws {
            if batch.isEmpty { return }
            let (created, updated) = try writeBatch(batch, at: at, on: db)
            report.imported += created
            report.updated += updated
            batch.removeAll(keepingCapacity: true)
            batchKeys.removeAll(keepingCapacity: true)
            progress(report)
        }
        while true {
            let next: CSVRecord?
            do { next = try reader.next() } catch { throw ContactImportError(message: "cannot read: \(error)") }
            guard let record = next else { break }
            report.rowsRead += 1
            if let error = record.error { report.issues.append(ContactImportIssue(line: record.line, reason: error)); continue }
            if record.fields.count != names.count {
                report.issues.append(ContactImportIssue(
                    line: record.line, reason: "expected \(names.count) fields, found \(record.fields.count)"))
                continue
            }
            func cell(_ i: Int?) -> String? {
                guard let i else { return nil }
                let v = record.fields[i].trimmingCharacters(in: .whitespacesAndNewlines)
                return v.isEmpty ? nil : v
            }
            let xid = cell(idColumn)
            let email = cell(emailColumn)?.lowercased()
            if xid == nil && email == nil {
                report.issues.append(ContactImportIssue(line: record.line, reason: "neither id nor email is set"))
                continue
            }
            if let email, !Self.plausibleEmail(email) {
                report.issues.append(ContactImportIssue(line: record.line, reason: "invalid email: \(email)"))
                continue
            }
            var attributes: [String: String] = [:]
            for (i, name) in names.enumerated() where !Self.knownColumns.contains(lower[i]) {
                let value = record.fields[i]
                if !value.isEmpty { attributes[name] = value }
            }
            var tags: [String] = []
            if let raw = cell(tagsColumn) {
                for part in raw.split(whereSeparator: { $0 == ";" || $0 == "|" }) {
                    let tag = part.trimmingCharacters(in: .whitespaces)
                    if !tag.isEmpty && !tags.contains(tag) { tags.append(tag) }
                }
            }
            // A key already in this batch: write the batch first, so one statement never touches a contact twice.
            let keys = [xid.map { "u\u{1}" + $0 }, email.map { "e\u{1}" + $0 }].compactMap { $0 }
            if keys.contains(where: batchKeys.contains) { try flush() }
            batchKeys.formUnion(keys)
            batch.append([String(record.line), xid, email, cell(phoneColumn), cell(tzColumn),
                          Self.json(attributes), Self.json(tags)])
            if batch.count >= max(1, batchSize) { try flush() }
        }
        try flush()
        return report
    }

    static func plausibleEmail(_ email: String) -> Bool {
        guard let at = email.firstIndex(of: "@") else { return false }
        return at != email.startIndex && email.index(after: at) != email.endIndex
            && !email.contains(where: { $0 == " " || $0 == "\t" })
    }

    static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// One batch in one transaction; returns (created, updated).
    private func writeBatch(_ rows: [[String?]], at: Date, on db: PostgresConnection) throws -> (Int, Int) {
        let now = PostgresValue.timestamp(at)
        return try db.transaction { db in
            try db.simpleQuery("""
                CREATE TEMP TABLE IF NOT EXISTS nurture_contact_import (
                    line int NOT NULL, xid text, email text, phone text, tz text, attrs jsonb NOT NULL, tags jsonb NOT NULL,
                    cid bigint, is_new boolean NOT NULL DEFAULT false
                ) ON COMMIT DELETE ROWS
                """)
            try db.copyIn("COPY nurture_contact_import (line, xid, email, phone, tz, attrs, tags) FROM STDIN", rows: rows)
            // Serialise with ingesters and other imports on the same identities (as IngestStore does).
            _ = try db.query("""
                SELECT count(pg_advisory_xact_lock(h)) FROM (
                    SELECT DISTINCT hashtextextended('nurture.identity:' || v, 0) AS h
                    FROM nurture_contact_import s CROSS JOIN LATERAL (VALUES (s.xid), (s.email)) AS x(v)
                    WHERE v IS NOT NULL ORDER BY 1) AS l
                """)
            let results = try db.pipeline([
                // Existing contacts: by external_id / user_id identity, else by email identity (when that contact
                // has no other user id).
                ("""
                 UPDATE nurture_contact_import s SET cid = COALESCE(
                     (SELECT c.id FROM contacts c WHERE c.external_id = s.xid AND c.merged_into IS NULL AND c.erased_at IS NULL),
                     (SELECT COALESCE(c.merged_into, c.id) FROM identities i JOIN contacts c ON c.id = i.contact_id
                      WHERE i.kind = 'user_id' AND i.value = s.xid AND c.erased_at IS NULL),
                     (SELECT COALESCE(c.merged_into, c.id) FROM identities i JOIN contacts c ON c.id = i.contact_id
                      WHERE i.kind = 'email' AND i.value = s.email AND c.erased_at IS NULL
                        AND (s.xid IS NULL OR c.external_id IS NULL OR c.external_id = s.xid)))
                 """, []),
                ("""
                 UPDATE nurture_contact_import SET cid = nextval(pg_get_serial_sequence('contacts', 'id')), is_new = true
                 WHERE cid IS NULL
                 """, []),
                ("""
                 INSERT INTO contacts (id, external_id, email, email_sha256, phone, timezone, attributes, tags, created_at, updated_at)
                 SELECT s.cid, s.xid, s.email,
                        CASE WHEN s.email IS NULL THEN NULL ELSE encode(sha256(convert_to(lower(trim(s.email)), 'UTF8')), 'hex') END,
                        s.phone, s.tz, s.attrs,
                        ARRAY(SELECT DISTINCT t FROM jsonb_array_elements_text(s.tags) AS t ORDER BY 1), $1, $1
                 FROM nurture_contact_import s WHERE s.is_new
                 """, [now]),
                ("""
                 UPDATE contacts c SET
                     external_id = CASE WHEN c.external_id IS NULL AND s.xid IS NOT NULL
                                         AND NOT EXISTS (SELECT 1 FROM contacts o WHERE o.external_id = s.xid)
                                   THEN s.xid ELSE c.external_id END,
                     email = COALESCE(s.email, c.email),
                     email_sha256 = CASE WHEN s.email IS NULL THEN c.email_sha256
                                    ELSE encode(sha256(convert_to(lower(trim(s.email)), 'UTF8')), 'hex') END,
                     phone = COALESCE(s.phone, c.phone), timezone = COALESCE(s.tz, c.timezone),
                     attributes = c.attributes || s.attrs,
                     tags = ARRAY(SELECT DISTINCT t FROM unnest(c.tags || ARRAY(SELECT jsonb_array_elements_text(s.tags))) AS t ORDER BY 1),
                     updated_at = $1
                 FROM nurture_contact_import s
                 WHERE c.id = s.cid AND NOT s.is_new
                 """, [now]),
                ("""
                 INSERT INTO identities (kind, value, contact_id, created_at)
                 SELECT 'user_id', s.xid, s.cid, $1 FROM nurture_contact_import s WHERE s.xid IS NOT NULL
                 UNION ALL
                 SELECT 'email', s.email, s.cid, $1 FROM nurture_contact_import s WHERE s.email IS NOT NULL
                 ON CONFLICT (kind, value) DO NOTHING
                 """, [now]),
                ("SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM nurture_contact_import", []),
            ])
            let counts = results[5].rows[0]
            return (Int(counts[0].int ?? 0), Int(counts[1].int ?? 0))
        }
    }

    // MARK: lookup

    /// Resolves an external_id (userId), an email, or a numeric contact id (in that order) to a contact id,
    /// following merges to the survivor. Nil: no such contact.
    public func resolve(_ idOrEmail: String, on db: PostgresConnection) throws -> Int64? {
        let key = idOrEmail.trimmingCharacters(in: .whitespaces)
        if key.isEmpty { return nil }
        let numeric = Int64(key)
        let rows = try db.query("""
            SELECT COALESCE(c.merged_into, c.id) FROM (
                SELECT id, 1 AS rank FROM contacts WHERE external_id = $1
                UNION ALL SELECT contact_id, 2 FROM identities WHERE kind = 'user_id' AND value = $1
                UNION ALL SELECT contact_id, 3 FROM identities WHERE kind = 'email' AND value = lower($1)
                UNION ALL SELECT id, 4 FROM contacts WHERE lower(email) = lower($1) AND email IS NOT NULL
                UNION ALL SELECT id, 5 FROM contacts WHERE id = $2
            ) AS m JOIN contacts c ON c.id = m.id
            ORDER BY m.rank, c.id LIMIT 1
            """, [.text(key), numeric.map { PostgresValue.int($0) } ?? PostgresValue.null]).rows
        return rows.first?[0].int
    }

    public func show(_ idOrEmail: String, on db: PostgresConnection) throws -> ContactSummary? {
        guard let id = try resolve(idOrEmail, on: db) else { return nil }
        let rows = try db.query("""
            SELECT c.id, c.external_id, c.email, c.phone, c.timezone, c.stage, c.tags, c.attributes::text,
                   c.first_seen_at, c.last_seen_at, c.erased_at, c.unsubscribed_at,
                   ARRAY(SELECT i.kind || ':' || i.value FROM identities i WHERE i.contact_id = c.id ORDER BY 1),
                   (SELECT COALESCE(jsonb_object_agg(s.name, s.value), '{}')::text FROM contact_scores s WHERE s.contact_id = c.id),
                   ARRAY(SELECT m.segment FROM segment_memberships m WHERE m.contact_id = c.id ORDER BY 1),
                   (SELECT count(*) FROM events e WHERE e.contact_id = c.id)
            FROM contacts c WHERE c.id = $1
            """, [.int(id)]).rows
        guard let r = rows.first else { return nil }
        var scores: [String: Double] = [:]
        if let text = r[13].string,
           let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] {
            for (k, v) in object { scores[k] = (v as? NSNumber)?.doubleValue }
        }
        return ContactSummary(
            id: r[0].int ?? id, externalID: r[1].string, email: r[2].string, phone: r[3].string, timezone: r[4].string,
            stage: r[5].string, tags: (r[6].stringArray ?? []).compactMap { $0 }, attributes: r[7].string ?? "{}",
            firstSeenAt: r[8].date, lastSeenAt: r[9].date, erasedAt: r[10].date, unsubscribedAt: r[11].date,
            identities: (r[12].stringArray ?? []).compactMap { $0 }, scores: scores,
            segments: (r[14].stringArray ?? []).compactMap { $0 }, eventCount: r[15].int ?? 0)
    }

    /// Everything held about the contact (and the contacts merged into it) as one JSON object (text).
    public func export(_ id: Int64, on db: PostgresConnection) throws -> String? {
        let rows = try db.query("""
            WITH ids AS (SELECT id FROM contacts WHERE id = $1 OR merged_into = $1),
                 addr AS (SELECT lower(email) AS e FROM contacts WHERE id IN (SELECT id FROM ids) AND email IS NOT NULL
                          UNION SELECT value FROM identities WHERE kind = 'email' AND contact_id IN (SELECT id FROM ids))
            SELECT jsonb_build_object(
                'contact', (SELECT to_jsonb(c) FROM contacts c WHERE c.id = $1),
                'merged_contacts', COALESCE((SELECT jsonb_agg(to_jsonb(c) ORDER BY c.id) FROM contacts c WHERE c.merged_into = $1), '[]'),
                'identities', COALESCE((SELECT jsonb_agg(to_jsonb(i) ORDER BY i.kind, i.value) FROM identities i WHERE i.contact_id IN (SELECT id FROM ids)), '[]'),
                'attributes', (SELECT c.attributes FROM contacts c WHERE c.id = $1),
                'tags', (SELECT to_jsonb(c.tags) FROM contacts c WHERE c.id = $1),
                'scores', COALESCE((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.name) FROM contact_scores s WHERE s.contact_id IN (SELECT id FROM ids)), '[]'),
                'segment_memberships', COALESCE((SELECT jsonb_agg(to_jsonb(m) ORDER BY m.segment) FROM segment_memberships m WHERE m.contact_id IN (SELECT id FROM ids)), '[]'),
                'segment_transitions', COALESCE((SELECT jsonb_agg(to_jsonb(t) ORDER BY t.at, t.id) FROM segment_transitions t WHERE t.contact_id IN (SELECT id FROM ids)), '[]'),
                'lifecycle_transitions', COALESCE((SELECT jsonb_agg(to_jsonb(t) ORDER BY t.at, t.id) FROM lifecycle_transitions t WHERE t.contact_id IN (SELECT id FROM ids)), '[]'),
                'consents', COALESCE((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.at, x.id) FROM consents x WHERE x.contact_id IN (SELECT id FROM ids)), '[]'),
                'enrollments', COALESCE((SELECT jsonb_agg(to_jsonb(x) ORDER BY x.started_at, x.id) FROM enrollments x WHERE x.contact_id IN (SELECT id FROM ids)), '[]'),
                'deliveries', COALESCE((SELECT jsonb_agg(to_jsonb(d) ORDER BY d.created_at, d.id) FROM deliveries d WHERE d.contact_id IN (SELECT id FROM ids)), '[]'),
                'suppressions', COALESCE((SELECT jsonb_agg(to_jsonb(s) ORDER BY s.channel, s.address) FROM suppressions s WHERE lower(s.address) IN (SELECT e FROM addr)), '[]'),
                'events', COALESCE((SELECT jsonb_agg(to_jsonb(e) ORDER BY e.occurred_at, e.id) FROM events e WHERE e.contact_id IN (SELECT id FROM ids)), '[]')
            )::text
            WHERE EXISTS (SELECT 1 FROM contacts WHERE id = $1)
            """, [.int(id)]).rows
        return rows.first?[0].string
    }

    // MARK: erasure

    /// GDPR erasure of the contact and every contact merged into it, in ONE transaction: events (and their
    /// messageId rows), identities, scores, segment memberships and transitions, lifecycle transitions, consents
    /// and enrollments are deleted; deliveries stay (for reports) without contact_id, error or provider id; the
    /// contacts rows stay as tombstones (`erased_at`, every personal column NULL); each email address becomes a
    /// suppression stored only as its SHA-256 (`reason 'erased'`); an `audit_log` row `contact.erase` records
    /// the counts (no personal data). Later events for the same ids create a NEW contact (identities are gone).
    public func forget(_ id: Int64, at: Date, actor: String = "cli", on db: PostgresConnection) throws -> ContactForgetReport {
        try db.transaction { db in
            let ids = try db.query("SELECT id FROM contacts WHERE id = $1 OR merged_into = $1 ORDER BY id FOR UPDATE",
                                   [.int(id)]).rows.compactMap { $0[0].int }
            if ids.isEmpty { throw ContactImportError(message: "no contact \(id)") }
            let idArray = PostgresValue.intArray(ids.map { Optional($0) })
            let now = PostgresValue.timestamp(at)
            let results = try db.pipeline([
                ("""
                 WITH addr AS (
                     SELECT DISTINCT lower(trim(e)) AS e FROM (
                         SELECT email AS e FROM contacts WHERE id = ANY($1::int8[]) AND email IS NOT NULL
                         UNION SELECT value FROM identities WHERE kind = 'email' AND contact_id = ANY($1::int8[])) AS a),
                 gone AS (DELETE FROM suppressions s USING addr WHERE lower(s.address) = addr.e RETURNING 1)
                 INSERT INTO suppressions (channel, address, reason, source, created_at)
                 SELECT 'email', encode(sha256(convert_to(addr.e, 'UTF8')), 'hex'), 'erased', 'contacts forget', $2 FROM addr
                 ON CONFLICT (channel, address) DO UPDATE SET reason = 'erased'
                 """, [idArray, now]),
                ("DELETE FROM event_message_ids m USING events e WHERE e.contact_id = ANY($1::int8[]) AND m.event_id = e.id", [idArray]),
                ("DELETE FROM events WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM identities WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM contact_scores WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM segment_memberships WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM segment_transitions WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM lifecycle_transitions WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM consents WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("DELETE FROM enrollments WHERE contact_id = ANY($1::int8[])", [idArray]),
                ("""
                 UPDATE deliveries SET contact_id = NULL, last_error = NULL, provider_message_id = NULL, updated_at = $2
                 WHERE contact_id = ANY($1::int8[])
                 """, [idArray, now]),
                ("""
                 UPDATE contacts SET external_id = NULL, email = NULL, phone = NULL, timezone = NULL, attributes = '{}',
                     tags = '{}', stage = NULL, stage_entered_at = NULL, first_seen_at = NULL, last_seen_at = NULL,
                     first_utm_source = NULL, first_utm_medium = NULL, last_utm_source = NULL, last_utm_medium = NULL,
                     last_device_type = NULL, email_sha256 = NULL, unsubscribed_at = NULL,
                     erased_at = COALESCE(erased_at, $2), updated_at = $2
                 WHERE id = ANY($1::int8[])
                 """, [idArray, now]),
            ])
            let labels = ["suppressions", "event_message_ids", "events", "identities", "scores", "segment_memberships",
                          "segment_transitions", "lifecycle_transitions", "consents", "enrollments", "deliveries", "contacts"]
            var counts: [String: Int] = [:]
            for (i, label) in labels.enumerated() { counts[label] = results[i].affectedRows }
            _ = try db.execute("""
                INSERT INTO audit_log (at, actor, action, subject_kind, subject_id, details)
                VALUES ($1, $2, 'contact.erase', 'contact', $3, $4)
                """, [now, .text(actor), .text(String(id)),
                      .jsonb(Self.json(["contacts": ids.map { NSNumber(value: $0) }, "counts": counts] as [String: Any]))])
            return ContactForgetReport(contactIDs: ids, counts: counts)
        }
    }
}
