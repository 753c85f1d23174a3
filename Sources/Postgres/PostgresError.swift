/// Everything that can go wrong talking to PostgreSQL, typed so callers can tell a dead server from a bad
/// statement, and a retryable conflict (`isSerializationFailure`) from a bug.
///
/// `description` is deliberately short: the SQLSTATE and the server's primary message, never parameter values,
/// `DETAIL` (which quotes row values, e.g. `Key (email)=(a@b.c) already exists`) or passwords, so it is safe for
/// logs. `String(reflecting:)` (`debugDescription`) adds detail, hint, position and constraint for debugging.
public struct PostgresError: Error, CustomStringConvertible, CustomDebugStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The connection URL/conninfo could not be parsed by libpq.
        case invalidURL
        /// The connection could not be made (refused, unreachable, bad credentials, connect timeout),
        /// even after reconnecting for the configured time.
        case connect
        /// The connection broke while a statement was in flight (or inside an open transaction): the statement may
        /// or may not have run, and an open transaction was rolled back by the server. The next call reconnects.
        case connectionLost
        /// The server rejected the statement (syntax, constraint, conflict, timeout...): see `sqlState`.
        case server
        /// A result value could not be decoded as the type the caller asked for.
        case decode
        /// The API was used wrongly (unknown prepared statement, nested transaction, ...).
        case usage
    }

    public let kind: Kind
    /// The server's primary message (or libpq's / our own text for non-server errors).
    public let message: String
    /// The five-character SQLSTATE, e.g. `40001` serialization failure, `23505` unique violation, `57014` canceled.
    public let sqlState: String?
    /// The server's `DETAIL`; may quote row values: keep it out of logs that must not hold personal data.
    public let detail: String?
    public let hint: String?
    /// 1-based character position of the error in the statement text, when the server reports one.
    public let position: Int?
    /// The violated constraint's name (unique, foreign key, check, exclusion, not-null).
    public let constraint: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil, detail: String? = nil, hint: String? = nil,
                position: Int? = nil, constraint: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
        self.detail = detail
        self.hint = hint
        self.position = position
        self.constraint = constraint
    }

    /// `40001 serialization_failure` or `40P01 deadlock_detected`: rerunning the whole transaction may succeed.
    public var isSerializationFailure: Bool { sqlState == "40001" || sqlState == "40P01" }

    /// `23505 unique_violation`.
    public var isUniqueViolation: Bool { sqlState == "23505" }

    /// True when retrying (the whole transaction, on a fresh connection if need be) may succeed: connection
    /// failures, serialization failures and deadlocks, administrator/crash shutdown, "cannot connect now" and
    /// every `08xxx` connection exception.
    public var isTransient: Bool {
        if kind == .connect || kind == .connectionLost { return true }
        guard let state = sqlState else { return false }
        switch state {
        case "40001", "40P01", "57P01", "57P02", "57P03": return true
        default: return state.hasPrefix("08")
        }
    }

    public var description: String {
        switch kind {
        case .invalidURL: return "invalid PostgreSQL URL: \(message)"
        case .connect: return "PostgreSQL connect failed: \(message)"
        case .connectionLost: return "PostgreSQL connection lost: \(message)"
        case .server: return "PostgreSQL error \(sqlState ?? "?????"): \(message)"
        case .decode: return "PostgreSQL decode error: \(message)"
        case .usage: return "PostgreSQL usage error: \(message)"
        }
    }

    public var debugDescription: String {
        var text = description
        if let sqlState, kind != .server { text += " (SQLSTATE \(sqlState))" }
        if let detail { text += "\nDETAIL: \(detail)" }
        if let hint { text += "\nHINT: \(hint)" }
        if let position { text += "\nPOSITION: \(position)" }
        if let constraint { text += "\nCONSTRAINT: \(constraint)" }
        return text
    }
}
