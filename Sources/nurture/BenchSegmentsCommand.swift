import ArgumentParser
import Domain
import Foundation
import NurtureCore
import Postgres
import Runtime
import Store
import Synchronization

/// `nurture bench segments`: a full re-evaluation of the example segments over generated contacts and events.
struct BenchSegmentsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "Segment benchmark: full re-evaluation of every segment over generated contacts and events.",
        discussion: """
            Generates --contacts contacts (~30% tagged newsletter, first seen over the last year), --events events
            over the last 400 days (Order Completed with properties.total, Email Opened, Page Viewed, ...; 20%
            of them from 2% of the contacts, 40% from a fifth of them, the rest from anyone) and engagement scores for 10% of the contacts, all with COPY into
            monthly partitions, then VACUUM ANALYZE (generation is timed separately). Then reconciles every segment
            of --segments in dependency order (in_segment dependencies first) in scan mode over all contacts,
            twice: the first pass fills the memberships, the second (same business time) changes nothing.
            With --connections N, segments that do not depend on each other run on N connections at once (one
            reconciliation statement cannot use PostgreSQL's parallel workers: it writes).
            Prints one JSON line (per-segment seconds, members, entries and exits; totals) and a summary.
            Uses NURTURE_DATABASE_URL; everything goes into a fresh schema that is dropped afterwards.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Contacts to generate.") var contacts: Int = 1_000_000
    @Option(help: "Events to generate.") var events: Int = 5_000_000
    @Option(help: "Segment definitions (YAML) to evaluate.") var segments: String = "examples/segments.yaml"
    @Option(help: "Scoring definition giving contact.score's name and decay (skipped if the file does not exist).")
    var scoring: String = "examples/scoring.yaml"
    @Option(help: "Contacts per reconciliation statement (id-range chunks); 0: one statement per segment.")
    var chunk: Int = 0
    @Option(help: "Connections reconciling independent segments at the same time.") var connections: Int = 1
    @Option(help: "Seed of the generated data.") var seed: UInt64 = 1
    @Flag(help: "Keep the schema afterwards (its name is printed) to inspect plans.") var keepSchema = false

    func validate() throws {
        guard contacts >= 1, events >= 0, chunk >= 0, connections >= 1 else {
            throw ValidationError("need --contacts >= 1, --events >= 0, --chunk >= 0, --connections >= 1")
        }
    }

    func run() throws {
        let config = try connection.config()
        let (definitions, options) = try loadDefinitions()
        let schema = "bench_\(UUID().uuidString.prefix(8).lowercased())"
        let admin = try PostgresConnection(url: config.databaseURL)
        try admin.simpleQuery("CREATE SCHEMA \(schema)")
        defer {
            if keepSchema { print("schema \(schema) kept") } else { _ = try? admin.simpleQuery("DROP SCHEMA \(schema) CASCADE") }
        }
        let url = config.databaseURL + (config.databaseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let db = try PostgresConnection(url: url)
        _ = try Migrator().migrate(db)

        // Whole seconds, so generated times and `now` compare exactly.
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        var generator = BenchData(seed: seed, contacts: contacts, now: now)
        var generation: [(String, Double)] = []
        func timed(_ what: String, _ body: () throws -> Void) rethrows {
            let started = monotonicNanoseconds()
            try body()
            generation.append((what, Double(monotonicNanoseconds() - started) / 1e9))
        }
        try timed("contacts") { try generator.copyContacts(into: db) }
        try timed("events") { try generator.copyEvents(events, into: db) }
        try timed("scores") { try generator.copyScores(into: db) }
        try timed("vacuum_analyze") { try db.simpleQuery("VACUUM (ANALYZE) contacts, events, contact_scores") }

        let store = SegmentStore()
        guard let (first, last) = try store.idBounds(on: db) else { throw UserError("no contacts generated") }
        let ranges = chunk == 0 ? [(first, last)] : stride(from: first, through: last, by: chunk).map { ($0, min(last, $0 + Int64(chunk) - 1)) }
        let pool = try [db] + (1..<connections).map { _ in try PostgresConnection(url: url) }
        /// Every segment once, level by level (a level's segments only read segments of earlier levels).
        func pass() throws -> (segments: [SegmentFigures], seconds: Double) {
            let started = monotonicNanoseconds()
            var figures: [SegmentFigures] = []
            for level in definitions {
                figures += try reconcileConcurrently(level, pool: pool, ranges: ranges, now: now, options: options)
            }
            return (figures, Double(monotonicNanoseconds() - started) / 1e9)
        }
        let firstPass = try pass()
        let secondPass = try pass()

        func passJSON(_ pass: (segments: [SegmentFigures], seconds: Double)) -> Value {
            .object(["total_s": .number(rounded(pass.seconds)),
                     "segments": .array(pass.segments.map { f in
                         .object(["name": .string(f.name), "seconds": .number(rounded(f.seconds)), "members": .number(Double(f.members)),
                                  "entered": .number(Double(f.entered)), "exited": .number(Double(f.exited))])
                     })])
        }
        let json: Value = .object([
            "bench": .string("segments"), "contacts": .number(Double(contacts)), "events": .number(Double(events)),
            "chunk": .number(Double(chunk)), "statements_per_segment": .number(Double(ranges.count)),
            "connections": .number(Double(connections)),
            "generate_s": .object(Dictionary(uniqueKeysWithValues: generation.map { ($0.0, .number(rounded($0.1))) })),
            "first": passJSON(firstPass), "second": passJSON(secondPass),
        ])
        print(json.jsonText)

        print("generated \(contacts) contacts and \(events) events in "
              + generation.map { "\($0.0) \(fmt($0.1, 1)) s" }.joined(separator: ", "))
        print("segment".padding(toLength: 20, withPad: " ", startingAt: 0) + "members".leftPadded(10) + "first s".leftPadded(10)
              + "changes".leftPadded(10) + "second s".leftPadded(10) + "changes".leftPadded(10))
        for (a, b) in zip(firstPass.segments, secondPass.segments) {
            print(a.name.padding(toLength: 20, withPad: " ", startingAt: 0) + "\(b.members)".leftPadded(10) + fmt(a.seconds, 3).leftPadded(10)
                  + "\(a.entered + a.exited)".leftPadded(10) + fmt(b.seconds, 3).leftPadded(10) + "\(b.entered + b.exited)".leftPadded(10))
        }
        print("total (wall, \(connections) connection\(connections == 1 ? "" : "s"))".padding(toLength: 30, withPad: " ", startingAt: 0)
              + fmt(firstPass.seconds, 3).leftPadded(10) + "".leftPadded(10) + fmt(secondPass.seconds, 3).leftPadded(10))
    }

    /// The segments in dependency levels and the compiler options of the scoring model (if any).
    private func loadDefinitions() throws -> ([[SegmentDefinition]], SQLCompilerOptions) {
        var loader = DefinitionLoader(environment: ProcessInfo.processInfo.environment)
        for file in [segments, scoring] where file == segments || FileManager.default.fileExists(atPath: file) {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw UserError("cannot read \(file)") }
            loader.load(file: file, text: text)
        }
        let report = loader.finish()
        guard report.isValid else { throw UserError(report.errors.map { "\($0)" }.joined(separator: "\n")) }
        var options = SQLCompilerOptions()
        var found: [SegmentDefinition] = []
        for definition in report.definitions {
            switch definition.body {
            case .segment(let s): found.append(s)
            case .scoring(let s): options = SQLCompilerOptions(scoreName: s.name, scoreHalfLife: s.decayHalfLifeSeconds)
            default: break
            }
        }
        if found.isEmpty { throw UserError("no segments in \(segments)") }
        return (try dependencyLevels(found), options)
    }

    /// Segments grouped by dependency level, in file order within a level: level 0 reads no segment, level n
    /// reads (through `in_segment`) segments of levels below n only.
    private func dependencyLevels(_ segments: [SegmentDefinition]) throws -> [[SegmentDefinition]] {
        let byName = Dictionary(segments.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var levels: [String: Int] = [:], visiting = Set<String>()
        func level(_ segment: SegmentDefinition) throws -> Int {
            if let known = levels[segment.name] { return known }
            guard visiting.insert(segment.name).inserted else { throw UserError("segment \(segment.name) depends on itself through in_segment") }
            var result = 0
            for dependency in segment.where.referencedSegments {
                if let d = byName[dependency] { result = max(result, try level(d) + 1) }
            }
            visiting.remove(segment.name)
            levels[segment.name] = result
            return result
        }
        var grouped: [[SegmentDefinition]] = []
        for segment in segments {
            let n = try level(segment)
            while grouped.count <= n { grouped.append([]) }
            grouped[n].append(segment)
        }
        return grouped
    }
}

/// Reconciles `segments` (independent of each other) over `ranges`, each on the next free connection of `pool`.
private func reconcileConcurrently(_ segments: [SegmentDefinition], pool: [PostgresConnection], ranges: [(Int64, Int64)], now: Date,
                                   options: SQLCompilerOptions) throws -> [SegmentFigures] {
    let next = Mutex(0)
    let results = Mutex<[Int: Result<SegmentFigures, any Error>]>([:])
    DispatchQueue.concurrentPerform(iterations: min(pool.count, segments.count)) { worker in
        while true {
            let index = next.withLock { n in defer { n += 1 }; return n }
            guard index < segments.count else { return }
            let result = Result { try reconcile(segments[index], on: pool[worker], ranges: ranges, now: now, options: options) }
            results.withLock { $0[index] = result }
        }
    }
    return try results.withLock { done in try segments.indices.map { try done[$0]!.get() } }
}

/// One segment over every range (scan mode), timed; the member count is read afterwards, untimed.
private func reconcile(_ segment: SegmentDefinition, on db: PostgresConnection, ranges: [(Int64, Int64)], now: Date,
                       options: SQLCompilerOptions) throws -> SegmentFigures {
    let store = SegmentStore()
    let predicate = segmentPredicate(segment.where, now: now, options: options, mode: .scan)
    let started = monotonicNanoseconds()
    var entered = 0, exited = 0
    for (lower, upper) in ranges {
        let changes = try store.reconcile(segment: segment.name, predicate: predicate, scope: .idRange(lower, upper), at: now, on: db)
        entered += changes.entered.count
        exited += changes.exited.count
    }
    let seconds = Double(monotonicNanoseconds() - started) / 1e9
    return SegmentFigures(name: segment.name, seconds: seconds, members: try store.memberCount(segment: segment.name, on: db),
                          entered: entered, exited: exited)
}

private struct SegmentFigures {
    let name: String
    let seconds: Double
    let members: Int
    let entered: Int
    let exited: Int
}

private func rounded(_ seconds: Double) -> Double { (seconds * 1000).rounded() / 1000 }

extension String {
    fileprivate func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}

/// The generated data set: deterministic for a seed. Contact ids are 1...contacts; every fiftieth contact is a
/// heavy user (20% of the events), every fifth an active one (40%).
private struct BenchData {
    var rng: SplitMix64
    let contacts: Int
    let now: Int64
    private var dayText: [Int64: String] = [:]

    init(seed: UInt64, contacts: Int, now: Date) {
        self.rng = SplitMix64(seed: seed)
        self.contacts = contacts
        self.now = Int64(now.timeIntervalSince1970)
    }

    mutating func copyContacts(into db: PostgresConnection) throws {
        let stages = ["subscriber", "lead", "customer"]
        var rows: [[String?]] = []
        rows.reserveCapacity(10_000)
        func flush() throws {
            try db.copyIn("COPY contacts (id, external_id, email, tags, stage, first_seen_at, last_seen_at, attributes, created_at, updated_at) FROM STDIN",
                          rows: rows)
            rows.removeAll(keepingCapacity: true)
        }
        for id in 1...contacts {
            var tags: [String] = []
            if chance(0.3) { tags.append("newsletter") }
            if chance(0.1) { tags.append("beta") }
            if chance(0.03) { tags.append("vip") }
            let firstSeen = now - Int64(below: 365 * 86_400, &rng)
            let lastSeen = firstSeen + Int64(below: now - firstSeen + 1, &rng)
            let plan = chance(0.2) ? "pro" : "free"
            rows.append(["\(id)", "u-\(id)", chance(0.95) ? "user\(id)@example.com" : nil, "{\(tags.joined(separator: ","))}",
                         stages[Int(rng.next() % 3)], time(firstSeen), time(lastSeen), #"{"plan":"\#(plan)"}"#, time(firstSeen), time(now)])
            if rows.count == 10_000 { try flush() }
        }
        try flush()
        try db.execute("SELECT setval(pg_get_serial_sequence('contacts', 'id'), $1)", [.int(Int64(contacts))])
    }

    /// Events in time order (as ingestion writes them) over the last 400 days, into monthly partitions.
    mutating func copyEvents(_ count: Int, into db: PostgresConnection) throws {
        let span: Int64 = 400 * 86_400
        try db.execute("SELECT nurture_ensure_event_partitions($1, $2)",
                       [.timestamp(Date(timeIntervalSince1970: Double(now - span - 86_400))), .timestamp(Date(timeIntervalSince1970: Double(now + 86_400)))])
        // (name, cumulative probability)
        let names: [(String, Double)] = [("Page Viewed", 0.40), ("Email Opened", 0.65), ("Product Added", 0.75), ("Order Completed", 0.85),
                                         ("Email Clicked", 0.93), ("Whitepaper Downloaded", 0.97), ("Signed Up", 1.0)]
        let paths = ["/pricing", "/", "/blog", "/docs"]
        var rows: [[String?]] = []
        rows.reserveCapacity(10_000)
        func flush() throws {
            try db.copyIn("COPY events (contact_id, message_id, type, name, properties, context, occurred_at, received_at) FROM STDIN", rows: rows)
            rows.removeAll(keepingCapacity: true)
        }
        let heavy = Int64(max(1, contacts / 50)), active = Int64(max(1, contacts / 5))
        for n in 0..<count {
            let tier = double()
            let contact = tier < 0.2 ? 50 * Int64(below: heavy, &rng) + 1
                : tier < 0.6 ? 5 * Int64(below: active, &rng) + 1 : Int64(below: Int64(contacts), &rng) + 1
            let at = now - span + Int64(n) * span / Int64(max(count, 1)) + Int64(below: 60, &rng)
            let u = double()
            let name = names.first { u < $0.1 }?.0 ?? "Page Viewed"
            let properties: String
            switch name {
            case "Order Completed": properties = #"{"total":\#(Int64(below: 25_000, &rng) / 100 + 5),"currency":"EUR"}"#
            case "Page Viewed": properties = #"{"path":"\#(paths[Int(rng.next() % 4)])"}"#
            default: properties = "{}"
            }
            let context = chance(0.5) ? #"{"device":{"type":"mobile"}}"# : "{}"
            let stamp = time(min(at, now))
            rows.append(["\(contact)", "m-\(n)", name == "Page Viewed" ? "page" : "track", name, properties, context, stamp, stamp])
            if rows.count == 10_000 { try flush() }
        }
        try flush()
    }

    /// Engagement scores for one contact in ten, set within the last 30 days.
    mutating func copyScores(into db: PostgresConnection) throws {
        var rows: [[String?]] = []
        for id in 1...contacts where chance(0.1) {
            rows.append(["\(id)", "engagement", "\(Int64(below: 101, &rng))", time(now - Int64(below: 30 * 86_400, &rng))])
        }
        try db.copyIn("COPY contact_scores (contact_id, name, value, reference_at) FROM STDIN", rows: rows)
    }

    private mutating func chance(_ p: Double) -> Bool { double() < p }
    private mutating func double() -> Double { Double(rng.next() >> 11) / Double(1 << 53) }

    /// `YYYY-MM-DD HH:MM:SS+00` (days cached: the data spans about 400 of them).
    private mutating func time(_ epoch: Int64) -> String {
        let day = epoch >= 0 ? epoch / 86_400 : (epoch - 86_399) / 86_400
        let date: String
        if let cached = dayText[day] {
            date = cached
        } else {
            date = String(Value.iso8601(Date(timeIntervalSince1970: Double(day * 86_400))).prefix(10))
            dayText[day] = date
        }
        let s = epoch - day * 86_400
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(date) \(two(s / 3_600)):\(two(s / 60 % 60)):\(two(s % 60))+00"
    }
}


extension Int64 {
    /// Uniform in 0..<bound (bound > 0; the modulo bias is irrelevant for a benchmark).
    fileprivate init(below bound: Int64, _ rng: inout SplitMix64) { self = Int64(rng.next() % UInt64(bound)) }
}
