import Foundation
import Postgres
import Synchronization

/// "Now" for business logic (contract §7): the system clock plus an installation-wide offset stored in
/// PostgreSQL. The offset is honoured only with `NURTURE_ALLOW_TIME_TRAVEL=1`; long-running roles refresh it
/// every second, so `nurture clock advance 2d` reaches every scheduler and worker within a second.
public final class InstallationClock: Sendable {
    private let offset = Atomic<Int64>(0)
    public let timeTravelAllowed: Bool

    public init(timeTravelAllowed: Bool) {
        self.timeTravelAllowed = timeTravelAllowed
    }

    public var offsetMilliseconds: Int64 { offset.load(ordering: .relaxed) }

    /// Milliseconds since 1970 on the installation clock.
    public func nowMilliseconds() -> Int64 {
        var tv = timeval()
        gettimeofday(&tv, nil)
        return Int64(tv.tv_sec) * 1000 + Int64(tv.tv_usec) / 1000 + offset.load(ordering: .relaxed)
    }

    public func now() -> Date { Date(timeIntervalSince1970: Double(nowMilliseconds()) / 1000) }

    /// Reads the stored offset (ignored unless time travel is allowed).
    public func refresh(from db: PostgresConnection) throws {
        guard timeTravelAllowed else { return }
        let rows = try db.query("SELECT offset_ms FROM installation_clock WHERE id = 1").rows
        offset.store(rows.first?[0].int ?? 0, ordering: .relaxed)
    }

    public struct TimeTravelRefused: Error, CustomStringConvertible {
        public var description: String {
            "the installation clock can only be moved with NURTURE_ALLOW_TIME_TRAVEL=1 in the environment of the CLI and of every scheduler and worker"
        }
    }

    /// Moves the installation's clock forward by `milliseconds` (negative moves it back); returns the new offset.
    @discardableResult
    public func advance(by milliseconds: Int64, db: PostgresConnection) throws -> Int64 {
        guard timeTravelAllowed else { throw TimeTravelRefused() }
        let row = try db.query("""
            UPDATE installation_clock SET offset_ms = offset_ms + $1, updated_at = now() WHERE id = 1 RETURNING offset_ms
            """, [.int(milliseconds)]).rows.first
        let value = row?[0].int ?? 0
        offset.store(value, ordering: .relaxed)
        return value
    }

    public func reset(db: PostgresConnection) throws {
        guard timeTravelAllowed else { throw TimeTravelRefused() }
        try db.execute("UPDATE installation_clock SET offset_ms = 0, updated_at = now() WHERE id = 1")
        offset.store(0, ordering: .relaxed)
    }
}
