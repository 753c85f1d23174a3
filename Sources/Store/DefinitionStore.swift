import Foundation
import Postgres

/// One definition to store: what `nurture apply` passes in (built from `Domain.Definition`; the store itself does
/// not parse YAML or know the kinds).
public struct DefinitionRecord: Sendable, Hashable {
    public let kind: String
    public let name: String
    /// SHA-256 of the canonical JSON: equal checksums mean an unchanged definition.
    public let checksum: String
    /// Canonical JSON (compact, sorted keys).
    public let specJSON: String
    /// Where it came from (`file:line`).
    public let source: String

    public init(kind: String, name: String, checksum: String, specJSON: String, source: String) {
        self.kind = kind
        self.name = name
        self.checksum = checksum
        self.specJSON = specJSON
        self.source = source
    }
}

/// What applying one definition did.
public struct DefinitionChange: Sendable, Hashable, CustomStringConvertible {
    public enum Action: Sendable, Hashable {
        case created(version: Int)
        case updated(from: Int, to: Int)
        case unchanged(version: Int)
    }
    public let kind: String
    public let name: String
    public let action: Action

    public init(kind: String, name: String, action: Action) {
        self.kind = kind
        self.name = name
        self.action = action
    }

    /// `created workflow/welcome-series (v1)`, `updated segment/buyers (v1 → v2)`, `unchanged template/welcome-1 (v1)`.
    public var description: String {
        switch action {
        case .created(let v): return "created \(kind)/\(name) (v\(v))"
        case .updated(let from, let to): return "updated \(kind)/\(name) (v\(from) → v\(to))"
        case .unchanged(let v): return "unchanged \(kind)/\(name) (v\(v))"
        }
    }
}

/// A stored version of a definition.
public struct StoredDefinition: Sendable, Hashable {
    public let kind: String
    public let name: String
    public let version: Int
    public let checksum: String
    public let specJSON: String
    public let source: String
    public let appliedAt: Date
    public let appliedBy: String?
    /// Head state (only meaningful for the current version).
    public let paused: Bool
    public let deletedAt: Date?
}

/// Versioned definitions (`definitions` keeps every version; `definition_heads` points at the current one).
/// A new version is written only when the checksum changes; older versions are never modified or removed, so work
/// started on a version (a contact in a workflow) can finish on it.
public struct DefinitionStore: Sendable {
    public init() {}

    /// Applies `records` in one transaction (serialized with other applies by an advisory lock): unchanged →
    /// nothing written; changed → version n+1 inserted and the head moved; new → version 1. A head that was deleted
    /// is revived by applying it again (as a new version if its content changed, else the same version).
    public func apply(_ records: [DefinitionRecord], appliedBy: String?, at: Date,
                      on db: PostgresConnection) throws -> [DefinitionChange] {
        try db.transaction { db in
            try lock(db)
            var changes: [DefinitionChange] = []
            for record in records {
                let head = try self.head(kind: record.kind, name: record.name, db: db)
                if let head, head.checksum == record.checksum {
                    if head.deleted {
                        try db.execute("UPDATE definition_heads SET deleted_at = NULL WHERE kind = $1 AND name = $2",
                                       [.text(record.kind), .text(record.name)])
                    }
                    changes.append(DefinitionChange(kind: record.kind, name: record.name, action: .unchanged(version: head.version)))
                    continue
                }
                let version = try (db.query("SELECT coalesce(max(version), 0) + 1 FROM definitions WHERE kind = $1 AND name = $2",
                                            [.text(record.kind), .text(record.name)]).first?[0].int).map(Int.init) ?? 1
                try db.execute("""
                    INSERT INTO definitions (kind, name, version, checksum, spec, source, applied_at, applied_by)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                    """, [.text(record.kind), .text(record.name), .int(Int64(version)), .text(record.checksum),
                          .jsonb(record.specJSON), .text(record.source), .timestamp(at), PostgresValue(appliedBy)])
                try db.execute("""
                    INSERT INTO definition_heads (kind, name, version) VALUES ($1, $2, $3)
                    ON CONFLICT (kind, name) DO UPDATE SET version = EXCLUDED.version, deleted_at = NULL
                    """, [.text(record.kind), .text(record.name), .int(Int64(version))])
                if let head {
                    changes.append(DefinitionChange(kind: record.kind, name: record.name, action: .updated(from: head.version, to: version)))
                } else {
                    changes.append(DefinitionChange(kind: record.kind, name: record.name, action: .created(version: version)))
                }
            }
            return changes
        }
    }

    /// What `apply` would do, without writing (`nurture apply --dry-run`).
    public func plan(_ records: [DefinitionRecord], on db: PostgresConnection) throws -> [DefinitionChange] {
        try records.map { record in
            guard let head = try head(kind: record.kind, name: record.name, db: db) else {
                return DefinitionChange(kind: record.kind, name: record.name, action: .created(version: 1))
            }
            if head.checksum == record.checksum {
                return DefinitionChange(kind: record.kind, name: record.name, action: .unchanged(version: head.version))
            }
            let next = try (db.query("SELECT coalesce(max(version), 0) + 1 FROM definitions WHERE kind = $1 AND name = $2",
                                     [.text(record.kind), .text(record.name)]).first?[0].int).map(Int.init) ?? head.version + 1
            return DefinitionChange(kind: record.kind, name: record.name, action: .updated(from: head.version, to: next))
        }
    }

