import Foundation
import NurtureCore
import Testing
import TestSupport

/// `nurture bench workflows` at a tiny size against the test servers: it runs to the end and prints its figures.
/// No timing assertions (a smoke test of the benchmark's plumbing, not a benchmark).
@Suite struct BenchWorkflowsSmokeTests {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// `NURTURE_BINARY`, else the one next to this test bundle (same build directory), else `<repo>/.build/debug/nurture`.
    static func binary() throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        let besideTests = [Bundle.main.executableURL?.deletingLastPathComponent(), Bundle.main.bundleURL.deletingLastPathComponent()]
            .compactMap { $0?.appendingPathComponent("nurture").path }
            .filter { $0.contains("/.build") }
        var candidates: [String] = []
        if let env = ProcessInfo.processInfo.environment["NURTURE_BINARY"], !env.isEmpty { candidates.append(env) }
        candidates += besideTests + [root + "/.build/debug/nurture"]
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) { return path }
        throw Failure(description: "the nurture binary is missing (looked at \(candidates.joined(separator: ", "))): build it with `swift build`")
    }

    /// `key=value` fields of the first `bench=NAME ...` line that has `phase=PHASE` (if given).
    static func figures(_ output: String, bench: String, phase: String? = nil) -> [String: String]? {
        for line in output.split(separator: "\n") where line.hasPrefix("bench=\(bench) ") {
            var fields: [String: String] = [:]
            for part in line.split(separator: " ") {
                guard let eq = part.firstIndex(of: "=") else { continue }
                fields[String(part[..<eq])] = String(part[part.index(after: eq)...])
            }
            if phase == nil || fields["phase"] == phase { return fields }
        }
        return nil
    }

    /// Runs the binary with `arguments` against the test database (3 minutes at most); returns stdout and stderr
    /// after checking it exited 0.
    static func run(_ arguments: [String], scratch: String) throws -> (String, String) {
        let directory = TestEnvironment.scratchDirectory + "/" + TestEnvironment.uniqueName(scratch)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var env = ProcessInfo.processInfo.environment
        env["NURTURE_DATABASE_URL"] = try TestEnvironment.databaseURL()
        env["NURTURE_LOG_LEVEL"] = "warning"
        env["NURTURE_METRICS_PORT"] = nil
        let child = try ChildProcess(executable: try binary(), arguments: arguments, environment: env,
                                     stdoutPath: directory + "/stdout", stderrPath: directory + "/stderr")
        if !child.wait(milliseconds: 180_000) {
            child.signal(SIGKILL)
            child.wait()
            throw Failure(description: "\(arguments.prefix(2).joined(separator: " ")) did not finish in 3 minutes")
        }
        let stdout = String(decoding: FileManager.default.contents(atPath: directory + "/stdout") ?? Data(), as: UTF8.self)
        let stderr = String(decoding: FileManager.default.contents(atPath: directory + "/stderr") ?? Data(), as: UTF8.self)
        #expect(child.exitCode == 0, "exit \(String(describing: child.exitCode))\n\(stdout)\n\(stderr)")
        return (stdout, stderr)
    }

    @Test func tinyRunPrintsItsFigures() throws {
        let (stdout, stderr) = try Self.run(["bench", "workflows", "--contacts", "50", "--workers", "1", "--concurrency", "4", "--paced-rate", "100", "--paced-seconds", "1", "--renders", "2000", "--stall-seconds", "30"], scratch: "bench-workflows")

        let burst = try #require(Self.figures(stdout, bench: "workflows", phase: "burst"), "no burst line in:\n\(stdout)\n\(stderr)")
        #expect(burst["contacts"] == "50")
        #expect(burst["steps"] == "150")
        #expect(burst["messages"] == "150")
        #expect(burst["duplicates"] == "0")
        #expect(burst["not_accepted"] == "0")
        for key in ["steps_per_s", "messages_per_s", "claim_p50_ms", "claim_p99_ms", "start_p50_ms", "start_p99_ms", "accepted_p99_ms"] {
            #expect(Double(burst[key] ?? "") != nil, "\(key) in \(burst)")
        }
        let paced = try #require(Self.figures(stdout, bench: "workflows", phase: "paced"), "no paced line in:\n\(stdout)")
        #expect(paced["enrollments"] == "50")
        #expect(Double(paced["start_p99_ms"] ?? "") != nil)
        let render = try #require(Self.figures(stdout, bench: "workflows-render"), "no render line in:\n\(stdout)")
        #expect(render["template"] == "welcome-1")
        #expect(Double(render["renders_per_s"] ?? "") ?? 0 > 0)
        #expect(stdout.contains("steps/s"))
    }

    @Test func tinyBroadcastRunPrintsItsFigures() throws {
        let (stdout, stderr) = try Self.run(["bench", "broadcast", "--contacts", "1200", "--workers", "1", "--concurrency", "2", "--provider-batch", "100", "--batch-size", "300"], scratch: "bench-broadcast")
        let line = try #require(Self.figures(stdout, bench: "broadcast"), "no broadcast line in:\n\(stdout)\n\(stderr)")
        #expect(line["recipients"] == "1200")
        #expect(line["batches"] == "4")
        #expect(line["sink_messages"] == "1200")
        #expect(line["accepted_rows"] == "1200")
        #expect(line["duplicates"] == "0")
        for key in ["snapshot_s", "enqueue_s", "deliver_s", "total_s", "messages_per_s", "cpu_bench_us_per_message", "machine_renders_per_s"] {
            #expect(Double(line[key] ?? "") != nil, "\(key) in \(line)")
        }
    }
}
