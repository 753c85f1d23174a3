import Foundation
import NurtureCore
import Postgres
import Testing
import TestSupport

@Suite("Postgres pool")
struct PoolTests {
    @Test("the pool lends at most maximumConnections connections, sync and async")
    func pool() async throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let pool = PostgresPool(url: database.url, maximumConnections: 2)
        defer { pool.close() }
        try pool.withConnection { c in try c.simpleQuery("CREATE TABLE hits (n int8)") }
        let results = onThreads(6) { i in
            try pool.withConnection { c in try c.execute("INSERT INTO hits VALUES ($1)", [.int(Int64(i))]) }
        }
        #expect(results.allSatisfy { (try? $0.get()) == 1 })
        let pids = try await withThrowingTaskGroup(of: Int32.self) { group in
            for _ in 0..<6 {
                group.addTask { try await pool.withConnection(on: .shared) { c in
                    try c.query("SELECT pg_sleep(0.05)")
                    return c.backendPID ?? 0
                } }
            }
            return try await group.reduce(into: Set<Int32>()) { $0.insert($1) }
        }
        #expect(pids.count <= 2)
        let count = try await pool.withConnection(on: .shared) { c in try c.query("SELECT count(*) AS n FROM hits").rows[0]["n"].int }
        #expect(count == 6)
        // A connection returned inside a transaction block is rolled back.
        try pool.withConnection { c in
            try c.simpleQuery("BEGIN")
            try c.execute("INSERT INTO hits VALUES (100)")
        }
        #expect(try pool.withConnection { c in try c.query("SELECT count(*) AS n FROM hits").rows[0]["n"].int } == 6)
    }
}
