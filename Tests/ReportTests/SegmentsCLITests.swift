import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// `nurture segments` and `nurture segments show` on a small dataset, on the real clock.
///
/// Segments: buyers (v2: applied twice with different content), vips (no members), old (deleted: never shown).
/// buyers members (entered): A -3d, B -2h, D -30m; F (merged) -1h and G (erased) -10m are left out → 3 members.
/// buyers transitions in the last 24h: B in -2h, D in -30m, C in -5h, C out -4h (A in -3d is older, F's and G's
/// are left out) → entered 3, exited 1.
@Suite struct SegmentsCLITests {
    @Test func listShowAndUnknown() throws {
        let (database, db) = try migratedDatabase("segments_cli")
        defer { db.close(); database.drop() }
        let now = Date()
        let data = Dataset(db: db, now: now)
        let buyersWhere = #"sum(\"Order Completed\", \"total\", within: \"365d\") > 50"#
        try data.define(kind: "segment", name: "buyers", spec: #"{"kind":"segment","name":"buyers","where":"true"}"#)
        try data.define(kind: "segment", name: "buyers", spec: #"{"kind":"segment","name":"buyers","where":"\#(buyersWhere)"}"#)
        try data.define(kind: "segment", name: "vips", spec: #"{"description":"Top people","kind":"segment","name":"vips","where":"contact.score > 40"}"#)
        try data.define(kind: "segment", name: "old", spec: #"{"kind":"segment","name":"old","where":"false"}"#)
        try db.execute("UPDATE definition_heads SET deleted_at = $1 WHERE kind = 'segment' AND name = 'old'", [.timestamp(now)])

        let a = try data.contact("A", stage: nil)
        let b = try data.contact("B", stage: nil)
        let c = try data.contact("C", stage: nil)
        let d = try data.contact("D", stage: nil)
        let f = try data.contact("F", stage: nil, merged: a)
        let g = try data.contact("G", stage: nil, erased: true)
        let hour = 1.0 / 24
        for (contact, days) in [(a, -3.0), (b, -2 * hour), (d, -0.5 * hour), (f, -hour), (g, -hour / 6)] {
            try db.execute("INSERT INTO segment_memberships (segment, contact_id, entered_at) VALUES ('buyers', $1, $2)",
                           [.int(contact), .timestamp(data.at(days: days))])
            try db.execute("INSERT INTO segment_transitions (segment, contact_id, entered, at) VALUES ('buyers', $1, true, $2)",
                           [.int(contact), .timestamp(data.at(days: days))])
        }
        try db.execute("INSERT INTO segment_transitions (segment, contact_id, entered, at) VALUES ('buyers', $1, true, $2), ('buyers', $1, false, $3)",
                       [.int(c), .timestamp(data.at(days: -5 * hour)), .timestamp(data.at(days: -4 * hour))])

        // List, as JSON and as text (`list` is the default subcommand).
        let list = try nurture(["segments", "--json"], database: database)
        #expect(list.exitCode == 0, "\(list.stderr)")
        let segments = try #require(try list.json()["segments"] as? [[String: Any]])
        #expect(segments.map { $0["name"] as? String } == ["buyers", "vips"])
        #expect(segments[0]["version"] as? Int == 2)
        #expect(segments[0]["where"] as? String == #"sum("Order Completed", "total", within: "365d") > 50"#)
        #expect(segments[0]["members"] as? Int == 3)
        #expect(segments[0]["entered_24h"] as? Int == 3)
        #expect(segments[0]["exited_24h"] as? Int == 1)
        #expect(segments[0]["description"] is NSNull)
        #expect(segments[1]["description"] as? String == "Top people")
        #expect(segments[1]["members"] as? Int == 0 && segments[1]["entered_24h"] as? Int == 0)

        let text = try nurture(["segments"], database: database)
        #expect(text.exitCode == 0, "\(text.stderr)")
        let lines = text.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(lines.count == 3, "\(text.stdout)")
        #expect(lines.first == ["segment", "version", "members", "entered", "24h", "exited", "24h", "where"])
        #expect(lines.dropFirst().first.map { Array($0.prefix(5)) } == ["buyers", "v2", "3", "3", "1"])
        #expect(text.stdout.contains(#"sum("Order Completed", "total", within: "365d") > 50"#))

        // Show: newest members first, limited.
        let show = try nurture(["segments", "show", "buyers", "--limit", "2", "--json"], database: database)
        #expect(show.exitCode == 0, "\(show.stderr)")
        let shown = try show.json()
        #expect((shown["segment"] as? [String: Any])?["members"] as? Int == 3)
        let members = try #require(shown["members"] as? [[String: Any]])
        #expect(members.map { $0["id"] as? Int64 } == [d, b])
        #expect(members.map { $0["external_id"] as? String } == ["D", "B"])
        #expect(members.map { $0["email"] as? String } == ["D@example.com", "B@example.com"])
        #expect(members.allSatisfy { ($0["entered_at"] as? String)?.hasSuffix("Z") == true })

        let showText = try nurture(["segments", "show", "buyers"], database: database)
        #expect(showText.exitCode == 0, "\(showText.stderr)")
        #expect(showText.stdout.hasPrefix("segment buyers (v2) where sum(\"Order Completed\""), "\(showText.stdout)")
        #expect(showText.stdout.contains("3 members; last 24h: 3 entered, 1 exited"))
        let memberRows = showText.stdout.split(separator: "\n").filter { $0.contains("@example.com") }.map { $0.split(separator: " ")[1] }
        #expect(memberRows == ["D", "B", "A"])

        // Unknown segment: exit 1, naming it and the known ones.
        let unknown = try nurture(["segments", "show", "nope"], database: database)
        #expect(unknown.exitCode == 1)
        #expect(unknown.stderr.contains(#"no segment "nope""#) && unknown.stderr.contains("buyers, vips"), "\(unknown.stderr)")
        #expect(unknown.stdout.isEmpty)
    }
}
