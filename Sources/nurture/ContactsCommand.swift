import ArgumentParser
import Foundation
import Postgres
import Runtime
import Store

/// `nurture contacts`: bulk import, show, export, forget (GDPR erasure).
struct ContactsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "contacts",
        abstract: "Import, inspect, export and erase contacts.",
        discussion: """
            ID is an app user id (external_id), an email address, or a numeric contact id (tried in that order).

            Examples:
              nurture contacts import customers.csv
              nurture contacts show u42
              nurture contacts show ada@example.com --json
              nurture contacts export u42 > u42.json
              nurture contacts forget u42 --yes
            """,
        subcommands: [ContactsImportCommand.self, ContactsShowCommand.self, ContactsExportCommand.self, ContactsForgetCommand.self])
}

enum ContactsCLI {
    static func stderr(_ text: String) { FileHandle.standardError.write(Data(text.utf8)) }

    static func clock(_ config: NurtureConfig, _ db: PostgresConnection) throws -> InstallationClock {
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        try clock.refresh(from: db)
        return clock
    }

    static func resolve(_ id: String, _ db: PostgresConnection) throws -> Int64 {
        guard let contact = try ContactStore().resolve(id, on: db) else { throw UserError("no contact \(id)") }
        return contact
    }

    static func iso(_ date: Date?) -> String {
        guard let date else { return "-" }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }
}

