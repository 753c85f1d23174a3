import Domain
import Foundation
import Postgres
import Store

/// How a segment's condition is compiled for `SegmentStore.reconcile`.
public enum SegmentEvaluationMode: Sendable {
    /// Many contacts at once (a full re-evaluation, or an id-range chunk of one): `count`/`sum`, the score and
    /// `in_segment` become joins of pre-aggregated tables restricted to the scope's id range
    /// (`SQLCompiler.compileScan`). A statement reads the events of the aggregates' windows once, whatever the
    /// number of contacts; but events are stored in time order, so every id-range chunk reads those windows
    /// again: a full re-evaluation is cheapest as one statement per segment.
    case scan
    /// A few contacts (those an event batch touched): correlated subqueries, one index probe per contact and
    /// aggregate (`SQLCompiler.compile`). Use it with `SegmentScope.contacts`.
    case perContact
}

/// The `SegmentPredicate` of `condition` at business time `now`, numbered from
/// `SegmentStore.firstPredicateParameter` (`options.firstParameterIndex` is ignored).
public func segmentPredicate(_ condition: Condition, now: Date, options: SQLCompilerOptions = SQLCompilerOptions(),
                             mode: SegmentEvaluationMode) -> SegmentPredicate {
    var options = options
    options.firstParameterIndex = SegmentStore.firstPredicateParameter
    switch mode {
    case .scan:
        let range = SQLContactRange(lower: SegmentStore.scopeLowerBound, upper: SegmentStore.scopeUpperBound)
        let (joins, predicate, parameters) = SQLCompiler.compileScan(condition, contactAlias: "c", now: now, options: options,
                                                                     contactRange: range)
        return SegmentPredicate(joins: joins, condition: predicate, parameters: parameters.map(\.postgresValue))
    case .perContact:
        let (predicate, parameters) = SQLCompiler.compile(condition, contactAlias: "c", now: now, options: options)
        return SegmentPredicate(condition: predicate, parameters: parameters.map(\.postgresValue))
    }
}

extension SQLParameter {
    /// The client value bound to the placeholder (the compiled SQL casts every placeholder explicitly).
    public var postgresValue: PostgresValue {
        switch self {
        case .text(let s): return .text(s)
        case .number(let n): return .double(n)
        case .bool(let b): return .bool(b)
        case .time(let d): return .timestamp(d)
        case .null: return .null
        }
    }
}
