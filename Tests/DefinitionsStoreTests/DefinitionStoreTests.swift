import Domain
import Foundation
import Postgres
import Store
import Testing
import TestSupport

private let examplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

/// The example definitions as store records; `replace` edits one file's text first.
private func exampleRecords(replace: (file: String, old: String, new: String)? = nil) throws -> [DefinitionRecord] {
    var loader = DefinitionLoader(environment: [:])
    for name in try FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path).filter({ $0.hasSuffix(".yaml") }).sorted() {
        var text = try String(contentsOf: examplesDirectory.appendingPathComponent(name), encoding: .utf8)
        if let replace, replace.file == name {
            #expect(text.contains(replace.old))
            text = text.replacingOccurrences(of: replace.old, with: replace.new)
        }
        loader.load(file: name, text: text)
    }
    let report = loader.finish()
    #expect(report.errors.isEmpty, "\(report.errors)")
    return report.definitions.map {
        DefinitionRecord(kind: $0.kind.rawValue, name: $0.name, checksum: $0.checksum, specJSON: $0.canonicalJSON, source: $0.source)
    }
}

@Suite struct DefinitionStoreTests {
    @Test func applyReapplyAndUpdate() throws {
        let database = try TestDatabase.create(prefix: "defs")
        defer { database.drop() }
        let db = try database.connect()
        defer { db.close() }
        _ = try Migrator().migrate(db)
        let store = DefinitionStore()
        let at = Date(timeIntervalSince1970: 1_800_000_000)

        // First apply: everything created at v1.
        let records = try exampleRecords()
        #expect(records.count > 30)
        let first = try store.apply(records, appliedBy: "test", at: at, on: db)
        #expect(first.count == records.count)
        #expect(first.allSatisfy { $0.action == .created(version: 1) })
        #expect(first.contains { $0.description == "created workflow/welcome-series (v1)" })

        // Re-apply: nothing changes, nothing is written.
        let rowsBefore = try db.query("SELECT count(*) FROM definitions").first?[0].int
        let second = try store.apply(records, appliedBy: "test", at: at.addingTimeInterval(60), on: db)
        #expect(second.allSatisfy { $0.action == .unchanged(version: 1) })
        #expect(second.contains { $0.description == "unchanged template/welcome-1 (v1)" })
        #expect(try db.query("SELECT count(*) FROM definitions").first?[0].int == rowsBefore)
        #expect(try store.plan(records, on: db).allSatisfy { $0.action == .unchanged(version: 1) })

        // Change one segment: v1 → v2, the head moves, v1 is kept.
        let changed = try exampleRecords(replace: (file: "segments.yaml", old: "total\", within: \"365d\") > 50", new: "total\", within: \"365d\") > 60"))
        #expect(try store.plan(changed, on: db).filter { $0.action != .unchanged(version: 1) }
                == [DefinitionChange(kind: "segment", name: "buyers", action: .updated(from: 1, to: 2))])
        let third = try store.apply(changed, appliedBy: "test", at: at.addingTimeInterval(120), on: db)
        let updates = third.filter { $0.action != .unchanged(version: 1) }
        #expect(updates == [DefinitionChange(kind: "segment", name: "buyers", action: .updated(from: 1, to: 2))])
        #expect(updates.first?.description == "updated segment/buyers (v1 → v2)")

        let current = try #require(try store.current(kind: "segment", name: "buyers", on: db))
        #expect(current.version == 2)
        #expect(current.specJSON.contains("> 60"))
        #expect(current.appliedBy == "test")
        #expect(current.appliedAt == at.addingTimeInterval(120))
        let old = try #require(try store.version(kind: "segment", name: "buyers", version: 1, on: db))
        #expect(old.specJSON.contains("> 50"))
        #expect(try store.list(kind: "segment", on: db).map(\.name) == ["buyers", "dormant", "frequent-buyers", "holiday-vips", "subscribed"])
        #expect(try store.list(on: db).count == records.count)

        // The stored spec is the canonical JSON and decodes back to the same definition.
        let spec = try Value(jsonText: current.specJSON)
        #expect(DefinitionLoader.decode(spec: spec)?.checksum == current.checksum)

        // Changing it back is another version (v3), not a return to v1.
        let fourth = try store.apply(records, appliedBy: "test", at: at.addingTimeInterval(180), on: db)
        #expect(fourth.filter { $0.action != .unchanged(version: 1) }
                == [DefinitionChange(kind: "segment", name: "buyers", action: .updated(from: 2, to: 3))])
        #expect(try db.query("SELECT count(*) FROM definitions WHERE kind = 'segment' AND name = 'buyers'").first?[0].int == 3)
    }
}
