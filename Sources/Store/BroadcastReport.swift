import Foundation
import Postgres

/// `--conversion NAME --within DURATION`: a recipient converted when an event named `event` happened to them within
/// `withinMilliseconds` after their message was accepted (`[sent_at, sent_at + within]`, both ends included).
public struct BroadcastConversionRule: Sendable, Hashable, Codable {
    public let event: String
    public let withinMilliseconds: Int64

    public init(event: String, withinMilliseconds: Int64) {
        self.event = event
        self.withinMilliseconds = withinMilliseconds
    }

    enum CodingKeys: String, CodingKey { case event, withinMilliseconds = "within_ms" }
}

/// How many messages of one status ended for one reason (`deliveries.last_error`, "" when none was recorded).
public struct BroadcastReasonCount: Sendable, Hashable, Codable {
    /// `rejected` / `failed` (failures) or `suppressed` / `skipped` (not sent).
    public let status: String
    public let reason: String
    public let count: Int64

    public init(status: String, reason: String, count: Int64) {
        self.status = status
        self.reason = reason
        self.count = count
    }
}

/// The figures of a broadcast, or of one A/B variant of it. Every count is of messages (deliveries; one per
/// recipient, ever), so "unique" counts are distinct deliveries. Rates are over `accepted` unless said otherwise,
/// and nil when their denominator is 0.
public struct BroadcastFigures: Sendable, Hashable, Codable {
    /// Contacts in the audience snapshot (`broadcast_recipients`).
    public var recipients: Int64 = 0
    /// Delivery rows (recipients a batch has reached so far).
    public var deliveries: Int64 = 0
    /// The provider accepted the message (delivered to the provider).
    public var accepted: Int64 = 0
    /// The provider refused the message (`rejected`), or sending failed for good (`failed`: retries ran out, the
    /// template did not render).
    public var failed: Int64 = 0
    /// Not sent: suppressed address, unsubscribed, withdrawn consent, erased (checked again at send time).
    public var suppressed: Int64 = 0
    /// Not sent: no address, frequency cap, template or provider missing.
    public var skipped: Int64 = 0
    /// Being sent, or waiting for a retry.
    public var pending: Int64 = 0
    /// Messages opened by a person at least once (`Email Opened` not flagged `machine`).
    public var uniqueOpens: Int64 = 0
    /// Every `Email Opened` event by a person.
    public var opens: Int64 = 0
    /// Messages with at least one machine open (mail privacy proxies, scanners), and every such event. Machine
    /// opens count in neither `uniqueOpens` nor `opens`.
    public var machineOpened: Int64 = 0
    public var machineOpens: Int64 = 0
    /// Messages clicked at least once, and every `Email Clicked` event.
    public var uniqueClicks: Int64 = 0
    public var clicks: Int64 = 0
    /// Messages whose recipient unsubscribed through it (an `Unsubscribed` event carrying its delivery id).
    public var unsubscribed: Int64 = 0
    /// With a conversion rule: accepted messages whose recipient converted, and accepted messages whose window is
    /// not over yet at report time (they may still convert). Nil without a rule.
    public var converted: Int64?
    public var conversionWindowOpen: Int64?
    /// Failures (`rejected`, `failed`) and messages not sent (`suppressed`, `skipped`) per reason, most frequent
    /// first. At most `BroadcastReportStore.reasonLimit` reasons are listed over the whole report; the rest are
    /// in a `(other reasons)` entry.
    public var failures: [BroadcastReasonCount] = []
    public var notSent: [BroadcastReasonCount] = []

    public init() {}

    /// Messages a send was tried for and that are settled: accepted + failed.
    public var sent: Int64 { accepted + failed }
    /// Recipients whose batch has not reached them yet.
    public var unprocessed: Int64 { max(0, recipients - deliveries) }

    /// accepted / sent.
    public var deliveryRate: Double? { Self.rate(accepted, sent) }
    /// uniqueOpens / accepted (machine opens excluded).
    public var openRate: Double? { Self.rate(uniqueOpens, accepted) }
    /// uniqueClicks / accepted.
    public var clickRate: Double? { Self.rate(uniqueClicks, accepted) }
    /// uniqueClicks / uniqueOpens.
    public var clickToOpenRate: Double? { Self.rate(uniqueClicks, uniqueOpens) }
    /// unsubscribed / accepted.
    public var unsubscribeRate: Double? { Self.rate(unsubscribed, accepted) }
    /// converted / accepted (nil without a conversion rule).
    public var conversionRate: Double? { converted.flatMap { Self.rate($0, accepted) } }

