import Channels
import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Store
import Testing
import TestSupport

struct WebTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The web tests' fixtures (the binary itself is TestSupport's `NurtureBinary`).
enum WebBinary {
    static var repositoryRoot: String { NurtureBinary.repositoryRoot }
    static func path() throws -> String { try NurtureBinary.path() }

    static func fixture(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
    }
}

/// An HTTP/1.1 reply as the raw-socket client below read it.
struct HTTPReply: CustomStringConvertible {
    let status: Int
    /// Lower-cased names.
    let headers: [String: String]
    let body: [UInt8]
    var text: String { String(decoding: body, as: UTF8.self) }
    var description: String { "\(status) \(headers) \(text.prefix(300))" }
}

/// One test's installation: its own schema, Redis namespace and secret, and a real `nurture web` process on a free
/// loopback port. Links are made with the same secret, exactly as workers make them.
final class WebHarness: @unchecked Sendable {
    // Safety: used by one test thread.
    let database: TestDatabase
    let db: PostgresConnection
    let redis: RedisConnection
    let redisURL: String
    let namespace: String
    let port: Int
    let secret = "web-test-secret-\(UUID().uuidString)"
    let scratch: String
    private(set) var web: ChildProcess?
    var links: SignedLinks { SignedLinks(publicURL: "http://127.0.0.1:\(port)", secret: secret) }

    /// - Parameter redisURL: a private server's (a test that stops Redis); default: the suite's shared one.
    init(start: Bool = true, redisURL: String? = nil) throws {
        namespace = TestEnvironment.uniqueName("web")
        self.redisURL = try redisURL ?? TestEnvironment.redisURL()
        database = try TestDatabase.create(prefix: "web")
        db = try database.connect()
        _ = try Migrator().migrate(db)
        redis = try RedisConnection(url: self.redisURL)
        scratch = TestEnvironment.scratchDirectory + "/" + namespace
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        port = TestEnvironment.freePort()
        if start { try startWeb() }
    }

    deinit {
        if let web, web.isRunning { web.signal(SIGKILL); web.wait() }
        for role in roles where role.isRunning { role.signal(SIGKILL); role.wait() }
        db.close()
        redis.close()
        database.drop()
    }

