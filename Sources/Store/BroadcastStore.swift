import Foundation
import Postgres

/// A broadcast campaign as stored.
public struct BroadcastRow: Sendable, Hashable, Codable {
    public let id: Int64
    public let name: String
    public let segment: String
    /// One template, or the variants of an A/B test (recipients' `variant` indexes it).
    public let templates: [String]
    /// A/B: the percentage of the audience each variant is tested on; the rest waits for the winner.
    public let split: [Int]?
    public let status: String
    public let ratePerSecond: Double?
    public let ignoreCaps: Bool
    public let scheduledAt: Date
    public let recipients: Int
    public let createdAt: Date
    public let startedAt: Date?
    public let finishedAt: Date?
    /// A/B: the winning variant, once chosen.
    public let winner: Int?
    /// A/B: `{"winner_after": seconds, "winner_by": "clicks"|"opens"}`.
    public let options: String

    /// The template recipients of `variant` get (`-1`: the rest of an A/B test, which gets the winner).
    public func template(variant: Int) -> String? {
        if variant >= 0 { return variant < templates.count ? templates[variant] : nil }
        return winner.flatMap { $0 < templates.count ? templates[$0] : nil }
    }
}

/// How the audience is split at snapshot time.
public struct BroadcastAudienceRules: Sendable {
    /// The template's channel and category: who may get it (consent, unsubscribes, suppressed addresses).
    public var channel: String
    public var category: String
    /// Frequency cap on the channel (marketing only), unless the broadcast ignores caps.
    public var cap: (count: Int, periodSeconds: Double)?
    public var batchSize: Int

    public init(channel: String, category: String, cap: (count: Int, periodSeconds: Double)?, batchSize: Int) {
        self.channel = channel
        self.category = category
        self.cap = cap
        self.batchSize = batchSize
    }
}

/// Progress of a broadcast, from its deliveries.
public struct BroadcastProgress: Sendable, Hashable, Codable {
    public var recipients: Int
    public var sent: Int
    public var failed: Int
    public var suppressed: Int
    public var pending: Int
    public var remaining: Int
    /// Messages accepted in the last 10 seconds, per second.
    public var ratePerSecond: Double
    public var batches: Int
    public var batchesDone: Int
}

/// Broadcast campaigns: creation, the one-statement audience snapshot, durable batches (what the scheduler
/// enqueues, again after a Redis flush), pause/resume/cancel and progress.
public struct BroadcastStore: Sendable {
    public init() {}

    /// SQL: `alias` (a `deliveries` row) belongs to the broadcast whose id is the int8 parameter `param`. A
    /// broadcast's deliveries are the dedupe keys `bc:<id>:<contact>`, a range of the dedupe-key index (collation
    /// "C", migration 6), so this is an index range scan; `broadcast_id` is checked as well.
    public static func deliveriesOf(_ param: String, alias: String = "d") -> String {
        "\(alias).dedupe_key >= 'bc:' || \(param)::int8 || ':' AND \(alias).dedupe_key < 'bc:' || \(param)::int8 || ';' AND \(alias).broadcast_id = \(param)"
    }

    /// Offsets batches of different A/B groups so that a held group (the rest of a test) never shares a batch.
    static let groupStride = 1_000_000

    private static let columns = """
        id, name, segment, templates, split, status, rate_per_second, ignore_caps, scheduled_at, recipients, created_at,
        started_at, finished_at, winner, options::text
        """

    private static func row(_ r: PostgresRow) -> BroadcastRow? {
        guard let id = r[0].int else { return nil }
        return BroadcastRow(id: id, name: r[1].string ?? "", segment: r[2].string ?? "", templates: (r[3].stringArray ?? []).compactMap { $0 },
                            split: r[4].string.flatMap { text in
                                let parts = text.trimmingCharacters(in: CharacterSet(charactersIn: "{}")).split(separator: ",").compactMap { Int($0) }
                                return parts.isEmpty ? nil : parts
                            },
                            status: r[5].string ?? "", ratePerSecond: r[6].double, ignoreCaps: r[7].bool ?? false,
                            scheduledAt: r[8].date ?? Date(timeIntervalSince1970: 0), recipients: Int(r[9].int ?? 0),
                            createdAt: r[10].date ?? Date(timeIntervalSince1970: 0), startedAt: r[11].date, finishedAt: r[12].date,
                            winner: r[13].int.map { Int($0) }, options: r[14].string ?? "{}")
    }

