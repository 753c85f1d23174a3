#if canImport(Glibc)
import Glibc
#endif
internal import CLibpq
import Foundation
import Logging
import NurtureCore

/// How `transaction` isolates its body.
public enum PostgresIsolation: Sendable {
    case readCommitted, repeatableRead, serializable

    var beginSQL: String {
        switch self {
        case .readCommitted: return "BEGIN ISOLATION LEVEL READ COMMITTED"
        case .repeatableRead: return "BEGIN ISOLATION LEVEL REPEATABLE READ"
        case .serializable: return "BEGIN ISOLATION LEVEL SERIALIZABLE"
        }
    }
}

/// One connection to PostgreSQL over libpq. Synchronous: every call blocks its thread until the server answers,
/// so use it from a dedicated thread (worker slot, scheduler thread, `BlockingExecutor`), never from the Swift
/// concurrency pool. Parameters always travel separately from the SQL text (`$1`, `$2`, ...), never interpolated.
///
/// The session always runs with `TimeZone=UTC`, `DateStyle=ISO`, `bytea_output=hex` and `client_encoding=UTF8`
/// (set in the startup packet, no extra round trip), and `application_name=nurture` unless the URL names another.
///
/// Failures:
/// - The first connect in `init` is tried once, so a wrong URL fails fast with `.connect`.
/// - A connection that breaks while a statement is in flight throws `.connectionLost` from that call: the statement
///   may or may not have run, and it is never re-sent. The next call reconnects (with backoff, for up to
///   `reconnectForMilliseconds`) and re-prepares remembered statements before running.
/// - A connection found dead while a transaction is open (inside `transaction`, or after a manual `BEGIN`)
///   throws `.connectionLost` instead of reconnecting, so later statements never run outside their transaction.
/// - A dead server gives an error, never a hang: TCP keepalives (`keepalives_idle=15`, `keepalives_interval=5`,
///   `keepalives_count=3`), `tcp_user_timeout=30000` and `connect_timeout=5` are set unless the URL sets them, and
///   `statementTimeoutMilliseconds` bounds each statement on the server (`57014` when exceeded).
public final class PostgresConnection: @unchecked Sendable {
    // Safety (@unchecked Sendable): a libpq PGconn is not thread-safe, and neither is the bookkeeping here.
    // A connection is confined to one user at a time: it is either owned by one thread for its life, or lent out
    // by `PostgresPool`, which hands each connection to one borrower at a time under its lock (the lock's
    // release/acquire orders every access of one borrower before the next's). Nothing here is touched concurrently.
    var connection: OpaquePointer?
    private let connectKeywords: [String]
    private let connectValues: [String]
    /// `host:port/dbname`, for logs and errors (never the password).
    public let target: String
    private let logger: Logger
    /// After the server goes away, how long a call keeps reconnecting (with backoff) before it gives up.
    public let reconnectForMilliseconds: Int64
    /// The session's `statement_timeout` (nil: the server's default, usually none).
    public private(set) var statementTimeoutMilliseconds: Int?
    /// Incremented every time a new server session is made (tests and metrics read it).
    public private(set) var connectionCount = 0

    private var preparedStatements: [String: String] = [:]
    private var preparedOnServer: Set<String> = []
    /// True while `transaction` runs its body: a lost connection must not silently reconnect then.
    private var inTransactionBlock = false
    /// The transaction status after the last completed call.
    var transactionStatus: PGTransactionStatusType = PQTRANS_IDLE
    /// The last server error, so `COMMIT` of an aborted transaction reports why it was aborted.
    private var lastServerError: PostgresError?
    /// The server sent a FATAL message while the session was idle (terminated, shutting down): it is closing.
    private var serverSentFatal = false
    /// The session broke while a manual transaction block (`BEGIN` outside `transaction`) was open: the next
    /// call throws `.connectionLost` once instead of silently running outside that transaction.
    private var lostInsideTransaction = false