struct ContactsImportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import", abstract: "Bulk import / upsert contacts from a CSV file.",
        discussion: """
            The header row names the columns. `id` (the app's user id) or `email` identifies each row (an existing
            contact with that user id or email is updated, otherwise one is created). `phone` and `timezone` go to
            their own fields, `tags` is split on `;` or `|` (tags are added), every other column becomes a text
            attribute (an empty cell leaves the attribute as it is). RFC 4180 quoting, CRLF and a UTF-8 BOM are
            accepted. Bad rows are reported as FILE:LINE: reason on stderr and skipped; the exit code is 1 only
            when the file cannot be read or has no usable header. Afterwards every segment is re-evaluated and
            contacts without a lifecycle stage get the initial one (--no-segments leaves that to the scheduler).

            Example:
              id,email,first_name,plan,tags
              u1,ada@example.com,Ada,pro,vip;beta
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The CSV file.") var file: String
    @Option(help: "Rows per transaction (each row takes two advisory locks: keep batch × 2 well under max_locks_per_transaction × max_connections).") var batch: Int = 5_000
    @Flag(help: "Do not re-evaluate segments and initial lifecycle stages after the import (the scheduler's scan will).")
    var noSegments = false

    func validate() throws {
        if batch < 1 { throw ValidationError("--batch must be at least 1") }
    }

    func run() async throws {
        guard FileManager.default.isReadableFile(atPath: file) else { throw UserError("cannot read \(file)") }
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let clock = try ContactsCLI.clock(config, db)
        let report: ContactImportReport
        do {
            report = try ContactStore().importCSV(path: file, batchSize: batch, at: clock.now(), on: db) { progress in
                ContactsCLI.stderr("\r imported \(progress.imported + progress.updated) rows…")
            }
        } catch let error as ContactImportError {
            throw UserError("\(file): \(error.message)")
        }
        if report.imported + report.updated > 0 { ContactsCLI.stderr("\n") }
        for issue in report.issues { ContactsCLI.stderr("\(file):\(issue.line): \(issue.reason)\n") }
        ContactsCLI.stderr("imported \(report.imported), updated \(report.updated), skipped \(report.skipped)"
                           + (report.skipped > 0 ? " (see above)" : "") + "\n")
        if report.imported + report.updated > 0 && !noSegments {
            // Imported contacts change without events: bring segments and initial stages up to date now.
            let started = Date()
            let scan = try BehaviourScan().run(now: clock.now(), on: db, everything: true)
            if scan.ran && (!scan.segments.isEmpty || scan.stageChanges > 0) {
                let entered = scan.segments.values.reduce(0) { $0 + $1.entered }, exited = scan.segments.values.reduce(0) { $0 + $1.exited }
                ContactsCLI.stderr("segments: \(scan.segments.count) re-evaluated (\(entered) entries, \(exited) exits), "
                                   + "lifecycle: \(scan.stageChanges) stage changes, in \(String(format: "%.1f", Date().timeIntervalSince(started))) s\n")
            }
        }
    }
}

struct ContactsShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one contact.",
        discussion: "Examples:\n  nurture contacts show u42\n  nurture contacts show ada@example.com --json")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "User id, email or numeric contact id.") var id: String
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        guard let c = try ContactStore().show(id, on: db) else { throw UserError("no contact \(id)") }
        if json {
            // `attributes` as a JSON object, not a string.
            let encoder = JSONEncoder()
            encoder.dateEncodingStrategy = .iso8601
            guard var object = try JSONSerialization.jsonObject(with: encoder.encode(c)) as? [String: Any] else { try printJSON(c); return }
            object["attributes"] = (try? JSONSerialization.jsonObject(with: Data(c.attributes.utf8))) ?? [String: Any]()
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows: [[String]] = [
            ["id", String(c.id)], ["user id", c.externalID ?? "-"], ["email", c.email ?? "-"], ["phone", c.phone ?? "-"],
            ["timezone", c.timezone ?? "-"], ["stage", c.stage ?? "-"], ["tags", c.tags.joined(separator: ", ")],
            ["attributes", c.attributes], ["first seen", ContactsCLI.iso(c.firstSeenAt)], ["last seen", ContactsCLI.iso(c.lastSeenAt)],
            ["identities", c.identities.joined(separator: ", ")],
            ["scores", c.scores.keys.sorted().map { "\($0)=\(String(format: "%.2f", c.scores[$0]!))" }.joined(separator: ", ")],
            ["segments", c.segments.joined(separator: ", ")], ["events", String(c.eventCount)],
        ]
        if let u = c.unsubscribedAt { rows.append(["unsubscribed", ContactsCLI.iso(u)]) }
        if let e = c.erasedAt { rows.append(["erased", ContactsCLI.iso(e)]) }
        printTable(["field", "value"], rows)
    }
}

struct ContactsExportCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Print everything held about a contact as JSON (GDPR access request).",
        discussion: "Example: nurture contacts export ada@example.com > ada.json")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "User id, email or numeric contact id.") var id: String

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let contact = try ContactsCLI.resolve(id, db)
        guard let text = try ContactStore().export(contact, on: db) else { throw UserError("no contact \(id)") }
        // Pretty-print with sorted keys.
        if let object = try? JSONSerialization.jsonObject(with: Data(text.utf8)),
           let data = try? JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) {
            print(String(decoding: data, as: UTF8.self))
        } else {
            print(text)
        }
    }
}

struct ContactsForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget", abstract: "Erase a contact's personal data (GDPR right to erasure). Needs --yes.",
        discussion: """
            In one transaction: deletes events, identities, scores, segment memberships, lifecycle transitions,
            consents and enrollments of the contact (and of contacts merged into it); keeps deliveries for reports
            without the contact; keeps the contact row as a tombstone with every personal field cleared; suppresses
            the email address (stored only as its SHA-256) so nothing is sent to it again; writes an audit_log row.
            Events arriving later for the same user id create a new contact.

            Example: nurture contacts forget u42 --yes
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "User id, email or numeric contact id.") var id: String
    @Flag(help: "Confirm the erasure (it cannot be undone).") var yes = false

    func run() async throws {
        guard yes else { throw UserError("contacts forget erases personal data irreversibly: add --yes to confirm") }
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let contact = try ContactsCLI.resolve(id, db)
        let clock = try ContactsCLI.clock(config, db)
        let report = try ContactStore().forget(contact, at: clock.now(), on: db)
        let counts = report.counts.keys.sorted().filter { report.counts[$0]! > 0 }.map { "\($0) \(report.counts[$0]!)" }
        print("erased contact \(contact)\(report.contactIDs.count > 1 ? " (and \(report.contactIDs.count - 1) merged)" : ""): "
              + (counts.isEmpty ? "nothing else held" : counts.joined(separator: ", ")))
    }
}
