import Foundation
import Logging
import NurtureCore

/// A small pool of Redis connections for code that runs on many threads (CLI, web, scheduler helpers).
/// Connections are made lazily up to `maximumConnections`; a borrower waits when all are lent out.
/// Hot loops (worker slots) own a connection instead of borrowing one per job.
public final class RedisPool: @unchecked Sendable {
    // Safety: `idle`, `created` are only touched under `condition`. A connection is lent to one borrower at a time.
    private let condition = NSCondition()
    private var idle: [RedisConnection] = []
    private var created = 0
    public let config: RedisConfig
    public let maximumConnections: Int
    private let logger: Logger

    public init(config: RedisConfig, maximumConnections: Int = 8, logger: Logger = Logger(label: "nurture.redis")) {
        self.config = config
        self.maximumConnections = max(1, maximumConnections)
        self.logger = logger
    }

    /// Lends a connection to `body` on the calling thread (blocking).
    public func withConnection<T>(_ body: (RedisConnection) throws -> T) throws -> T {
        let connection = try checkout()
        defer { checkin(connection) }
        return try body(connection)
    }

    /// Lends a connection to `body` on a `BlockingExecutor` thread, for async callers.
    public func withConnection<T: Sendable>(on executor: BlockingExecutor,
                                            _ body: @escaping @Sendable (RedisConnection) throws -> T) async throws -> T {
        try await executor.run { try self.withConnection(body) }
    }

    private func checkout() throws -> RedisConnection {
        condition.lock()
        while idle.isEmpty && created >= maximumConnections { condition.wait() }
        if let connection = idle.popLast() { condition.unlock(); return connection }
        created += 1
        condition.unlock()
        do {
            return try RedisConnection(config: config, logger: logger)
        } catch {
            condition.lock(); created -= 1; condition.signal(); condition.unlock()
            throw error
        }
    }

    private func checkin(_ connection: RedisConnection) {
        condition.lock()
        idle.append(connection)
        condition.signal()
        condition.unlock()
    }

    /// Closes idle connections (borrowed ones close when returned and dropped).
    public func close() {
        condition.lock()
        for c in idle { c.close() }
        idle.removeAll()
        created = 0
        condition.unlock()
    }
}
