/// SQL bounds of the contact ids a scan-mode predicate is evaluated for (see `SQLCompiler.compileScan`): two SQL
/// expressions of type `int8`, typically placeholders of the enclosing statement (`$3::int8`, `$4::int8`), inclusive.
public struct SQLContactRange: Sendable, Hashable {
    public var lower: String
    public var upper: String

    public init(lower: String, upper: String) {
        self.lower = lower
        self.upper = upper
    }
}

/// The joins `compileScan` puts after `FROM contacts c`, collected while compiling. Aggregates are assembled at
/// the end because a later `sum` may add a column to an earlier aggregate with the same events.
struct ScanJoins {
    /// What makes two `count`/`sum` read the same events (the aggregated function and property aside).
    struct HistoryKey: Hashable {
        let eventName: String?
        let within: Double?
        let filter: TypedNode?
    }

    /// One derived table: the matching events grouped per contact, with a `count` column and/or `sum` columns.
    struct Aggregate {
        let alias: String
        let conditions: [String]
        var columns: [String] = []
        var counted = false
        var sums: [String: String] = [:]  // property -> column
    }

    enum Entry {
        case text(String)
        case aggregate(Int)
    }

    let contactRange: SQLContactRange?
    /// Segments the whole condition requires (`in_segment("s") and ...` at the top): aggregates are only needed
    /// for their members (the condition is false for everyone else), so they are computed for them only.
    let guards: [String]
    /// The placeholder of each guard segment's name, once allocated.
    var guardPlaceholders: [String: String] = [:]
    var entries: [Entry] = []
    var aggregates: [Aggregate] = []
    var aggregateIndex: [HistoryKey: Int] = [:]
    var scoreJoined = false
    var memberships: [String: String] = [:]  // segment -> alias

    init(contactRange: SQLContactRange?, condition: TypedNode) {
        self.contactRange = contactRange
        var guards: [String] = []
        func collect(_ node: TypedNode) {
            switch node {
            case .and(let l, let r): collect(l); collect(r)
            case .inSegment(let s) where !guards.contains(s): guards.append(s)
            default: break
            }
        }
        collect(condition)
        self.guards = guards
    }
}

extension SQLBuilder {
    /// Scan mode applies outside `where:` filters only (inside one, everything stays correlated to the event row).
    func scans(_ events: EventSource) -> Bool {
        guard scan != nil, case .top = events else { return false }
        return true
    }

    /// `ON`-clause restriction of a joined table's `contact_id` to the scanned range ("" without a range).
    private func rangeCondition(_ column: String) -> String {
        guard let range = scan?.contactRange else { return "" }
        return " AND \(column) BETWEEN \(range.lower) AND \(range.upper)"
    }

    /// `count` (`sumOf` nil) or `sum` of `sumOf` as a column of a pre-aggregated LEFT JOIN; 0 for contacts
    /// without matching events (as the correlated `count(*)` / `COALESCE(sum(...), 0)`).
    mutating func scanHistory(_ spec: HistorySpec, sumOf property: String?) -> SQLFragment {
        let key = ScanJoins.HistoryKey(eventName: spec.eventName, within: spec.within, filter: spec.filter)
        let index: Int
        if let existing = scan!.aggregateIndex[key] {
            index = existing
        } else {
            aliasCounter += 1
            let alias = "nurture_agg\(aliasCounter)"
            var conditions = historyConditions(spec, alias: "\(alias)_e")
            if let range = scan!.contactRange {
                conditions.insert("\(alias)_e.contact_id BETWEEN \(range.lower) AND \(range.upper)", at: 0)
            }
            for segment in scan!.guards {
                conditions.append("\(alias)_e.contact_id IN (SELECT nurture_guard.contact_id FROM segment_memberships nurture_guard "
                                  + "WHERE nurture_guard.segment = \(guardPlaceholder(segment))\(rangeCondition("nurture_guard.contact_id")))")
            }
            index = scan!.aggregates.count
            scan!.aggregates.append(ScanJoins.Aggregate(alias: alias, conditions: conditions))
            scan!.aggregateIndex[key] = index
            scan!.entries.append(.aggregate(index))
        }
        let alias = scan!.aggregates[index].alias
        let column: String
        if let property {
            if let existing = scan!.aggregates[index].sums[property] {
                column = existing
            } else {
                column = "s\(scan!.aggregates[index].sums.count + 1)"
                let value = numericProperty("\(alias)_e", property)
                scan!.aggregates[index].sums[property] = column
                scan!.aggregates[index].columns.append("sum(\(value)) AS \(column)")
            }
        } else {
            column = "n"
            if !scan!.aggregates[index].counted {
                scan!.aggregates[index].counted = true
                scan!.aggregates[index].columns.append("count(*)::double precision AS n")
            }
        }
        return SQLFragment(sql: "COALESCE(\(alias).\(column), 0::double precision)", nullable: false)
    }

