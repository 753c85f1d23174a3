import Foundation
import Postgres
import Testing
import TestSupport

@Suite("Postgres transactions")
struct TransactionTests {
    struct Boom: Error {}

    @Test("commit on success, rollback on any error, no nesting")
    func commitAndRollback() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE t (id int8 PRIMARY KEY)")
            let value = try c.transaction { tx in
                try tx.execute("INSERT INTO t VALUES ($1)", [1])
                return "done"
            }
            #expect(value == "done")
            #expect(throws: Boom.self) {
                try c.transaction { tx in
                    try tx.execute("INSERT INTO t VALUES ($1)", [2])
                    throw Boom()
                }
            }
            // An error swallowed inside the body still aborts the transaction: COMMIT reports it.
            let swallowed = expectPostgresError {
                try c.transaction { tx in
                    try tx.execute("INSERT INTO t VALUES ($1)", [3])
                    _ = try? tx.execute("INSERT INTO t VALUES ($1)", [1])
                }
            }
            #expect(swallowed?.sqlState == "23505")
            let nested = expectPostgresError { try c.transaction { tx in try tx.transaction { _ in } } }
            #expect(nested?.kind == .usage)
            #expect(try c.query("SELECT array_agg(id ORDER BY id) AS ids FROM t").rows[0]["ids"].intArray == [1])
            #expect(c.isIdle)
        }
    }

    @Test("two SERIALIZABLE transactions in write skew: one fails with 40001, is retried, and both succeed")
    func serializationFailureRetried() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let setup = try database.connect()
        try setup.simpleQuery("CREATE TABLE oncall (name text PRIMARY KEY, on_duty bool NOT NULL); INSERT INTO oncall VALUES ('alice', true), ('bob', true)")
        let barrier = Barrier(parties: 2)
        let attempts = Locked(0)
        let results = onThreads(2) { index -> Bool in
            let c = try database.connect()
            let me = index == 0 ? "alice" : "bob"
            var attempt = 0
            return try c.transaction(isolation: .serializable, maxAttempts: 5) { tx in
                attempt += 1
                attempts.withLock { $0 += 1 }
                let onDuty = try tx.query("SELECT count(*) AS n FROM oncall WHERE on_duty").rows[0]["n"].int ?? 0
                if attempt == 1 { barrier.wait() }       // both have read before either writes
                guard onDuty >= 2 else { return false }
                try tx.execute("UPDATE oncall SET on_duty = false WHERE name = $1", [.text(me)])
                return true
            }
        }
        let wentOff = try results.map { try $0.get() }
        #expect(wentOff.filter { $0 }.count == 1, "exactly one doctor goes off duty")
        #expect(attempts.current >= 3, "the loser ran again")
        #expect(try setup.query("SELECT count(*) AS n FROM oncall WHERE on_duty").rows[0]["n"].int == 1)
    }

    @Test("a deadlock (40P01) is retried and both transactions commit")
    func deadlockRetried() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let setup = try database.connect()
        try setup.simpleQuery("CREATE TABLE accounts (id int8 PRIMARY KEY, balance int8 NOT NULL); INSERT INTO accounts VALUES (1, 100), (2, 100)")
        let barrier = Barrier(parties: 2)
        let attempts = Locked(0)
        let errors = Locked<[String]>([])
        let results = onThreads(2) { index -> Int in
            let c = try database.connect()
            try c.setStatementTimeout(milliseconds: 20_000)
            let (first, second): (Int64, Int64) = index == 0 ? (1, 2) : (2, 1)
            var attempt = 0
            do {
                try c.transaction { tx in
                    attempt += 1
                    attempts.withLock { $0 += 1 }
                    try tx.execute("UPDATE accounts SET balance = balance - 10 WHERE id = $1", [.int(first)])
                    if attempt == 1 { barrier.wait() }   // each holds one row lock, then wants the other's
                    try tx.execute("UPDATE accounts SET balance = balance + 10 WHERE id = $1", [.int(second)])
                }
            } catch {
                errors.withLock { $0.append(String(reflecting: error)) }
                throw error
            }
            return attempt
        }
        let attemptsPerThread = try results.map { try $0.get() }
        #expect(errors.current.isEmpty)
        // The victim ran again (on a loaded machine its retry can meet the winner once more, so "at least").
        #expect(attemptsPerThread.min() == 1 && (attemptsPerThread.max() ?? 0) >= 2, "the deadlock victim ran again: \(attemptsPerThread)")
        #expect(attempts.current == attemptsPerThread.reduce(0, +))
        #expect(try setup.query("SELECT sum(balance) AS s FROM accounts").rows[0]["s"].int == 200)
    }

    @Test("a non-retryable error is not retried; maxAttempts bounds retries")
    func retryBounds() throws {
        try withTestDatabase { db in
            let c = db.connection
            var runs = 0
            let error = expectPostgresError {
                try c.transaction(maxAttempts: 3) { _ in
                    runs += 1
                    throw PostgresError(.server, "simulated conflict", sqlState: "40001")
                }
            }
            #expect(error?.sqlState == "40001")
            #expect(runs == 3)
            runs = 0
            _ = expectPostgresError {
                try c.transaction(maxAttempts: 3) { tx in
                    runs += 1
                    try tx.query("SELECT 1/0")
                }
            }
            #expect(runs == 1)
        }
    }
}
