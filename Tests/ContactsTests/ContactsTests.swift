import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct CSVReaderTests {
    @Test func parsesRFC4180() throws {
        let text = "\u{FEFF}a,b,c\r\n1,\"x, y\",\"say \"\"hi\"\"\"\r\n\r\n2,\"multi\nline\",Zoë\n3,,\r\n\"open,4"
        let reader = CSVReader(bytes: Array(text.utf8))
        var records: [CSVRecord] = []
        while let r = try reader.next() { records.append(r) }
        #expect(records.count == 5)
        #expect(records[0] == CSVRecord(line: 1, fields: ["a", "b", "c"]))
        #expect(records[1] == CSVRecord(line: 2, fields: ["1", "x, y", "say \"hi\""]))
        #expect(records[2] == CSVRecord(line: 4, fields: ["2", "multi\nline", "Zoë"]))
        #expect(records[3] == CSVRecord(line: 6, fields: ["3", "", ""]))
        #expect(records[4].line == 7)
        #expect(records[4].error != nil)
    }

    @Test func chunkBoundariesDoNotMatter() throws {
        let text = "a,b\r\n\"q\"\"x\",\"1\r\n2\"\r\nlast,row"
        let bytes = Array(text.utf8)
        var offset = 0
        let reader = CSVReader {
            if offset >= bytes.count { return nil }
            defer { offset += 1 }
            return [bytes[offset]]
        }
        var records: [CSVRecord] = []
        while let r = try reader.next() { records.append(r) }
        #expect(records.map(\.fields) == [["a", "b"], ["q\"x", "1\r\n2"], ["last", "row"]])
        #expect(records.map(\.line) == [1, 2, 4])
    }
}

@Suite struct ContactsTests {
    /// Writes a 20,000-row CSV (CRLF, BOM, quotes, commas, newlines in quotes, unicode) with 20 bad rows;
    /// returns the path and the expected bad lines.
    func makeCSV(rows: Int = 20_000) throws -> (String, [Int: String]) {
        var out = "\u{FEFF}id,email,first_name,note,tags,phone,timezone\r\n"
        var line = 2
        var bad: [Int: String] = [:]
        for i in 0..<rows {
            if i % 1000 == 500 {
                switch (i / 1000) % 3 {
                case 0: out += "u\(i),user\(i)@example.com,only three\r\n"; bad[line] = "expected 7 fields"
                case 1: out += ",,Nobody,\"no, id\",,,\r\n"; bad[line] = "neither id nor email"
                default: out += "u\(i),not-an-email,Bad,,,,\r\n"; bad[line] = "invalid email"
                }
                line += 1
                continue
            }
            let id = i % 7 == 0 ? "" : "u\(i)"
            var note = "plain \(i)"
            var extraLines = 0
            if i % 10 == 0 { note = "\"says \"\"hi\"\", ok\"" }
            if i % 13 == 0 { note = "\"first\nsecond, ünïcödé ✓\""; extraLines = 1 }
            let tags = i % 2 == 0 ? "vip;beta" : "x|y"
            let phone = i % 5 == 0 ? "" : "+3361234\(i)"
            out += "\(id),User\(i)@Example.com,Zoë \(i) 日本,\(note),\(tags),\(phone),Europe/Paris\r\n"
            line += 1 + extraLines
        }
        let path = NSTemporaryDirectory() + "contacts-\(UUID().uuidString).csv"
        try out.write(toFile: path, atomically: true, encoding: .utf8)
        return (path, bad)
    }

