import ArgumentParser
import Foundation
import Logging
import Runtime

/// `nurture sink`: a local HTTP sink for demos and benchmarks (stands in for every `type: http` provider).
struct SinkCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sink",
        abstract: "Run a local HTTP sink that accepts and logs provider requests (demo, benchmarks, chaos).",
        discussion: """
            Accepts any method on any path and answers 200 {"status":"accepted"}. A batch body {"messages":[...]}
            (a provider with `batch: N`) is answered {"results":[{"id":ID,"status":"accepted"},...]}.

            The example providers (examples/providers.yaml) and the demo (ops/demo) point at it by default:
              email  http://127.0.0.1:8025/email     (NURTURE_EMAIL_URL)
              sms    http://127.0.0.1:8025/sms       (NURTURE_SMS_URL)
              push   http://127.0.0.1:8025/push      (NURTURE_PUSH_URL)
              sales  http://127.0.0.1:8025/sales     (NURTURE_SALES_WEBHOOK_URL)
              ads    http://127.0.0.1:8025/ads       (NURTURE_ADS_URL, batch: 500)
            so `nurture sink` in one terminal, the scheduler and a worker in others, and every message the
            installation sends shows up here as one line: `14:02:03 /email  ann@example.com  "Welcome to Acme, Ann!"`.

            --log FILE appends one JSON line per request, written (flushed) line by line so it can be tailed:
              {"at":"2026-11-22T14:02:03.123Z","path":"/email","idempotency_key":"<delivery id>",
               "body":<the body, parsed if JSON, else a string>,"method":"POST","status":200}

            Chaos: --fail-every N answers 503 to every Nth request (workers retry with backoff, reusing the
            delivery id as Idempotency-Key); --status-for /sms=500 (or =429, =400 ...) answers that status for a
            path (429 and 5xx are retried, other 4xx are permanent failures).

            SIGINT / SIGTERM stop it (exit 0).
            """)

    @Option(help: "TCP port to listen on (0 = any free port).")
    var port: Int = 8025

    @Option(help: "Address to listen on.")
    var host: String = "127.0.0.1"

    @Option(name: .customLong("log"), help: ArgumentHelp("Append one JSON line per request to this file.", valueName: "FILE.jsonl"))
    var log: String?

    @Flag(help: "Do not print a line per request on stdout.")
    var quiet = false

    @Option(help: ArgumentHelp("Answer 503 to every Nth request.", valueName: "N"))
    var failEvery: Int?

    @Option(parsing: .upToNextOption,
            help: ArgumentHelp("Answer CODE for requests to PATH (repeatable), e.g. --status-for /sms=500 /ads=429.",
                               valueName: "PATH=CODE"))
    var statusFor: [String] = []

    func validate() throws {
        guard (0...65_535).contains(port) else { throw ValidationError("--port must be 0-65535") }
        if let failEvery, failEvery < 1 { throw ValidationError("--fail-every must be at least 1") }
        _ = try statusTable()
    }

    /// `--status-for` as a path → status table.
    func statusTable() throws -> [String: Int] {
        var table: [String: Int] = [:]
        for entry in statusFor {
            guard let eq = entry.lastIndex(of: "="), let code = Int(entry[entry.index(after: eq)...]), (100...599).contains(code),
                  eq != entry.startIndex else {
                throw ValidationError("--status-for '\(entry)': expected PATH=CODE with CODE 100-599, e.g. /sms=500")
            }
            var path = String(entry[..<eq])
            if !path.hasPrefix("/") { path = "/" + path }
            table[path] = code
        }
        return table
    }

    func run() async throws {
        let sink: DevSink
        do {
            sink = try DevSink(host: host, port: port, logPath: log, quiet: quiet, failEvery: failEvery ?? 0,
                               statusForPath: try statusTable())
        } catch {
            throw UserError("\(error)")
        }
        let host = self.host, log = self.log
        let banner = Task {
            guard let bound = try? await sink.waitUntilListening(timeoutSeconds: 30) else { return }
            var line = "nurture sink listening on http://\(host):\(bound)"
            if let log { line += ", logging to \(log)" }
            FileHandle.standardError.write(Data((line + " (Ctrl-C to stop)\n").utf8))
        }
        defer { banner.cancel() }
        do {
            try await runRole([sink], logger: Logger(label: "nurture.sink"))
        } catch is CancellationError {
            return
        } catch {
            throw UserError("nurture sink on \(host):\(port): \(error)")
        }
    }
}