    static func rate(_ part: Int64, _ whole: Int64) -> Double? { whole > 0 ? Double(part) / Double(whole) : nil }

    mutating func add(_ other: BroadcastFigures) {
        recipients += other.recipients
        deliveries += other.deliveries
        accepted += other.accepted
        failed += other.failed
        suppressed += other.suppressed
        skipped += other.skipped
        pending += other.pending
        uniqueOpens += other.uniqueOpens
        opens += other.opens
        machineOpened += other.machineOpened
        machineOpens += other.machineOpens
        uniqueClicks += other.uniqueClicks
        clicks += other.clicks
        unsubscribed += other.unsubscribed
        if let c = other.converted { converted = (converted ?? 0) + c }
        if let c = other.conversionWindowOpen { conversionWindowOpen = (conversionWindowOpen ?? 0) + c }
    }

    enum CodingKeys: String, CodingKey {
        case recipients, deliveries, accepted, failed, suppressed, skipped, pending, uniqueOpens = "unique_opens", opens,
             machineOpened = "machine_opened", machineOpens = "machine_opens", uniqueClicks = "unique_clicks", clicks,
             unsubscribed, converted, conversionWindowOpen = "conversion_window_open", failures, notSent = "not_sent"
    }

    /// The derived figures, written to JSON too (and ignored when decoding).
    enum DerivedKeys: String, CodingKey {
        case sent, unprocessed, deliveryRate = "delivery_rate", openRate = "open_rate", clickRate = "click_rate",
             clickToOpenRate = "click_to_open_rate", unsubscribeRate = "unsubscribe_rate", conversionRate = "conversion_rate"
    }

    /// Every key is always present; undefined figures are `null`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(recipients, forKey: .recipients)
        try c.encode(deliveries, forKey: .deliveries)
        try c.encode(accepted, forKey: .accepted)
        try c.encode(failed, forKey: .failed)
        try c.encode(suppressed, forKey: .suppressed)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(pending, forKey: .pending)
        try c.encode(uniqueOpens, forKey: .uniqueOpens)
        try c.encode(opens, forKey: .opens)
        try c.encode(machineOpened, forKey: .machineOpened)
        try c.encode(machineOpens, forKey: .machineOpens)
        try c.encode(uniqueClicks, forKey: .uniqueClicks)
        try c.encode(clicks, forKey: .clicks)
        try c.encode(unsubscribed, forKey: .unsubscribed)
        try c.encode(converted, forKey: .converted)
        try c.encode(conversionWindowOpen, forKey: .conversionWindowOpen)
        try c.encode(failures, forKey: .failures)
        try c.encode(notSent, forKey: .notSent)
        var d = encoder.container(keyedBy: DerivedKeys.self)
        try d.encode(sent, forKey: .sent)
        try d.encode(unprocessed, forKey: .unprocessed)
        try d.encode(deliveryRate, forKey: .deliveryRate)
        try d.encode(openRate, forKey: .openRate)
        try d.encode(clickRate, forKey: .clickRate)
        try d.encode(clickToOpenRate, forKey: .clickToOpenRate)
        try d.encode(unsubscribeRate, forKey: .unsubscribeRate)
        try d.encode(conversionRate, forKey: .conversionRate)
    }
}

/// The figures of the recipients of one A/B group.
public struct BroadcastVariantFigures: Sendable, Hashable, Codable {
    /// The index into the broadcast's templates (0 = A, 1 = B, ...); -1 = the rest of the audience, who get the
    /// winner; nil = deliveries without a recipient row.
    public let variant: Int?
    /// `A`, `B`, ..., `rest`, `unknown`.
    public let label: String
    /// The template the group gets (nil for the rest while no winner is chosen).
    public let template: String?
    public let figures: BroadcastFigures

    public init(variant: Int?, label: String, template: String?, figures: BroadcastFigures) {
        self.variant = variant
        self.label = label
        self.template = template
        self.figures = figures
    }

    enum CodingKeys: String, CodingKey { case variant, label, template, figures }

    /// Flat in JSON: `{"variant", "label", "template", ...figures}`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(variant, forKey: .variant)
        try c.encode(label, forKey: .label)
        try c.encode(template, forKey: .template)
        try figures.encode(to: encoder)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        variant = try c.decodeIfPresent(Int.self, forKey: .variant)
        label = try c.decode(String.self, forKey: .label)
        template = try c.decodeIfPresent(String.self, forKey: .template)
        figures = try BroadcastFigures(from: decoder)
    }
}