    /// Connects once; throws `.invalidURL` if libpq cannot parse `url`, `.connect` at once if the server is not
    /// there (no retry loop on first contact, so a CLI pointed at the wrong place fails fast with a clear error).
    ///
    /// - Parameters:
    ///   - url: a libpq URI (`postgres://user:pass@host:5432/db?sslmode=require`) or `key=value` conninfo, used
    ///     as is: every libpq parameter works.
    ///   - statementTimeoutMilliseconds: the session's `statement_timeout`; nil leaves the server's default.
    ///   - reconnectForMilliseconds: how long a call reconnects after the connection broke.
    public init(url: String, statementTimeoutMilliseconds: Int? = nil, reconnectForMilliseconds: Int64 = 10_000,
                logger: Logger = Logger(label: "nurture.postgres")) throws(PostgresError) {
        let parameters = try PostgresConnection.connectionParameters(url: url, statementTimeoutMilliseconds: statementTimeoutMilliseconds)
        self.connectKeywords = parameters.keywords
        self.connectValues = parameters.values
        self.target = parameters.target
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        self.reconnectForMilliseconds = reconnectForMilliseconds
        var logger = logger
        logger[metadataKey: "postgres.server"] = "\(parameters.target)"
        self.logger = logger
        try connectOnce()
    }

    deinit { dropConnection() }

    /// True while the session is up (as far as libpq knows without a round trip).
    public var isConnected: Bool {
        guard let c = connection else { return false }
        return PQstatus(c) == CONNECTION_OK
    }

    /// The server process ID of the current session (for `pg_terminate_backend`, `pg_stat_activity`).
    public var backendPID: Int32? {
        guard let c = connection, PQstatus(c) == CONNECTION_OK else { return nil }
        return PQbackendPID(c)
    }

    /// True when the session is idle outside any transaction block.
    public var isIdle: Bool { connection == nil || transactionStatus == PQTRANS_IDLE }

    /// Closes the session; the next call reconnects.
    public func close() {
        lostInsideTransaction = false
        dropConnection()
    }

    func dropConnection() {
        if let c = connection { PQfinish(c) }
        connection = nil
        preparedOnServer.removeAll()
        preparedCount = 0
        transactionStatus = PQTRANS_IDLE
    }

    // MARK: - Statements

    /// Runs one statement with `$n` parameters (extended protocol, explicit parameter types) and returns its rows.
    /// Statements run again are executed by name (see `cachedStatementName`).
    @discardableResult
    public func query(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) -> PostgresResult {
        try run(sql, EncodedParameters(parameters), rows: true)
    }