    @Test func importsUpsertsAndReportsBadRows() throws {
        let database = try TestDatabase.create(prefix: "contacts")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator().migrate(db)
        let (path, bad) = try makeCSV()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = ContactStore()
        var progressCalls = 0
        let report = try store.importCSV(path: path, batchSize: 3_000, at: Date(), on: db) { _ in progressCalls += 1 }
        #expect(report.imported == 19_980)
        #expect(report.updated == 0)
        #expect(report.skipped == 20)
        #expect(progressCalls >= 7)
        #expect(Dictionary(uniqueKeysWithValues: report.issues.map { ($0.line, $0.reason) }).keys.sorted() == bad.keys.sorted())
        for issue in report.issues { #expect(issue.reason.hasPrefix(bad[issue.line] ?? "?"), "line \(issue.line)") }

        #expect(try db.query("SELECT count(*) FROM contacts").rows[0][0].int == 19_980)
        #expect(try db.query("SELECT count(*) FROM identities WHERE kind = 'email'").rows[0][0].int == 19_980)
        let uidCount = try db.query("SELECT count(*) FROM identities WHERE kind = 'user_id'").rows[0][0].int ?? 0
        #expect(uidCount > 16_000 && uidCount < 19_980)
        let row = try db.query("""
            SELECT external_id, email, phone, timezone, attributes->>'first_name', attributes->>'note', tags, email_sha256,
                   attributes ? 'phone', attributes ? 'id'
            FROM contacts WHERE external_id = 'u13'
            """).rows[0]
        #expect(row[1].string == "user13@example.com")
        #expect(row[2].string == "+336123413")
        #expect(row[3].string == "Europe/Paris")
        #expect(row[4].string == "Zoë 13 日本")
        #expect(row[5].string == "first\nsecond, ünïcödé ✓")
        #expect(row[6].stringArray == ["x", "y"])
        #expect(row[7].string?.count == 64)
        #expect(row[8].bool == false && row[9].bool == false)
        let quoted = try db.query("SELECT attributes->>'note', tags FROM contacts WHERE external_id = 'u10'").rows[0]
        #expect(quoted[0].string == "says \"hi\", ok")
        #expect(quoted[1].stringArray == ["beta", "vip"])
        // u0 had no id: found by email.
        #expect(try store.resolve("user0@example.com", on: db) != nil)
        #expect(try store.resolve("nobody@example.com", on: db) == nil)

        // Re-import: updates, no duplicates; attributes merged.
        _ = try db.execute("UPDATE contacts SET attributes = attributes || '{\"kept\":\"yes\"}' WHERE external_id = 'u1'")
        let again = try store.importCSV(path: path, batchSize: 10_000, at: Date(), on: db)
        #expect(again.imported == 0)
        #expect(again.updated == 19_980)
        #expect(again.skipped == 20)
        #expect(try db.query("SELECT count(*) FROM contacts").rows[0][0].int == 19_980)
        #expect(try db.query("SELECT attributes->>'kept' FROM contacts WHERE external_id = 'u1'").rows[0][0].string == "yes")

        // An id added later to an email-only contact attaches to it.
        let later = NSTemporaryDirectory() + "contacts-\(UUID().uuidString).csv"
        defer { try? FileManager.default.removeItem(atPath: later) }
        try "email,id,plan\nUSER7@example.com,u7,pro\n".write(toFile: later, atomically: true, encoding: .utf8)
        let linked = try store.importCSV(path: later, at: Date(), on: db)
        #expect(linked.updated == 1 && linked.imported == 0)
        #expect(try db.query("SELECT attributes->>'plan' FROM contacts WHERE external_id = 'u7'").rows[0][0].string == "pro")
    }

    @Test func headerErrorsRefuseTheFile() throws {
        let database = try TestDatabase.create(prefix: "contacts")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator().migrate(db)
        #expect(throws: ContactImportError.self) {
            _ = try ContactStore().importCSV(reader: CSVReader(bytes: Array("name,plan\nAda,pro\n".utf8)), at: Date(), on: db)
        }
        #expect(throws: ContactImportError.self) {
            _ = try ContactStore().importCSV(reader: CSVReader(bytes: []), at: Date(), on: db)
        }
    }

    @Test func exportAndForget() throws {
        let database = try TestDatabase.create(prefix: "contacts")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator().migrate(db)
        let store = ContactStore()
        let email = "zed.secret@example.org"
        let csv = "id,email,first_name,tags\nzed-4242,\(email),Zed,vip\nother-1,other@example.org,Other,\n"
        _ = try store.importCSV(reader: CSVReader(bytes: Array(csv.utf8)), at: Date(), on: db)
        let id = try #require(try store.resolve("zed-4242", on: db))
        #expect(try store.resolve(email.uppercased(), on: db) == id)
        #expect(try store.resolve(String(id), on: db) == id)
        let now = PostgresValue.timestamp(Date())
        let i = PostgresValue.int(id)
        // A merged contact carrying the same email, and a row in every table.
        let loser = try db.query("""
            INSERT INTO contacts (email, attributes, merged_into, created_at, updated_at)
            VALUES ($1, jsonb_build_object('old_email', $1::text), $2, $3, $3) RETURNING id
            """, [.text(email), i, now]).rows[0][0].int!
        _ = try db.pipeline([
            ("INSERT INTO identities (kind, value, contact_id, created_at) VALUES ('anonymous_id', 'anon-zed', $1, $2)", [.int(loser), now]),
            ("INSERT INTO events (id, contact_id, message_id, type, name, properties, occurred_at, received_at) VALUES (9001, $1, 'm-zed', 'track', 'Signed Up', jsonb_build_object('email', $3::text), $2, $2)", [i, now, .text(email)]),
            ("INSERT INTO events (id, contact_id, message_id, type, name, occurred_at, received_at) VALUES (9002, $1, 'm-zed-2', 'track', 'Old', $2, $2)", [.int(loser), now]),
            ("INSERT INTO event_message_ids (message_id, event_id, occurred_at) VALUES ('m-zed', 9001, $1), ('m-zed-2', 9002, $1)", [now]),
            ("INSERT INTO contact_scores (contact_id, name, value, reference_at) VALUES ($1, 'lead', 12, $2)", [i, now]),
            ("INSERT INTO segment_memberships (segment, contact_id, entered_at) VALUES ('vips', $1, $2)", [i, now]),
            ("INSERT INTO segment_transitions (segment, contact_id, entered, at) VALUES ('vips', $1, true, $2)", [i, now]),
            ("INSERT INTO lifecycle_transitions (contact_id, from_stage, to_stage, at, cause) VALUES ($1, NULL, 'lead', $2, 'signup')", [i, now]),
            ("INSERT INTO consents (contact_id, category, channel, granted, source, at) VALUES ($1, 'marketing', 'email', true, $3, $2)", [i, now, .text("form " + email)]),
            ("INSERT INTO enrollments (workflow, workflow_version, contact_id, state, trigger, started_at) VALUES ('onboarding', 1, $1, 'active', jsonb_build_object('email', $3::text), $2)", [i, now, .text(email)]),
            ("INSERT INTO deliveries (id, dedupe_key, contact_id, channel, template, source_kind, status, last_error, created_at, updated_at) VALUES (gen_random_uuid(), 'wf:1:1', $1, 'email', 'welcome', 'workflow', 'failed', $3, $2, $2)", [i, now, .text("550 " + email + " unknown")]),
            ("INSERT INTO suppressions (channel, address, reason, created_at) VALUES ('email', $1, 'bounce', $2)", [.text(email), now]),
        ])

        let exported = try #require(try store.export(id, on: db))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(exported.utf8)) as? [String: Any])
        for key in ["identities", "scores", "segment_memberships", "segment_transitions", "lifecycle_transitions", "consents",
                    "enrollments", "deliveries", "suppressions", "events", "merged_contacts"] {
            #expect(((object[key] as? [Any]) ?? []).isEmpty == false, "export.\(key)")
        }
        #expect((object["events"] as? [Any])?.count == 2)
        #expect((object["contact"] as? [String: Any])?["email"] as? String == email)
        #expect((object["tags"] as? [String]) == ["vip"])
        #expect(exported.contains("Zed"))

        let report = try store.forget(id, at: Date(), on: db)
        #expect(report.contactIDs.sorted() == [id, loser].sorted())
        #expect(report.counts["events"] == 2)

        // No table holds the email (or the user id) any more.
        let tables = try db.query("""
            SELECT c.relname FROM pg_class c WHERE c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = current_schema()) AND c.relkind IN ('r', 'p')
            ORDER BY 1
            """).rows.compactMap { $0[0].string }
        #expect(tables.contains("contacts") && tables.contains("events_default"))
        for table in tables {
            for needle in [email, "zed-4242", "anon-zed"] {
                let hits = try db.query("SELECT count(*) FROM \"\(table)\" t WHERE t::text ILIKE '%' || $1 || '%'", [.text(needle)]).rows[0][0].int
                #expect(hits == 0, "\(table) still contains \(needle)")
            }
        }
        let tomb = try db.query("SELECT erased_at IS NOT NULL, email, external_id, attributes::text, tags, email_sha256 FROM contacts WHERE id = $1", [i]).rows[0]
        #expect(tomb[0].bool == true && tomb[1].isNull && tomb[2].isNull && tomb[3].string == "{}" && tomb[4].stringArray == [] && tomb[5].isNull)
        #expect(try db.query("SELECT count(*) FROM contacts WHERE id = $1 AND erased_at IS NOT NULL", [.int(loser)]).rows[0][0].int == 1)
        let audit = try db.query("SELECT details::text FROM audit_log WHERE action = 'contact.erase' AND subject_id = $1", [.text(String(id))]).rows
        #expect(audit.count == 1)
        let suppressed = try db.query("""
            SELECT reason FROM suppressions WHERE channel = 'email' AND address = encode(sha256(convert_to($1, 'UTF8')), 'hex')
            """, [.text(email)]).rows
        #expect(suppressed.first?[0].string == "erased")
        #expect(try db.query("SELECT count(*) FROM deliveries WHERE contact_id IS NULL AND last_error IS NULL").rows[0][0].int == 1)
        // The other contact is untouched; the erased one is no longer found by its ids.
        #expect(try store.resolve("other-1", on: db) != nil)
        #expect(try store.resolve("zed-4242", on: db) == nil)
        #expect(try store.resolve(email, on: db) == nil)
        // Re-importing the same person creates a new contact.
        let again = try store.importCSV(reader: CSVReader(bytes: Array("id,email\nzed-4242,\(email)\n".utf8)), at: Date(), on: db)
        #expect(again.imported == 1)
    }
}
