import ArgumentParser
import Foundation
import Postgres
import Redis
import Runtime
import Transport

/// `nurture`: one binary, many roles (contract §1).
struct Nurture: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nurture",
        abstract: "Self-hosted marketing automation: events in, the right message out, exactly once.",
        discussion: """
            Long-running roles: scheduler, worker, web. Definitions: validate, apply. People: events, contacts, segments,
            report. Campaigns: workflows, broadcast. Operations: migrate, jobs, queues, dlq, clock, templates, bench.
            Configuration comes from the environment (NURTURE_REDIS_URL, NURTURE_DATABASE_URL, NURTURE_NAMESPACE,
            NURTURE_LOG_LEVEL, NURTURE_METRICS_PORT, ...; see README): flags override it.
            Exit codes: 0 success, 1 user error (message on stderr), 2 usage error, 3 internal failure.
            """,
        version: "0.1.0",
        subcommands: [
            MigrateCommand.self, SchedulerCommand.self, WorkerCommand.self,
            JobsCommand.self, QueuesCommand.self, DLQCommand.self, ClockCommand.self, BenchCommand.self, TemplatesCommand.self,
            ValidateCommand.self, ApplyCommand.self, EventsCommand.self, ContactsCommand.self, SegmentsCommand.self, ReportCommand.self,
            WorkflowsCommand.self, BroadcastCommand.self, SinkCommand.self, WebCommand.self,
        ]
    )
}

/// An error the user can fix (bad input, unreachable server): printed without a stack trace, exit 1.
struct UserError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

@main
enum Main {
    static func main() async {
        do {
            var command = try Nurture.parseAsRoot()
            if var async = command as? any AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
            exit(0)
        } catch {
            exit(report(error))
        }
    }

    /// Prints the error where it belongs and returns the contract's exit code.
    static func report(_ error: any Error) -> Int32 {
        if let code = error as? ExitCode { return code.rawValue }
        let parserCode = Nurture.exitCode(for: error)
        if parserCode == .success {
            print(Nurture.fullMessage(for: error))
            return 0
        }
        if error is UserError || error is NurtureConfig.Invalid || error is RedisError || error is PostgresError
            || error is TransportError || error is DecodingError || error is InstallationClock.TimeTravelRefused {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            return 1
        }
        if parserCode == .validationFailure {
            FileHandle.standardError.write(Data((Nurture.fullMessage(for: error) + "\n").utf8))
            return 2
        }
        FileHandle.standardError.write(Data("internal error: \(error)\n".utf8))
        return 3
    }
}
