import Foundation
import Logging
import NurtureCore
import Postgres

/// Applies `Migration.all` under a PostgreSQL advisory lock, so any number of hosts may run `nurture migrate` at
/// once: the first applies, the others wait for the lock and then find nothing left to do.
public struct Migrator: Sendable {
    public struct Outcome: Sendable, Equatable {
        public var applied: [Int]
        public var alreadyApplied: [Int]
    }

    public struct ChecksumMismatch: Error, CustomStringConvertible {
        public let version: Int
        public var description: String {
            "migration \(version) was changed after it was applied: migrations are append-only; add a new one instead"
        }
    }

    private let migrations: [Migration]
    private let logger: Logger

    public init(migrations: [Migration] = Migration.all, logger: Logger = Logger(label: "nurture.migrate")) {
        self.migrations = migrations.sorted { $0.version < $1.version }
        self.logger = logger
    }

    /// The advisory-lock key: one per schema, so test schemas (and two installations in one database) do not block each other.
    static let lockSQL = "SELECT pg_advisory_lock(hashtext(current_schema() || ':nurture-migrate'))"
    static let unlockSQL = "SELECT pg_advisory_unlock(hashtext(current_schema() || ':nurture-migrate'))"

    public func migrate(_ db: PostgresConnection) throws -> Outcome {
        try db.query(Self.lockSQL)
        defer { _ = try? db.query(Self.unlockSQL) }
        try db.simpleQuery("""
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     int PRIMARY KEY,
                name        text NOT NULL,
                checksum    text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """)
        var known: [Int: String] = [:]
        for row in try db.query("SELECT version, checksum FROM schema_migrations").rows {
            known[Int(row[0].int ?? 0)] = row[1].string ?? ""
        }
        var outcome = Outcome(applied: [], alreadyApplied: [])
        for migration in migrations {
            let checksum = SHA1.hex(Array(migration.sql.utf8))
            if let recorded = known[migration.version] {
                guard recorded == checksum else { throw ChecksumMismatch(version: migration.version) }
                outcome.alreadyApplied.append(migration.version)
                continue
            }
            let started = monotonicMilliseconds()
            try db.transaction { tx in
                try tx.simpleQuery(migration.sql)
                try tx.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                               [.int(Int64(migration.version)), .text(migration.name), .text(checksum)])
            }
            logger.info("migration applied", metadata: [
                "version": "\(migration.version)", "name": "\(migration.name)",
                "ms": "\(monotonicMilliseconds() - started)",
            ])
            outcome.applied.append(migration.version)
        }
        return outcome
    }

    /// The newest version this binary knows.
    public var latestVersion: Int { migrations.last?.version ?? 0 }
}