/// `nurture report broadcast ID`: what happened to a broadcast's messages, in total and (A/B tests) per variant.
public struct BroadcastReport: Sendable, Hashable, Codable {
    public let broadcast: Int64
    public let name: String
    public let segment: String
    public let status: String
    public let templates: [String]
    public let split: [Int]?
    /// A/B: the winning template, once chosen.
    public let winner: String?
    public let createdAt: Date
    public let startedAt: Date?
    public let finishedAt: Date?
    /// The installation-clock time the report was computed for.
    public let now: Date
    public let conversion: BroadcastConversionRule?
    public let totals: BroadcastFigures
    /// One entry per A/B group (test variants, then the rest) when the broadcast has more than one template;
    /// empty otherwise.
    public let variants: [BroadcastVariantFigures]

    public init(broadcast: Int64, name: String, segment: String, status: String, templates: [String], split: [Int]?, winner: String?,
                createdAt: Date, startedAt: Date?, finishedAt: Date?, now: Date, conversion: BroadcastConversionRule?,
                totals: BroadcastFigures, variants: [BroadcastVariantFigures]) {
        self.broadcast = broadcast
        self.name = name
        self.segment = segment
        self.status = status
        self.templates = templates
        self.split = split
        self.winner = winner
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.now = now
        self.conversion = conversion
        self.totals = totals
        self.variants = variants
    }

    enum CodingKeys: String, CodingKey {
        case broadcast, name, segment, status, templates, split, winner, createdAt = "created_at", startedAt = "started_at",
             finishedAt = "finished_at", now, conversion, totals, variants
    }

    /// Times are ISO 8601 strings (UTC, milliseconds); every key is always present (`null` when undefined).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(broadcast, forKey: .broadcast)
        try c.encode(name, forKey: .name)
        try c.encode(segment, forKey: .segment)
        try c.encode(status, forKey: .status)
        try c.encode(templates, forKey: .templates)
        try c.encode(split, forKey: .split)
        try c.encode(winner, forKey: .winner)
        try c.encode(Self.iso(createdAt), forKey: .createdAt)
        try c.encode(startedAt.map(Self.iso), forKey: .startedAt)
        try c.encode(finishedAt.map(Self.iso), forKey: .finishedAt)
        try c.encode(Self.iso(now), forKey: .now)
        try c.encode(conversion, forKey: .conversion)
        try c.encode(totals, forKey: .totals)
        try c.encode(variants, forKey: .variants)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func date(_ key: CodingKeys) throws -> Date? {
            guard let text = try c.decodeIfPresent(String.self, forKey: key) else { return nil }
            guard let date = Self.parseISO(text) else {
                throw DecodingError.dataCorruptedError(forKey: key, in: c, debugDescription: "not an ISO 8601 time: \(text)")
            }
            return date
        }
        broadcast = try c.decode(Int64.self, forKey: .broadcast)
        name = try c.decode(String.self, forKey: .name)
        segment = try c.decode(String.self, forKey: .segment)
        status = try c.decode(String.self, forKey: .status)
        templates = try c.decode([String].self, forKey: .templates)
        split = try c.decodeIfPresent([Int].self, forKey: .split)
        winner = try c.decodeIfPresent(String.self, forKey: .winner)
        guard let created = try date(.createdAt), let reportedAt = try date(.now) else {
            throw DecodingError.dataCorruptedError(forKey: .createdAt, in: c, debugDescription: "created_at and now are required")
        }
        createdAt = created
        startedAt = try date(.startedAt)
        finishedAt = try date(.finishedAt)
        now = reportedAt
        conversion = try c.decodeIfPresent(BroadcastConversionRule.self, forKey: .conversion)
        totals = try c.decode(BroadcastFigures.self, forKey: .totals)
        variants = try c.decode([BroadcastVariantFigures].self, forKey: .variants)
    }

    static func iso(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: TimeZone(secondsFromGMT: 0)!))
    }

    static func parseISO(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text)) ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    /// `A`, `B`, ... for test variants, `rest` for the audience that gets the winner, `unknown` for deliveries
    /// without a recipient row.
    public static func label(variant: Int?) -> String {
        guard let variant else { return "unknown" }
        if variant < 0 { return "rest" }
        if variant < 26 { return String(UnicodeScalar(UInt8(65 + variant))) }
        return "V\(variant + 1)"
    }
}

