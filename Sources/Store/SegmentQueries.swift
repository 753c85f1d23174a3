import Foundation
import Postgres

/// One current segment definition with its live membership figures (`nurture segments`).
public struct SegmentSummary: Sendable, Hashable {
    public let name: String
    public let version: Int
    /// The segment's condition as written (`where:` of the stored spec).
    public let whereText: String
    public let description: String?
    /// Live contacts currently in the segment.
    public let members: Int64
    /// Entries and exits of live contacts recorded in `segment_transitions` during the 24 hours before `now`
    /// (transitions, so a contact that entered twice counts twice).
    public let entered24h: Int64
    public let exited24h: Int64
}

/// One member of a segment (`nurture segments show`).
public struct SegmentMember: Sendable, Hashable {
    public let contactID: Int64
    public let externalID: String?
    public let email: String?
    public let enteredAt: Date
}

/// Read-only queries over segment definitions and memberships, for the CLI. Set-based (one statement per call);
/// merged and erased contacts are never counted or listed. Business time is passed in (`now`).
public struct SegmentQueries: Sendable {
    public init() {}

    /// Every current (not deleted) segment definition, by name.
    public func list(now: Date, on db: PostgresConnection) throws -> [SegmentSummary] {
        try summaries(name: nil, now: now, on: db)
    }

    /// One current segment definition, or nil if there is none by that name.
    public func summary(_ name: String, now: Date, on db: PostgresConnection) throws -> SegmentSummary? {
        try summaries(name: name, now: now, on: db).first
    }

    /// Up to `limit` live members of `segment`, most recently entered first.
    public func members(of segment: String, limit: Int, on db: PostgresConnection) throws -> [SegmentMember] {
        try db.query("""
            SELECT c.id, c.external_id, c.email, m.entered_at
            FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id
            WHERE m.segment = $1 AND c.merged_into IS NULL AND c.erased_at IS NULL
            ORDER BY m.entered_at DESC, c.id DESC
            LIMIT $2
            """, [.text(segment), .int(Int64(max(limit, 0)))]).rows.map { row in
            SegmentMember(contactID: row[0].int ?? 0, externalID: row[1].string, email: row[2].string,
                          enteredAt: row[3].date ?? Date(timeIntervalSince1970: 0))
        }
    }

    /// $1 = one segment's name or NULL for all, $2 = now - 24h, $3 = now. Memberships and transitions are
    /// aggregated per segment once (not per definition row), restricted to the named segment when there is one.
    private func summaries(name: String?, now: Date, on db: PostgresConnection) throws -> [SegmentSummary] {
        try db.query("""
            WITH heads AS (
                SELECT h.name, h.version, d.spec ->> 'where' AS where_text, d.spec ->> 'description' AS description
                FROM definition_heads h JOIN definitions d ON d.kind = h.kind AND d.name = h.name AND d.version = h.version
                WHERE h.kind = 'segment' AND h.deleted_at IS NULL AND ($1::text IS NULL OR h.name = $1)
            ),
            members AS (
                SELECT m.segment, count(*) AS n
                FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id
                WHERE c.merged_into IS NULL AND c.erased_at IS NULL AND m.segment IN (SELECT name FROM heads)
                GROUP BY m.segment
            ),
            recent AS (
                SELECT t.segment, count(*) FILTER (WHERE t.entered) AS entered, count(*) FILTER (WHERE NOT t.entered) AS exited
                FROM segment_transitions t JOIN contacts c ON c.id = t.contact_id
                WHERE t.at >= $2 AND t.at < $3 AND t.segment IN (SELECT name FROM heads)
                  AND c.merged_into IS NULL AND c.erased_at IS NULL
                GROUP BY t.segment
            )
            SELECT h.name, h.version, h.where_text, h.description,
                   coalesce(m.n, 0) AS members, coalesce(r.entered, 0) AS entered, coalesce(r.exited, 0) AS exited
            FROM heads h LEFT JOIN members m ON m.segment = h.name LEFT JOIN recent r ON r.segment = h.name
            ORDER BY h.name
            """, [PostgresValue(name), .timestamp(now.addingTimeInterval(-86_400)), .timestamp(now)]).rows.map { row in
            SegmentSummary(name: row["name"].string ?? "", version: Int(row["version"].int ?? 0),
                           whereText: row["where_text"].string ?? "", description: row["description"].string,
                           members: row["members"].int ?? 0, entered24h: row["entered"].int ?? 0, exited24h: row["exited"].int ?? 0)
        }
    }
}