    /// Stores a broadcast to be sent at `scheduledAt` (`scheduled`); returns its id.
    public func create(name: String, segment: String, templates: [String], split: [Int]?, ratePerSecond: Double?, ignoreCaps: Bool,
                       scheduledAt: Date, options: String, now: Date, on db: PostgresConnection) throws -> Int64 {
        let splitText: PostgresValue = split.map { .text("{" + $0.map(String.init).joined(separator: ",") + "}") } ?? .null
        guard let id = try db.query("""
            INSERT INTO broadcasts (name, segment, templates, split, status, rate_per_second, ignore_caps, scheduled_at, created_at, options)
            VALUES ($1, $2, $3::text[], $4::int[], 'scheduled', $5, $6, $7, $8, $9::jsonb) RETURNING id
            """, [.text(name), .text(segment), .textArray(templates.map { Optional($0) }), splitText,
                  ratePerSecond.map { .double($0) } ?? .null, .bool(ignoreCaps), .timestamp(scheduledAt), .timestamp(now),
                  .text(options)]).rows.first?[0].int else {
            throw PostgresError(.decode, "INSERT INTO broadcasts returned no id")
        }
        return id
    }

    public func get(_ id: Int64, on db: PostgresConnection) throws -> BroadcastRow? {
        try db.query("SELECT \(Self.columns) FROM broadcasts WHERE id = $1", [.int(id)]).rows.first.flatMap(Self.row)
    }

    public func list(on db: PostgresConnection) throws -> [BroadcastRow] {
        try db.query("SELECT \(Self.columns) FROM broadcasts ORDER BY id").rows.compactMap(Self.row)
    }

    /// Scheduled broadcasts whose time has come (the scheduler snapshots them).
    public func due(now: Date, on db: PostgresConnection) throws -> [Int64] {
        try db.query("SELECT id FROM broadcasts WHERE status = 'scheduled' AND scheduled_at <= $1 ORDER BY scheduled_at, id",
                     [.timestamp(now)]).rows.compactMap { $0[0].int }
    }

