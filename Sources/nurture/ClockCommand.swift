import ArgumentParser
import Foundation
import Runtime

struct ClockCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock",
        abstract: "Show or move the installation clock (demos and end-to-end tests).",
        discussion: """
            Every process takes "now" from the system clock plus an installation-wide offset stored in
            PostgreSQL. With NURTURE_ALLOW_TIME_TRAVEL=1 in the environment of the CLI and of every scheduler and
            worker, `advance` and `reset` move that offset and every process picks it up within a second.
            Without the variable they refuse (exit 1), and processes ignore any stored offset.
            """,
        subcommands: [ClockShowCommand.self, ClockAdvanceCommand.self, ClockResetCommand.self],
        defaultSubcommand: ClockShowCommand.self)
}

struct ClockShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Print the installation's now and offset.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let config = try connection.config()
        let clock = InstallationClock(timeTravelAllowed: true)
        try clock.refresh(from: try connection.database(config))
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        print("now:    \(formatter.string(from: clock.now()))")
        print("offset: \(clock.offsetMilliseconds) ms\(config.allowTimeTravel ? "" : " (ignored: NURTURE_ALLOW_TIME_TRAVEL is not set)")")
    }
}

struct ClockAdvanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "advance", abstract: "Move the clock forward by DURATION (e.g. 2d, 6h).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "How far: 30m, 6h, 2d, 1w, 1h30m.") var duration: String

    func run() async throws {
        let config = try connection.config()
        let ms = try parseDuration(duration, flag: "DURATION")
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        let offset = try clock.advance(by: ms, db: try connection.database(config))
        let formatter = ISO8601DateFormatter()
        print("advanced \(duration); offset now \(offset) ms; installation time \(formatter.string(from: clock.now()))")
    }
}

struct ClockResetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "reset", abstract: "Set the offset back to zero.")
    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let config = try connection.config()
        let clock = InstallationClock(timeTravelAllowed: config.allowTimeTravel)
        try clock.reset(db: try connection.database(config))
        print("clock reset: offset 0")
    }
}
