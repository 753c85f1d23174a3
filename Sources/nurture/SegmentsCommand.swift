import ArgumentParser
import Foundation
import Postgres
import Runtime
import Store

/// `nurture segments`: the applied segments with their membership figures, and a sample of one segment's members.
struct SegmentsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "segments",
        abstract: "List segments with member counts, or show one segment's members.",
        discussion: """
            Segments are defined with `kind: segment` documents (`nurture apply`);
            membership is kept live as events arrive. Counts leave out merged and
            erased contacts; "24h" means the 24 hours before the installation
            clock's now (see `nurture clock`).

            Examples:
              nurture segments
              nurture segments --json
              nurture segments show buyers
              nurture segments show buyers --limit 100 --json
            """,
        subcommands: [SegmentsListCommand.self, SegmentsShowCommand.self],
        defaultSubcommand: SegmentsListCommand.self)
}

/// `nurture segments [list]`: one line per current segment definition.
struct SegmentsListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List every segment: version, members, entries and exits in the last 24h, condition.",
        discussion: "Examples:\n  nurture segments\n  nurture segments list --json")
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let now = try ContactsCLI.clock(config, db).now()
        let segments = try SegmentQueries().list(now: now, on: db)
        if json {
            try printJSON(SegmentListJSON(now: ContactsCLI.iso(now), segments: segments.map(SegmentJSON.init)))
            return
        }
        guard !segments.isEmpty else {
            print("no segments: `nurture apply` a `kind: segment` document to define one")
            return
        }
        printTable(["segment", "version", "members", "entered 24h", "exited 24h", "where"], segments.map { s in
            [s.name, "v\(s.version)", String(s.members), String(s.entered24h), String(s.exited24h), s.whereText]
        })
    }
}

/// `nurture segments show NAME`: the definition and the most recently entered members.
struct SegmentsShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a segment's condition and its most recently entered members.",
        discussion: "Examples:\n  nurture segments show buyers\n  nurture segments show buyers --limit 100 --json")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The segment's name.") var name: String
    @Option(help: "How many members to list (newest first).") var limit = 20
    @Flag(help: "Print JSON.") var json = false

    func validate() throws {
        if limit < 0 { throw ValidationError("--limit must not be negative") }
    }

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let now = try ContactsCLI.clock(config, db).now()
        let queries = SegmentQueries()
        guard let segment = try queries.summary(name, now: now, on: db) else {
            let known = try queries.list(now: now, on: db).map(\.name)
            throw UserError("no segment \"\(name)\" "
                            + (known.isEmpty ? "(no segments are defined)" : "(known: \(known.joined(separator: ", ")))"))
        }
        let members = try queries.members(of: name, limit: limit, on: db)
        if json {
            try printJSON(SegmentShowJSON(segment: SegmentJSON(segment), members: members.map(MemberJSON.init)))
            return
        }
        print("segment \(segment.name) (v\(segment.version)) where \(segment.whereText)")
        if let description = segment.description { print(description) }
        print("\(segment.members) members; last 24h: \(segment.entered24h) entered, \(segment.exited24h) exited")
        guard !members.isEmpty else { return }
        print("")
        printTable(["contact", "user id", "email", "entered at"], members.map { m in
            [String(m.contactID), m.externalID ?? "-", m.email ?? "-", ContactsCLI.iso(m.enteredAt)]
        })
        if Int64(members.count) < segment.members { print("(newest \(members.count) of \(segment.members); --limit N for more)") }
    }
}

// MARK: - JSON shapes (snake_case keys; absent values are null, never omitted)

private struct SegmentListJSON: Encodable {
    let now: String
    let segments: [SegmentJSON]
}

private struct SegmentShowJSON: Encodable {
    let segment: SegmentJSON
    let members: [MemberJSON]
}

private struct SegmentJSON: Encodable {
    let summary: SegmentSummary
    init(_ summary: SegmentSummary) { self.summary = summary }

    enum CodingKeys: String, CodingKey {
        case name, version, `where`, description, members, entered24h = "entered_24h", exited24h = "exited_24h"
    }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(summary.name, forKey: .name)
        try c.encode(summary.version, forKey: .version)
        try c.encode(summary.whereText, forKey: .where)
        try c.encode(summary.description, forKey: .description)
        try c.encode(summary.members, forKey: .members)
        try c.encode(summary.entered24h, forKey: .entered24h)
        try c.encode(summary.exited24h, forKey: .exited24h)
    }
}

private struct MemberJSON: Encodable {
    let member: SegmentMember
    init(_ member: SegmentMember) { self.member = member }

    enum CodingKeys: String, CodingKey { case id, externalID = "external_id", email, enteredAt = "entered_at" }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(member.contactID, forKey: .id)
        try c.encode(member.externalID, forKey: .externalID)
        try c.encode(member.email, forKey: .email)
        try c.encode(ContactsCLI.iso(member.enteredAt), forKey: .enteredAt)
    }
}
