import ArgumentParser
import Domain
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Runtime
import Store

/// `nurture bench ingest`: Segment-spec events written straight into Redis like an app server, ingested by worker
/// processes into PostgreSQL with the example definitions applied (scoring, live segments and lifecycle run in
/// every ingest transaction).
struct BenchIngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingestion benchmark: events XADDed to a private Redis, ingested into PostgreSQL by workers.",
        discussion: """
            Applies the definitions in --definitions (default: the repo's examples/, so lead scoring, the example
            segments and the lifecycle run on every batch), writes --contacts identify messages and then
            track/page events up to --events in total (pipelined XADD, 1,000 per round trip, as app servers would;
            timestamps spread over the last 30 days), starts --processes workers (ingest only) and waits until every
            message is committed. Prints events/s from the first XADD to the last commit, the lag of each event
            from its XADD to the start of the transaction that stored it (p50/p99/max), and the PostgreSQL rows
            written (inserted/updated/deleted, from pg_stat_user_tables). Uses NURTURE_DATABASE_URL; everything
            goes into a fresh schema that is dropped afterwards. `--definitions none` measures ingestion alone.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Messages in total (identify + track + page).") var events: Int = 200_000
    @Option(help: "Distinct contacts.") var contacts: Int = 50_000
    @Option(help: "Worker processes ingesting.") var processes: Int = 2
    @Option(help: "Entries per ingest transaction.") var batch: Int = 1_000
    @Option(help: "Definition files or directories to apply first ('none': ingestion alone).") var definitions: String = "examples"

    func validate() throws {
        guard contacts >= 1, events >= contacts else { throw ValidationError("need --events >= --contacts >= 1") }
    }

    func run() async throws {
        let config = try connection.config()
        LoggingSetup.once(level: .warning)
        let server = try PrivateRedis()
        defer { server.stop() }
        let schema = "bench_\(JobQueue.newJobID().prefix(8))"
        let admin = try PostgresConnection(url: config.databaseURL)
        try admin.simpleQuery("CREATE SCHEMA \(schema)")
        defer { _ = try? admin.simpleQuery("DROP SCHEMA \(schema) CASCADE") }
        let url = config.databaseURL + (config.databaseURL.contains("?") ? "&" : "?") + "options=-csearch_path%3D\(schema)"
        let db = try PostgresConnection(url: url)
        _ = try Migrator().migrate(db)
        var applied = 0
        if definitions != "none" {
            applied = try applyDefinitions(definitions, on: db)
        }

        let namespace = "bench-\(JobQueue.newJobID().prefix(8))"
        let redis = try RedisConnection(url: server.url)
        let stream = IngestOptions.streamKey(namespace: namespace)
        var env = ProcessInfo.processInfo.environment
        env["NURTURE_REDIS_URL"] = server.url
        env["NURTURE_DATABASE_URL"] = url
        env["NURTURE_NAMESPACE"] = namespace
        env["NURTURE_LOG_LEVEL"] = "warning"
        env.removeValue(forKey: "NURTURE_METRICS_PORT")
        var workers: [ChildProcess] = []
        for _ in 0..<processes {
            workers.append(try ChildProcess(executable: ownExecutable(),
                                            arguments: ["worker", "--concurrency", "1", "--queues", "maintenance", "--ingest-batch", "\(batch)"],
                                            environment: env, stderrPath: NSTemporaryDirectory() + "nurture-bench-ingest.log"))
        }
        defer { for w in workers { w.signal(SIGTERM); _ = w.wait(milliseconds: 30_000) } }
        sleepMilliseconds(500)   // let the workers create the consumer group and block

        let names = ["Page Viewed", "Product Added", "Order Completed", "Email Opened", "Whitepaper Downloaded", "Signed Up",
                     "Demo Booked", "Email Clicked"]
        let epoch = Date().timeIntervalSince1970
        let started = monotonicNanoseconds()
        var written = 0
        var commands: [RedisCommand] = []
        // Wall-clock time each message was XADDed (per pipeline round trip), by message number.
        var addedAt = [Double](repeating: 0, count: events)
        func flush() throws {
            for reply in try redis.pipeline(commands) { try reply.orThrow() }
            let now = Date().timeIntervalSince1970
            for n in (written - commands.count)..<written { addedAt[n] = now }
            commands.removeAll(keepingCapacity: true)
        }
        for n in 0..<events {
            let user = "u-\(n % contacts)"
            let payload: String
            if n < contacts {
                payload = #"{"type":"identify","userId":"\#(user)","messageId":"m-\#(n)","traits":{"email":"\#(user)@example.com","first_name":"P\#(n)","plan":"pro"},"context":{"timezone":"Europe/Paris","campaign":{"source":"newsletter","medium":"email"}}}"#
            } else if n % 5 == 0 {
                payload = #"{"type":"page","userId":"\#(user)","messageId":"m-\#(n)","name":"Pricing","properties":{"path":"/pricing"},"context":{"device":{"type":"mobile"}}}"#
            } else {
                let at = TimestampText().format(Date(timeIntervalSince1970: epoch - Double(n % 30) * 86_400 - Double(n % 3_600)))
                payload = #"{"type":"track","userId":"\#(user)","messageId":"m-\#(n)","event":"\#(names[(n + n / contacts) % names.count])","properties":{"total":\#(n % 90),"currency":"EUR"},"timestamp":"\#(at)"}"#
            }
            commands.append(RedisCommand("XADD", .string(stream), "*", "payload", .string(payload)))
            written += 1
            if commands.count == 1_000 { try flush() }
        }
        try flush()
        let writeSeconds = Double(monotonicNanoseconds() - started) / 1e9
        emit("ingest-write", [("messages", "\(written)"), ("seconds", fmt(writeSeconds, 3)), ("messages_per_s", fmt(Double(written) / writeSeconds, 0))])

        let deadline = monotonicMilliseconds() + 600_000
        // Entries are deleted from the stream only after the transaction that stored them committed: an empty
        // stream means everything is in PostgreSQL (polling Redis keeps the measurement off the database).
        while try redis.execute(RedisCommand("XLEN", .string(stream))).int ?? 0 > 0 {
            if monotonicMilliseconds() > deadline { throw UserError("ingestion did not finish in 10 minutes") }
            sleepMilliseconds(10)
        }
        let committed = Int(try db.query("SELECT count(*) FROM event_message_ids").rows[0][0].int ?? 0)
        guard committed == events else { throw UserError("\(events - committed) of \(events) messages were not ingested (see dead letters)") }
        let totalSeconds = Double(monotonicNanoseconds() - started) / 1e9
        let stored = try db.query("SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM events)").rows[0]
        // Lag: XADD → start of the ingest transaction (events.received_at; the installation clock has no offset here).
        var lags: [Double] = []
        for row in try db.query("SELECT message_id, extract(epoch from received_at)::float8 FROM events").rows {
            guard let id = row[0].string, let n = Int(id.dropFirst(2)), n < events, let received = row[1].double else { continue }
            lags.append(max(0, received - addedAt[n]) * 1000)
        }
        lags.sort()
        func percentile(_ p: Double) -> Double { lags.isEmpty ? 0 : lags[min(lags.count - 1, Int(Double(lags.count) * p))] }
        sleepMilliseconds(1_200)   // table statistics are flushed about once a second
        let activity = try db.query("""
            SELECT COALESCE(sum(n_tup_ins), 0), COALESCE(sum(n_tup_upd), 0), COALESCE(sum(n_tup_del), 0)
            FROM pg_stat_user_tables WHERE schemaname = $1
            """, [.text(schema)]).rows[0]
        let derived = try db.query("""
            SELECT (SELECT count(*) FROM contact_scores), (SELECT count(*) FROM segment_memberships),
                   (SELECT count(*) FROM segment_transitions), (SELECT count(*) FROM lifecycle_transitions)
            """).rows[0]
        emit("ingest", [("messages", "\(events)"), ("contacts", "\(stored[0].int ?? 0)"), ("events_rows", "\(stored[1].int ?? 0)"),
                        ("definitions", "\(applied)"), ("processes", "\(processes)"), ("batch", "\(batch)"),
                        ("seconds", fmt(totalSeconds, 3)), ("events_per_s", fmt(Double(events) / totalSeconds, 0)),
                        ("lag_p50_ms", fmt(percentile(0.5), 0)), ("lag_p99_ms", fmt(percentile(0.99), 0)),
                        ("lag_max_ms", fmt(lags.last ?? 0, 0))])
        emit("ingest-rows", [("inserted", "\(activity[0].int ?? 0)"), ("updated", "\(activity[1].int ?? 0)"),
                             ("deleted", "\(activity[2].int ?? 0)"), ("scores", "\(derived[0].int ?? 0)"),
                             ("segment_members", "\(derived[1].int ?? 0)"), ("segment_transitions", "\(derived[2].int ?? 0)"),
                             ("lifecycle_transitions", "\(derived[3].int ?? 0)")])
        for (i, w) in workers.enumerated() {
            let rss = residentMegabytes(pid: w.pid)
            emit("ingest-worker-rss", [("process", "\(i + 1)"), ("rss_mb", fmt(rss.current)), ("peak_rss_mb", fmt(rss.peak))])
        }
    }
}
