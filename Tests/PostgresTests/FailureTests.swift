import Foundation
import Postgres
import Testing
import TestSupport

@Suite("Postgres failures: typed errors, never a hang")
struct FailureTests {
    @Test("an unparsable URL is .invalidURL, a refused port is a fast .connect")
    func badURLs() throws {
        for url in ["not a url", "postgres://127.0.0.1/db?no_such_option=1", "postgresql://[::1/db"] {
            let error = expectPostgresError(Comment(rawValue: url)) { _ = try PostgresConnection(url: url) }
            #expect(error?.kind == .invalidURL, "\(url)")
        }
        let start = DispatchTime.now().uptimeNanoseconds
        let refused = expectPostgresError { _ = try PostgresConnection(url: "postgres://postgres:secret@127.0.0.1:1/nurture") }
        #expect(refused?.kind == .connect)
        #expect(refused?.isTransient == true)
        #expect(elapsedMilliseconds(since: start) < 3_000)
        #expect(refused?.description.contains("secret") == false)
        #expect(refused?.description.contains("127.0.0.1:1") == true)
    }

    @Test("a syntax error is .server 42601 with a position; the connection stays usable")
    func syntaxError() throws {
        try withTestDatabase { db throws in
            let c = db.connection
            let error = expectPostgresError { try c.query("SELECT 1 FROMM nowhere") }
            #expect(error?.kind == .server)
            #expect(error?.sqlState == "42601")
            #expect(error?.position == 16)  // FROMM is taken as an alias; "nowhere" is the error
            #expect(error?.isTransient == false)
            let missing = expectPostgresError { try c.simpleQuery("SELECT * FROM no_such_table") }
            let expected = "PostgreSQL error 42P01: relation \"no_such_table\" does not exist"
            #expect(missing.map { String(describing: $0) } == expected)
            #expect(try c.query("SELECT 2 AS two").rows[0]["two"].int == 2)
        }
    }

