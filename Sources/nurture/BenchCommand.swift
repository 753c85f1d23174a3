import ArgumentParser
import Foundation
import Hummingbird
import JobQueue
import Logging
import NurtureCore
import Postgres
import Redis
import Runtime
import Synchronization
import Transport

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks (run a release build: swift run -c release nurture bench ...).",
        discussion: "Each prints one `bench=... key=value ...` line per figure. Not part of the test suite.",
        subcommands: [BenchClientsCommand.self, BenchQueueCommand.self, BenchIngestCommand.self, BenchSegmentsCommand.self, BenchImportCommand.self, BenchWorkflowsCommand.self, BenchBroadcastCommand.self])
}

// MARK: - clients

struct BenchClientsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clients",
        abstract: "Micro-benchmark of the C-library clients: Redis pipelining, PostgreSQL COPY, HTTP keep-alive.",
        discussion: """
            Redis: pipelined XADD on a private redis-server (no persistence), and redis-benchmark -P 32 on the
            same server in the same run. PostgreSQL: COPY into a temporary table on NURTURE_DATABASE_URL.
            HTTP: POSTs over one keep-alive connection to an in-process HTTP server on loopback.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Option(help: "XADDs per Redis measurement.") var redisOps: Int = 200_000
    @Option(help: "Rows copied into PostgreSQL.") var copyRows: Int = 500_000
    @Option(help: "HTTP requests.") var httpRequests: Int = 20_000
    @Flag(help: "Skip the PostgreSQL part.") var noPostgres = false

    func run() async throws {
        let config = try connection.config()
        try benchRedis()
        if !noPostgres { try benchPostgres(url: config.databaseURL) }
        try await benchHTTP()
    }

    func benchRedis() throws {
        let server = try PrivateRedis()
        defer { server.stop() }
        let redis = try RedisConnection(url: server.url)
        for depth in [32, 1_000] {
            try redis.execute("DEL", "bench:xadd")
            let command = RedisCommand("XADD", "bench:xadd", "*", "payload", .string(String(repeating: "x", count: 100)))
            let batch = [RedisCommand](repeating: command, count: depth)
            let started = monotonicNanoseconds()
            var done = 0
            while done < redisOps {
                let replies = try redis.pipeline(batch)
                if case .error(let e) = replies[0] { throw UserError("XADD failed: \(e)") }
                done += depth
            }
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            emit("redis-xadd", [("client", "nurture"), ("pipeline", "\(depth)"), ("connections", "1"), ("ops", "\(done)"), ("ops_per_s", fmt(Double(done) / seconds, 0))])
        }
        // Several connections on their own threads, pipeline 32 each (what redis-benchmark does with -c).
        for connections in [4] {
            let url = server.url
            let perConnection = redisOps / connections
            let started = monotonicNanoseconds()
            let group = DispatchGroup()
            let failure = Mutex<String?>(nil)
            for _ in 0..<connections {
                group.enter()
                Thread {
                    defer { group.leave() }
                    do {
                        let c = try RedisConnection(url: url)
                        let batch = [RedisCommand](repeating: RedisCommand("XADD", "bench:xadd", "*", "payload",
                                                                           .string(String(repeating: "x", count: 100))), count: 32)
                        var done = 0
                        while done < perConnection { _ = try c.pipeline(batch); done += 32 }
                    } catch { failure.withLock { $0 = "\(error)" } }
                }.start()
            }
            group.wait()
            if let message = failure.withLock({ $0 }) { throw UserError(message) }
            let seconds = Double(monotonicNanoseconds() - started) / 1e9
            emit("redis-xadd", [("client", "nurture"), ("pipeline", "32"), ("connections", "\(connections)"), ("ops", "\(perConnection * connections)"),
                                ("ops_per_s", fmt(Double(perConnection * connections) / seconds, 0))])
        }
        // The reference: redis-benchmark on the same server, same payload size, pipeline 32, with one connection
        // (like the first figure) and with its default 50.
        for clients in [1, 50] {
            let output = NSTemporaryDirectory() + "nurture-redis-benchmark.txt"
            let tool = try ChildProcess(executable: "/usr/bin/redis-benchmark",
                                        arguments: ["-h", "127.0.0.1", "-p", "\(server.port)", "-P", "32", "-c", "\(clients)", "-n", "\(redisOps)", "-q",
                                                    "XADD", "bench:rb", "*", "payload", String(repeating: "x", count: 100)],
                                        stdoutPath: output)
            tool.wait()
            let text = (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
            let figure = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).last { $0.contains("requests per second") }
                .flatMap { line in line.split(separator: ":").last?.split(separator: " ").first.map(String.init) } ?? "nan"
            emit("redis-xadd", [("client", "redis-benchmark"), ("pipeline", "32"), ("connections", "\(clients)"), ("ops", "\(redisOps)"), ("ops_per_s", figure)])
            try? FileManager.default.removeItem(atPath: output)
        }
    }

    func benchPostgres(url: String) throws {
        let db = try PostgresConnection(url: url)
        try db.simpleQuery("CREATE TEMP TABLE bench_copy (id bigint, email text, name text, attributes jsonb)")
        let rows = (0..<copyRows).lazy.map { i -> [String?] in
            ["\(i)", "person\(i)@example.com", "Person \(i)", "{\"plan\":\"pro\",\"score\":\(i % 100)}"]
        }
        let started = monotonicNanoseconds()
        let copied = try db.copyIn("COPY bench_copy (id, email, name, attributes) FROM STDIN", rows: rows)
        let seconds = Double(monotonicNanoseconds() - started) / 1e9
        emit("postgres-copy", [("rows", "\(copied)"), ("rows_per_s", fmt(Double(copied) / seconds, 0))])

        // Multi-statement pipeline of parameterised inserts (libpq pipeline mode), for comparison.
        try db.simpleQuery("CREATE TEMP TABLE bench_insert (id bigint, email text)")
        let n = min(copyRows, 100_000)
        let started2 = monotonicNanoseconds()
        var i = 0
        while i < n {
            let chunk = (i..<min(n, i + 1_000)).map { ("INSERT INTO bench_insert VALUES ($1, $2)", [PostgresValue.int(Int64($0)), .text("p\($0)@example.com")]) }
            _ = try db.pipeline(chunk)
            i += 1_000
        }
        let seconds2 = Double(monotonicNanoseconds() - started2) / 1e9
        emit("postgres-pipeline-insert", [("rows", "\(n)"), ("rows_per_s", fmt(Double(n) / seconds2, 0))])
    }

    func benchHTTP() async throws {
        let port = freeLoopbackPort()
        let router = Router()
        router.post("sink") { _, _ -> HTTPResponse.Status in .ok }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        let serverTask = Task { try await app.runService() }
        defer { serverTask.cancel() }
        let requests = httpRequests
        let result: (Double, Int) = try await BlockingExecutor.shared.run {
            let client = HTTPClient(connectTimeoutMilliseconds: 1_000, timeoutMilliseconds: 5_000)
            let body = Array(#"{"id":"d-1","channel":"email","to":"ann@example.com","subject":"Welcome","html":"<p>Hi</p>"}"#.utf8)
            let request = Transport.HTTPRequest(method: "POST", url: "http://127.0.0.1:\(port)/sink",
                                      headers: [HTTPHeader("Content-Type", "application/json")], body: body)
            // Wait for the listener.
            for _ in 0..<200 { if (try? client.send(request)) != nil { break }; usleep(10_000) }
            let started = monotonicNanoseconds()
            for _ in 0..<requests {
                let response = try client.send(request)
                if response.status != 200 { throw UserError("sink answered \(response.status)") }
            }
            return (Double(monotonicNanoseconds() - started) / 1e9, client.connectionsOpened)
        }
        emit("http-keepalive", [("requests", "\(requests)"), ("requests_per_s", fmt(Double(requests) / result.0, 0)),
                                ("connections", "\(result.1)")])
    }
}

// MARK: - queue

struct BenchQueueCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "queue",
        abstract: "Job-queue benchmark on a private Redis: enqueue, drain, latency, delayed lateness, worker RSS.",
        discussion: """
            1. enqueue --jobs no-op jobs (pipelined, 1,000 per round trip)  → enqueue jobs/s
            2. start --processes workers × --concurrency slots and drain them → drain jobs/s (first to last
               completion, worker boot excluded, like the peer harness)
            3. probe jobs at a steady --rate for --seconds → end-to-end latency p50/p99 (enqueue → run)
            4. --delayed jobs due 2 s ahead, promoted by one scheduler → lateness p50/p99 (due → run), enqueued
               one by one like the Sidekiq peer (spread) and in pipelined batches sharing a due time (burst)
            5. worker RSS (current and peak) after the run
            Compare with the peers: cp -r ../shared/bench/peers /tmp/peers && /tmp/peers/run_all.sh 100000
            """)

    @Option(help: "No-op jobs to enqueue and drain.") var jobs: Int = 100_000
    @Option(help: "Worker processes.") var processes: Int = 2
    @Option(help: "Slots per worker process.") var concurrency: Int = 16
    @Option(help: "Steady enqueue rate for the latency test (jobs/s).") var rate: Int = 2_000
    @Option(help: "Duration of the latency test in seconds.") var seconds: Int = 5
    @Option(help: "Delayed jobs (due 2 s ahead) for the lateness test.") var delayed: Int = 5_000
    @Option(help: "Use this Redis instead of a private one (its namespace bench-* is removed afterwards).")
    var redisURL: String?

    func run() async throws {
        LoggingSetup.once(level: .warning)
        let server = redisURL == nil ? try PrivateRedis() : nil
        defer { server?.stop() }
        let url = redisURL ?? server!.url
        let namespace = "bench-\(JobQueue.newJobID().prefix(8))"
        let queue = JobQueue(namespace: namespace)
        let redis = try RedisConnection(url: url)
        try queue.ensureGroups(["default"], on: redis)
        let processedKey = RedisCommand("HGET", .string(queue.keys.stats("default")), "processed")
        func processed() throws -> Int { Int(try redis.execute(processedKey).int ?? 0) }

        // 1. enqueue
        var started = monotonicNanoseconds()
        var sent = 0
        while sent < jobs {
            let n = min(1_000, jobs - sent)
            try queue.enqueue((0..<n).map { _ in NewJob(kind: "noop", queue: "default") }, on: redis)
            sent += n
        }
        let enqueueSeconds = Double(monotonicNanoseconds() - started) / 1e9
        emit("queue-enqueue", [("jobs", "\(jobs)"), ("seconds", fmt(enqueueSeconds, 3)), ("jobs_per_s", fmt(Double(jobs) / enqueueSeconds, 0))])

        // 2. drain
        var env = ProcessInfo.processInfo.environment
        env["NURTURE_REDIS_URL"] = url
        env["NURTURE_NAMESPACE"] = namespace
        env["NURTURE_LOG_LEVEL"] = "warning"
        env.removeValue(forKey: "NURTURE_METRICS_PORT")
        let exe = ownExecutable()
        let bootStarted = monotonicNanoseconds()
        var workers: [ChildProcess] = []
        for _ in 0..<processes {
            workers.append(try ChildProcess(executable: exe, arguments: ["worker", "--concurrency", "\(concurrency)", "--queues", "default"],
                                            environment: env, stderrPath: NSTemporaryDirectory() + "nurture-bench-worker.log"))
        }
        var firstAt: UInt64 = 0
        let drainDeadline = monotonicNanoseconds() + 600_000_000_000
        while true {
            let p = try processed()
            if p > 0 && firstAt == 0 { firstAt = monotonicNanoseconds() }
            if p >= jobs { break }
            if monotonicNanoseconds() > drainDeadline { throw UserError("drain did not finish in 10 minutes (processed \(p) of \(jobs))") }
            usleep(1_000)
        }
        let doneAt = monotonicNanoseconds()
        let drainSeconds = Double(doneAt - firstAt) / 1e9
        emit("queue-drain", [("jobs", "\(jobs)"), ("processes", "\(processes)"), ("concurrency", "\(concurrency)"),
                             ("boot_s", fmt(Double(firstAt - bootStarted) / 1e9, 3)), ("drain_s", fmt(drainSeconds, 3)),
                             ("jobs_per_s", fmt(Double(jobs) / drainSeconds, 0))])

        // 3. steady-rate latency
        let scheduler = try ChildProcess(executable: exe, arguments: ["scheduler", "--no-periodic"], environment: env,
                                         stderrPath: NSTemporaryDirectory() + "nurture-bench-scheduler.log")
        let latencyList = "\(namespace):bench:latency"
        let total = rate * seconds
        let perTick = max(1, rate / 200)   // every 5 ms
        started = monotonicNanoseconds()
        var enqueued = 0
        let baseline = try processed()
        while enqueued < total {
            let due = started + UInt64(enqueued) * 1_000_000_000 / UInt64(rate)
            let now = monotonicNanoseconds()
            if due > now { usleep(UInt32((due - now) / 1_000)) }
            let n = min(perTick, total - enqueued)
            let t = wallMicros()
            try queue.enqueue((0..<n).map { _ in NewJob(kind: "probe", payload: "{\"list\":\"\(latencyList)\",\"t_us\":\(t)}", queue: "default") }, on: redis)
            enqueued += n
        }
        try waitFor { try processed() >= baseline + total }
        let latencies = try readMicros(latencyList, on: redis)
        emit("queue-latency", [("rate_per_s", "\(rate)"), ("jobs", "\(latencies.count)"),
                               ("p50_ms", fmt(percentile(latencies, 50) / 1000, 2)), ("p99_ms", fmt(percentile(latencies, 99) / 1000, 2)),
                               ("max_ms", fmt((latencies.last ?? .nan) / 1000, 2))])

        // 4. delayed-job lateness, two ways. "spread": like the Sidekiq peer, one enqueue call per job, each due
        // 2 s after its own call. "burst": pipelined batches of 500 sharing one due time (harsher: 5,000 jobs
        // become due within a few milliseconds, so the figure includes draining the burst).
        for mode in ["spread", "burst"] {
            let list = "\(namespace):bench:lateness:\(mode)"
            let before = try processed()
            var scheduled = 0
            while scheduled < delayed {
                let n = mode == "spread" ? 1 : min(500, delayed - scheduled)
                let due = wallMicros() + 2_000_000
                try queue.enqueue((0..<n).map { _ in
                    NewJob(kind: "probe", payload: "{\"list\":\"\(list)\",\"due_us\":\(due)}", queue: "default", delayMilliseconds: 2_000)
                }, on: redis)
                scheduled += n
            }
            try waitFor { try processed() >= before + delayed }
            let lateness = try readMicros(list, on: redis)
            emit("queue-delayed", [("mode", mode), ("jobs", "\(lateness.count)"), ("due_in_s", "2"),
                                   ("lateness_p50_ms", fmt(percentile(lateness, 50) / 1000, 2)),
                                   ("lateness_p99_ms", fmt(percentile(lateness, 99) / 1000, 2)),
                                   ("min_ms", fmt((lateness.first ?? .nan) / 1000, 2)), ("max_ms", fmt((lateness.last ?? .nan) / 1000, 2))])
            _ = try redis.execute("DEL", .string(list))
        }

        // 5. RSS, then stop everything
        for (i, w) in workers.enumerated() {
            let rss = residentMegabytes(pid: w.pid)
            emit("queue-worker-rss", [("process", "\(i + 1)"), ("rss_mb", fmt(rss.current)), ("peak_rss_mb", fmt(rss.peak))])
        }
        for w in workers { w.signal(SIGTERM) }
        scheduler.signal(SIGTERM)
        var exitCodes: [String] = []
        for w in workers + [scheduler] {
            _ = w.wait(milliseconds: 30_000)
            exitCodes.append(w.exitCode.map(String.init) ?? "killed")
            if w.isRunning { w.signal(SIGKILL); w.wait() }
        }
        emit("queue-shutdown", [("exit_codes", exitCodes.joined(separator: ","))])
        try queue.destroy(on: redis)
        _ = try redis.execute("DEL", .string(latencyList))
    }

    private func waitFor(_ condition: () throws -> Bool) throws {
        let deadline = monotonicMilliseconds() + 120_000
        while try !condition() {
            if monotonicMilliseconds() > deadline { throw UserError("timed out waiting for the workers") }
            usleep(2_000)
        }
    }

    private func readMicros(_ key: String, on redis: RedisConnection) throws -> [Double] {
        let values = try redis.execute(RedisCommand("LRANGE", .string(key), 0, -1)).array ?? []
        return values.compactMap { $0.int.map(Double.init) }.sorted()
    }
}
