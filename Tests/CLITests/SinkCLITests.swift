import Foundation
import NurtureCore
import Testing
import TestSupport
import Transport

/// The built `nurture` binary: `NURTURE_BINARY`, else the one next to this test bundle (same build directory),
/// else `<repo>/.build/debug/nurture`. Missing is a failure, never a skip.
private enum SinkBinary {
    struct Missing: Error, CustomStringConvertible { let description: String }

    static func path() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let besideTests = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.bundleURL.deletingLastPathComponent()]
            .compactMap { $0?.appendingPathComponent("nurture").path }
            .filter { $0.contains("/.build") }
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["NURTURE_BINARY"], !env.isEmpty { candidates.append(env) }
        candidates += besideTests + [root + "/.build/debug/nurture"]
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw Missing(description: "the nurture binary is missing (looked at \(candidates.joined(separator: ", "))): build it with `swift build`")
    }
}

private struct Timeout: Error, CustomStringConvertible { let description: String }

/// A `nurture sink` child process on a free port, with its log, stdout and stderr in a scratch folder.
private final class RunningSink {
    let directory: String
    let port: Int
    let child: ChildProcess
    var logPath: String { directory + "/sink.jsonl" }
    var stdoutPath: String { directory + "/stdout" }
    var stderrPath: String { directory + "/stderr" }
    let client = HTTPClient(connectTimeoutMilliseconds: 500, timeoutMilliseconds: 5_000)

    init(_ arguments: [String]) throws {
        directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("sink-cli")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = TestEnvironment.freePort()
        child = try ChildProcess(executable: try SinkBinary.path(),
                                 arguments: ["sink", "--port", String(port), "--log", directory + "/sink.jsonl"] + arguments,
                                 stdoutPath: directory + "/stdout", stderrPath: directory + "/stderr")
        // Wait for it to listen (a fresh connection per probe, so a refused one is not kept).
        let deadline = Date().addingTimeInterval(20)
        while true {
            let probe = HTTPClient(connectTimeoutMilliseconds: 200, timeoutMilliseconds: 1_000)
            defer { probe.close() }
            if (try? probe.send(HTTPRequest(method: "GET", url: url("/ready")))) != nil { break }
            guard child.isRunning else { throw Timeout(description: "nurture sink exited early: \(stderr)") }
            guard Date() < deadline else { throw Timeout(description: "nurture sink did not listen on \(port): \(stderr)") }
            usleep(50_000)
        }
    }

    func url(_ path: String) -> String { "http://127.0.0.1:\(port)\(path)" }

    func post(_ path: String, _ json: String, key: String? = nil) throws -> HTTPResponse {
        var request = HTTPRequest(method: "POST", url: url(path), body: Array(json.utf8))
        request.setHeader("Content-Type", "application/json")
        if let key { request.setHeader("Idempotency-Key", key) }
        return try client.send(request)
    }

    var stderr: String { String(decoding: FileManager.default.contents(atPath: stderrPath) ?? Data(), as: UTF8.self) }
    var stdout: String { String(decoding: FileManager.default.contents(atPath: stdoutPath) ?? Data(), as: UTF8.self) }

    /// The log's lines parsed as JSON objects (every line must be one).
    func logLines() throws -> [[String: Any]] {
        let text = String(decoding: FileManager.default.contents(atPath: logPath) ?? Data(), as: UTF8.self)
        return try text.split(separator: "\n").map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            guard let dictionary = object as? [String: Any] else { throw Timeout(description: "not an object: \(line)") }
            return dictionary
        }
    }

    /// SIGTERM/SIGINT, then waits; returns the exit code.
    func stop(_ signal: Int32 = SIGTERM) -> Int32? {
        client.close()
        child.signal(signal)
        if !child.wait(milliseconds: 10_000) { child.signal(SIGKILL); child.wait() }
        return child.exitCode
    }

    deinit {
        client.close()
        if child.isRunning { child.signal(SIGKILL); child.wait() }
        try? FileManager.default.removeItem(atPath: directory)
    }
}

private func json(_ response: HTTPResponse) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
}