    /// Takes the audience once, in one transaction: the segment's members who may get the template now (not
    /// erased or merged; for marketing not unsubscribed, no withdrawn consent, under the frequency cap unless the
    /// broadcast ignores caps; no suppressed address), split into A/B groups (a stable shuffle by contact and
    /// broadcast) and batches, and the batches to send (`ready`) or to hold for the winner (`held`). Does nothing
    /// unless the broadcast is still `scheduled` (two launchers never both snapshot). Returns the recipient count,
    /// or nil when it was not `scheduled`.
    public func snapshot(_ id: Int64, rules: BroadcastAudienceRules, now: Date, on db: PostgresConnection) throws -> Int? {
        try db.transaction { db -> Int? in
            guard let b = try db.query("UPDATE broadcasts SET status = 'snapshotting' WHERE id = $1 AND status = 'scheduled' RETURNING \(Self.columns)",
                                       [.int(id)]).rows.first.flatMap(Self.row) else { return nil }
            // variant: the first cumulative split percentage the contact's shuffled rank falls under; -1 = the rest.
            var variant = "0"
            if let split = b.split, b.templates.count > 1 {
                var cases: [String] = []
                var cumulative = 0
                for (i, share) in split.enumerated() {
                    cumulative += share
                    cases.append("WHEN s.r * 100 < s.total * \(cumulative) THEN \(i)")
                }
                variant = "CASE \(cases.joined(separator: " ")) ELSE -1 END"
            }
            let marketing = rules.category != "transactional"
            let addressColumn = rules.channel == "sms" ? "c.phone" : rules.channel == "email" ? "c.email" : "NULL"
            let result = try db.query("""
                WITH consent AS (
                    -- The consent in force per contact for this category and channel (the latest record).
                    SELECT DISTINCT ON (contact_id) contact_id, granted FROM consents
                    WHERE category = $4 AND channel IN ($3, '*') ORDER BY contact_id, at DESC, id DESC
                ), aud AS (
                    SELECT m.contact_id FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id
                    LEFT JOIN suppressions x ON x.channel = $3 AND x.address = lower(\(addressColumn))
                    \(marketing ? "LEFT JOIN consent k ON k.contact_id = c.id" : "")
                    WHERE m.segment = $2 AND c.merged_into IS NULL AND c.erased_at IS NULL AND x.address IS NULL
                      \(marketing ? "AND c.unsubscribed_at IS NULL AND k.granted IS NOT false" : "")
                      \(marketing && rules.cap != nil ? """
                      AND (SELECT count(*) FROM deliveries d WHERE d.contact_id = c.id AND d.channel = $3 AND d.category = 'marketing'
                             AND d.created_at > $6 AND d.status IN ('pending', 'accepted')) < $7
                      """ : "")
                ), \(b.split != nil && b.templates.count > 1 ? """
                shuffled AS (
                    SELECT contact_id, row_number() OVER (ORDER BY md5(contact_id::text || ':' || $1::text)) - 1 AS r, count(*) OVER () AS total
                    FROM aud
                ), grouped AS (
                    SELECT s.contact_id, \(variant) AS variant FROM shuffled s
                ), numbered AS (
                    SELECT contact_id, variant,
                           (variant + 1) * \(Self.groupStride) + ((row_number() OVER (PARTITION BY variant ORDER BY contact_id)) - 1) / $5 AS batch
                    FROM grouped
                ),
                """ : """
                numbered AS (
                    SELECT contact_id, 0 AS variant, \(Self.groupStride) + (row_number() OVER (ORDER BY contact_id) - 1) / $5 AS batch FROM aud
                ),
                """) batches AS (
                    -- One row per batch, its recipients as an array (in contact order); a batch is one variant's.
                    INSERT INTO broadcast_batches (broadcast_id, batch, state, contacts)
                    SELECT $1, batch, CASE WHEN min(variant) < 0 THEN 'held' ELSE 'ready' END, array_agg(contact_id ORDER BY contact_id)
                    FROM numbered GROUP BY batch
                    RETURNING cardinality(contacts) AS n
                )
                , total AS (SELECT COALESCE(sum(n), 0)::int8 AS n, count(*) AS batches FROM batches)
                UPDATE broadcasts SET recipients = total.n, started_at = $8, channel = $3,
                       status = CASE WHEN total.n = 0 THEN 'completed' ELSE 'sending' END,
                       finished_at = CASE WHEN total.n = 0 THEN $8::timestamptz END
                FROM total WHERE id = $1
                RETURNING recipients, total.batches
                """, [.int(id), .text(b.segment), .text(rules.channel), .text(rules.category), .int(Int64(max(1, rules.batchSize))),
                      .timestamp(now.addingTimeInterval(-(rules.cap?.periodSeconds ?? 0))), .int(Int64(rules.cap?.count ?? 0)),
                      .timestamp(now)])
            return Int(result.rows.first?[0].int ?? 0)
        }
    }

    /// The broadcast's batches that are ready to send and not leased, leased for `leaseSeconds` (wall clock) now:
    /// the caller enqueues their jobs. `limit` caps how many. The update finds them by key (`= ANY (ARRAY(...))`),
    /// not by a join with the CTE, which PostgreSQL may answer by hashing every batch of every broadcast.
    public func leaseReady(_ id: Int64, limit: Int, leaseSeconds: Double, now: Date, on db: PostgresConnection) throws -> [Int] {
        try db.query("""
            WITH ready AS (
                SELECT b.broadcast_id, b.batch FROM broadcast_batches b
                WHERE b.broadcast_id = $1 AND b.state = 'ready' AND (b.lease_until IS NULL OR b.lease_until < clock_timestamp())
                  AND (b.due_at IS NULL OR b.due_at <= $4)
                ORDER BY b.batch LIMIT $2 FOR UPDATE SKIP LOCKED)
            UPDATE broadcast_batches b SET lease_until = clock_timestamp() + make_interval(secs => $3)
            WHERE b.broadcast_id = $1 AND b.batch = ANY (ARRAY(SELECT batch FROM ready))
            RETURNING b.batch
            """, [.int(id), .int(Int64(limit)), .double(leaseSeconds), .timestamp(now)]).rows.compactMap { $0[0].int.map(Int.init) }.sorted()
    }

