import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Store
import Testing
import TestSupport

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One message as the sink received it, tied back to its delivery row.
struct SunkMessage: Hashable, CustomStringConvertible {
    let path: String
    let deliveryId: String
    let body: Value
    var description: String { "\(path) \(deliveryId)" }
}

/// A whole installation for one test: its own database and namespace, a real HTTP sink (Python, from
/// TransportTests' fixtures) that every example provider points at, and `nurture` scheduler/worker processes
/// started with time travel allowed. The CLI is the real binary too.
final class WorkflowHarness: @unchecked Sendable {
    // Safety: used by one test thread.
    let database: TestDatabase
    let db: PostgresConnection
    let redis: RedisConnection
    let redisURL: String
    let namespace: String
    let sinkPort: Int
    let sinkLog: String
    private var sink: ChildProcess?
    private(set) var roles: [String: ChildProcess] = [:]
    let scratch: String
    /// The sink path the `email` provider posts to (`/slow/30` makes every send take 30 ms).
    var emailPath = "/email"

    /// `redisURL`: a private server for tests that flush it (the shared one serves other tests at the same time);
    /// `databaseURL`: a private PostgreSQL cluster for tests that crash it.
    init(redisURL privateRedis: String? = nil, databaseURL privateDatabase: String? = nil) throws {
        namespace = TestEnvironment.uniqueName("wf")
        redisURL = try privateRedis ?? TestEnvironment.redisURL()
        database = try TestDatabase.create(prefix: "wf", baseURL: privateDatabase)
        db = try database.connect()
        _ = try Migrator().migrate(db)
        redis = try RedisConnection(url: redisURL)
        scratch = TestEnvironment.scratchDirectory + "/" + namespace
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        sinkPort = TestEnvironment.freePort()
        sinkLog = scratch + "/sink.jsonl"
        try startSink()
    }

    /// Starts (or restarts) the sink on `sinkPort`.
    func startSink() throws {
        FileManager.default.createFile(atPath: sinkLog, contents: nil)
        let script = SinkProcess.fixture("http_sink.py")
        let python = SinkProcess.python
        let arguments = python.hasPrefix("/") ? [script, String(sinkPort), sinkLog] : [python, script, String(sinkPort), sinkLog]
        sink = try ChildProcess(executable: python.hasPrefix("/") ? python : "/usr/bin/env", arguments: arguments,
                                stdoutPath: scratch + "/sink.out")
        let deadline = monotonicMilliseconds() + 15_000
        while monotonicMilliseconds() < deadline {
            if SinkProcess.canConnect(port: sinkPort) { return }
            usleep(20_000)
        }
        throw HarnessFailure("the HTTP sink did not start on port \(sinkPort)")
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["NURTURE_DATABASE_URL"] = database.url
        env["NURTURE_REDIS_URL"] = redisURL
        env["NURTURE_NAMESPACE"] = namespace
        env["NURTURE_ALLOW_TIME_TRAVEL"] = "1"
        env["NURTURE_SECRET"] = "workflow-test-secret"
        env["NURTURE_LOG_LEVEL"] = "info"
        env["NURTURE_METRICS_PORT"] = nil
        let base = "http://127.0.0.1:\(sinkPort)"
        env["NURTURE_EMAIL_URL"] = base + emailPath
        env["NURTURE_SMS_URL"] = base + "/sms"
        env["NURTURE_PUSH_URL"] = base + "/push"
        env["NURTURE_SALES_WEBHOOK_URL"] = base + "/sales"
        env["NURTURE_ADS_URL"] = base + "/ads"
        return env
    }

    /// Starts a long-running role (`scheduler`, `worker ...`) under `name`.
    func start(_ name: String, _ arguments: [String]) throws {
        roles[name] = try ChildProcess(executable: try NurtureBinary.path(), arguments: arguments, environment: environment,
                                       stdoutPath: scratch + "/\(name).log")
    }

    func kill(_ name: String) {
        guard let p = roles[name] else { return }
        p.signal(SIGKILL)
        p.wait()
        roles[name] = nil
    }

