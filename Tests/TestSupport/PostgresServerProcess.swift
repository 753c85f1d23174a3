import Foundation
import NurtureCore

/// A private PostgreSQL cluster a test can crash and restart (the shared one from `ops/test` must stay up). Started
/// with the same script `ops/test` uses (`ops/lib/services.sh`: initdb once, trust auth on loopback, database
/// `nurture`); `ops/test` stops any left running when it exits. Unlike the shared test cluster it keeps PostgreSQL's
/// default durability: with `synchronous_commit=off` a crash loses transactions already reported committed (a
/// delivery row written before its provider call, say), which is a configuration no installation should run.
public final class PostgresServerProcess: @unchecked Sendable {
    // Safety: used from one test at a time (start/stop/crash on that test's thread).
    public let port: Int
    public let directory: String

    public var url: String { "postgres://postgres@127.0.0.1:\(port)/nurture" }

    public init() throws {
        port = TestEnvironment.freePort()
        directory = TestEnvironment.scratchDirectory + "/pg-\(port)-\(UUID().uuidString.prefix(8))"
        try start()
    }

    deinit { stop() }

    /// Starts the cluster (initialising it the first time) and waits until it accepts connections.
    public func start() throws {
        try services("start_postgres '\(directory)' \(port)")
    }

    /// A clean shutdown (`pg_ctl stop -m fast`).
    public func stop() {
        try? services("stop_postgres '\(directory)'")
    }

    /// `pg_ctl stop -m immediate`: every backend dies at once, nothing is checkpointed, and the next start runs crash
    /// recovery — what a PostgreSQL crash or a host losing power looks like to clients.
    public func crash() throws {
        try services("as_pg_user \"$(pg_bindir)/pg_ctl\" -D '\(directory)/data' -m immediate -w stop >/dev/null")
    }

    private func services(_ command: String) throws {
        let log = directory + ".out"
        let script = ". '\(NurtureBinary.repositoryRoot)/ops/lib/services.sh'; \(command)"
        let child = try ChildProcess(executable: "/bin/bash", arguments: ["-c", script], stdoutPath: log)
        let status = child.wait()
        guard status == 0 else {
            let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw ServerFailure(description: "private PostgreSQL on port \(port): `\(command)` failed (status \(status)): \(output.suffix(2_000))")
        }
    }
}

public struct ServerFailure: Error, CustomStringConvertible {
    public let description: String
}