/// Computes `nurture report broadcast` with set-based SQL: a handful of statements over the broadcast's
/// deliveries (a range of the dedupe-key index), its recipients, and the engagement events that name its deliveries
/// (`events_delivery_idx`), in one repeatable-read snapshot. No per-recipient round trips.
///
/// Rules:
/// - opens, clicks and unsubscribes are `Email Opened` / `Email Clicked` / `Unsubscribed` events whose
///   `properties.delivery_id` is one of the broadcast's deliveries (any status: a message still `pending` may
///   have reached its recipient), that happened at or after the broadcast was created;
/// - an open with `properties.machine = true` is a machine open, reported apart and left out of the opens;
/// - unsubscribed counts messages through which someone unsubscribed (the delivery-id rule; an unsubscribe from
///   the preference centre or another message does not count here);
/// - a conversion is an event named `rule.event` of the recipient (or of the contact it was merged into since)
///   in `[sent_at, sent_at + within]` of an `accepted` message.
public struct BroadcastReportStore: Sendable {
    public init() {}

    /// At most this many (variant, status, reason) groups are listed; the rest are summed as `(other reasons)`.
    public static let reasonLimit = 50
    public static let otherReasons = "(other reasons)"

    /// The report, or nil when there is no broadcast `id`.
    public func report(_ id: Int64, conversion: BroadcastConversionRule? = nil, now: Date, on db: PostgresConnection) throws -> BroadcastReport? {
        try db.transaction(isolation: .repeatableRead) { db -> BroadcastReport? in
            guard let b = try BroadcastStore().get(id, on: db) else { return nil }
            // One-off aggregates over up to millions of rows: no JIT (seconds of compilation for nothing), enough
            // memory for the hash joins not to spill, and no parallel workers (each would aggregate the engagement
            // events again for its own hash table: 2-3x slower at a million recipients on a small machine).
            try db.execute("SET LOCAL jit = off")
            try db.execute("SET LOCAL work_mem = '64MB'")
            try db.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            let byVariant = b.templates.count > 1
            var figuresParameters: [PostgresValue] = [.int(id), .timestamp(b.createdAt)]
            if let conversion {
                figuresParameters += [.timestamp(now), .text(conversion.event), .double(Double(conversion.withinMilliseconds) / 1000)]
            }
            let results = try db.pipeline([
                (Self.figuresSQL(byVariant: byVariant, conversion: conversion != nil), figuresParameters),
                (byVariant ? "SELECT variant, count(*) FROM broadcast_recipients WHERE broadcast_id = $1 GROUP BY variant"
                           : "SELECT 0, count(*) FROM broadcast_recipients WHERE broadcast_id = $1",
                 [.int(id)]),
                (Self.reasonsSQL(byVariant: byVariant), [.int(id), .int(Int64(Self.reasonLimit))]),
            ])

            // Per group (variant; a single group 0 without A/B), then totals as their sum.
            var groups: [Int?: BroadcastFigures] = [:]
            for row in results[0].rows {
                let variant = row["variant"].int.map(Int.init)
                var f = groups[variant] ?? BroadcastFigures()
                f.deliveries = row["deliveries"].int ?? 0
                f.accepted = row["accepted"].int ?? 0
                f.failed = row["failed"].int ?? 0
                f.suppressed = row["suppressed"].int ?? 0
                f.skipped = row["skipped"].int ?? 0
                f.pending = row["pending"].int ?? 0
                f.uniqueOpens = row["unique_opens"].int ?? 0
                f.opens = row["opens"].int ?? 0
                f.machineOpened = row["machine_opened"].int ?? 0
                f.machineOpens = row["machine_opens"].int ?? 0
                f.uniqueClicks = row["unique_clicks"].int ?? 0
                f.clicks = row["clicks"].int ?? 0
                f.unsubscribed = row["unsubscribed"].int ?? 0
                if conversion != nil {
                    f.converted = row["converted"].int ?? 0
                    f.conversionWindowOpen = row["window_open"].int ?? 0
                }
                groups[variant] = f
            }
            for row in results[1].rows {
                let variant = row[0].int.map(Int.init)
                var f = groups[variant] ?? BroadcastFigures()
                if conversion != nil, f.converted == nil { f.converted = 0; f.conversionWindowOpen = 0 }
                f.recipients = row[1].int ?? 0
                groups[variant] = f
            }
            for row in results[2].rows {
                let variant = row["variant"].int.map(Int.init)
                let status = row["status"].string ?? ""
                let reason = BroadcastReasonCount(status: status, reason: row["reason"].string ?? "", count: row["n"].int ?? 0)
                if status == "rejected" || status == "failed" {
                    groups[variant, default: BroadcastFigures()].failures.append(reason)
                } else {
                    groups[variant, default: BroadcastFigures()].notSent.append(reason)
                }
            }

            var totals = BroadcastFigures()
            if conversion != nil { totals.converted = 0; totals.conversionWindowOpen = 0 }
            for f in groups.values { totals.add(f) }
            totals.failures = Self.merged(groups.values.flatMap(\.failures), total: totals.failed)
            totals.notSent = Self.merged(groups.values.flatMap(\.notSent), total: totals.suppressed + totals.skipped)
            for key in Array(groups.keys) {
                groups[key]!.failures = Self.merged(groups[key]!.failures, total: groups[key]!.failed)
                groups[key]!.notSent = Self.merged(groups[key]!.notSent, total: groups[key]!.suppressed + groups[key]!.skipped)
            }

            let winner = b.winner.flatMap { $0 >= 0 && $0 < b.templates.count ? b.templates[$0] : nil }
            // Test variants in order, then the rest, then deliveries without a recipient row.
            let order: (Int?) -> Int = { v in v.map { $0 >= 0 ? $0 : Int.max - 1 } ?? Int.max }
            let variants = !byVariant ? [] : groups.keys.sorted { order($0) < order($1) }.map { v in
                BroadcastVariantFigures(variant: v, label: BroadcastReport.label(variant: v), template: v.flatMap { b.template(variant: $0) },
                                        figures: groups[v]!)
            }
            return BroadcastReport(broadcast: b.id, name: b.name, segment: b.segment, status: b.status, templates: b.templates,
                                   split: b.split, winner: winner, createdAt: b.createdAt, startedAt: b.startedAt, finishedAt: b.finishedAt,
                                   now: now, conversion: conversion, totals: totals, variants: variants)
        }
    }

