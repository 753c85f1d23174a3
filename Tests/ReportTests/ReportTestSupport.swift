import Foundation
import Postgres
import Store
import Testing
import TestSupport

/// What a `nurture` child process did.
struct CLIRun {
    let exitCode: Int32?
    let stdout: String
    let stderr: String

    /// stdout parsed as a JSON object.
    func json() throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any], "not a JSON object: \(stdout)")
    }
}

/// Runs the `nurture` binary of this build (`NURTURE_BINARY`, set by ops/test) against `database`, on the real
/// clock: NURTURE_ALLOW_TIME_TRAVEL is removed from its environment.
func nurture(_ arguments: [String], database: TestDatabase) throws -> CLIRun {
    let binary = try #require(ProcessInfo.processInfo.environment["NURTURE_BINARY"], "run through ops/test (NURTURE_BINARY)")
    let directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("report-cli")
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    var env = ProcessInfo.processInfo.environment
    env["DATABASE_URL"] = nil
    env["NURTURE_ALLOW_TIME_TRAVEL"] = nil
    env["NURTURE_DATABASE_URL"] = database.url
    let out = directory + "/stdout", err = directory + "/stderr"
    let child = try ChildProcess(executable: binary, arguments: arguments, environment: env, stdoutPath: out, stderrPath: err)
    child.wait()
    func read(_ path: String) -> String { String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self) }
    return CLIRun(exitCode: child.exitCode, stdout: read(out), stderr: read(err))
}

/// A migrated fresh schema and a connection to it.
func migratedDatabase(_ prefix: String) throws -> (TestDatabase, PostgresConnection) {
    let database = try TestDatabase.create(prefix: prefix)
    let db = try database.connect()
    _ = try Migrator().migrate(db)
    return (database, db)
}

/// Test data written with plain SQL, times given in days relative to a reference `now`.
struct Dataset {
    let db: PostgresConnection
    let now: Date

    func at(days: Double) -> Date { now.addingTimeInterval(days * 86_400) }

    /// Applies one definition (spec = the document as JSON).
    func define(kind: String, name: String, spec: String) throws {
        _ = try DefinitionStore().apply([DefinitionRecord(kind: kind, name: name, checksum: spec, specJSON: spec,
                                                          source: "test:1")], appliedBy: "test", at: now, on: db)
    }

    /// Inserts a contact; returns its id.
    @discardableResult
    func contact(_ externalID: String, stage: String?, merged: Int64? = nil, erased: Bool = false) throws -> Int64 {
        try #require(try db.query("""
            INSERT INTO contacts (external_id, email, stage, merged_into, erased_at, created_at, updated_at)
            VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id
            """, [.text(externalID), .text("\(externalID)@example.com"), PostgresValue(stage), PostgresValue(merged),
                  PostgresValue(erased ? now : nil), .timestamp(at(days: -100))]).first?[0].int)
    }

    /// Records the contact's stage changes, in order (the first comes from no stage).
    func transitions(_ contact: Int64, _ stays: [(String, Double)]) throws {
        var from: String? = nil
        for (stage, days) in stays {
            try db.execute("INSERT INTO lifecycle_transitions (contact_id, from_stage, to_stage, at, cause) VALUES ($1, $2, $3, $4, 'test')",
                           [.int(contact), PostgresValue(from), .text(stage), .timestamp(at(days: days))])
            from = stage
        }
        if let (stage, days) = stays.last {
            try db.execute("UPDATE contacts SET stage_entered_at = $2 WHERE id = $1 AND stage = $3",
                           [.int(contact), .timestamp(at(days: days)), .text(stage)])
        }
    }

    /// Inserts one event per day offset.
    func events(_ contact: Int64, _ days: [Double]) throws {
        for d in days {
            try db.execute("""
                INSERT INTO events (contact_id, message_id, type, name, occurred_at, received_at)
                VALUES ($1, $2, 'track', 'Page Viewed', $3, $3)
                """, [.int(contact), .text(UUID().uuidString), .timestamp(at(days: d))])
        }
    }
}