    /// Broadcasts being sent that have ready batches nobody holds (their jobs were lost, or they wait for a retry
    /// or a resume).
    public func withUnleasedBatches(now: Date, on db: PostgresConnection) throws -> [Int64] {
        try db.query("""
            SELECT b.id FROM broadcasts b WHERE b.status = 'sending' AND EXISTS (
                SELECT 1 FROM broadcast_batches x WHERE x.broadcast_id = b.id AND x.state = 'ready'
                  AND (x.lease_until IS NULL OR x.lease_until < clock_timestamp()) AND (x.due_at IS NULL OR x.due_at <= $1))
            ORDER BY b.id
            """, [.timestamp(now)]).rows.compactMap { $0[0].int }
    }

    /// A worker starts a batch: true (and the lease renewed) if it is still to be sent.
    public func startBatch(_ id: Int64, batch: Int, leaseSeconds: Double, on db: PostgresConnection) throws -> Bool {
        try db.execute("""
            UPDATE broadcast_batches SET lease_until = clock_timestamp() + make_interval(secs => $3)
            WHERE broadcast_id = $1 AND batch = $2 AND state = 'ready'
            """, [.int(id), .int(Int64(batch)), .double(leaseSeconds)]) > 0
    }

    /// The recipients of one batch: (contact, variant), by contact.
    public func recipients(_ id: Int64, batch: Int, on db: PostgresConnection) throws -> [(contact: Int64, variant: Int)] {
        let variant = batch / Self.groupStride - 1
        guard let row = try db.query("SELECT contacts FROM broadcast_batches WHERE broadcast_id = $1 AND batch = $2",
                                     [.int(id), .int(Int64(batch))]).rows.first else { return [] }
        return (row[0].intArray ?? []).compactMap { $0.map { ($0, variant) } }
    }

    /// A batch ran: `done`, or (some messages wait for a retry or were not tried) ready again at `retryAt`.
    public func finishBatch(_ id: Int64, batch: Int, retryAt: Date?, on db: PostgresConnection) throws {
        try db.execute("""
            UPDATE broadcast_batches SET state = CASE WHEN $3::timestamptz IS NULL THEN 'done' ELSE 'ready' END,
                   due_at = $3, lease_until = NULL
            WHERE broadcast_id = $1 AND batch = $2 AND state = 'ready'
            """, [.int(id), .int(Int64(batch)), retryAt.map { .timestamp($0) } ?? .null])
    }

    /// Marks broadcasts whose batches are all done as `completed`; returns their ids.
    public func completeFinished(now: Date, on db: PostgresConnection) throws -> [Int64] {
        try db.query("""
            UPDATE broadcasts b SET status = 'completed', finished_at = $1
            WHERE b.status = 'sending' AND NOT EXISTS (SELECT 1 FROM broadcast_batches x WHERE x.broadcast_id = b.id AND x.state <> 'done')
            RETURNING b.id
            """, [.timestamp(now)]).rows.compactMap { $0[0].int }
    }

    /// Moves a broadcast between states (`pause`: sending/scheduled → paused; `resume`: paused → sending or
    /// scheduled; `cancel`: anything unfinished → cancelled). Returns the new status, or nil if the move does not
    /// apply to the broadcast's current status.
    public func control(_ id: Int64, _ action: String, now: Date, on db: PostgresConnection) throws -> String? {
        let sql: String
        switch action {
        case "pause":
            sql = "UPDATE broadcasts SET status = 'paused', paused_at = $2 WHERE id = $1 AND status IN ('sending', 'scheduled') RETURNING status"
        case "resume":
            sql = """
                UPDATE broadcasts SET status = CASE WHEN started_at IS NULL THEN 'scheduled' ELSE 'sending' END, paused_at = NULL
                WHERE id = $1 AND status = 'paused' AND $2::timestamptz IS NOT NULL RETURNING status
                """
        case "cancel":
            sql = """
                UPDATE broadcasts SET status = 'cancelled', finished_at = $2
                WHERE id = $1 AND status IN ('scheduled', 'sending', 'paused') RETURNING status
                """
        default:
            throw PostgresError(.usage, "unknown broadcast action \(action)")
        }
        return try db.query(sql, [.int(id), .timestamp(now)]).rows.first?[0].string
    }

