import Foundation
import Postgres
import Testing
import TestSupport

/// A value shared between test threads under a lock.
final class Locked<Value>: @unchecked Sendable {
    // Safety: `value` is only touched while holding `lock`.
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
    var current: Value { withLock { $0 } }
}

/// Lets `parties` threads wait for each other (with a timeout, so a broken test fails instead of hanging).
final class Barrier: @unchecked Sendable {
    // Safety: `arrived` is only touched while holding `condition`.
    private let condition = NSCondition()
    private let parties: Int
    private var arrived = 0

    init(parties: Int) { self.parties = parties }

    @discardableResult
    func wait(timeout: TimeInterval = 10) -> Bool {
        condition.lock(); defer { condition.unlock() }
        arrived += 1
        if arrived >= parties { condition.broadcast(); return true }
        let deadline = Date().addingTimeInterval(timeout)
        while arrived < parties {
            if !condition.wait(until: deadline) { return false }
        }
        return true
    }
}

/// Runs `body(index)` on `count` new threads at once and returns each one's outcome, in order.
func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) -> [Result<T, any Error>] {
    let results = Locked<[Result<T, any Error>?]>(Array(repeating: nil, count: count))
    let group = DispatchGroup()
    for index in 0..<count {
        group.enter()
        let thread = Thread {
            let outcome = Result { try body(index) }
            results.withLock { $0[index] = outcome }
            group.leave()
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
    group.wait()
    return results.current.map { $0! }
}

/// Runs `body` with a fresh schema and a connection to it, dropping the schema afterwards.
func withTestDatabase<T>(_ body: (TestDatabaseHandle) throws -> T) throws -> T {
    let database = try TestDatabaseHandle.make()
    defer { database.database.drop() }
    return try body(database)
}

struct TestDatabaseHandle {
    let database: TestDatabase
    let connection: PostgresConnection

    static func make() throws -> TestDatabaseHandle {
        let database = try TestDatabase.create()
        return TestDatabaseHandle(database: database, connection: try database.connect())
    }
}

/// Expects `body` to throw a `PostgresError` and returns it.
func expectPostgresError(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws -> Void) -> PostgresError? {
    do {
        try body()
        Issue.record("expected a PostgresError, nothing was thrown \(comment.map { "(\($0))" } ?? "")", sourceLocation: sourceLocation)
        return nil
    } catch let error as PostgresError {
        return error
    } catch {
        Issue.record("expected a PostgresError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

func elapsedMilliseconds(since start: UInt64) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - start) / 1_000_000
}