@Suite(.serialized) struct SinkCLITests {
    @Test func acceptsLogsAndAnswersBatches() throws {
        let sink = try RunningSink(["--quiet"])
        let single = try sink.post("/email", """
            {"id":"d-1","channel":"email","to":"ann@example.com","contact_id":"u-42",
             "subject":"Welcome to Acme, Ann!","text":"Hi Ann","source":{"workflow":"welcome","step":2}}
            """, key: "d-1")
        #expect(single.status == 200)
        #expect(try json(single)["status"] as? String == "accepted")

        let batch = try sink.post("/ads", #"{"messages":[{"id":"m-1","to":"u-1"},{"id":"m-2","to":"u-2"}]}"#, key: "b-1")
        #expect(batch.status == 200)
        let results = try #require(try json(batch)["results"] as? [[String: Any]])
        #expect(results.map { $0["id"] as? String } == ["m-1", "m-2"])
        #expect(results.map { $0["status"] as? String } == ["accepted", "accepted"])

        var other = HTTPRequest(method: "GET", url: sink.url("/anything/at/all?x=1"))
        other.setHeader("Accept", "*/*")
        #expect(try sink.client.send(other).status == 200)
        #expect(try sink.post("/sms", "not json").status == 200)

        // One line per request, written as it happens (read while the sink still runs).
        let lines = try sink.logLines().filter { $0["path"] as? String != "/ready" }   // minus the readiness probe
        #expect(lines.count == 4)
        let first = try #require(lines.first)
        #expect(first["path"] as? String == "/email")
        #expect(first["idempotency_key"] as? String == "d-1")
        let body = try #require(first["body"] as? [String: Any])
        #expect(body["to"] as? String == "ann@example.com")
        #expect((body["source"] as? [String: Any])?["step"] as? Int == 2)
        let at = try #require(first["at"] as? String)
        #expect(at.count == "2026-11-22T14:02:03.123Z".count && at.hasSuffix("Z") && at.contains("."), "\(at)")
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let when = try #require(formatter.date(from: at))
        #expect(abs(when.timeIntervalSinceNow) < 60)
        #expect(((lines[1]["body"] as? [String: Any])?["messages"] as? [Any])?.count == 2)
        #expect(lines[2]["path"] as? String == "/anything/at/all")
        #expect(lines[2]["idempotency_key"] is NSNull)
        #expect(lines[3]["body"] as? String == "not json")
        #expect(sink.stdout == "", "--quiet prints nothing per request")

        #expect(sink.stop(SIGTERM) == 0)
        #expect(sink.stderr.contains("listening on http://127.0.0.1:\(sink.port)"), "\(sink.stderr)")
    }

    @Test func printsASummaryLinePerRequest() throws {
        let sink = try RunningSink([])
        _ = try sink.post("/email", #"{"id":"d-9","to":"ann@example.com","subject":"Welcome to Acme, Ann!"}"#, key: "d-9")
        _ = try sink.post("/sms", #"{"id":"d-10","to":"+33600000000","text":"Your code"}"#, key: "d-10")
        #expect(sink.stop(SIGINT) == 0)
        let out = sink.stdout.split(separator: "\n").map(String.init)
        let email = try #require(out.first { $0.contains("/email") }, "\(sink.stdout)")
        #expect(email.contains(#"ann@example.com  "Welcome to Acme, Ann!""#), "\(email)")
        #expect(email.range(of: #"^\d\d:\d\d:\d\d /email"#, options: .regularExpression) != nil, "\(email)")
        #expect(out.contains { $0.contains(#"/sms  +33600000000  "Your code""#) }, "\(sink.stdout)")
    }

    @Test func chaosFailEveryAndStatusForPath() throws {
        let sink = try RunningSink(["--quiet", "--fail-every", "3", "--status-for", "/sms=400", "/slow=429"])
        // The readiness probe was request 1.
        #expect(try sink.post("/email", #"{"id":"1"}"#).status == 200)   // 2
        let failed = try sink.post("/email", #"{"id":"2"}"#)               // 3
        #expect(failed.status == 503)
        #expect(try json(failed)["status"] as? String == "rejected")
        #expect(try sink.post("/email", #"{"id":"3"}"#).status == 200)   // 4
        #expect(try sink.post("/sms", #"{"id":"4"}"#).status == 400)     // 5
        #expect(try sink.post("/email", #"{"id":"5"}"#).status == 503)   // 6
        #expect(try sink.post("/slow", #"{"id":"6"}"#).status == 429)    // 7
        let statuses = try sink.logLines().map { $0["status"] as? Int }
        #expect(statuses == [200, 200, 503, 200, 400, 503, 429])
        #expect(sink.stop() == 0)
    }

    @Test func helpPointsTheExampleProvidersAtIt() throws {
        let directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName("sink-help")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let child = try ChildProcess(executable: try SinkBinary.path(), arguments: ["sink", "--help"],
                                     stdoutPath: directory + "/out", stderrPath: directory + "/err")
        child.wait()
        let help = String(decoding: FileManager.default.contents(atPath: directory + "/out") ?? Data(), as: UTF8.self)
        #expect(child.exitCode == 0)
        for path in ["/email", "/sms", "/push", "/sales", "/ads"] {
            #expect(help.contains("http://127.0.0.1:8025" + path), "\(path)")
        }
        for flag in ["--port", "--host", "--log", "--quiet", "--fail-every", "--status-for"] {
            #expect(help.contains(flag), "\(flag)")
        }

        let bad = try ChildProcess(executable: try SinkBinary.path(), arguments: ["sink", "--status-for", "nonsense"],
                                   stdoutPath: directory + "/out2", stderrPath: directory + "/err2")
        bad.wait()
        #expect(bad.exitCode == 2)
    }
}
