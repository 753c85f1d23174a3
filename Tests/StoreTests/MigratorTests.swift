import Foundation
import Postgres
import Store
import Testing
import TestSupport

@Suite struct MigratorTests {
    @Test func migratesAndIsIdempotent() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let db = try database.connect()
        let first = try Migrator().migrate(db)
        #expect(first.applied == Migration.all.map(\.version))
        let second = try Migrator().migrate(db)
        #expect(second.applied.isEmpty)
        #expect(second.alreadyApplied == Migration.all.map(\.version))
        // The tables of the initial schema exist, in this schema.
        let tables = try db.query("""
            SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name
            """, [.text(database.schema)]).rows.compactMap { $0[0].string }
        for expected in ["audit_log", "broadcasts", "contacts", "definitions", "deliveries", "enrollments", "events",
                         "identities", "installation_clock", "schema_migrations", "segment_memberships", "suppressions"] {
            #expect(tables.contains(expected), "missing table \(expected)")
        }
    }

    /// Migration 7 moves an in-flight broadcast's recipients into its batches' arrays: workers and reports see the
    /// same recipients, A/B groups included, after the upgrade.
    @Test func recipientsSurviveTheMoveIntoBatchArrays() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let db = try database.connect()
        try Migrator(migrations: Migration.all.filter { $0.version < 7 }).migrate(db)
        try db.simpleQuery("""
            INSERT INTO broadcasts (id, name, segment, templates, status, scheduled_at, created_at) VALUES (5, 'b', 's', '{a,b}', 'sending', now(), now());
            INSERT INTO broadcast_batches (broadcast_id, batch, state) VALUES (5, 1000000, 'done'), (5, 2000000, 'ready'), (5, 0, 'held');
            INSERT INTO broadcast_recipients (broadcast_id, contact_id, batch, variant)
                VALUES (5, 30, 1000000, 0), (5, 10, 1000000, 0), (5, 20, 2000000, 1), (5, 40, 0, -1), (5, 50, 0, -1);
            """)
        let outcome = try Migrator().migrate(db)
        #expect(outcome.applied.contains(7))
        let store = BroadcastStore()
        #expect(try store.recipients(5, batch: 1_000_000, on: db).map { "\($0.contact)/\($0.variant)" } == ["10/0", "30/0"])
        #expect(try store.recipients(5, batch: 2_000_000, on: db).map { "\($0.contact)/\($0.variant)" } == ["20/1"])
        #expect(try store.recipients(5, batch: 0, on: db).map { "\($0.contact)/\($0.variant)" } == ["40/-1", "50/-1"])
        let view = try db.query("SELECT contact_id, batch, variant FROM broadcast_recipients WHERE broadcast_id = 5 ORDER BY contact_id").rows
        #expect(view.map { "\($0[0].int!)@\($0[1].int!)/\($0[2].int!)" }
                == ["10@1000000/0", "20@2000000/1", "30@1000000/0", "40@0/-1", "50@0/-1"])
    }

    @Test func concurrentMigratorsApplyOnce() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let outcomes = Mutex<[Migrator.Outcome]>([])
        let errors = Mutex<[String]>([])
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let outcome = try Migrator().migrate(try database.connect())
                    outcomes.withLock { $0.append(outcome) }
                } catch {
                    errors.withLock { $0.append("\(error)") }
                }
            }.start()
        }
        group.wait()
        #expect(errors.withLock { $0 }.isEmpty)
        let all = outcomes.withLock { $0 }
        #expect(all.count == 4)
        // Exactly one applied each version; the others found it done.
        for version in Migration.all.map(\.version) {
            #expect(all.filter { $0.applied.contains(version) }.count == 1)
        }
        let recorded = try database.connect().query("SELECT count(*) FROM schema_migrations").rows[0][0].int
        #expect(recorded == Int64(Migration.all.count))
    }

    @Test func changedMigrationIsRefused() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator(migrations: [Migration(version: 1, name: "one", sql: "CREATE TABLE one (x int)")]).migrate(db)
        let error = captureError(Migrator.ChecksumMismatch.self) {
            _ = try Migrator(migrations: [Migration(version: 1, name: "one", sql: "CREATE TABLE one (x bigint)")]).migrate(db)
        }
        #expect(error?.version == 1)
    }

    @Test func failedMigrationLeavesNothingBehind() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let db = try database.connect()
        let broken = Migration(version: 1, name: "broken", sql: "CREATE TABLE half (x int); SELECT * FROM no_such_table;")
        #expect(throws: PostgresError.self) { _ = try Migrator(migrations: [broken]).migrate(db) }
        let exists = try db.query("SELECT to_regclass('half') IS NOT NULL").rows[0][0].bool
        #expect(exists == false)
        let recorded = try db.query("SELECT count(*) FROM schema_migrations").rows[0][0].int
        #expect(recorded == 0)
    }

    @Test func eventPartitionsAreCreatedAhead() throws {
        let database = try TestDatabase.create(prefix: "mig")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator().migrate(db)
        let created = try db.query("SELECT nurture_ensure_event_partitions($1, $2)",
                                   [.timestamp(Date(timeIntervalSince1970: 1_893_456_000)), .timestamp(Date(timeIntervalSince1970: 1_898_553_600))])
            .rows[0][0].int
        #expect(created == 2)   // 2030-01 and 2030-02
        try db.execute("""
            INSERT INTO events (contact_id, message_id, type, name, occurred_at, received_at)
            VALUES (1, 'm1', 'track', 'Signed Up', $1, $1)
            """, [.timestamp(Date(timeIntervalSince1970: 1_893_500_000))])
        let partition = try db.query("SELECT tableoid::regclass::text FROM events WHERE message_id = 'm1'").rows[0][0].string
        #expect(partition?.hasSuffix("events_2030_01") == true)
    }
}

import Synchronization