    var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        // Named, so a test can find (and kill) this web role's PostgreSQL connections.
        env["NURTURE_DATABASE_URL"] = database.url + "&application_name=\(namespace)"
        env["NURTURE_REDIS_URL"] = redisURL
        env["NURTURE_NAMESPACE"] = namespace
        env["NURTURE_SECRET"] = secret
        env["NURTURE_WEB_PORT"] = String(port)
        env["NURTURE_PUBLIC_URL"] = "http://127.0.0.1:\(port)"
        env["NURTURE_LOG_LEVEL"] = "info"
        env["NURTURE_METRICS_PORT"] = nil
        env["NURTURE_ALLOW_TIME_TRAVEL"] = "1"
        return env
    }

    var logPath: String { scratch + "/web.log" }

    func startWeb() throws {
        web = try ChildProcess(executable: try WebBinary.path(), arguments: ["web", "--host", "127.0.0.1"], environment: environment,
                               stdoutPath: logPath)
        let deadline = monotonicMilliseconds() + 20_000
        while monotonicMilliseconds() < deadline {
            if let reply = try? get("/healthz"), reply.status == 200 { return }
            if let web, !web.isRunning { throw WebTestFailure("nurture web exited: \(log())") }
            usleep(50_000)
        }
        throw WebTestFailure("nurture web did not answer on port \(port): \(log())")
    }

    /// Sends SIGTERM and waits; the raw wait status (0 = exited 0).
    func stopWeb() -> Int32? {
        guard let web else { return nil }
        web.signal(SIGTERM)
        guard web.wait(milliseconds: 20_000) else { web.signal(SIGKILL); web.wait(); return nil }
        self.web = nil
        return web.exitStatus
    }

    /// Other roles (`worker`, `scheduler`) of the same installation, stopped with SIGKILL when the harness goes.
    private(set) var roles: [ChildProcess] = []

    func startRole(_ name: String, _ arguments: [String]) throws {
        roles.append(try ChildProcess(executable: try WebBinary.path(), arguments: arguments, environment: environment,
                                      stdoutPath: scratch + "/\(name).log"))
    }

    func log() -> String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Runs the CLI to completion; throws with its output unless it exits 0.
    @discardableResult
    func cli(_ arguments: [String]) throws -> String {
        let out = scratch + "/cli-\(UUID().uuidString.prefix(8)).log"
        let p = try ChildProcess(executable: try WebBinary.path(), arguments: arguments, environment: environment, stdoutPath: out)
        let status = p.wait()
        let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        guard status == 0 else { throw WebTestFailure("nurture \(arguments.joined(separator: " ")) exited \(status): \(text)") }
        return text
    }

    // MARK: data

    /// Templates giving the preference centre email/marketing, sms/marketing and an email/transactional one.
    func applyTemplates() throws {
        let file = scratch + "/templates.yaml"
        try """
            kind: template
            name: news
            channel: email
            subject: "News"
            html: '<p>Hello</p><p><a href="https://shop.example/sale?x=1">Sale</a></p>'
            utm: {source: newsletter, campaign: spring}
            ---
            kind: template
            name: promo-sms
            channel: sms
            text: "Promo"
            ---
            kind: template
            name: receipt
            channel: email
            category: transactional
            subject: "Receipt"
            text: "Thanks"
            tracking: false

            """.write(toFile: file, atomically: true, encoding: .utf8)
        try cli(["apply", file])
    }

    /// A known contact (with a user id) and its id.
    @discardableResult
    func contact(_ userId: String?, email: String? = nil, anonymousId: String? = nil, mergedInto: Int64? = nil) throws -> Int64 {
        let now = Date()
        let id = try db.query("""
            INSERT INTO contacts (external_id, email, merged_into, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING id
            """, [userId.map { .text($0) } ?? .null, email.map { .text($0) } ?? .null, mergedInto.map { .int($0) } ?? .null,
                  .timestamp(now)]).rows[0][0].int!
        if let userId {
            try db.execute("INSERT INTO identities (kind, value, contact_id, created_at) VALUES ('user_id', $1, $2, $3)",
                           [.text(userId), .int(id), .timestamp(now)])
        }
        if let anonymousId {
            try db.execute("INSERT INTO identities (kind, value, contact_id, created_at) VALUES ('anonymous_id', $1, $2, $3)",
                           [.text(anonymousId), .int(mergedInto ?? id), .timestamp(now)])
        }
        return id
    }

    /// An accepted email delivery from step 2 of workflow `welcome-series`, sent at `sentAt`.
    func delivery(contact: Int64, sentAt: Date, template: String = "news", broadcast: Int64? = nil) throws -> String {
        let id = UUID().uuidString.lowercased()
        try db.execute("""
            INSERT INTO deliveries (id, dedupe_key, contact_id, channel, template, source_kind, source_name, step, broadcast_id,
                                    status, attempts, created_at, sent_at, updated_at)
            VALUES ($1::uuid, $2, $3, 'email', $4, $5, $6, $7, $8, 'accepted', 1, $9, $9, $9)
            """, [.text(id), .text("test:\(id)"), .int(contact), .text(template),
                  .text(broadcast == nil ? "workflow" : "broadcast"), .text(broadcast == nil ? "welcome-series" : "spring-sale"),
                  broadcast == nil ? .int(2) : .null, broadcast.map { .int($0) } ?? .null, .timestamp(sentAt)])
        return id
    }

    func unsubscribedAt(_ contact: Int64) throws -> Date? {
        try db.query("SELECT unsubscribed_at FROM contacts WHERE id = $1", [.int(contact)]).rows.first?[0].date
    }

    /// (category, channel, granted, source) of every consent row of the contact, oldest first.
    func consents(_ contact: Int64) throws -> [String] {
        try db.query("SELECT category, channel, granted, source FROM consents WHERE contact_id = $1 ORDER BY id", [.int(contact)]).rows.map {
            "\($0[0].string ?? "") \($0[1].string ?? "") \($0[2].bool == true ? "granted" : "withdrawn") \($0[3].string ?? "")"
        }
    }

    /// Every message on `<ns>:events`, parsed; each is also checked to pass the ingester's own validation.
    func events() throws -> [Value] {
        let reply = try redis.execute(RedisCommand("XRANGE", .string("\(namespace):events"), "-", "+"))
        var out: [Value] = []
        for entry in reply.array ?? [] {
            guard let fields = entry.array?.last?.array, fields.count == 2, let payload = fields[1].string else {
                throw WebTestFailure("unexpected stream entry \(entry)")
            }
            _ = try SegmentMessage.parse(Array(payload.utf8))
            out.append(try Value(jsonText: payload))
        }
        return out
    }

    func eventNames() throws -> [String] { try events().map { $0["event"]?.stringValue ?? "?" } }

    // MARK: HTTP

    func get(_ path: String, headers: [String: String] = [:]) throws -> HTTPReply {
        try request("GET", path, headers: headers)
    }

    func post(_ path: String, form: String, headers: [String: String] = [:]) throws -> HTTPReply {
        var h = headers
        h["Content-Type"] = "application/x-www-form-urlencoded"
        return try request("POST", path, headers: h, body: Array(form.utf8))
    }

    /// One request over a fresh connection (`Connection: close`), read to the end; redirects are not followed.
    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: [UInt8] = []) throws -> HTTPReply {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw WebTestFailure("socket() failed") }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 15, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw WebTestFailure("cannot connect to 127.0.0.1:\(port)") }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { head += "\(name): \(value)\r\n" }
        if !body.isEmpty || method == "POST" { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        let out = Array(head.utf8) + body
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { throw WebTestFailure("send failed") }
            sent += n
        }
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { throw WebTestFailure("recv failed (errno \(errno)) after \(data.count) bytes") }
            if n == 0 { break }
            data.append(contentsOf: buffer[0..<n])
        }
        guard let split = data.indices.first(where: { i in i + 3 < data.count && data[i] == 13 && data[i + 1] == 10 && data[i + 2] == 13 && data[i + 3] == 10 })
        else { throw WebTestFailure("no HTTP head in \(String(decoding: data, as: UTF8.self))") }
        let lines = String(decoding: data[..<split], as: UTF8.self).components(separatedBy: "\r\n")
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        var replyHeaders: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            replyHeaders[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        var content = Array(data[(split + 4)...])
        if replyHeaders["transfer-encoding"]?.lowercased() == "chunked" { content = Self.dechunk(content) }
        return HTTPReply(status: status, headers: replyHeaders, body: content)
    }

    static func dechunk(_ bytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            guard let lineEnd = bytes[i...].indices.first(where: { $0 + 1 < bytes.count && bytes[$0] == 13 && bytes[$0 + 1] == 10 }) else { break }
            let size = Int(String(decoding: bytes[i..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16) ?? 0
            if size == 0 { break }
            out.append(contentsOf: bytes[(lineEnd + 2)..<min(bytes.count, lineEnd + 2 + size)])
            i = lineEnd + 2 + size + 2
        }
        return out
    }
}

/// The path of a link made for this harness (`http://127.0.0.1:PORT/u/...` → `/u/...`).
func path(_ url: String) -> String {
    guard let range = url.range(of: "://") else { return url }
    let rest = url[range.upperBound...]
    return rest.firstIndex(of: "/").map { String(rest[$0...]) } ?? "/"
}