    /// The placeholder of a guard segment's name (one parameter per segment, however many aggregates use it).
    private mutating func guardPlaceholder(_ segment: String) -> String {
        if let p = scan!.guardPlaceholders[segment] { return p }
        let p = parameter(.text(segment))
        scan!.guardPlaceholders[segment] = p
        return p
    }

    /// `contact.score` from one LEFT JOIN of the contact's `contact_scores` row (PRIMARY KEY (contact_id, name):
    /// at most one row, so no contact is repeated).
    mutating func scanScore() -> SQLFragment {
        let alias = "nurture_score_join"
        if !scan!.scoreJoined {
            scan!.scoreJoined = true
            let name = parameter(.text(options.scoreName))
            scan!.entries.append(.text("LEFT JOIN contact_scores \(alias) ON \(alias).contact_id = \(contact).id AND \(alias).name = \(name)\(rangeCondition("\(alias).contact_id"))"))
        }
        return SQLFragment(sql: "COALESCE(\(scoreValue(alias)), 0::double precision)", nullable: false)
    }

    /// `in_segment` as a LEFT JOIN of the membership row (PRIMARY KEY (segment, contact_id): at most one). A join
    /// rather than `c.id IN (SELECT ...)`: PostgreSQL hashes an uncorrelated IN only while the set fits in
    /// `hash_mem`, and otherwise re-reads it for every contact; a join stays a hash or merge join at any size.
    mutating func scanMembership(_ segment: String) -> SQLFragment {
        let alias: String
        if let existing = scan!.memberships[segment] {
            alias = existing
        } else {
            aliasCounter += 1
            alias = "nurture_member\(aliasCounter)"
            scan!.memberships[segment] = alias
            let p = parameter(.text(segment))
            scan!.entries.append(.text("LEFT JOIN segment_memberships \(alias) ON \(alias).segment = \(p) AND \(alias).contact_id = \(contact).id\(rangeCondition("\(alias).contact_id"))"))
        }
        return SQLFragment(sql: "(\(alias).contact_id IS NOT NULL)", nullable: false)
    }

    /// The collected joins, in the order they were first needed.
    func scanJoinsSQL() -> String {
        guard let scan else { return "" }
        return scan.entries.map { entry -> String in
            switch entry {
            case .text(let sql): return sql
            case .aggregate(let index):
                let a = scan.aggregates[index]
                let events = "\(a.alias)_e"
                let filter = a.conditions.isEmpty ? "" : " WHERE \(a.conditions.joined(separator: " AND "))"
                return "LEFT JOIN (SELECT \(events).contact_id, \(a.columns.joined(separator: ", ")) FROM events \(events)\(filter) "
                    + "GROUP BY \(events).contact_id) \(a.alias) ON \(a.alias).contact_id = \(contact).id"
            }
        }.joined(separator: " ")
    }
}

extension TypedNode {
    /// Whether the node reads the contact (columns, attributes, tags, score, segments or its history), as
    /// opposed to only the event, literals and `now()`. A `where:` filter that does cannot be pre-aggregated.
    var readsContact: Bool {
        switch self {
        case .column, .score, .tags, .attribute, .count, .sum, .inSegment, .hasTag: return true
        case .literal, .eventName, .eventOccurredAt, .eventProperty, .eventContext, .now: return false
        case .coerce(let x, _), .not(let x), .negate(let x), .isNull(let x, _, _): return x.readsContact
        case .and(let l, let r), .or(let l, let r), .compare(_, let l, let r, _), .arithmetic(_, let l, let r):
            return l.readsContact || r.readsContact
        }
    }
}
