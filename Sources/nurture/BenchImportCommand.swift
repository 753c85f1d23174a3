import ArgumentParser
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Runtime
import Store

/// `nurture bench import`: `contacts import` of a generated CSV into a fresh schema, twice (inserts, then upserts).
struct BenchImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Contacts import benchmark: a generated CSV imported twice (creates, then updates).",
        discussion: """
            Generates a CSV of --rows data rows (id,email,first_name,last_name,plan,country,tags,timezone; about 3% of
            the rows have no id and 2% no email, some names are quoted with commas, quotes or non-ASCII letters, and
            1% are bad: an invalid email, neither id nor email, or a wrong number of fields) into a temporary file
            (generation timed separately), then imports it with ContactStore.importCSV exactly as
            `nurture contacts import` does (same --batch default), printing rows/s, seconds,
            imported/updated/skipped and the CPU seconds of this process and of its PostgreSQL backend (read from
            /proc when the server runs on this machine; useful on a shared machine, where wall time also measures
            the neighbours). A second pass imports the same file again: every row is then an update (the upsert
            path). With --with-segments the definitions in --definitions are applied first and the
            re-evaluation `contacts import` runs afterwards (BehaviourScan everything) is timed after each pass.
            Uses NURTURE_DATABASE_URL; everything goes into a fresh schema that is dropped afterwards.

            Example:
              nurture bench import --rows 1000000
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Data rows in the generated CSV (bad rows included).") var rows: Int = 1_000_000
    @Option(help: "Rows per transaction (the `contacts import` default).") var batch: Int = 5_000
    @Option(help: "Import this CSV instead of generating one.") var csv: String?
    @Flag(help: "Also time the segment / lifecycle re-evaluation `contacts import` runs after importing.") var withSegments = false
    @Option(help: "Definition files or directories applied with --with-segments.") var definitions: String = "examples"
    @Flag(help: "Keep the generated CSV (its path is printed).") var keepFile = false
    @Flag(help: "Keep the schema afterwards (its name is printed) to inspect it.") var keepSchema = false

    func validate() throws {
        guard rows >= 1, batch >= 1 else { throw ValidationError("need --rows >= 1 and --batch >= 1") }
    }

    func run() throws {
        LoggingSetup.once(level: .warning)
        let config = try connection.config()
        let schema = "bench_\(JobQueue.newJobID().prefix(8).lowercased())"
        let admin = try PostgresConnection(url: config.databaseURL)
        try admin.simpleQuery("CREATE SCHEMA \(schema)")
        defer {
            if keepSchema { emit("import-schema", [("schema", schema)]) } else { _ = try? admin.simpleQuery("DROP SCHEMA \(schema) CASCADE") }
        }
        let url = config.databaseURL + (config.databaseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let db = try PostgresConnection(url: url)
        defer { db.close() }
        _ = try Migrator().migrate(db)
        var applied = 0
        if withSegments {
            applied = try applyDefinitions(definitions, on: db)
        }

        let path: String
        var expectedBad = 0
        if let csv {
            path = csv
        } else {
            path = NSTemporaryDirectory() + "nurture-bench-import-\(schema).csv"
            let started = monotonicNanoseconds()
            expectedBad = try Self.generate(rows: rows, to: path)
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            emit("import-generate", [("rows", "\(rows)"), ("bad_rows", "\(expectedBad)"), ("mb", fmt(Double(bytes) / 1_048_576)),
                                     ("seconds", fmt(seconds, 3)), ("path", keepFile ? path : "-")])
        }
        defer { if csv == nil && !keepFile { try? FileManager.default.removeItem(atPath: path) } }

        for pass in 1...2 {
            let serverBefore = Self.serverCPUSeconds(db), clientBefore = Self.clientCPUSeconds()
            let started = monotonicNanoseconds()
            let report = try ContactStore().importCSV(path: path, batchSize: batch, at: Date(), on: db)
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            var serverCPU = "-"
            if let before = serverBefore, let after = Self.serverCPUSeconds(db) { serverCPU = fmt(after - before, 1) }
            let clientCPU = Self.clientCPUSeconds() - clientBefore
            let written = report.imported + report.updated
            emit("import", [("pass", "\(pass)"), ("path", pass == 1 ? "insert" : "upsert"), ("rows", "\(report.rowsRead)"),
                            ("imported", "\(report.imported)"), ("updated", "\(report.updated)"), ("skipped", "\(report.skipped)"),
                            ("batch", "\(batch)"), ("seconds", fmt(seconds, 3)),
                            ("rows_per_s", fmt(Double(report.rowsRead) / seconds, 0)),
                            ("written_per_s", fmt(Double(written) / seconds, 0)),
                            ("client_cpu_s", fmt(clientCPU, 1)), ("server_cpu_s", serverCPU)])
            if csv == nil && report.skipped != expectedBad {
                throw UserError("pass \(pass): \(report.skipped) rows skipped, \(expectedBad) expected")
            }
            if withSegments {
                let scanStarted = monotonicNanoseconds()
                let scan = try BehaviourScan().run(now: Date(), on: db, everything: true)
                let scanSeconds = Double(monotonicNanoseconds() - scanStarted) / 1e9
                let entered = scan.segments.values.reduce(0) { $0 + $1.entered }, exited = scan.segments.values.reduce(0) { $0 + $1.exited }
                emit("import-segments", [("pass", "\(pass)"), ("definitions", "\(applied)"), ("segments", "\(scan.segments.count)"),
                                         ("entered", "\(entered)"), ("exited", "\(exited)"), ("stage_changes", "\(scan.stageChanges)"),
                                         ("seconds", fmt(scanSeconds, 3))])
            }
        }
        let stored = try db.query("""
            SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM identities),
                   pg_total_relation_size('contacts'), pg_total_relation_size('identities')
            """).rows[0]
        emit("import-rows", [("contacts", "\(stored[0].int ?? 0)"), ("identities", "\(stored[1].int ?? 0)"),
                             ("contacts_mb", fmt(Double(stored[2].int ?? 0) / 1_048_576)),
                             ("identities_mb", fmt(Double(stored[3].int ?? 0) / 1_048_576))])
        let rss = residentMegabytes(pid: getpid())
        emit("import-rss", [("rss_mb", fmt(rss.current)), ("peak_rss_mb", fmt(rss.peak))])
    }

    /// CPU seconds (user + system) of this process, all threads.
    static func clientCPUSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }

    /// CPU seconds of the connection's PostgreSQL backend, when it runs on this machine (/proc); nil otherwise.
    static func serverCPUSeconds(_ db: PostgresConnection) -> Double? {
        guard let pid = db.backendPID, let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime and stime are fields 14 and 15 (clock ticks).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Writes the CSV; returns how many of its rows are bad (skipped by the importer).
    static func generate(rows: Int, to path: String) throws -> Int {
        guard let out = FileHandle(forWritingAtPath: path) ?? {
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            return FileHandle(forWritingAtPath: path)
        }() else { throw UserError("cannot write \(path)") }
        defer { try? out.close() }
        let firstNames = ["Ada", "Grace", "Alan", "Linus", "Zoë", "Margaret", "Dennis", "Barbara", "Ken", "Frances",
                          "José", "Björn", "Chloé", "Jean-Luc", "Mei", "Olusegun", "Priya", "Sven", "Yuki", "Élodie"]
        let lastNames = ["Lovelace", "Hopper", "Turing", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
                         "Allen", "Müller", "O'Brien", "\"Smith, Jr.\"", "García", "Nakamura", "\"Le \"\"Bold\"\"\"",
                         "Okafor", "Sharma", "Andersson", "Dubois", "Kowalski"]
        let plans = ["free", "free", "free", "starter", "pro", "pro", "enterprise"]
        let countries = ["FR", "DE", "US", "GB", "ES", "IT", "NL", "JP", "BR", "IN", "NG", "SE"]
        let tagSets = ["", "newsletter", "newsletter;vip", "beta", "newsletter|beta", "vip", "", "newsletter;product-updates"]
        let zones = ["Europe/Paris", "Europe/Berlin", "America/New_York", "Europe/London", "Asia/Tokyo", "America/Sao_Paulo",
                     "Asia/Kolkata", "", "UTC", "Africa/Lagos"]
        var text = "id,email,first_name,last_name,plan,country,tags,timezone\r\n"
        var bad = 0
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func random() -> Int {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int(truncatingIfNeeded: (state >> 33) & 0x7FFF_FFFF)
        }
        for n in 0..<rows {
            let r = random()
            let first = firstNames[r % firstNames.count], last = lastNames[(r / 20) % lastNames.count]
            if n % 100 == 99 {
                bad += 1
                switch (n / 100) % 3 {
                case 0: text += "u\(n),user\(n).example.com,\(first),\(last),free,FR,,Europe/Paris\r\n"   // invalid email
                case 1: text += ",,\(first),\(last),free,FR,newsletter,\r\n"                           // neither id nor email
                default: text += "u\(n),user\(n)@example.com,\(first)\r\n"                              // too few fields
                }
            } else {
                let id = n % 33 == 5 ? "" : "u\(n)"
                let email = n % 50 == 7 && !id.isEmpty ? "" : "\(first.lowercased().filter(\.isLetter)).\(n)@Example.com"
                text += "\(id),\(email),\(first),\(last),\(plans[(r / 400) % plans.count]),\(countries[(r / 3_000) % countries.count]),"
                text += "\(tagSets[(r / 40_000) % tagSets.count]),\(zones[(r / 400_000) % zones.count])\r\n"
            }
            if text.utf8.count >= 1 << 20 {
                try out.write(contentsOf: Data(text.utf8))
                text.removeAll(keepingCapacity: true)
            }
        }
        try out.write(contentsOf: Data(text.utf8))
        return bad
    }
}
