import ArgumentParser
import Foundation
import Logging
import Postgres
import Redis
import Runtime

/// Connection options every command shares; each overrides its environment variable.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .customLong("redis-url"), help: "Redis URL (env NURTURE_REDIS_URL; default redis://127.0.0.1:6379/0).")
    var redisURL: String?

    @Option(name: .customLong("database-url"), help: "PostgreSQL URL (env NURTURE_DATABASE_URL, then DATABASE_URL).")
    var databaseURL: String?

    @Option(name: .customLong("namespace"), help: "Prefix of every Redis key (env NURTURE_NAMESPACE; default nurture).")
    var namespace: String?

    /// The environment's configuration with these flags applied; also sets up logging.
    func config() throws -> NurtureConfig {
        var env = ProcessInfo.processInfo.environment
        if let redisURL { env["NURTURE_REDIS_URL"] = redisURL }
        if let databaseURL { env["NURTURE_DATABASE_URL"] = databaseURL }
        if let namespace { env["NURTURE_NAMESPACE"] = namespace }
        let config = try NurtureConfig.fromEnvironment(env)
        LoggingSetup.once(level: config.logLevel)
        return config
    }

    func redis(_ config: NurtureConfig) throws -> RedisConnection {
        try RedisConnection(config: config.redisConfig)
    }

    func database(_ config: NurtureConfig) throws -> PostgresConnection {
        try PostgresConnection(url: config.databaseURL)
    }
}

enum LoggingSetup {
    private static let done = BootstrapFlag()
    static func once(level: Logger.Level) {
        done.runOnce { LogfmtLogHandler.bootstrap(level: level) }
    }
}

final class BootstrapFlag: @unchecked Sendable {
    // Safety: guarded by `lock`.
    private let lock = NSLock()
    private var done = false
    func runOnce(_ body: () -> Void) {
        lock.lock(); defer { lock.unlock() }
        if !done { body(); done = true }
    }
}

/// Parses `30s`, `15m`, `2d`, ... for flags.
func parseDuration(_ text: String, flag: String) throws -> Int64 {
    do { return try DurationTextAdapter.milliseconds(text) } catch {
        throw ValidationError("\(flag): \(error)")
    }
}

import NurtureCore
enum DurationTextAdapter {
    static func milliseconds(_ text: String) throws -> Int64 { try DurationText.milliseconds(text) }
}

/// Prints a table with aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, c in
            i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