    /// The current status (workers check it between provider calls: a pause takes effect within a second).
    public func status(_ id: Int64, on db: PostgresConnection) throws -> String? {
        try db.query("SELECT status FROM broadcasts WHERE id = $1", [.int(id)]).rows.first?[0].string
    }

    /// Figures for `broadcast status`.
    public func progress(_ id: Int64, now: Date, on db: PostgresConnection) throws -> BroadcastProgress {
        let r = try db.pipeline([
            ("""
             SELECT count(*) FILTER (WHERE status = 'accepted'), count(*) FILTER (WHERE status IN ('rejected', 'failed')),
                    count(*) FILTER (WHERE status IN ('suppressed', 'skipped')), count(*) FILTER (WHERE status = 'pending'),
                    count(*) FILTER (WHERE status = 'accepted' AND sent_at > $2::timestamptz - interval '10 seconds')
             FROM deliveries d WHERE \(Self.deliveriesOf("$1"))
             """, [.int(id), .timestamp(now)]),
            ("SELECT recipients FROM broadcasts WHERE id = $1", [.int(id)]),
            ("SELECT count(*), count(*) FILTER (WHERE state = 'done') FROM broadcast_batches WHERE broadcast_id = $1", [.int(id)]),
        ])
        let d = r[0].rows.first
        let sent = Int(d?[0].int ?? 0), failed = Int(d?[1].int ?? 0), suppressed = Int(d?[2].int ?? 0), pending = Int(d?[3].int ?? 0)
        let recipients = Int(r[1].rows.first?[0].int ?? 0)
        return BroadcastProgress(recipients: recipients, sent: sent, failed: failed, suppressed: suppressed, pending: pending,
                                 remaining: max(0, recipients - sent - failed - suppressed), ratePerSecond: Double(d?[4].int ?? 0) / 10,
                                 batches: Int(r[2].rows.first?[0].int ?? 0), batchesDone: Int(r[2].rows.first?[1].int ?? 0))
    }

    // MARK: A/B

    /// A/B tests whose test phase is over (`winner_after` since the start) and whose winner is not chosen.
    public func winnersDue(now: Date, on db: PostgresConnection) throws -> [BroadcastRow] {
        try db.query("""
            SELECT \(Self.columns) FROM broadcasts
            WHERE status = 'sending' AND winner IS NULL AND options ? 'winner_after'
              AND started_at + make_interval(secs => (options->>'winner_after')::double precision) <= $1
            """, [.timestamp(now)]).rows.compactMap(Self.row)
    }

    /// Per variant: accepted deliveries and those with at least one (non-machine) open or click event.
    public func variantEngagement(_ id: Int64, by metric: String, on db: PostgresConnection) throws -> [(variant: Int, accepted: Int, engaged: Int)] {
        let event = metric == "opens" ? "Email Opened" : "Email Clicked"
        return try db.query("""
            SELECT r.variant, count(*) FILTER (WHERE d.status = 'accepted'),
                   count(*) FILTER (WHERE d.status = 'accepted' AND EXISTS (
                       SELECT 1 FROM events e WHERE e.properties ? 'delivery_id' AND e.properties->>'delivery_id' = d.id::text
                         AND e.name = $2 AND COALESCE(e.properties->>'machine', 'false') <> 'true'))
            FROM broadcast_recipients r JOIN deliveries d ON d.dedupe_key = 'bc:' || r.broadcast_id || ':' || r.contact_id
            WHERE r.broadcast_id = $1 AND r.variant >= 0
            GROUP BY r.variant ORDER BY r.variant
            """, [.int(id), .text(event)]).rows.map { row in
            (Int(row[0].int ?? 0), Int(row[1].int ?? 0), Int(row[2].int ?? 0))
        }
    }

    /// Records the winner and releases the held batches to it.
    public func chooseWinner(_ id: Int64, variant: Int, now: Date, on db: PostgresConnection) throws {
        _ = try db.pipeline([
            ("UPDATE broadcasts SET winner = $2, winner_at = $3 WHERE id = $1 AND winner IS NULL", [.int(id), .int(Int64(variant)), .timestamp(now)]),
            ("UPDATE broadcast_batches SET state = 'ready', lease_until = NULL WHERE broadcast_id = $1 AND state = 'held'", [.int(id)]),
        ])
    }
}
