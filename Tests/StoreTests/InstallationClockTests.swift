import Foundation
import Runtime
import Store
import Testing
import TestSupport

@Suite struct InstallationClockTests {
    @Test func advanceReachesEveryProcessThatAllowsTimeTravel() throws {
        let database = try TestDatabase.create(prefix: "clock")
        defer { database.drop() }
        let db = try database.connect()
        _ = try Migrator().migrate(db)
        let cli = InstallationClock(timeTravelAllowed: true)
        let twoDays: Int64 = 2 * 86_400_000
        #expect(try cli.advance(by: twoDays, db: db) == twoDays)
        #expect(abs(cli.now().timeIntervalSinceNow - 172_800) < 2)

        let worker = InstallationClock(timeTravelAllowed: true)
        try worker.refresh(from: try database.connect())
        #expect(worker.offsetMilliseconds == twoDays)

        let production = InstallationClock(timeTravelAllowed: false)
        try production.refresh(from: db)
        #expect(production.offsetMilliseconds == 0)
        #expect(throws: InstallationClock.TimeTravelRefused.self) { try production.advance(by: 1_000, db: db) }

        try cli.reset(db: db)
        try worker.refresh(from: db)
        #expect(worker.offsetMilliseconds == 0)
    }
}
