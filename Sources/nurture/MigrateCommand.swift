import ArgumentParser
import Store

struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Create or upgrade the PostgreSQL schema.",
        discussion: """
            Applies the migrations built into this binary that the database has not seen, each in its own
            transaction, under an advisory lock: running it from several hosts at once is safe (one applies,
            the others wait and find nothing left). Idempotent. Prints what it applied.
            """)

    @OptionGroup var connection: ConnectionOptions

    func run() async throws {
        let config = try connection.config()
        let db = try connection.database(config)
        let outcome = try Migrator().migrate(db)
        if outcome.applied.isEmpty {
            print("schema is up to date (version \(Migrator().latestVersion))")
        } else {
            for version in outcome.applied {
                let name = Migration.all.first { $0.version == version }?.name ?? ""
                print("applied \(version): \(name)")
            }
        }
    }
}
