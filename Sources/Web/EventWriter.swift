import Foundation
import Logging
import Redis

/// Runs the web role's Redis commands (event XADDs, open de-duplication) on one dedicated thread and one
/// connection, pipelining whatever requests are waiting: under load, hundreds of requests share a round trip
/// (group commit), and no blocking hiredis call ever runs on the Swift cooperative pool.
final class RedisBatcher: @unchecked Sendable {
    // Safety: `pending` and `stopped` are only touched under `condition`; `connection` only by the writer thread.
    private struct Item {
        let commands: [RedisCommand]
        let done: @Sendable (Result<[RedisReply], RedisError>) -> Void
    }
    private let condition = NSCondition()
    private var pending: [Item] = []
    private var stopped = false
    private var finished = false
    private let config: RedisConfig
    private let logger: Logger
    private var connection: RedisConnection?
    /// Commands per pipeline, at most.
    static let maximumBatch = 2_000

    init(config: RedisConfig, logger: Logger) {
        self.config = config
        self.logger = logger
        let thread = Thread { [self] in self.loop() }
        thread.name = "nurture-web-redis"
        thread.stackSize = 1 << 20
        thread.start()
    }

    /// Runs `commands` (pipelined with other requests' commands) and returns their replies in order. Error replies
    /// come back as `.error` replies; a connection failure throws.
    func run(_ commands: [RedisCommand]) async throws -> [RedisReply] {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[RedisReply], any Error>) in
            condition.lock()
            if stopped {
                condition.unlock()
                continuation.resume(throwing: RedisError(.connect, "the web role is stopping"))
                return
            }
            pending.append(Item(commands: commands, done: { result in continuation.resume(with: result.mapError { $0 as any Error }) }))
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while pending.isEmpty && !stopped { condition.wait() }
            if pending.isEmpty && stopped {
                finished = true
                condition.broadcast()
                condition.unlock()
                connection?.close()
                return
            }
            // Everything waiting, up to maximumBatch commands (at least one item), taken in one cut.
            var take = 0
            var count = 0
            while take < pending.count && (take == 0 || count + pending[take].commands.count <= Self.maximumBatch) {
                count += pending[take].commands.count
                take += 1
            }
            let batch = Array(pending[..<take])
            pending.removeFirst(take)
            condition.unlock()
            flush(batch)
        }
    }

    private func flush(_ batch: [Item]) {
        do throws(RedisError) {
            if connection == nil { connection = try RedisConnection(config: config, logger: logger) }
            let replies = try connection!.pipeline(batch.flatMap(\.commands))
            var offset = 0
            for item in batch {
                item.done(.success(Array(replies[offset..<offset + item.commands.count])))
                offset += item.commands.count
            }
        } catch {
            logger.error("redis write failed", metadata: ["error": "\(error)", "requests": "\(batch.count)"])
            connection?.close()
            connection = nil
            for item in batch { item.done(.failure(error)) }
        }
    }

    /// Lets the waiting commands run, then stops the thread (returns when it has).
    func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
    }
}
