import Foundation

/// A small pool of dedicated OS threads for blocking C calls (hiredis, libpq, libcurl).
///
/// Swift concurrency's cooperative pool has one thread per core; a blocking `PQexec` or `redisGetReply` there
/// starves every other task. Async callers hop onto one of these threads with `run {}` and resume when the
/// blocking work is done. Threads are created once and live for the process.
public final class BlockingExecutor: @unchecked Sendable {
    // Safety: `queue` and `stopped` are only touched while holding `condition`'s lock.
    private let condition = NSCondition()
    private var queue: [() -> Void] = []
    private var stopped = false
    public let threadCount: Int

    /// A process-wide executor for the odd blocking call from async code (CLI, web). Hot paths own their threads.
    public static let shared = BlockingExecutor(threads: max(4, ProcessInfo.processInfo.activeProcessorCount * 2),
                                                name: "nurture-blocking")

    public init(threads: Int, name: String) {
        self.threadCount = threads
        for index in 0..<threads {
            let thread = Thread { [self] in self.loop() }
            thread.name = "\(name)-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while queue.isEmpty && !stopped { condition.wait() }
            if queue.isEmpty && stopped { condition.unlock(); return }
            let work = queue.removeFirst()
            condition.unlock()
            work()
        }
    }

    /// Submits `work` to run on one of the executor's threads.
    public func submit(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        queue.append(work)
        condition.signal()
        condition.unlock()
    }

    /// Runs blocking `body` on an executor thread and returns its result to the async caller.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            submit {
                do { continuation.resume(returning: try body()) } catch { continuation.resume(throwing: error) }
            }
        }
    }

    /// Lets the threads exit once the queue is drained.
    public func shutdown() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }
}