    /// Reasons summed by (status, reason), most frequent first, plus `(other reasons)` per status for what the
    /// listing left out (`total` is the count of the messages the reasons are about).
    static func merged(_ reasons: [BroadcastReasonCount], total: Int64) -> [BroadcastReasonCount] {
        var sums: [String: [String: Int64]] = [:]
        for r in reasons { sums[r.status, default: [:]][r.reason, default: 0] += r.count }
        var out = sums.flatMap { status, byReason in byReason.map { BroadcastReasonCount(status: status, reason: $0.key, count: $0.value) } }
            .filter { $0.reason != otherReasons }
        out.sort { ($0.count, $1.status, $1.reason) > ($1.count, $0.status, $0.reason) }
        let listed = out.reduce(0) { $0 + $1.count }
        if total > listed {
            out.append(BroadcastReasonCount(status: "", reason: otherReasons, count: total - listed))
        }
        return out
    }

    /// The recipient's A/B group of a delivery (`d`): its `broadcast_recipients` row, found by contact (or, for a
    /// contact deleted since, by the contact id in the dedupe key `bc:<broadcast>:<contact>`).
    private static func variantJoin(_ byVariant: Bool) -> (column: String, join: String) {
        guard byVariant else { return ("0", "") }
        return ("r.variant", """
            LEFT JOIN broadcast_recipients r ON r.broadcast_id = $1 AND r.contact_id =
                COALESCE(d.contact_id, CASE WHEN d.dedupe_key ~ '^bc:[0-9]+:[0-9]+$' THEN split_part(d.dedupe_key, ':', 3)::int8 END)
            """)
    }