    /// Runs the CLI to completion; throws with its output unless it exits 0.
    @discardableResult
    func cli(_ arguments: [String]) throws -> String {
        let out = scratch + "/cli-\(UUID().uuidString.prefix(8)).log"
        let p = try ChildProcess(executable: try NurtureBinary.path(), arguments: arguments, environment: environment, stdoutPath: out)
        let status = p.wait()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else { throw HarnessFailure("nurture \(arguments.joined(separator: " ")) exited \(status): \(text)") }
        return text
    }

    func logTail(_ name: String, lines: Int = 30) -> String {
        let text = (try? String(contentsOfFile: scratch + "/\(name).log", encoding: .utf8)) ?? ""
        return "\(name):\n" + text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// The installation's business time (system clock + the stored offset).
    func now() throws -> Date {
        let offset = try db.query("SELECT offset_ms FROM installation_clock WHERE id = 1").rows.first?[0].int ?? 0
        return Date(timeIntervalSince1970: Date().timeIntervalSince1970 + Double(offset) / 1000)
    }

    /// Moves the installation clock, then waits 1.5 s: every process picks the offset up within a second (§7).
    func advance(seconds: Double) throws {
        try cli(["clock", "advance", "\(Int(seconds))s"])
        usleep(1_500_000)
    }

    /// Writes one event as an app server does (XADD <ns>:events * payload JSON).
    func send(_ payload: Value) throws {
        _ = try redis.execute(RedisCommand("XADD", .string("\(namespace):events"), "*", "payload", .string(payload.jsonText)))
    }

    func track(_ user: String, _ event: String, _ properties: [String: Value] = [:], context: [String: Value] = [:], at: Date,
               id: String = UUID().uuidString) throws {
        try send(.object(["type": "track", "userId": .string(user), "event": .string(event), "properties": .object(properties),
                          "context": .object(context), "timestamp": .string(Value.iso8601(at)), "messageId": .string(id)]))
    }

    /// Every message the sink received: one per delivery id (a batch request counts each of its messages).
    func sunk() throws -> [SunkMessage] {
        var text = (try? String(contentsOfFile: sinkLog, encoding: .utf8)) ?? ""
        // The sink may be appending a line right now: only whole (newline-terminated) lines count.
        if let lastNewline = text.lastIndex(of: "\n") { text = String(text[...lastNewline]) } else { text = "" }
        var out: [SunkMessage] = []
        var webhookDeliveries: [String: [String]] = [:]
        for line in text.split(separator: "\n") {
            guard case .object(let record) = try Value(jsonText: String(line)) else { continue }
            let path = record["path"]?.stringValue ?? ""
            let headers: [String: String] = {
                guard case .array(let pairs)? = record["headers"] else { return [:] }
                var h: [String: String] = [:]
                for case .array(let kv) in pairs where kv.count == 2 { h[kv[0].stringValue?.lowercased() ?? ""] = kv[1].stringValue ?? "" }
                return h
            }()
            let bytes = Data(base64Encoded: record["body_b64"]?.stringValue ?? "") ?? Data()
            let body = (try? Value(jsonText: String(decoding: bytes, as: UTF8.self))) ?? .string(String(decoding: bytes, as: UTF8.self))
            if case .object(let o) = body, case .array(let messages)? = o["messages"] {
                // Webhook bodies are batched as they are (no id inside): a batch of one carries its id in the header;
                // in a bigger batch, a body naming `email_sha256` is that contact's webhook delivery (in order).
                for m in messages {
                    var id = m["id"]?.stringValue ?? (messages.count == 1 ? headers["idempotency-key"] : nil)
                    if id == nil, let hash = m["email_sha256"]?.stringValue {
                        if webhookDeliveries[hash] == nil { webhookDeliveries[hash] = try webhookDeliveryIds(emailSHA256: hash) }
                        id = webhookDeliveries[hash]!.isEmpty ? nil : webhookDeliveries[hash]!.removeFirst()
                    }
                    out.append(SunkMessage(path: path, deliveryId: id ?? "?", body: m))
                }
            } else {
                out.append(SunkMessage(path: path, deliveryId: headers["idempotency-key"] ?? "?", body: body))
            }
        }
        return out
    }

    /// What reached the sink as `userId template` lines (sorted), via the deliveries table.
    func received() throws -> [String] {
        let messages = try sunk()
        let names = try deliveryNames(Array(Set(messages.map(\.deliveryId))))
        return messages.map { names[$0.deliveryId] ?? "unknown delivery \($0.deliveryId) at \($0.path)" }.sorted()
    }

    /// Delivery id → `userId template`.
    /// The webhook deliveries of the contact whose email hashes to `emailSHA256`, oldest first.
    func webhookDeliveryIds(emailSHA256: String) throws -> [String] {
        try db.query("""
            SELECT d.id::text FROM deliveries d JOIN contacts c ON c.id = d.contact_id
            WHERE d.channel = 'webhook' AND encode(sha256(convert_to(lower(c.email), 'UTF8')), 'hex') = $1 ORDER BY d.created_at, d.id
            """, [.text(emailSHA256)]).rows.compactMap { $0[0].string }
    }

    func deliveryNames(_ ids: [String]) throws -> [String: String] {
        var names: [String: String] = [:]
        for row in try db.query("""
            SELECT d.id::text, COALESCE(c.external_id, c.id::text) || ' ' || d.template FROM deliveries d
            LEFT JOIN contacts c ON c.id = d.contact_id WHERE d.id::text = ANY($1::text[])
            """, [.textArray(ids.map { Optional($0) })]).rows {
            names[row[0].string ?? ""] = row[1].string ?? ""
        }
        return names
    }

    /// Waits until `received()` equals `expected` (sorted) and stays so for `settle` seconds.
    func expectReceived(_ expected: [String], within seconds: Double = 60, settle: Double = 1.5, _ note: String,
                        sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let want = expected.sorted()
        let deadline = monotonicMilliseconds() + Int64(seconds * 1000)
        var got: [String] = []
        while monotonicMilliseconds() < deadline {
            got = try received()
            if got == want {
                try await Task.sleep(nanoseconds: UInt64(settle * 1e9))
                got = try received()
                if got == want { return }
            }
            if got.count > want.count { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        let missing = want.filter { w in got.filter { $0 == w }.count < want.filter { $0 == w }.count }
        let extra = got.filter { g in got.filter { $0 == g }.count > want.filter { $0 == g }.count }
        let steps = (try? db.query("""
            SELECT COALESCE(c.external_id, '?') || ' ' || s.workflow || ' #' || s.step || ' ' || s.outcome || ' ' || COALESCE(s.detail, '') || ' @' || s.at
            FROM enrollment_steps s JOIN enrollments e ON e.id = s.enrollment_id LEFT JOIN contacts c ON c.id = e.contact_id
            ORDER BY s.at, s.enrollment_id, s.step_seq
            """).rows.map { $0[0].string ?? "" }.joined(separator: "\n")) ?? ""
        Issue.record("\(note) (business time \((try? now()).map(Value.iso8601) ?? "?")): the sink got \(got.count) messages, expected \(want.count)\nmissing: \(Set(missing).sorted())\nunexpected: \(Set(extra).sorted())\nsteps:\n\(steps)\n\(logTail("scheduler", lines: 10))\n\(logTail("worker-1", lines: 20))",
                     sourceLocation: sourceLocation)
        throw HarnessFailure(note)
    }

    func cleanUp() {
        for name in Array(roles.keys) {
            roles[name]?.signal(SIGTERM)
            if roles[name]?.wait(milliseconds: 10_000) != true { kill(name) }
        }
        roles = [:]
        sink?.signal(SIGKILL)
        sink?.wait()
        _ = try? redis.execute(RedisCommand("EVAL", .string("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n"),
                                            "0", .string("*\(namespace)*")))
        redis.close()
        db.close()
        database.drop()
    }
}

extension Value: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
}