    @Test("a unique violation is 23505 with the constraint; values stay out of the description")
    func uniqueViolation() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE users (id int8 PRIMARY KEY, email text NOT NULL CONSTRAINT users_email_key UNIQUE)")
            try c.execute("INSERT INTO users VALUES ($1, $2)", [1, "someone@example.com"])
            let error = expectPostgresError { try c.execute("INSERT INTO users VALUES ($1, $2)", [2, "someone@example.com"]) }
            #expect(error?.isUniqueViolation == true)
            #expect(error?.constraint == "users_email_key")
            #expect(error?.detail?.contains("someone@example.com") == true)
            #expect(error?.description.contains("someone@example.com") == false)
        }
    }

    @Test("a session killed mid-query gives .connectionLost; the next call reconnects")
    func killedMidQuery() throws {
        try withTestDatabase { db in
            let c = db.connection
            let pid = try #require(c.backendPID)
            let admin = try db.database.connect()
            let outcome = Locked<PostgresError?>(nil)
            let started = DispatchTime.now().uptimeNanoseconds
            let done = DispatchSemaphore(value: 0)
            let victim = Thread {
                do { try c.query("SELECT pg_sleep(30)") } catch let error as PostgresError { outcome.withLock { $0 = error } } catch {}
                done.signal()
            }
            victim.start()
            // Wait until the sleep is running on the server, then kill that session.
            var running = false
            for _ in 0..<200 where !running {
                running = try admin.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1::int4 AND state = 'active' AND query LIKE '%pg_sleep%'",
                                          [.int(Int64(pid))]).rows.count == 1
                if !running { Thread.sleep(forTimeInterval: 0.02) }
            }
            #expect(running)
            #expect(try admin.query("SELECT pg_terminate_backend($1::int4) AS ok", [.int(Int64(pid))]).rows[0]["ok"].bool == true)
            #expect(done.wait(timeout: .now() + 10) == .success, "the in-flight call returned")
            #expect(elapsedMilliseconds(since: started) < 10_000)
            let error = try #require(outcome.current)
            #expect(error.kind == .connectionLost)
            #expect(error.isTransient)
            #expect(!c.isConnected)
            // The next call reconnects by itself.
            #expect(try c.query("SELECT 1 AS one").rows[0]["one"].int == 1)
            #expect(c.backendPID != pid)
            #expect(c.connectionCount == 2)
        }
    }

    @Test("a session killed inside a transaction fails the transaction instead of reconnecting mid-way")
    func killedInsideTransaction() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE t (id int8)")
            let admin = try db.database.connect()
            let error = expectPostgresError {
                try c.transaction { tx in
                    try tx.execute("INSERT INTO t VALUES ($1)", [1])
                    try admin.query("SELECT pg_terminate_backend($1::int4)", [.int(Int64(tx.backendPID ?? 0))])
                    Thread.sleep(forTimeInterval: 0.2)
                    // Must not reconnect and run this outside the (rolled back) transaction.
                    _ = try? tx.execute("INSERT INTO t VALUES ($1)", [2])
                    try tx.execute("INSERT INTO t VALUES ($1)", [3])
                }
            }
            #expect(error?.kind == .connectionLost)
            #expect(try c.query("SELECT count(*) AS n FROM t").rows[0]["n"].int == 0)
        }
    }

    @Test("a session lost inside a manual BEGIN: the next statement is refused once, not run outside the transaction")
    func lostInsideManualTransaction() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE t (id int8)")
            try c.simpleQuery("BEGIN")
            try c.execute("INSERT INTO t VALUES ($1)", [1])
            let inFlight = expectPostgresError { try c.query("SELECT pg_terminate_backend(pg_backend_pid())") }
            #expect(inFlight?.kind == .connectionLost)
            let next = expectPostgresError { try c.execute("INSERT INTO t VALUES ($1)", [2]) }
            #expect(next?.kind == .connectionLost)
            #expect(try c.query("SELECT count(*) AS n FROM t").rows[0]["n"].int == 0)
            #expect(c.isIdle)
        }
    }

    @Test("all-NULL parameters")
    func allNullParameters() throws {
        try withTestDatabase { db in
            let row = try db.connection.query("SELECT $1::text IS NULL AS a, $2::int8 IS NULL AS b", [.null, nil]).rows[0]
            #expect(row["a"].bool == true && row["b"].bool == true)
        }
    }

    @Test("a statement over the statement timeout fails with 57014, promptly")
    func statementTimeout() throws {
        let database = try TestDatabase.create()
        defer { database.drop() }
        let c = try database.connect(statementTimeoutMilliseconds: 200)
        #expect(c.statementTimeoutMilliseconds == 200)
        let start = DispatchTime.now().uptimeNanoseconds
        let error = expectPostgresError { try c.query("SELECT pg_sleep(5)") }
        #expect(error?.kind == .server)
        #expect(error?.sqlState == "57014")
        #expect(elapsedMilliseconds(since: start) < 3_000)
        #expect(try c.query("SHOW statement_timeout").rows[0][0].string == "200ms")
        // The setting survives a reconnect.
        c.close()
        #expect(try c.query("SHOW statement_timeout").rows[0][0].string == "200ms")
        try c.setStatementTimeout(milliseconds: nil)
        #expect(try c.query("SELECT pg_sleep(0.3)").rows.count == 1)
    }

    @Test("the session runs in UTC whatever the URL says, with application_name nurture")
    func sessionSettings() throws {
        let base = try TestEnvironment.databaseURL()
        let separator = base.contains("?") ? "&" : "?"
        let c = try PostgresConnection(url: base + separator + "options=-cTimeZone%3DAsia/Tokyo")
        let row = try c.query("SELECT current_setting('TimeZone') AS tz, current_setting('application_name') AS app, now()::text AS now").rows[0]
        #expect(row["tz"].string == "UTC")
        #expect(row["app"].string == "nurture")
        #expect(row["now"].string?.hasSuffix("+00") == true)
        let named = try PostgresConnection(url: base + separator + "application_name=nurture-test")
        #expect(try named.query("SELECT current_setting('application_name') AS app").rows[0]["app"].string == "nurture-test")
    }

    @Test("COPY given to query() is refused cleanly")
    func copyThroughQuery() throws {
        try withTestDatabase { db in
            let c = db.connection
            try c.simpleQuery("CREATE TABLE t (id int8)")
            let error = expectPostgresError { try c.query("COPY t FROM STDIN") }
            #expect(error?.kind == .usage)
            #expect(try c.query("SELECT count(*) AS n FROM t").rows[0]["n"].int == 0)
        }
    }
}