    /// The current (head) version of every live definition, optionally of one kind, ordered by kind and name.
    public func list(kind: String? = nil, on db: PostgresConnection) throws -> [StoredDefinition] {
        let result = try db.query(Self.selectHeads + """
             WHERE h.deleted_at IS NULL AND ($1::text IS NULL OR h.kind = $1) ORDER BY h.kind, h.name
            """, [PostgresValue(kind)])
        return result.rows.map(Self.decode)
    }

    /// The current version of every live definition of these kinds, ordered by kind and name.
    public func list(kinds: [String], on db: PostgresConnection) throws -> [StoredDefinition] {
        try db.query(Self.selectHeads + " WHERE h.deleted_at IS NULL AND h.kind = ANY($1::text[]) ORDER BY h.kind, h.name",
                     [.textArray(kinds.map { Optional($0) })]).rows.map(Self.decode)
    }

    /// A cheap fingerprint of the heads of these kinds: changes whenever one is applied, paused, resumed or deleted.
    public func headsFingerprint(kinds: [String], on db: PostgresConnection) throws -> String {
        try db.query("""
            SELECT COALESCE(string_agg(kind || '/' || name || '@' || version || CASE WHEN paused THEN 'p' ELSE '' END
                                       || CASE WHEN deleted_at IS NULL THEN '' ELSE '-' END, ',' ORDER BY kind, name), '')
            FROM definition_heads WHERE kind = ANY($1::text[])
            """, [.textArray(kinds.map { Optional($0) })]).rows.first?[0].string ?? ""
    }

    /// The current version of one definition (nil if never applied or deleted).
    public func current(kind: String, name: String, on db: PostgresConnection) throws -> StoredDefinition? {
        try db.query(Self.selectHeads + " WHERE h.kind = $1 AND h.name = $2 AND h.deleted_at IS NULL",
                     [.text(kind), .text(name)]).rows.first.map(Self.decode)
    }

    /// One specific version (old versions stay readable for work still running on them).
    public func version(kind: String, name: String, version: Int, on db: PostgresConnection) throws -> StoredDefinition? {
        try db.query("""
            SELECT d.kind, d.name, d.version, d.checksum, d.spec::text AS spec, d.source, d.applied_at, d.applied_by,
                   coalesce(h.paused AND h.version = d.version, false) AS paused, NULL::timestamptz AS deleted_at
            FROM definitions d LEFT JOIN definition_heads h ON h.kind = d.kind AND h.name = d.name
            WHERE d.kind = $1 AND d.name = $2 AND d.version = $3
            """, [.text(kind), .text(name), .int(Int64(version))]).rows.first.map(Self.decode)
    }

    /// Names of the live definitions by kind (for cross-file reference checks).
    public func names(on db: PostgresConnection) throws -> [String: Set<String>] {
        var out: [String: Set<String>] = [:]
        for row in try db.query("SELECT kind, name FROM definition_heads WHERE deleted_at IS NULL").rows {
            if let kind = row[0].string, let name = row[1].string { out[kind, default: []].insert(name) }
        }
        return out
    }

    // MARK: private

    private static let selectHeads = """
        SELECT d.kind, d.name, d.version, d.checksum, d.spec::text AS spec, d.source, d.applied_at, d.applied_by,
               h.paused, h.deleted_at
        FROM definition_heads h JOIN definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version
        """

    private static func decode(_ row: PostgresRow) -> StoredDefinition {
        StoredDefinition(kind: row["kind"].string ?? "", name: row["name"].string ?? "", version: Int(row["version"].int ?? 0),
                         checksum: row["checksum"].string ?? "", specJSON: row["spec"].string ?? "null",
                         source: row["source"].string ?? "", appliedAt: row["applied_at"].date ?? Date(timeIntervalSince1970: 0),
                         appliedBy: row["applied_by"].string, paused: row["paused"].bool ?? false, deletedAt: row["deleted_at"].date)
    }

    private struct Head {
        let version: Int
        let checksum: String
        let deleted: Bool
    }

    private func head(kind: String, name: String, db: PostgresConnection) throws -> Head? {
        guard let row = try db.query("""
            SELECT h.version, d.checksum, h.deleted_at IS NOT NULL AS deleted
            FROM definition_heads h JOIN definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version
            WHERE h.kind = $1 AND h.name = $2
            """, [.text(kind), .text(name)]).first else { return nil }
        return Head(version: Int(row[0].int ?? 0), checksum: row[1].string ?? "", deleted: row[2].bool ?? false)
    }

    private func lock(_ db: PostgresConnection) throws {
        _ = try db.query("SELECT pg_advisory_xact_lock(hashtext(current_schema() || ':nurture.definitions.apply'))")
    }
}
