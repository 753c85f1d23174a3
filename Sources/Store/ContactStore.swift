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
    /// their line and skipped. Each batch is one transaction: COPY into a temp table, then one set-based merge.
    public func importCSV(path: String, batchSize: Int = 5_000, at: Date, on db: PostgresConnection,
                          progress: (ContactImportReport) -> Void = { _ in }) throws -> ContactImportReport {
        let reader: CSVReader
        do { reader = try CSVReader(path: path) } catch { throw ContactImportError(message: "\(error)") }
        return try importCSV(reader: reader, batchSize: batchSize, at: at, on: db, progress: progress)
    }

    public func importCSV(reader: CSVReader, batchSize: Int = 5_000, at: Date, on db: PostgresConnection,
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
        // Attribute columns (every unknown one) with their JSON key text (`"name":`), in key order.
        let attributeColumns: [ImportLayout.Attribute] = names.indices
            .filter { !Self.knownColumns.contains(lower[$0]) }
            .sorted { names[$0] < names[$1] }
            .map { i in
                var key: [UInt8] = []
                Self.appendJSONString(Array(names[i].utf8), to: &key)
                key.append(UInt8(ascii: ":"))
                return ImportLayout.Attribute(column: i, key: key)
            }
        let layout = ImportLayout(
            columns: names.count, id: idColumn, email: emailColumn, phone: lower.firstIndex(of: "phone"),
            timezone: lower.firstIndex(of: "timezone"), tags: lower.firstIndex(of: "tags"), attributes: attributeColumns)

        // The CSV is parsed on a thread of its own, one batch ahead of the database (which does most of the work).
        let pipe = ImportPipe()
        let producer = ImportProducer(reader: reader, layout: layout, batchSize: max(1, batchSize), pipe: pipe)
        Thread.detachNewThread { producer.run() }
        defer { pipe.finish() }

        var report = ContactImportReport()
        var sequence: String? = nil
        while true {
            switch pipe.take() {
            case .batch(let rows, let rowsRead, let issues):
                report.rowsRead = rowsRead
                report.issues.append(contentsOf: issues)
                if sequence == nil {
                    sequence = try db.query("SELECT pg_get_serial_sequence('contacts', 'id')").rows.first?[0].string ?? "contacts_id_seq"
                }
                let (created, updated) = try writeBatch(rows, sequence: sequence!, at: at, on: db)
                report.imported += created
                report.updated += updated
                progress(report)
            case .end(let rowsRead, let issues):
                report.rowsRead = rowsRead
                report.issues.append(contentsOf: issues)
                return report
            case .failure(let error):
                throw error
            }
        }
    }

    /// Where an import finds its columns.
    struct ImportLayout: Sendable {
        struct Attribute: Sendable {
            var column: Int
            /// `"name":` as JSON.
            var key: [UInt8]
        }
        var columns: Int
        var id: Int?, email: Int?, phone: Int?, timezone: Int?, tags: Int?
        var attributes: [Attribute]
    }

    /// Batches handed from the parsing thread to the writing one (at most one waiting).
    final class ImportPipe: @unchecked Sendable {
        enum Item: Sendable {
            /// COPY rows, and the rows read and the bad rows found up to the end of this batch (since the previous item).
            case batch([[String?]], rowsRead: Int, issues: [ContactImportIssue])
            case end(rowsRead: Int, issues: [ContactImportIssue])
            case failure(ContactImportError)
        }
        // Safety: every field is guarded by `condition`.
        private let condition = NSCondition()
        private var items: [Item] = []
        private var cancelled = false
        private var producerDone = false

        /// False when the consumer gave up (the producer should stop).
        func put(_ item: Item) -> Bool {
            condition.lock(); defer { condition.unlock() }
            while !items.isEmpty && !cancelled { condition.wait() }
            if cancelled { return false }
            items.append(item)
            condition.broadcast()
            return true
        }

        func take() -> Item {
            condition.lock(); defer { condition.unlock() }
            while items.isEmpty { condition.wait() }
            let item = items.removeFirst()
            condition.broadcast()
            return item
        }

        func producerFinished() {
            condition.lock(); defer { condition.unlock() }
            producerDone = true
            condition.broadcast()
        }

        /// Stops the producer (if still running) and waits until it no longer touches the reader.
        func finish() {
            condition.lock(); defer { condition.unlock() }
            cancelled = true
            condition.broadcast()
            while !producerDone { condition.wait() }
        }
    }

    /// Reads the CSV rows, checks them and turns them into COPY rows, batch by batch.
    final class ImportProducer: @unchecked Sendable {
        // Safety: used by the producer thread only, once started (the consumer waits for it to finish).
        private let reader: CSVReader
        private let layout: ImportLayout
        private let batchSize: Int
        private let pipe: ImportPipe

        init(reader: CSVReader, layout: ImportLayout, batchSize: Int, pipe: ImportPipe) {
            self.reader = reader
            self.layout = layout
            self.batchSize = batchSize
            self.pipe = pipe
        }

        func run() {
            defer { pipe.producerFinished() }
            var rowsRead = 0
            var issues: [ContactImportIssue] = []
            var batch: [[String?]] = []
            batch.reserveCapacity(min(batchSize, 100_000))
            // Keys already in this batch (Swift string equality, as before).
            var batchIDs = Set<String>(), batchEmails = Set<String>()
            func flush() -> Bool {
                if batch.isEmpty { return true }
                guard pipe.put(.batch(batch, rowsRead: rowsRead, issues: issues)) else { return false }
                batch = []
                batch.reserveCapacity(min(batchSize, 100_000))
                issues = []
                batchIDs.removeAll(keepingCapacity: true)
                batchEmails.removeAll(keepingCapacity: true)
                return true
            }
            var record = CSVRawRecord()
            var row = RowText()
            let layout = layout
            while true {
                let more: Bool
                do { more = try reader.nextRaw(into: &record) } catch {
                    _ = pipe.put(.failure(ContactImportError(message: "cannot read: \(error)")))
                    return
                }
                guard more else { break }
                rowsRead += 1
                if let error = record.error { issues.append(ContactImportIssue(line: record.line, reason: error)); continue }
                if record.count != layout.columns {
                    issues.append(ContactImportIssue(
                        line: record.line, reason: "expected \(layout.columns) fields, found \(record.count)"))
                    continue
                }
                let xid = layout.id.flatMap { row.cell(record, $0) }
                let email = layout.email.flatMap { row.lowercasedCell(record, $0) }
                if xid == nil && email == nil {
                    issues.append(ContactImportIssue(line: record.line, reason: "neither id nor email is set"))
                    continue
                }
                if let email, !email.plausible {
                    issues.append(ContactImportIssue(line: record.line, reason: "invalid email: \(email.text)"))
                    continue
                }
                let attributes = row.attributesJSON(record, layout.attributes)
                let tags = layout.tags.map { row.tagsArray(record, $0) } ?? "{}"
                // A key already in this batch: write the batch first, so one statement never touches a contact twice.
                if (xid.map { batchIDs.contains($0) } ?? false) || (email.map { batchEmails.contains($0.text) } ?? false) {
                    guard flush() else { return }
                }
                if let xid { batchIDs.insert(xid) }
                if let email { batchEmails.insert(email.text) }
                batch.append([xid, email?.text, layout.phone.flatMap { row.cell(record, $0) },
                              layout.timezone.flatMap { row.cell(record, $0) }, attributes, tags])
                if batch.count >= batchSize { guard flush() else { return } }
            }
            guard flush() else { return }
            _ = pipe.put(.end(rowsRead: rowsRead, issues: issues))
        }
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

    /// Appends `bytes` (valid UTF-8) as a JSON string literal.
    static func appendJSONString(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in bytes {
            switch b {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\")); out.append(b)
            case 0x0A: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "n"))
            case 0x0D: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "r"))
            case 0x09: out.append(UInt8(ascii: "\\")); out.append(UInt8(ascii: "t"))
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(b >> 4)], hex[Int(b & 15)]])
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The per-row text of an import, made from the raw CSV bytes. ASCII cells (the usual case) take a byte path;
    /// any cell with other bytes goes through `String` exactly as before (Unicode trimming, lower-casing, tag
    /// equality), so both give the same result.
    struct RowText {
        private var scratch: [UInt8] = []
        private var json: [UInt8] = []
        private var tagRanges: [Range<Int>] = []

        struct Email { var text: String; var plausible: Bool }

        @inline(__always) static func isWhitespaceOrNewline(_ b: UInt8) -> Bool { b == 0x20 || (b >= 0x09 && b <= 0x0D) }
        @inline(__always) static func isWhitespace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 }

        /// Trimmed bounds of field `i`, or nil when it has a non-ASCII byte.
        private static func asciiTrimmed(_ buf: UnsafeBufferPointer<UInt8>, _ record: CSVRawRecord, _ i: Int) -> Range<Int>? {
            var s = record.start(i), e = record.end(i)
            for k in s..<e where buf[k] >= 0x80 { return nil }
            while s < e && isWhitespaceOrNewline(buf[s]) { s += 1 }
            while e > s && isWhitespaceOrNewline(buf[e - 1]) { e -= 1 }
            return s..<e
        }

        /// Field `i` trimmed of whitespace and newlines; nil when empty.
        func cell(_ record: CSVRawRecord, _ i: Int) -> String? {
            let value: String? = record.bytes.withUnsafeBufferPointer { buf in
                guard let r = Self.asciiTrimmed(buf, record, i) else { return nil }
                return String(decoding: UnsafeBufferPointer(rebasing: buf[r]), as: UTF8.self)
            }
            let v = value ?? record.string(i).trimmingCharacters(in: .whitespacesAndNewlines)
            return v.isEmpty ? nil : v
        }

        /// `cell` lower-cased, and whether it looks like an email address.
        mutating func lowercasedCell(_ record: CSVRawRecord, _ i: Int) -> Email? {
            var ascii = true
            scratch.removeAll(keepingCapacity: true)
            record.bytes.withUnsafeBufferPointer { buf in
                guard let r = Self.asciiTrimmed(buf, record, i) else { ascii = false; return }
                for k in r {
                    let b = buf[k]
                    scratch.append(b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? b + 32 : b)
                }
            }
            if !ascii {
                guard let text = cell(record, i)?.lowercased() else { return nil }
                return Email(text: text, plausible: ContactStore.plausibleEmail(text))
            }
            if scratch.isEmpty { return nil }
            let at = scratch.firstIndex(of: UInt8(ascii: "@"))
            let plausible = at != nil && at! != 0 && at! != scratch.count - 1
                && !scratch.contains(where: { $0 == 0x20 || $0 == 0x09 })
            return Email(text: String(decoding: scratch, as: UTF8.self), plausible: plausible)
        }

        /// The non-empty attribute cells (untrimmed) as a JSON object.
        mutating func attributesJSON(_ record: CSVRawRecord, _ columns: [ImportLayout.Attribute]) -> String {
            json.removeAll(keepingCapacity: true)
            json.append(UInt8(ascii: "{"))
            for attribute in columns {
                let column = attribute.column, key = attribute.key
                let s = record.start(column), e = record.end(column)
                if s == e { continue }
                if json.count > 1 { json.append(UInt8(ascii: ",")) }
                json.append(contentsOf: key)
                let ascii = record.bytes.withUnsafeBufferPointer { buf -> Bool in
                    for k in s..<e where buf[k] >= 0x80 { return false }
                    ContactStore.appendJSONString(UnsafeBufferPointer(rebasing: buf[s..<e]), to: &json)
                    return true
                }
                if !ascii { ContactStore.appendJSONString(record.string(column).utf8, to: &json) }
            }
            json.append(UInt8(ascii: "}"))
            return String(decoding: json, as: UTF8.self)
        }

        /// Field `i` split on `;` or `|`, trimmed, empty and repeated tags dropped, as a PostgreSQL text[] literal.
        mutating func tagsArray(_ record: CSVRawRecord, _ i: Int) -> String {
            json.removeAll(keepingCapacity: true)
            json.append(UInt8(ascii: "{"))
            let ascii = record.bytes.withUnsafeBufferPointer { buf -> Bool in
                guard let r = Self.asciiTrimmed(buf, record, i) else { return false }
                tagRanges.removeAll(keepingCapacity: true)
                var partStart = r.lowerBound
                for k in r.lowerBound...r.upperBound {
                    guard k == r.upperBound || buf[k] == UInt8(ascii: ";") || buf[k] == UInt8(ascii: "|") else { continue }
                    var s = partStart, e = k
                    partStart = k + 1
                    while s < e && Self.isWhitespace(buf[s]) { s += 1 }
                    while e > s && Self.isWhitespace(buf[e - 1]) { e -= 1 }
                    if s == e { continue }
                    let tag = UnsafeBufferPointer(rebasing: buf[s..<e])
                    if tagRanges.contains(where: { $0.count == e - s && UnsafeBufferPointer(rebasing: buf[$0]).elementsEqual(tag) }) { continue }
                    tagRanges.append(s..<e)
                    if json.count > 1 { json.append(UInt8(ascii: ",")) }
                    Self.appendArrayElement(tag, to: &json)
                }
                return true
            }
            if !ascii {
                var tags: [String] = []
                if let raw = cell(record, i) {
                    for part in raw.split(whereSeparator: { $0 == ";" || $0 == "|" }) {
                        let tag = part.trimmingCharacters(in: .whitespaces)
                        if !tag.isEmpty && !tags.contains(tag) { tags.append(tag) }
                    }
                }
                json.removeAll(keepingCapacity: true)
                json.append(UInt8(ascii: "{"))
                for tag in tags {
                    if json.count > 1 { json.append(UInt8(ascii: ",")) }
                    Self.appendArrayElement(tag.utf8, to: &json)
                }
            }
            json.append(UInt8(ascii: "}"))
            return String(decoding: json, as: UTF8.self)
        }

        /// A double-quoted array element (`"` and `\` backslash-escaped; COPY escapes the result again).
        static func appendArrayElement(_ bytes: some Collection<UInt8>, to out: inout [UInt8]) {
            out.append(UInt8(ascii: "\""))
            for b in bytes {
                if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") { out.append(UInt8(ascii: "\\")) }
                out.append(b)
            }
            out.append(UInt8(ascii: "\""))
        }
    }

    /// One batch in one transaction; returns (created, updated).
    ///
    /// The rows are COPYed into a temp table, their identities advisory-locked (in order, as IngestStore does),
    /// then one statement resolves each row to its contact (index probes: external_id, user_id identity, email
    /// identity), numbers the new ones, inserts them, updates the others and adds the identities that are missing.
    /// Plain index probes only: the batch is small and the tables big (a hash or merge join would read a whole
    /// table per batch, a bitmap scan per probe costs more than the probe, and tables without statistics yet
    /// mislead the planner).
    ///
    /// The identities found missing are inserted without `ON CONFLICT` (no second probe, no speculative insertion):
    /// user ids are locked above by every writer, but an ingester adds email identities without locking them, so
    /// if one did so meanwhile (a unique violation), the batch is written again with `ON CONFLICT DO NOTHING`.
    private func writeBatch(_ rows: [[String?]], sequence: String, at: Date, on db: PostgresConnection) throws -> (Int, Int) {
        do {
            return try writeBatch(rows, sequence: sequence, at: at, on: db, racing: false)
        } catch {
            guard let failure = error as? PostgresError, failure.isUniqueViolation, failure.constraint == "identities_pkey" else { throw error }
            return try writeBatch(rows, sequence: sequence, at: at, on: db, racing: true)
        }
    }

    private func writeBatch(_ rows: [[String?]], sequence: String, at: Date, on db: PostgresConnection, racing: Bool) throws -> (Int, Int) {
        let now = PostgresValue.timestamp(at)
        let nextID = "nextval('\(sequence.replacingOccurrences(of: "'", with: "''"))'::regclass)"
        let identities = racing
            ? """
              SELECT 'user_id', s.xid, s.id, $1 FROM batch s WHERE s.xid IS NOT NULL
              UNION ALL
              SELECT 'email', s.email, s.id, $1 FROM batch s WHERE s.email IS NOT NULL
              ON CONFLICT (kind, value) DO NOTHING
              """
            : """
              SELECT 'user_id', s.xid, s.id, $1 FROM batch s WHERE s.xid IS NOT NULL AND s.uid_contact IS NULL
              UNION ALL
              SELECT 'email', s.email, s.id, $1 FROM batch s WHERE s.email IS NOT NULL AND s.email_contact IS NULL
              """
        return try db.transaction { db in
            try db.simpleQuery("""
                SET LOCAL jit = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
                SET LOCAL enable_bitmapscan = off; SET LOCAL enable_seqscan = off;
                CREATE TEMP TABLE IF NOT EXISTS nurture_contact_import_rows (
                    xid text, email text, phone text, tz text, attrs jsonb NOT NULL, tags text[] NOT NULL
                ) ON COMMIT DELETE ROWS
                """)
            try db.copyIn("COPY nurture_contact_import_rows (xid, email, phone, tz, attrs, tags) FROM STDIN", rows: rows)
            let results = try db.pipeline([
                // Serialise with ingesters and other imports on the same identities (as IngestStore does).
                ("""
                 SELECT count(pg_advisory_xact_lock(h)) FROM (
                     SELECT DISTINCT hashtextextended(current_schema() || ':nurture.identity:' || v, 0) AS h
                     FROM nurture_contact_import_rows s CROSS JOIN LATERAL (VALUES (s.xid), (s.email)) AS x(v)
                     WHERE v IS NOT NULL ORDER BY 1) AS l
                 """, []),
                // Existing contacts: by external_id / user_id identity, else by email identity (when that contact has
                // no other user id). The identities' contacts are looked up once, for the lookup and the insert.
                ("""
                 WITH batch AS MATERIALIZED (
                     SELECT s.*, k.uid_contact, k.email_contact, f.cid IS NULL AS is_new,
                            CASE WHEN f.cid IS NULL THEN \(nextID) ELSE f.cid END AS id
                     FROM nurture_contact_import_rows s
                     CROSS JOIN LATERAL (SELECT
                         CASE WHEN s.xid IS NOT NULL THEN
                             (SELECT i.contact_id FROM identities i WHERE i.kind = 'user_id' AND i.value = s.xid) END AS uid_contact,
                         CASE WHEN s.email IS NOT NULL THEN
                             (SELECT i.contact_id FROM identities i WHERE i.kind = 'email' AND i.value = s.email) END AS email_contact
                         OFFSET 0) AS k
                     CROSS JOIN LATERAL (SELECT COALESCE(
                         CASE WHEN s.xid IS NOT NULL THEN
                             (SELECT c.id FROM contacts c WHERE c.external_id = s.xid AND c.merged_into IS NULL AND c.erased_at IS NULL) END,
                         CASE WHEN k.uid_contact IS NOT NULL THEN
                             (SELECT COALESCE(c.merged_into, c.id) FROM contacts c WHERE c.id = k.uid_contact AND c.erased_at IS NULL) END,
                         CASE WHEN k.email_contact IS NOT NULL THEN
                             (SELECT COALESCE(c.merged_into, c.id) FROM contacts c WHERE c.id = k.email_contact AND c.erased_at IS NULL
                                AND (s.xid IS NULL OR c.external_id IS NULL OR c.external_id = s.xid)) END) AS cid
                         OFFSET 0) AS f
                 ), created AS (
                     INSERT INTO contacts (id, external_id, email, email_sha256, phone, timezone, attributes, tags, created_at, updated_at)
                     SELECT s.id, s.xid, s.email,
                            CASE WHEN s.email IS NULL THEN NULL ELSE encode(sha256(convert_to(lower(trim(s.email)), 'UTF8')), 'hex') END,
                            s.phone, s.tz, s.attrs,
                            CASE WHEN cardinality(s.tags) < 2 THEN s.tags
                                 ELSE ARRAY(SELECT DISTINCT t FROM unnest(s.tags) AS t ORDER BY 1) END,
                            $1, $1
                     FROM batch s WHERE s.is_new
                 ), updated AS (
                     UPDATE contacts c SET
                         external_id = CASE WHEN c.external_id IS NULL AND s.xid IS NOT NULL
                                             AND (SELECT 1 FROM contacts o WHERE o.external_id = s.xid LIMIT 1) IS NULL
                                       THEN s.xid ELSE c.external_id END,
                         email = COALESCE(s.email, c.email),
                         email_sha256 = CASE WHEN s.email IS NULL THEN c.email_sha256
                                        ELSE encode(sha256(convert_to(lower(trim(s.email)), 'UTF8')), 'hex') END,
                         phone = COALESCE(s.phone, c.phone), timezone = COALESCE(s.tz, c.timezone),
                         attributes = c.attributes || s.attrs,
                         tags = CASE WHEN cardinality(c.tags) + cardinality(s.tags) < 2 THEN c.tags || s.tags
                                     ELSE ARRAY(SELECT DISTINCT t FROM unnest(c.tags || s.tags) AS t ORDER BY 1) END,
                         updated_at = $1
                     FROM batch s
                     WHERE c.id = s.id AND NOT s.is_new
                 ), identified AS (
                     INSERT INTO identities (kind, value, contact_id, created_at)
                     \(identities)
                 )
                 SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) FROM batch
                 """, [now]),
            ])
            let counts = results[1].rows[0]
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