    /// Runs one statement and returns the number of rows it inserted, updated or deleted.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [PostgresValue] = []) throws(PostgresError) -> Int {
        try run(sql, EncodedParameters(parameters), rows: false).affectedRows
    }

    private func run(_ sql: String, _ encoded: EncodedParameters, rows: Bool) throws(PostgresError) -> PostgresResult {
        let c = try ensureConnected()
        let key = StatementKey(sql: sql, types: encoded.types)
        if let name = try cachedStatementName(key, c) {
            let result = encoded.withPointers { count, _, values, lengths, formats in
                PQexecPrepared(c, name, count, values, lengths, formats, 0)
            }
            do {
                return try finish(result, c, rows: rows)
            } catch {
                // The server no longer has it (`DISCARD ALL`, `DEALLOCATE`) or its plan cannot be reused (a table's
                // columns changed under it): the statement did not run. Outside a transaction, forget it and run the
                // text once more; inside one, the transaction is aborted anyway.
                guard Self.isStaleStatement(error), transactionStatus == PQTRANS_IDLE, !inTransactionBlock else { throw error }
                forgetStatement(key)
            }
        }
        let result = encoded.withPointers { count, types, values, lengths, formats in
            PQexecParams(c, sql, count, types, values, lengths, formats, 0)
        }
        return try finish(result, c, rows: rows)
    }

    // MARK: - Statement cache

    /// A statement's identity on this connection: its text and its parameters' types.
    struct StatementKey: Hashable {
        var sql: String
        var types: [UInt32]
    }

    private struct CachedStatement {
        var uses = 0
        /// The server-side name, and the session (`connectionCount`) it was prepared in.
        var name: String?
        var session = 0
    }

    /// Statements seen on this connection (bounded: see `cachedStatementName`).
    private var cachedStatements: [StatementKey: CachedStatement] = [:]
    private var preparedCount = 0
    private var statementSerial = 0
    /// At most this many statements are prepared per session; past it, new ones run unprepared.
    public static let preparedStatementLimit = 256

    /// The server-side name to execute `key` by, preparing it now if this is its second use on this connection;
    /// nil: run it as text (its first use, or the cache is full). The server then parses and plans each repeated
    /// statement once per session instead of on every call (PostgreSQL keeps a generic plan when it is no worse than
    /// the custom ones). A statement run once (a report, a migration) costs nothing extra; one that is repeated pays
    /// one extra round trip, once. After a reconnect, statements are prepared again on their next use.
    func cachedStatementName(_ key: StatementKey, _ c: OpaquePointer) throws(PostgresError) -> String? {
        var entry = cachedStatements[key] ?? CachedStatement()
        if let name = entry.name {
            if entry.session == connectionCount { return name }
            entry.name = nil  // prepared in an earlier session, gone with it (the count restarted then)
        }
        entry.uses += 1
        defer { cachedStatements[key] = entry }
        guard entry.uses >= 2 else {
            // Texts seen once (e.g. SQL built with literals) must not pile up: forget them all now and then.
            if cachedStatements.count >= 4 * Self.preparedStatementLimit {
                cachedStatements = cachedStatements.filter { $0.value.name != nil }
            }
            return nil
        }
        guard preparedCount < Self.preparedStatementLimit else { return nil }
        statementSerial += 1
        let name = "nurture_s\(statementSerial)"
        let result = key.types.withUnsafeBufferPointer { types in
            PQprepare(c, name, key.sql, Int32(key.types.count), types.baseAddress)
        }
        _ = try finish(result, c, rows: false)
        entry.name = name
        entry.session = connectionCount
        preparedCount += 1
        return name
    }

    var isInsideTransactionBlock: Bool { inTransactionBlock }

    /// Drops `key` from the cache (its server-side statement, if any, is left to the session's end).
    func forgetStatement(_ key: StatementKey) {
        if let entry = cachedStatements.removeValue(forKey: key), entry.name != nil, entry.session == connectionCount { preparedCount -= 1 }
    }

    /// `26000` (no such prepared statement) or `0A000` "cached plan must not change result type".
    static func isStaleStatement(_ error: PostgresError) -> Bool {
        error.sqlState == "26000" || (error.sqlState == "0A000" && "\(error)".contains("cached plan"))
    }

    /// Runs a script of one or more `;`-separated statements without parameters (simple protocol), e.g. a
    /// migration. Without its own `BEGIN`/`COMMIT`, a multi-statement script runs as one implicit transaction.
    public func simpleQuery(_ sql: String) throws(PostgresError) {
        let c = try ensureConnected()
        _ = try finish(PQexec(c, sql), c, rows: false)
    }

    /// Remembers `sql` under `name` and prepares it on the server now (so syntax errors show at once).
    /// Calling it again with the same name and SQL does nothing; after a reconnect the statement is prepared again
    /// on first use. Parameter types are inferred by the server from the statement.
    public func prepare(_ name: String, _ sql: String) throws(PostgresError) {
        if let existing = preparedStatements[name] {
            guard existing == sql else {
                throw PostgresError(.usage, "prepared statement \"\(name)\" already exists on this connection with different SQL")
            }
            return
        }
        preparedStatements[name] = sql
        do {
            let c = try ensureConnected()
            try prepareOnServer(name, sql, c)
        } catch {
            if error.kind == .server { preparedStatements[name] = nil }
            throw error
        }
    }

    /// Runs a statement remembered by `prepare`.
    @discardableResult
    public func queryPrepared(_ name: String, _ parameters: [PostgresValue]) throws(PostgresError) -> PostgresResult {
        guard let sql = preparedStatements[name] else {
            throw PostgresError(.usage, "no prepared statement \"\(name)\" on this connection: call prepare first")
        }
        let encoded = try EncodedParameters(parameters)
        var retried = false
        while true {
            let c = try ensureConnected()
            if !preparedOnServer.contains(name) { try prepareOnServer(name, sql, c) }
            let result = encoded.withPointers { count, _, values, lengths, formats in
                PQexecPrepared(c, name, count, values, lengths, formats, 0)
            }
            do {
                return try finish(result, c, rows: true)
            } catch {
                // `DISCARD ALL`/`DEALLOCATE` by someone else: the statement did not run, so prepare and run it again.
                if error.sqlState == "26000", !retried, transactionStatus == PQTRANS_IDLE {
                    preparedOnServer.remove(name)
                    retried = true
                    continue
                }
                throw error
            }
        }
    }

    private func prepareOnServer(_ name: String, _ sql: String, _ c: OpaquePointer) throws(PostgresError) {
        _ = try finish(PQprepare(c, name, sql, 0, nil), c, rows: false)
        preparedOnServer.insert(name)
    }

    /// Sets the session's `statement_timeout` now and after every reconnect (nil or 0: no timeout).
    public func setStatementTimeout(milliseconds: Int?) throws(PostgresError) {
        statementTimeoutMilliseconds = milliseconds
        try query("SELECT set_config('statement_timeout', $1, false)", [.text(String(max(milliseconds ?? 0, 0)))])
    }

    // MARK: - Transactions

    /// Runs `body` in a transaction: `BEGIN ISOLATION LEVEL ...`, then `COMMIT`; `ROLLBACK` on any error.
    /// On a serialization failure or deadlock (`40001`, `40P01`, at any statement or at `COMMIT`), the whole body
    /// runs again after a jittered backoff, up to `maxAttempts` times, so `body` must be safe to rerun (no side
    /// effects outside the database). Not nestable (use `SAVEPOINT`s inside).
    public func transaction<T>(isolation: PostgresIsolation = .readCommitted, maxAttempts: Int = 5,
                               _ body: (PostgresConnection) throws -> T) throws -> T {
        guard !inTransactionBlock else {
            throw PostgresError(.usage, "transaction() cannot be nested; use SAVEPOINT inside the body")
        }
        let backoff = Backoff(baseMilliseconds: 20, capMilliseconds: 1_000)
        var attempt = 0
        while true {
            attempt += 1
            try simpleQuery(isolation.beginSQL)
            inTransactionBlock = true
            lastServerError = nil
            do {
                let value = try body(self)
                try commit()
                inTransactionBlock = false
                return value
            } catch {
                inTransactionBlock = false
                let abortedBy = lastServerError
                rollbackQuietly()
                let retryable = (error as? PostgresError)?.isSerializationFailure == true || abortedBy?.isSerializationFailure == true
                if retryable && attempt < max(1, maxAttempts) {
                    let pause = Int64(backoff.delay(attempt: attempt - 1))
                    logger.debug("postgres transaction conflict, retrying",
                                 metadata: ["attempt": "\(attempt)", "sqlstate": "\((error as? PostgresError)?.sqlState ?? abortedBy?.sqlState ?? "")"])
                    sleepMilliseconds(max(pause, 1))
                    continue
                }
                throw error
            }
        }
    }

    private func commit() throws(PostgresError) {
        if transactionStatus == PQTRANS_INERROR {
            // COMMIT of an aborted transaction silently rolls back: report why it was aborted instead.
            throw lastServerError ?? PostgresError(.server, "current transaction is aborted; it was rolled back", sqlState: "25P02")
        }
        guard let c = connection else { throw PostgresError(.connectionLost, "\(target): connection lost before COMMIT; the transaction was rolled back") }
        let result = PQexec(c, "COMMIT")
        if let result, PQresultStatus(result) == PGRES_COMMAND_OK, String(cString: PQcmdStatus(result)) == "ROLLBACK" {
            PQclear(result)
            transactionStatus = PQtransactionStatus(c)
            throw lastServerError ?? PostgresError(.server, "COMMIT rolled back the transaction", sqlState: "25P02")
        }
        _ = try finish(result, c, rows: false)
    }

    private func rollbackQuietly() {
        guard let c = connection, PQstatus(c) == CONNECTION_OK, PQtransactionStatus(c) != PQTRANS_IDLE else { return }
        if let result = PQexec(c, "ROLLBACK") { PQclear(result) }
        transactionStatus = PQtransactionStatus(c)
        if PQstatus(c) != CONNECTION_OK { dropConnection() }
    }

    /// Ends any open transaction block (`ROLLBACK`); drops the session if that fails. Used by the pool on checkin.
    func resetIfInTransaction() {
        lostInsideTransaction = false
        guard let c = connection else { return }
        if PQstatus(c) != CONNECTION_OK { dropConnection(); return }
        if PQtransactionStatus(c) == PQTRANS_IDLE { return }
        logger.warning("postgres connection returned inside a transaction; rolling back")
        rollbackQuietly()
        if let c = connection, PQtransactionStatus(c) != PQTRANS_IDLE { dropConnection() }
    }

    // MARK: - Results and errors

    /// Converts a libpq result (and frees it), or throws its error. Updates the transaction status.
    func finish(_ result: OpaquePointer?, _ c: OpaquePointer, rows: Bool) throws(PostgresError) -> PostgresResult {
        guard let result else {
            throw connectionFailure(c, message: PostgresConnection.errorMessage(c))
        }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
            transactionStatus = PQtransactionStatus(c)
            return PostgresConnection.convert(result, rows: rows)
        case PGRES_COPY_IN, PGRES_COPY_OUT, PGRES_COPY_BOTH:
            abandonCopy(c, status)
            throw PostgresError(.usage, "COPY is not supported by query/execute: use copyIn for COPY ... FROM STDIN")
        default:
            throw error(from: result, c)
        }
    }

    /// The typed error for a failed result: `.connectionLost` (and the session dropped) if the connection broke,
    /// `.server` otherwise.
    func error(from result: OpaquePointer, _ c: OpaquePointer) -> PostgresError {
        func field(_ code: UInt8) -> String? {
            guard let p = PQresultErrorField(result, Int32(code)) else { return nil }
            return String(cString: p)
        }
        var message = field(UInt8(ascii: "M")) ?? ""
        if message.isEmpty, let p = PQresultErrorMessage(result) { message = String(cString: p) }
        if message.isEmpty { message = PostgresConnection.errorMessage(c) }
        message = message.trimmingCharacters(in: .whitespacesAndNewlines)
        let sqlState = field(UInt8(ascii: "C"))
        if PQstatus(c) != CONNECTION_OK {
            return connectionFailure(c, message: message, sqlState: sqlState)
        }
        transactionStatus = PQtransactionStatus(c)
        let error = PostgresError(.server, message, sqlState: sqlState, detail: field(UInt8(ascii: "D")),
                                  hint: field(UInt8(ascii: "H")), position: field(UInt8(ascii: "P")).flatMap { Int($0) },
                                  constraint: field(UInt8(ascii: "n")))
        lastServerError = error
        return error
    }

    /// The connection broke: drop it (the next call reconnects) and describe the loss.
    func connectionFailure(_ c: OpaquePointer, message: String, sqlState: String? = nil) -> PostgresError {
        if PQstatus(c) == CONNECTION_OK {
            // No result and no broken connection: out of memory or a libpq usage problem. Start afresh anyway.
            logger.warning("postgres call failed without a result", metadata: ["error": "\(message)"])
        }
        if !inTransactionBlock && (transactionStatus == PQTRANS_INTRANS || transactionStatus == PQTRANS_INERROR) {
            lostInsideTransaction = true
        }
        dropConnection()
        let text = message.isEmpty ? "server closed the connection" : message
        return PostgresError(.connectionLost, "\(target): \(text)", sqlState: sqlState)
    }

    static func errorMessage(_ c: OpaquePointer) -> String {
        guard let p = PQerrorMessage(c) else { return "" }
        return String(cString: p).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Gets the connection out of an unexpected COPY state so it stays usable.
    private func abandonCopy(_ c: OpaquePointer, _ status: ExecStatusType) {
        if status == PGRES_COPY_IN || status == PGRES_COPY_BOTH {
            _ = PQputCopyEnd(c, "COPY FROM STDIN is only supported through copyIn")
        }
        if status == PGRES_COPY_OUT || status == PGRES_COPY_BOTH {
            var buffer: UnsafeMutablePointer<CChar>? = nil
            while PQgetCopyData(c, &buffer, 0) > 0 { PQfreemem(buffer); buffer = nil }
        }
        while let extra = PQgetResult(c) { PQclear(extra) }
        if PQstatus(c) != CONNECTION_OK { dropConnection() } else { transactionStatus = PQtransactionStatus(c) }
    }

    /// Copies a result's values into Swift memory (one buffer for all cells).
    static func convert(_ result: OpaquePointer, rows: Bool) -> PostgresResult {
        let tuples = PQcmdTuples(result).map { PostgresText.parseInt64(UnsafeRawBufferPointer(start: $0, count: strlen($0))) } ?? nil
        let affected = Int(tuples ?? 0)
        let columnCount = Int(PQnfields(result))
        guard columnCount > 0 else { return PostgresResult(storage: .empty, affectedRows: affected) }
        var columns: [String] = []
        var types: [UInt32] = []
        columns.reserveCapacity(columnCount)
        types.reserveCapacity(columnCount)
        for column in 0..<Int32(columnCount) {
            columns.append(PQfname(result, column).map { String(cString: $0) } ?? "?column?")
            types.append(PQftype(result, column))
        }
        let rowCount = rows ? Int(PQntuples(result)) : 0
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        var lengths: [Int32] = []
        offsets.reserveCapacity(rowCount * columnCount)
        lengths.reserveCapacity(rowCount * columnCount)
        for row in 0..<Int32(rowCount) {
            for column in 0..<Int32(columnCount) {
                offsets.append(bytes.count)
                if PQgetisnull(result, row, column) != 0 {
                    lengths.append(-1)
                } else {
                    let length = PQgetlength(result, row, column)
                    lengths.append(length)
                    if length > 0, let value = PQgetvalue(result, row, column) {
                        bytes.append(contentsOf: UnsafeRawBufferPointer(start: value, count: Int(length)))
                    }
                }
            }
        }
        let storage = PostgresResultStorage(columns: columns, columnTypes: types, rowCount: rowCount,
                                            bytes: bytes, offsets: offsets, lengths: lengths)
        return PostgresResult(storage: storage, affectedRows: affected)
    }

    // MARK: - Connecting

    /// The live session, reconnecting first if it broke (see the type's documentation for when it does not).
    func ensureConnected() throws(PostgresError) -> OpaquePointer {
        if let c = connection {
            // Reads whatever the server sent while we were idle (e.g. the FATAL of pg_terminate_backend or a
            // shutdown): one non-blocking recv, no round trip.
            // `PQisBusy` parses it; a FATAL arrives as a notice, before the server closes the socket.
            if PQstatus(c) == CONNECTION_OK && PQconsumeInput(c) == 1 && PQisBusy(c) == 0 && !serverSentFatal
                && PQstatus(c) == CONNECTION_OK { return c }
            let wasInTransaction = transactionStatus == PQTRANS_INTRANS || transactionStatus == PQTRANS_INERROR
            let reason = PostgresConnection.errorMessage(c)
            dropConnection()
            if wasInTransaction || inTransactionBlock {
                throw PostgresError(.connectionLost, "\(target): connection lost inside a transaction, which the server rolled back"
                                    + (reason.isEmpty ? "" : " (\(reason))"))
            }
        } else if inTransactionBlock || lostInsideTransaction {
            lostInsideTransaction = false
            throw PostgresError(.connectionLost, "\(target): connection lost inside a transaction, which the server rolled back;"
                                + " this statement was not run")
        }
        try reconnect()
        guard let c = connection else { throw PostgresError(.connect, "\(target): not connected") }
        return c
    }

    private func reconnect() throws(PostgresError) {
        let deadline = monotonicMilliseconds() + reconnectForMilliseconds
        let backoff = Backoff(baseMilliseconds: 50, capMilliseconds: 1_000)
        var attempt = 0
        while true {
            do {
                try connectOnce()
                logger.info("postgres reconnected", metadata: ["attempts": "\(attempt + 1)"])
                return
            } catch {
                let now = monotonicMilliseconds()
                if now >= deadline || reconnectForMilliseconds <= 0 || error.kind == .invalidURL { throw error }
                let pause = min(Int64(backoff.delay(attempt: attempt)), deadline - now)
                if attempt == 0 { logger.warning("postgres unavailable, reconnecting", metadata: ["error": "\(error)"]) }
                attempt += 1
                sleepMilliseconds(pause)
            }
        }
    }

    private func connectOnce() throws(PostgresError) {
        dropConnection()
        let c = PostgresConnection.withCStrings(connectKeywords) { keywords in
            PostgresConnection.withCStrings(connectValues) { values in
                PQconnectdbParams(keywords, values, 1)
            }
        }
        guard let c else { throw PostgresError(.connect, "\(target): libpq could not allocate a connection") }
        guard PQstatus(c) == CONNECTION_OK else {
            let message = PostgresConnection.errorMessage(c)
            PQfinish(c)
            throw PostgresError(.connect, "\(target): \(message)")
        }
        PQsetNoticeReceiver(c, { context, result in
            guard let context, let result else { return }
            let connection = Unmanaged<PostgresConnection>.fromOpaque(context).takeUnretainedValue()
            connection.received(notice: result)
        }, Unmanaged.passUnretained(self).toOpaque())
        serverSentFatal = false
        connection = c
        connectionCount += 1
        transactionStatus = PQTRANS_IDLE
        // A pooler that ignores startup options (pgbouncer with ignore_startup_parameters) leaves the server's
        // defaults: the server reports TimeZone and DateStyle, so check them and SET only if needed.
        var fixes: [String] = []
        if let tz = PQparameterStatus(c, "TimeZone").map({ String(cString: $0) }), tz != "UTC" && tz != "Etc/UTC" {
            fixes.append("SET TimeZone TO 'UTC'")
        }
        if let style = PQparameterStatus(c, "DateStyle").map({ String(cString: $0) }), !style.hasPrefix("ISO") {
            fixes.append("SET DateStyle TO 'ISO'")
        }
        if !fixes.isEmpty {
            fixes.append("SET bytea_output TO 'hex'")
            if let ms = statementTimeoutMilliseconds { fixes.append("SET statement_timeout TO \(max(ms, 0))") }
            do { _ = try finish(PQexec(c, fixes.joined(separator: "; ")), c, rows: false) } catch {
                dropConnection()
                throw PostgresError(.connect, "\(target): setting up the session failed: \(error)")
            }
        }
    }

    /// Notices and warnings go to the log (debug); a FATAL one marks the session as going away.
    private func received(notice result: OpaquePointer) {
        let severity = PQresultErrorField(result, Int32(UInt8(ascii: "V"))).map { String(cString: $0) } ?? ""
        let text = PQresultErrorMessage(result).map { String(cString: $0) } ?? ""
        if severity == "FATAL" || severity == "PANIC" { serverSentFatal = true }
        logger.debug("postgres notice", metadata: [
            "severity": "\(severity)", "notice": "\(text.trimmingCharacters(in: .whitespacesAndNewlines))"])
    }

    /// The keyword/value arrays for `PQconnectdbParams(expand_dbname: 1)`: our defaults first (the URL overrides
    /// them), then the URL as `dbname` (expanded by libpq), then the session settings we require (override it).
    static func connectionParameters(url: String, statementTimeoutMilliseconds: Int?) throws(PostgresError)
        -> (keywords: [String], values: [String], target: String) {
        var errorPointer: UnsafeMutablePointer<CChar>? = nil
        guard let parsedOptions = PQconninfoParse(url, &errorPointer) else {
            var message = "cannot parse"
            if let errorPointer {
                message = String(cString: errorPointer).trimmingCharacters(in: .whitespacesAndNewlines)
                PQfreemem(errorPointer)
            }
            throw PostgresError(.invalidURL, "\"\(PostgresURL.redacted(url))\": \(message)")
        }
        var given: [String: String] = [:]
        var option = parsedOptions
        while let keyword = option.pointee.keyword {
            if let value = option.pointee.val { given[String(cString: keyword)] = String(cString: value) }
            option += 1
        }
        PQconninfoFree(parsedOptions)

        let environment = ProcessInfo.processInfo.environment
        var keywords: [String] = []
        var values: [String] = []
        let defaults: [(String, String, String)] = [
            ("application_name", "PGAPPNAME", "nurture"),
            ("connect_timeout", "PGCONNECT_TIMEOUT", "5"),
            ("keepalives", "", "1"),
            ("keepalives_idle", "", "15"),
            ("keepalives_interval", "", "5"),
            ("keepalives_count", "", "3"),
            ("tcp_user_timeout", "", "30000"),
        ]
        for (keyword, variable, value) in defaults where given[keyword] == nil && (variable.isEmpty || environment[variable] == nil) {
            keywords.append(keyword)
            values.append(value)
        }
        keywords.append("dbname")
        values.append(url)
        var options = given["options"] ?? environment["PGOPTIONS"] ?? ""
        options += " -c TimeZone=UTC -c DateStyle=ISO -c bytea_output=hex -c extra_float_digits=1"
        if let ms = statementTimeoutMilliseconds { options += " -c statement_timeout=\(max(ms, 0))" }
        keywords.append("options")
        values.append(options.trimmingCharacters(in: .whitespaces))
        keywords.append("client_encoding")
        values.append("UTF8")

        let host = given["host"] ?? given["hostaddr"] ?? environment["PGHOST"] ?? "localhost"
        let port = given["port"] ?? environment["PGPORT"] ?? "5432"
        let database = given["dbname"] ?? environment["PGDATABASE"] ?? given["user"] ?? "postgres"
        return (keywords, values, "\(host):\(port)/\(database)")
    }

    /// Calls `body` with a NULL-terminated array of C strings (freed afterwards).
    static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let copies: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
        defer { for p in copies { free(p) } }
        let constCopies = copies.map { $0.map { UnsafePointer($0) } }
        return constCopies.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// Parameters encoded once into one buffer (text format, NUL-terminated; `bytea` binary), ready for libpq.
struct EncodedParameters {
    var count: Int32 = 0
    var types: [UInt32] = []
    var formats: [Int32] = []
    var lengths: [Int32] = []
    var offsets: [Int] = []
    var buffer: [UInt8] = []

    init(_ parameters: [PostgresValue]) throws(PostgresError) {
        guard !parameters.isEmpty else { return }
        guard parameters.count <= 65_535 else {
            throw PostgresError(.usage, "\(parameters.count) parameters: PostgreSQL allows at most 65535 per statement")
        }
        count = Int32(parameters.count)
        types.reserveCapacity(parameters.count)
        formats.reserveCapacity(parameters.count)
        lengths.reserveCapacity(parameters.count)
        offsets.reserveCapacity(parameters.count)
        buffer.reserveCapacity(parameters.count * 16)
        for (index, parameter) in parameters.enumerated() {
            types.append(parameter.typeOID)
            formats.append(parameter.format)
            let start = buffer.count
            guard parameter.encode(into: &buffer) else {
                offsets.append(-1)
                lengths.append(0)
                continue
            }
            let length = buffer.count - start
            guard length <= Int(Int32.max) else {
                throw PostgresError(.usage, "parameter $\(index + 1) is \(length) bytes, more than PostgreSQL accepts")
            }
            if parameter.format == 0 && buffer[start...].contains(0) {
                // libpq sends text parameters up to their first NUL: refuse rather than truncate silently.
                throw PostgresError(.usage, "parameter $\(index + 1) (\(parameter.typeName)) contains a NUL character, which PostgreSQL text cannot store")
            }
            buffer.append(0)
            offsets.append(start)
            lengths.append(Int32(length))
        }
    }

    func withPointers<R>(_ body: (Int32, UnsafePointer<UInt32>?, UnsafePointer<UnsafePointer<CChar>?>?,
                                  UnsafePointer<Int32>?, UnsafePointer<Int32>?) -> R) -> R {
        if count == 0 { return body(0, nil, nil, nil, nil) }
        return buffer.withUnsafeBytes { raw in
            // All-NULL parameters leave the buffer empty (no base address); every offset is -1 then.
            let base = raw.baseAddress?.assumingMemoryBound(to: CChar.self)
            let pointers: [UnsafePointer<CChar>?] = offsets.map { offset in
                guard offset >= 0, let base else { return nil }
                return UnsafePointer(base + offset)
            }
            return pointers.withUnsafeBufferPointer { values in
                types.withUnsafeBufferPointer { types in
                    lengths.withUnsafeBufferPointer { lengths in
                        formats.withUnsafeBufferPointer { formats in
                            body(count, types.baseAddress, values.baseAddress, lengths.baseAddress, formats.baseAddress)
                        }
                    }
                }
            }
        }
    }
}

extension PostgresValue {
    /// The SQL type name, for errors (never the value).
    var typeName: String {
        switch self {
        case .null: return "NULL"
        case .text: return "text"
        case .int: return "int8"
        case .double: return "float8"
        case .bool: return "bool"
        case .timestamp: return "timestamptz"
        case .jsonb: return "jsonb"
        case .uuid: return "uuid"
        case .bytea: return "bytea"
        case .textArray: return "text[]"
        case .intArray: return "int8[]"
        }
    }
}
