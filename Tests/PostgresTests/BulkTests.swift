import Foundation
import Postgres
import Testing
import TestSupport

@Suite("Postgres bulk paths: COPY, pipeline, prepared statements")
struct BulkTests {
    static func copyRow(_ i: Int) -> [String?] {
        [String(i), "user\(i)@example.com",
         i % 7 == 0 ? nil : "note \(i)\twith tab\nnewline\\backslash \\N é🎉",
         i % 11 == 0 ? nil : String(i * 3)]
    }

    @Test("COPY 100,000 rows, then count and spot-check them")
    func copyHundredThousand() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE contacts (id int8 PRIMARY KEY, email text NOT NULL, note text, score int8)")
            let count = 100_000
            let start = DispatchTime.now().uptimeNanoseconds
            let copied = try c.copyIn("COPY contacts (id, email, note, score) FROM STDIN",
                                      rows: (0..<count).lazy.map(BulkTests.copyRow))
            let ms = elapsedMilliseconds(since: start)
            print("COPY \(count) rows in \(Int(ms)) ms: \(Int(Double(count) / ms * 1000)) rows/s")
            #expect(copied == count)
            #expect(try c.query("SELECT count(*) AS n FROM contacts").rows[0]["n"].int == Int64(count))
            #expect(try c.query("SELECT count(*) AS n FROM contacts WHERE note IS NULL").rows[0]["n"].int == Int64((count + 6) / 7))
            #expect(try c.query("SELECT count(*) AS n FROM contacts WHERE score IS NULL").rows[0]["n"].int == Int64((count + 10) / 11))
            for id in [0, 1, 12_345, 77_777, 99_999] {
                let row = try c.query("SELECT id, email, note, score FROM contacts WHERE id = $1", [.int(Int64(id))]).rows[0]
                let expected = BulkTests.copyRow(id)
                #expect(row["email"].string == expected[1])
                #expect(row["note"].string == expected[2])
                #expect(row["score"].string == expected[3])
            }
        }
    }

    @Test("a bad COPY row fails the whole COPY with the server's error; the connection stays usable")
    func copyBadRow() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE nums (n int8 NOT NULL)")
            let rows: [[String?]] = (0..<10_000).map { [$0 == 5_000 ? "not a number" : String($0)] }
            let error = expectPostgresError { try c.copyIn("COPY nums FROM STDIN", rows: rows) }
            #expect(error?.kind == .server)
            #expect(error?.sqlState == "22P02")
            #expect(try c.query("SELECT count(*) AS n FROM nums").rows[0]["n"].int == 0)
            let notCopy = expectPostgresError { try c.copyIn("SELECT 1", rows: [[String?]]()) }
            #expect(notCopy?.kind == .usage)
            #expect(try c.copyIn("COPY nums FROM STDIN", rows: [["1"], ["2"]]) == 2)
        }
    }

    @Test("a pipeline of 1000 inserts runs in one round trip")
    func pipelineInserts() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE events (id int8 PRIMARY KEY, kind text NOT NULL, at timestamptz NOT NULL)")
            let now = Date()
            let statements: [(String, [PostgresValue])] = (0..<1000).map {
                ("INSERT INTO events (id, kind, at) VALUES ($1, $2, $3)", [.int(Int64($0)), .text("kind-\($0 % 5)"), .timestamp(now)])
            }
            let start = DispatchTime.now().uptimeNanoseconds
            let results = try c.pipeline(statements)
            print("pipeline of 1000 inserts in \(Int(elapsedMilliseconds(since: start))) ms")
            #expect(results.count == 1000)
            #expect(results.allSatisfy { $0.affectedRows == 1 })
            #expect(try c.query("SELECT count(*) AS n FROM events").rows[0]["n"].int == 1000)

            // Queries in a pipeline return their rows, in order.
            let reads = try c.pipeline([("SELECT id FROM events WHERE id = $1", [5]), ("SELECT count(*) AS n FROM events WHERE kind = $1", ["kind-1"])])
            #expect(reads[0].rows[0]["id"].int == 5)
            #expect(reads[1].rows[0]["n"].int == 200)
            #expect(try c.pipeline([]).isEmpty)
        }
    }

    @Test("a failing statement in a pipeline throws the first error after draining; nothing is kept")
    func pipelineError() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE items (id int8 PRIMARY KEY)")
            let statements: [(String, [PostgresValue])] = [
                ("INSERT INTO items VALUES ($1)", [1]), ("INSERT INTO items VALUES ($1)", [2]),
                ("INSERT INTO items VALUES ($1)", [1]),     // duplicate
                ("INSERT INTO items VALUES ($1)", [3]), ("SELEC broken", []),
            ]
            let error = expectPostgresError { _ = try c.pipeline(statements) }
            #expect(error?.sqlState == "23505")
            #expect(c.isConnected)
            // The pipeline was one implicit transaction: the failure rolled back the inserts before it too.
            #expect(try c.query("SELECT count(*) AS n FROM items").rows[0]["n"].int == 0)
            // Inside a transaction the pipeline joins it.
            try c.transaction { tx in
                _ = try tx.pipeline([("INSERT INTO items VALUES ($1)", [10]), ("INSERT INTO items VALUES ($1)", [11])])
            }
            #expect(try c.query("SELECT count(*) AS n FROM items").rows[0]["n"].int == 2)
        }
    }

    @Test("prepared statements: prepare once, run many times, re-prepared after a reconnect")
    func preparedStatements() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE kv (k text PRIMARY KEY, v int8)")
            try c.prepare("put", "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            try c.prepare("get", "SELECT v FROM kv WHERE k = $1")
            try c.prepare("put", "INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")  // idempotent
            for i in 0..<200 { try c.queryPrepared("put", [.text("k\(i % 50)"), .int(Int64(i))]) }
            #expect(try c.queryPrepared("get", ["k7"]).rows[0]["v"].int == 157)
            #expect(try c.queryPrepared("get", ["missing"]).rows.isEmpty)

            #expect(expectPostgresError { try c.prepare("get", "SELECT 1") }?.kind == .usage)
            #expect(expectPostgresError { try c.queryPrepared("nope", []) }?.kind == .usage)
            let syntax = expectPostgresError { try c.prepare("bad", "SELEC 1") }
            #expect(syntax?.sqlState == "42601")
            #expect(expectPostgresError { try c.queryPrepared("bad", []) }?.kind == .usage)

            // Kill the idle session from outside: the next call reconnects and prepares the statement again.
            let pid = try #require(c.backendPID)
            let admin = try db.database.connect()
            try admin.query("SELECT pg_terminate_backend($1::int4)", [.int(Int64(pid))])
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try c.queryPrepared("get", ["k7"]).rows[0]["v"].int == 157)
            #expect(c.backendPID != pid)
            #expect(c.connectionCount == 2)

            // Someone runs DEALLOCATE ALL: the statement is prepared again transparently.
            try c.simpleQuery("DEALLOCATE ALL")
            #expect(try c.queryPrepared("get", ["k8"]).rows[0]["v"].int == 158)
        }
    }

    @Test("a repeated statement is prepared on its second run and executed by name; survives DEALLOCATE, a changed table and a reconnect")
    func automaticallyPreparedStatements() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE cached (id int8 PRIMARY KEY, name text)")
            let insert = "INSERT INTO cached (id, name) VALUES ($1, $2)"
            let select = "SELECT * FROM cached WHERE id = ANY($1::int8[]) ORDER BY id"
            let prepared = "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'nurture_s%'"
            try c.execute(insert, [.int(1), .text("one")])
            #expect(try c.query(prepared).rows.isEmpty, "run once: not prepared")
            try c.execute(insert, [.int(2), .text("two")])
            try c.execute(insert, [.int(3), .null])  // another parameter type: its own statement
            try c.execute(insert, [.int(4), .null])
            let statements = try c.query(prepared).rows.compactMap { $0[0].string }
            #expect(statements.filter { $0 == insert }.count == 2, "\(statements)")
            #expect(try c.query(select, [.intArray([1, 2, 4])]).rows.map { $0["name"].string } == ["one", "two", nil])
            #expect(try c.query(select, [.intArray([3])]).rows.count == 1)

            // Pipelines use the same statements.
            let results = try c.pipeline([(select, [.intArray([2])]), (insert, [.int(5), .text("five")])])
            #expect(results[0].rows.first?["name"].string == "two")

            // Someone runs DEALLOCATE ALL: the statement runs as text once more and is prepared again (a pipeline too).
            try c.simpleQuery("DEALLOCATE ALL")
            #expect(try c.query(select, [.intArray([5])]).rows.first?["name"].string == "five")
            #expect(try c.query(select, [.intArray([5])]).rows.count == 1)
            try c.simpleQuery("DEALLOCATE ALL")
            #expect(try c.pipeline([(select, [.intArray([1])])])[0].rows.first?["name"].string == "one")

            // The table gains a column: `SELECT *` cannot reuse its plan; outside a transaction it simply runs again.
            try c.simpleQuery("ALTER TABLE cached ADD COLUMN extra int8 DEFAULT 7")
            let row = try c.query(select, [.intArray([1])]).rows.first
            #expect(row?["extra"].int == 7)

            // A new session: prepared again on the next use.
            let pid = try #require(c.backendPID)
            let admin = try db.database.connect()
            try admin.query("SELECT pg_terminate_backend($1::int4)", [.int(Int64(pid))])
            Thread.sleep(forTimeInterval: 0.2)
            #expect(try c.query(select, [.intArray([2])]).rows.first?["name"].string == "two")
            #expect(c.backendPID != pid)
            #expect(try c.query(select, [.intArray([2])]).rows.count == 1)
            #expect(try c.query(prepared).rows.compactMap { $0[0].string }.contains(select))
        }
    }
}
