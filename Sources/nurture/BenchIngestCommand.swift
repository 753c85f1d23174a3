import ArgumentParser
import Foundation
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Runtime
import Store

/// `nurture bench ingest`: Segment-spec events written straight into Redis like an app server, ingested by worker
/// processes into PostgreSQL. Ingestion only for now: scoring, segments and lifecycle do not run on ingest yet.
struct BenchIngestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Ingestion benchmark: events XADDed to a private Redis, ingested into PostgreSQL by workers.",
        discussion: """
            Writes --contacts identify messages and then track/page events up to --events in total (pipelined XADD,
            1,000 per round trip, as app servers would), starts --processes workers (ingest only) and waits until
            every message is committed. Prints the write rate and events/s from the first XADD to the last commit.
            Uses NURTURE_DATABASE_URL; everything goes into a fresh schema that is dropped afterwards.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "Messages in total (identify + track + page).") var events: Int = 200_000
    @Option(help: "Distinct contacts.") var contacts: Int = 50_000
    @Option(help: "Worker processes ingesting.") var processes: Int = 2
    @Option(help: "Entries per ingest transaction.") var batch: Int = 500

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

        let names = ["Page Viewed", "Product Added", "Order Completed", "Email Opened", "Whitepaper Downloaded"]
        let started = monotonicNanoseconds()
        var written = 0
        var commands: [RedisCommand] = []
        func flush() throws {
            for reply in try redis.pipeline(commands) { try reply.orThrow() }
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
                payload = #"{"type":"track","userId":"\#(user)","messageId":"m-\#(n)","event":"\#(names[n % names.count])","properties":{"total":\#(n % 90),"currency":"EUR"}}"#
            }
            commands.append(RedisCommand("XADD", .string(stream), "*", "payload", .string(payload)))
            if commands.count == 1_000 { try flush() }
            written += 1
        }
        try flush()
        let writeSeconds = Double(monotonicNanoseconds() - started) / 1e9
        emit("ingest-write", [("messages", "\(written)"), ("seconds", fmt(writeSeconds, 3)), ("messages_per_s", fmt(Double(written) / writeSeconds, 0))])

        let deadline = monotonicMilliseconds() + 600_000
        var committed = 0
        while committed < events {
            committed = Int(try db.query("SELECT count(*) FROM event_message_ids").rows[0][0].int ?? 0)
            if monotonicMilliseconds() > deadline { throw UserError("ingestion did not finish in 10 minutes (\(committed) of \(events))") }
            if committed < events { sleepMilliseconds(20) }
        }
        let totalSeconds = Double(monotonicNanoseconds() - started) / 1e9
        let stored = try db.query("SELECT (SELECT count(*) FROM contacts), (SELECT count(*) FROM events)").rows[0]
        emit("ingest", [("messages", "\(events)"), ("contacts", "\(stored[0].int ?? 0)"), ("events_rows", "\(stored[1].int ?? 0)"),
                        ("processes", "\(processes)"), ("batch", "\(batch)"), ("seconds", fmt(totalSeconds, 3)),
                        ("events_per_s", fmt(Double(events) / totalSeconds, 0))])
        for (i, w) in workers.enumerated() {
            let rss = residentMegabytes(pid: w.pid)
            emit("ingest-worker-rss", [("process", "\(i + 1)"), ("rss_mb", fmt(rss.current)), ("peak_rss_mb", fmt(rss.peak))])
        }
    }
}