    /// $1 broadcast, $2 its creation time (events before it cannot be about it); with a conversion rule also $3
    /// now, $4 the conversion event, $5 the conversion window in seconds. One row per group.
    ///
    /// `engagement` aggregates the engagement events per delivery id first (one pass over the events that name a
    /// delivery since the broadcast was created, through the partial `events_delivery_idx` or a scan of the
    /// partitions since then), then hash-joins them to the broadcast's deliveries. `converted` hash-joins the
    /// accepted deliveries to the conversion events between the broadcast's creation and its last acceptance plus
    /// the window (partitions outside are pruned) by contact, then checks each one's window. Both avoid a per-delivery index probe, which costs minutes at a million recipients.
    static func figuresSQL(byVariant: Bool, conversion: Bool) -> String {
        let (variant, join) = variantJoin(byVariant)
        return """
            WITH engagement AS (
                SELECT e.properties->>'delivery_id' AS id,
                       count(*) FILTER (WHERE e.name = 'Email Opened' AND e.properties->>'machine' IS DISTINCT FROM 'true') AS opens,
                       count(*) FILTER (WHERE e.name = 'Email Opened' AND e.properties->>'machine' = 'true') AS machine_opens,
                       count(*) FILTER (WHERE e.name = 'Email Clicked') AS clicks,
                       count(*) FILTER (WHERE e.name = 'Unsubscribed') AS unsubscribes
                FROM events e
                WHERE e.properties ? 'delivery_id' AND e.name IN ('Email Opened', 'Email Clicked', 'Unsubscribed')
                  AND e.occurred_at >= $2
                GROUP BY 1
            )\(conversion ? """
            , converted AS (
                SELECT DISTINCT d.id
                FROM deliveries d
                LEFT JOIN contacts c ON c.id = d.contact_id AND c.merged_into IS NOT NULL
                JOIN events e ON e.contact_id = COALESCE(c.merged_into, d.contact_id)
                WHERE \(BroadcastStore.deliveriesOf("$1")) AND d.status = 'accepted' AND e.name = $4 AND e.occurred_at >= $2
                  AND e.occurred_at <= (SELECT max(COALESCE(x.sent_at, x.updated_at)) FROM deliveries x
                                        WHERE \(BroadcastStore.deliveriesOf("$1", alias: "x")) AND x.status = 'accepted') + make_interval(secs => $5)
                  AND e.occurred_at >= COALESCE(d.sent_at, d.updated_at)
                  AND e.occurred_at <= COALESCE(d.sent_at, d.updated_at) + make_interval(secs => $5)
            )
            """ : "")
            SELECT \(variant) AS variant,
                   count(*) AS deliveries,
                   count(*) FILTER (WHERE d.status = 'accepted') AS accepted,
                   count(*) FILTER (WHERE d.status IN ('rejected', 'failed')) AS failed,
                   count(*) FILTER (WHERE d.status = 'suppressed') AS suppressed,
                   count(*) FILTER (WHERE d.status = 'skipped') AS skipped,
                   count(*) FILTER (WHERE d.status = 'pending') AS pending,
                   count(*) FILTER (WHERE g.opens > 0) AS unique_opens,
                   COALESCE(sum(g.opens), 0)::int8 AS opens,
                   count(*) FILTER (WHERE g.machine_opens > 0) AS machine_opened,
                   COALESCE(sum(g.machine_opens), 0)::int8 AS machine_opens,
                   count(*) FILTER (WHERE g.clicks > 0) AS unique_clicks,
                   COALESCE(sum(g.clicks), 0)::int8 AS clicks,
                   count(*) FILTER (WHERE g.unsubscribes > 0) AS unsubscribed,
                   \(conversion ? """
                   count(v.id) AS converted,
                   count(*) FILTER (WHERE d.status = 'accepted'
                                      AND COALESCE(d.sent_at, d.updated_at) + make_interval(secs => $5) > $3) AS window_open
                   """ : "0::int8 AS converted, 0::int8 AS window_open")
            FROM deliveries d
            \(join)
            LEFT JOIN engagement g ON g.id = d.id::text
            \(conversion ? "LEFT JOIN converted v ON v.id = d.id" : "")
            WHERE \(BroadcastStore.deliveriesOf("$1"))
            GROUP BY 1
            """
    }

    /// $1 broadcast, $2 the most groups to list: messages that failed or were not sent, per group, status and
    /// reason (the first 200 characters of `last_error`), most frequent first.
    static func reasonsSQL(byVariant: Bool) -> String {
        let (variant, join) = variantJoin(byVariant)
        return """
            SELECT \(variant) AS variant, d.status, left(COALESCE(d.last_error, ''), 200) AS reason, count(*) AS n
            FROM deliveries d
            \(join)
            WHERE \(BroadcastStore.deliveriesOf("$1")) AND d.status IN ('rejected', 'failed', 'suppressed', 'skipped')
            GROUP BY 1, 2, 3
            ORDER BY n DESC, 2, 3
            LIMIT $2
            """
    }
}
