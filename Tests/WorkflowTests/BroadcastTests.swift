import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Testing
import TestSupport

/// Broadcasts on real servers and processes: exactly once across pause/resume, SIGKILLed workers and a flushed
/// Redis; suppression between enqueue and send; a scheduled broadcast on the virtual clock; an A/B winner.
@Suite(.serialized) struct BroadcastTests {
    static let definitions = """
        kind: segment
        name: everyone
        where: 'contact.email != null'
        ---
        kind: template
        name: news
        channel: email
        subject: "News for {{ contact.first_name }}"
        text: "Hi {{ contact.first_name }}. Unsubscribe: {{ unsubscribe_url }}"
        ---
        kind: template
        name: news-b
        channel: email
        subject: "Big news, {{ contact.first_name }}"
        text: "Hello {{ contact.first_name }}. Unsubscribe: {{ unsubscribe_url }}"
        """

    static func setUp(_ h: WorkflowHarness, people: Int) throws {
        try Self.definitions.write(toFile: h.scratch + "/broadcast.yaml", atomically: true, encoding: .utf8)
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples/providers.yaml"])
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples/settings.yaml"])
        try h.cli(["apply", h.scratch + "/broadcast.yaml"])
        var csv = "id,email,first_name\n"
        for i in 0..<people { csv += "b\(i),b\(i)@example.com,B\(i)\n" }
        try csv.write(toFile: h.scratch + "/people.csv", atomically: true, encoding: .utf8)
        try h.cli(["contacts", "import", h.scratch + "/people.csv"])   // evaluates segments for the imported contacts
    }

    static func count(_ h: WorkflowHarness, _ sql: String, _ parameters: [PostgresValue] = []) throws -> Int {
        Int(try h.db.query(sql, parameters).rows.first?[0].int ?? 0)
    }

