import Foundation
import Logging
import NurtureCore

/// A small pool of PostgreSQL connections for code that runs on many threads (CLI, web, scheduler helpers).
/// Connections are made lazily up to `maximumConnections`; a borrower waits when all are lent out.
/// Hot loops (worker slots) own a connection instead of borrowing one per job.
///
/// A connection comes back to the pool outside any transaction: one returned inside a transaction block (a
/// manual `BEGIN` and a thrown error) is rolled back, or dropped if that fails.
public final class PostgresPool: @unchecked Sendable {
    // Safety: `idle`, `created`, `closed` are only touched under `condition`. A connection is lent to one borrower
    // at a time; the lock hand-off orders one borrower's use of it before the next's.
    private let condition = NSCondition()
    private var idle: [PostgresConnection] = []
    private var created = 0
    private var closed = false
    private let url: String
    public let maximumConnections: Int
    public let statementTimeoutMilliseconds: Int?
    private let logger: Logger

    public init(url: String, maximumConnections: Int = 8, statementTimeoutMilliseconds: Int? = nil,
                logger: Logger = Logger(label: "nurture.postgres")) {
        self.url = url
        self.maximumConnections = max(1, maximumConnections)
        self.statementTimeoutMilliseconds = statementTimeoutMilliseconds
        self.logger = logger
    }

    /// Lends a connection to `body` on the calling thread (blocking).
    public func withConnection<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        let connection = try checkout()
        defer { checkin(connection) }
        return try body(connection)
    }

    /// Lends a connection to `body` on a `BlockingExecutor` thread, for async callers.
    public func withConnection<T: Sendable>(on executor: BlockingExecutor,
                                            _ body: @escaping @Sendable (PostgresConnection) throws -> T) async throws -> T {
        try await executor.run { try self.withConnection(body) }
    }

    private func checkout() throws -> PostgresConnection {
        condition.lock()
        while !closed && idle.isEmpty && created >= maximumConnections { condition.wait() }
        if closed { condition.unlock(); throw PostgresError(.usage, "the PostgreSQL pool is closed") }
        if let connection = idle.popLast() { condition.unlock(); return connection }
        created += 1
        condition.unlock()
        do {
            return try PostgresConnection(url: url, statementTimeoutMilliseconds: statementTimeoutMilliseconds, logger: logger)
        } catch {
            condition.lock(); created -= 1; condition.signal(); condition.unlock()
            throw error
        }
    }

    private func checkin(_ connection: PostgresConnection) {
        connection.resetIfInTransaction()
        condition.lock()
        if closed {
            created -= 1
            condition.unlock()
            connection.close()
            return
        }
        idle.append(connection)
        condition.signal()
        condition.unlock()
    }

    /// Closes idle connections and refuses new checkouts; borrowed connections close when returned.
    public func close() {
        condition.lock()
        closed = true
        let connections = idle
        idle.removeAll()
        created -= connections.count
        condition.broadcast()
        condition.unlock()
        for c in connections { c.close() }
    }
}