    @Test func everyRecipientOnceAcrossPauseResumeKillsAndAFlush() async throws {
        let server = try RedisServerProcess()
        defer { server.stop() }
        let h = try WorkflowHarness(redisURL: server.url)
        defer { h.cleanUp() }
        h.emailPath = "/slow/5"
        let people = 300   // at 10/s: half a minute of sending, so the pause lands mid-broadcast even on a loaded machine
        try Self.setUp(h, people: people)
        // Enqueued while no worker runs; then two people opt out before their batch is sent.
        let out = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--rate", "10/s", "--batch-size", "10"])
        let id = Int64(out.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        #expect(id > 0, "broadcast send printed \(out)")
        #expect(try Self.count(h, "SELECT recipients FROM broadcasts WHERE id = $1", [.int(id)]) == people)
        try h.db.execute("UPDATE contacts SET unsubscribed_at = now() WHERE external_id = 'b7'")
        try h.db.execute("INSERT INTO suppressions (channel, address, reason, created_at) VALUES ('email', 'b8@example.com', 'bounce', now())")

        // Paused before any worker runs: its enqueued batch jobs send nothing. (A pause mid-send is
        // `aPauseMidSendStopsSendingWithinASecond`.)
        try h.cli(["broadcast", "pause", String(id)])
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4", "--lease", "2s"])
        try h.start("worker-2", ["worker", "--concurrency", "4", "--lease", "2s"])
        try await Task.sleep(nanoseconds: 3_000_000_000)
        #expect(try h.sunk().isEmpty, "messages went out while paused")

        // Resume, then chaos: kills and a FLUSHALL of Redis while it sends.
        try h.cli(["broadcast", "resume", String(id)])
        for round in 0..<4 {
            try await Task.sleep(nanoseconds: 300_000_000)
            let victim = round % 2 == 0 ? "worker-1" : "worker-2"
            h.kill(victim)
            try h.start(victim, ["worker", "--concurrency", "4", "--lease", "2s"])
            if round == 1 { _ = try h.redis.execute(RedisCommand("FLUSHALL")) }
        }
        let expected = (0..<people).filter { $0 != 7 && $0 != 8 }.map { "b\($0) news" }
        try await h.expectUnique(expected, within: 180, "broadcast \(id) after pause/resume, 4 kills and a FLUSHALL")
        let deadline = monotonicMilliseconds() + 30_000
        while monotonicMilliseconds() < deadline, try BroadcastTests.count(h, "SELECT count(*) FROM broadcasts WHERE id = $1 AND status = 'completed'", [.int(id)]) == 0 {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(try Self.count(h, "SELECT count(*) FROM broadcasts WHERE id = $1 AND status = 'completed'", [.int(id)]) == 1)
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'accepted'", [.int(id)]) == people - 2)
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'suppressed'", [.int(id)]) == 2)
        let status = try h.cli(["broadcast", "status", String(id), "--json"])
        #expect(status.contains("\"sent\" : \(people - 2)") || status.contains("\"sent\":\(people - 2)"), "status: \(status)")
    }

    /// A pause while messages go out: sending stops within about a second and stays stopped; a resume sends the
    /// rest, once each.
    @Test func aPauseMidSendStopsSendingWithinASecond() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        h.emailPath = "/slow/5"
        let people = 300   // at 20/s: 15 s of sending; the pause comes after about half a second of it
        try Self.setUp(h, people: people)
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4"])
        try h.start("worker-2", ["worker", "--concurrency", "4"])
        let out = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--rate", "20/s", "--batch-size", "10"])
        let id = Int64(out.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        let started = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < started, try h.sunk().count < 10 { try await Task.sleep(nanoseconds: 50_000_000) }
        let before = try h.sunk().count
        let state = try h.db.query("""
            SELECT b.status, (SELECT count(*) FROM broadcast_batches x WHERE x.broadcast_id = b.id AND x.state = 'done'),
                   (SELECT count(*) FROM deliveries d WHERE d.broadcast_id = b.id AND d.status = 'accepted')
            FROM broadcasts b WHERE b.id = $1
            """, [.int(id)]).rows.first
        let paused = try h.cli(["broadcast", "pause", String(id)])
        try await Task.sleep(nanoseconds: 1_500_000_000)
        let atPause = try h.sunk().count
        try await Task.sleep(nanoseconds: 2_000_000_000)
        #expect(try h.sunk().count == atPause, "messages went out while paused")
        #expect(atPause < people, "sunk \(before) then \(atPause); at pause: \(String(describing: state)); pause said \(paused)")
        try h.cli(["broadcast", "resume", String(id)])
        try await h.expectUnique((0..<people).map { "b\($0) news" }, within: 120, "broadcast \(id) after a pause mid-send")
    }

    @Test func aScheduledBroadcastStartsAtItsTimeAndAnABTestSendsTheWinnerToTheRest() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        let people = 80
        try Self.setUp(h, people: people)
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4"])
        let t0 = try h.now()

        // Scheduled in an hour (business time): nothing before, everything after the clock moves.
        let at = Value.iso8601(t0.addingTimeInterval(3_600))
        let scheduled = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--at", at, "--name", "later"])
        let laterID = Int64(scheduled.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        try await Task.sleep(nanoseconds: 2_000_000_000)
        #expect(try h.sunk().isEmpty)
        #expect(try Self.count(h, "SELECT count(*) FROM broadcasts WHERE id = $1 AND status = 'scheduled'", [.int(laterID)]) == 1)
        try h.advance(seconds: 3_600)
        try await h.expectUnique((0..<people).map { "b\($0) news" }, within: 60, "scheduled broadcast after the clock reached --at")

        // A/B: 25% get news, 25% news-b; news-b is clicked more; after 4h the other 50% get news-b.
        let ab = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--template", "news-b",
                            "--split", "25,25", "--winner-after", "4h", "--winner-by", "clicks", "--ignore-caps"])
        let abID = Int64(ab.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline,
              try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'accepted'", [.int(abID)]) < people / 2 {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        try await Task.sleep(nanoseconds: 1_500_000_000)
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1", [.int(abID)]) == people / 2, "only the samples before the winner")
        let now = try h.now()
        for row in try h.db.query("""
            SELECT c.external_id, d.id::text, d.template FROM deliveries d JOIN contacts c ON c.id = d.contact_id
            WHERE d.broadcast_id = $1 ORDER BY c.id
            """, [.int(abID)]).rows {
            let template = row[2].string ?? ""
            let user = row[0].string ?? "", delivery = row[1].string ?? ""
            // Every news-b recipient clicks; one in four news recipients does.
            if template == "news-b" || (Int(user.dropFirst()) ?? 0) % 4 == 0 {
                try h.track(user, "Email Clicked", ["delivery_id": .string(delivery), "url": .string("https://acme.test")], at: now)
            }
        }
        try await Task.sleep(nanoseconds: 3_000_000_000)   // the clicks are ingested
        try h.advance(seconds: 4 * 3_600)
        let waitUntil = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < waitUntil,
              try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'accepted'", [.int(abID)]) < people {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(try Self.count(h, "SELECT winner FROM broadcasts WHERE id = $1", [.int(abID)]) == 1)
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND template = 'news'", [.int(abID)]) == people / 4)
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND template = 'news-b'", [.int(abID)]) == people * 3 / 4)
        #expect(try Self.count(h, "SELECT count(DISTINCT contact_id) FROM deliveries WHERE broadcast_id = $1", [.int(abID)]) == people)
    }

    /// A provider that answers 503 delays messages and loses none: each recipient is delivered once when it is back.
    @Test func aProviderThatIsDownDelaysAndNeverLosesOrDuplicates() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        h.emailPath = "/status/503"
        let people = 60
        try Self.setUp(h, people: people)
        try h.start("scheduler", ["scheduler"])
        try h.start("worker-1", ["worker", "--concurrency", "4"])
        let out = try h.cli(["broadcast", "send", "--segment", "everyone", "--template", "news", "--batch-size", "20"])
        let id = Int64(out.split(separator: "\n").first.map(String.init) ?? "") ?? 0
        let deadline = monotonicMilliseconds() + 60_000
        while monotonicMilliseconds() < deadline,
              try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND attempts >= 1 AND last_error IS NOT NULL", [.int(id)]) == 0 {
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status <> 'pending'", [.int(id)]) == 0,
                "nothing is settled while the provider answers 503")
        // The provider comes back (a new provider version pointing at a healthy endpoint).
        h.emailPath = "/email"
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples/providers.yaml"])
        let healthy = try await waitForHealthy(h, people: people, within: 90)
        #expect(healthy.count == people, "\(healthy.count) of \(people) delivered to the healthy endpoint")
        #expect(Set(healthy).count == healthy.count, "a delivery id reached the healthy endpoint twice")
        #expect(try Self.count(h, "SELECT count(*) FROM deliveries WHERE broadcast_id = $1 AND status = 'accepted'", [.int(id)]) == people)
    }

    /// Delivery ids the sink accepted at `/email` once `people` have arrived there (or the time is up).
    func waitForHealthy(_ h: WorkflowHarness, people: Int, within seconds: Double) async throws -> [String] {
        let deadline = monotonicMilliseconds() + Int64(seconds * 1000)
        var ids: [String] = []
        while monotonicMilliseconds() < deadline {
            ids = try h.sunk().filter { $0.path == "/email" }.map(\.deliveryId)
            if ids.count >= people { break }
            try await Task.sleep(nanoseconds: 250_000_000)
        }
        try await Task.sleep(nanoseconds: 1_000_000_000)
        return try h.sunk().filter { $0.path == "/email" }.map(\.deliveryId)
    }
}
