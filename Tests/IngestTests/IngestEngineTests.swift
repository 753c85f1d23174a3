import Domain
import Foundation
import JobQueue
import Postgres
import Redis
import Runtime
import Store
import Testing
import TestSupport

/// One test's world: its own Redis namespace and PostgreSQL schema (migrated), and an engine factory.
final class IngestHarness: Sendable {
    let namespace: String
    let database: TestDatabase
    let redisURL: String
    let redis: RedisConnection
    let db: PostgresConnection
    let clock = InstallationClock(timeTravelAllowed: false)

    init() throws {
        namespace = TestEnvironment.uniqueName("ing")
        redisURL = try TestEnvironment.redisURL()
        database = try TestDatabase.create(prefix: "ing")
        db = try database.connect()
        _ = try Migrator().migrate(db)
        redis = try RedisConnection(url: redisURL)
    }

    var stream: String { IngestOptions.streamKey(namespace: namespace) }

    func options(batch: Int = 500, consumer: String = "test-ingest") throws -> IngestOptions {
        var o = IngestOptions()
        o.namespace = namespace
        o.redis = try RedisConfig(url: redisURL)
        o.databaseURL = database.url
        o.batchSize = batch
        o.consumerName = consumer
        o.claimIdleMilliseconds = 500
        o.claimEveryMilliseconds = 300
        return o
    }

    func engine(batch: Int = 500, consumer: String = "test-ingest") throws -> IngestEngine {
        IngestEngine(options: try options(batch: batch, consumer: consumer), clock: clock)
    }

    @discardableResult
    func add(_ payload: String) throws -> String {
        try redis.execute(RedisCommand("XADD", .string(stream), "*", "payload", .string(payload))).string ?? ""
    }

    func count(_ sql: String, _ parameters: [PostgresValue] = []) throws -> Int64 {
        try db.query(sql, parameters).rows.first?[0].int ?? -1
    }

    func streamLength() throws -> Int64 { try redis.execute(RedisCommand("XLEN", .string(stream))).int ?? -1 }

    func deadLetters() throws -> [DeadLetter] {
        try JobQueue(namespace: namespace).deadLetters(queue: IngestOptions.deadQueue, limit: 1000, on: redis)
    }

    func cleanUp() {
        _ = try? redis.execute(RedisCommand("DEL", .string(stream)))
        redis.close()
        db.close()
        database.drop()
    }
}

func eventually(within seconds: Double, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = monotonicMilliseconds() + Int64(seconds * 1000)
    while true {
        if try condition() { return true }
        if monotonicMilliseconds() >= deadline { return false }
        try await Task.sleep(nanoseconds: 50_000_000)
    }
}

/// Runs blocking work on a dedicated thread, off the cooperative pool.
func blocking(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let thread = Thread { body(); continuation.resume() }
        thread.start()
    }
}

@Suite(.serialized) struct IngestEngineTests {
    @Test func trackIdentifyPageAliasFlowIntoTheTables() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let engine = try h.engine()
        try engine.start()
        try h.add(#"{"type":"identify","userId":"u1","messageId":"i1","timestamp":"2026-11-20T10:00:00Z","traits":{"email":" Ada@Example.com ","plan":"pro","timezone":"Europe/Paris","phone":"+33"}}"#)
        try h.add(#"{"type":"track","userId":"u1","event":"Signed Up","messageId":"t1","timestamp":"2026-11-20T10:01:00Z","properties":{"plan":"pro"},"context":{"campaign":{"source":"google","medium":"cpc"},"device":{"type":"ios"}}}"#)
        try h.add(#"{"type":"page","userId":"u1","name":"Pricing","messageId":"p1","timestamp":"2026-11-20T10:02:00Z","context":{"page":{"path":"/pricing"},"campaign":{"source":"newsletter","medium":"email"}}}"#)
        try h.add(#"{"type":"track","anonymousId":"anon-x","event":"Viewed","messageId":"t2","timestamp":"2026-11-19T09:00:00Z"}"#)
        try h.add(#"{"type":"alias","userId":"u1","previousId":"anon-x","messageId":"al1"}"#)
        let done = try await eventually(within: 20) { engine.ingested >= 5 }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested)")

        let contact = try #require(try h.db.query("""
            SELECT id, external_id, email, phone, timezone, attributes->>'plan', email_sha256, first_seen_at, last_seen_at,
                   first_utm_source, last_utm_source, last_utm_medium, last_device_type
            FROM contacts WHERE merged_into IS NULL
            """).rows.first)
        #expect(try h.count("SELECT count(*) FROM contacts WHERE merged_into IS NULL") == 1)
        #expect(contact[1].string == "u1")
        #expect(contact[2].string == "Ada@Example.com")
        #expect(contact[3].string == "+33" && contact[4].string == "Europe/Paris" && contact[5].string == "pro")
        #expect(contact[6].string == SHA256.hex("ada@example.com"))
        #expect(contact[7].date == Value.parseTime("2026-11-19T09:00:00Z"))
        #expect(contact[9].string == "google")
        #expect(contact[10].string == "newsletter" && contact[11].string == "email")
        #expect(contact[12].string == "ios")
        let id = contact[0].int!
        let events = try h.db.query("SELECT name, properties->>'path', properties->>'name', contact_id FROM events ORDER BY occurred_at").rows
        #expect(events.map { $0[0].string ?? "" } == ["Viewed", "Signed Up", "Page Viewed"])
        #expect(events[2][1].string == "/pricing" && events[2][2].string == "Pricing")
        #expect(events.allSatisfy { $0[3].int == id }, "alias moved the anonymous event to the user")
        let identities = try h.db.query("SELECT kind || ':' || value FROM identities WHERE contact_id = $1 ORDER BY 1", [.int(id)]).rows.map { $0[0].string ?? "" }
        #expect(identities == ["anonymous_id:anon-x", "email:ada@example.com", "user_id:u1"])
        #expect(try h.count("SELECT count(*) FROM event_message_ids") == 5)
        #expect(try h.streamLength() == 0)
    }

    @Test func sameMessageIdTwiceIsOneEvent() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let engine = try h.engine()
        try engine.start()
        let payload = #"{"type":"track","userId":"u","event":"Clicked","messageId":"dup-1"}"#
        try h.add(payload)
        try h.add(payload)
        #expect(try await eventually(within: 20) { engine.ingested + engine.duplicates >= 2 })
        try h.add(payload)   // a later batch
        #expect(try await eventually(within: 20) { engine.duplicates >= 2 })
        await blocking { engine.stop() }
        #expect(engine.ingested == 1)
        #expect(try h.count("SELECT count(*) FROM events") == 1)
    }

    @Test func anonymousBrowsingThenIdentifyMerges() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        // Two contacts exist before the identify arrives (anonymous and known), in separate batches.
        let engine = try h.engine()
        try engine.start()
        try h.add(#"{"type":"track","anonymousId":"anon-1","event":"Viewed Pricing","messageId":"a1","timestamp":"2026-11-01T10:00:00Z"}"#)
        try h.add(#"{"type":"track","userId":"user-1","event":"Logged In","messageId":"k1","timestamp":"2026-11-02T10:00:00Z"}"#)
        #expect(try await eventually(within: 20) { engine.ingested >= 2 })
        let anon = try h.count("SELECT contact_id FROM identities WHERE kind = 'anonymous_id' AND value = 'anon-1'")
        let known = try h.count("SELECT contact_id FROM identities WHERE kind = 'user_id' AND value = 'user-1'")
        #expect(anon != known)
        try h.db.execute("UPDATE contacts SET tags = '{vip,a}' WHERE id = $1", [.int(anon)])
        try h.db.execute("UPDATE contacts SET tags = '{a,b}' WHERE id = $1", [.int(known)])
        try h.db.execute("INSERT INTO contact_scores VALUES ($1, 'lead', 5, now()), ($2, 'lead', 7, now())", [.int(anon), .int(known)])
        try h.db.execute("INSERT INTO segment_memberships VALUES ('pricing', $1, now())", [.int(anon)])
        try h.add(#"{"type":"identify","userId":"user-1","anonymousId":"anon-1","messageId":"id1","traits":{"name":"Ada"}}"#)
        #expect(try await eventually(within: 20) { engine.ingested >= 3 })
        await blocking { engine.stop() }
        #expect(try h.count("SELECT merged_into FROM contacts WHERE id = $1", [.int(anon)]) == known)
        #expect(try h.count("SELECT count(*) FROM events WHERE contact_id = $1", [.int(known)]) == 2)
        #expect(try h.count("SELECT count(*) FROM identities WHERE contact_id = $1", [.int(anon)]) == 0)
        let tags = try h.db.query("SELECT tags FROM contacts WHERE id = $1", [.int(known)]).rows.first?[0].stringArray ?? []
        #expect(tags == ["a", "b", "vip"])
        #expect(try h.db.query("SELECT value FROM contact_scores WHERE contact_id = $1", [.int(known)]).rows.first?[0].double == 12)
        #expect(try h.count("SELECT count(*) FROM segment_memberships WHERE contact_id = $1", [.int(known)]) == 1)
        #expect(try h.count("SELECT count(*) FROM audit_log WHERE action = 'contact.merge' AND subject_id = $1", [.text(String(known))]) == 1)
        #expect(try h.db.query("SELECT attributes->>'name' FROM contacts WHERE id = $1", [.int(known)]).rows.first?[0].string == "Ada")
    }

    @Test func malformedEntriesAreDeadLetteredWhileTheRestIsIngested() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        var bad: [String: String] = [:]
        try h.add(#"{"type":"track","userId":"u","event":"ok-1"}"#)
        bad[try h.add("{not json")] = "payload is not JSON"
        try h.add(#"{"type":"track","userId":"u","event":"ok-2"}"#)
        bad[try h.add(#"{"type":"track","event":"no ids"}"#)] = "missing userId and anonymousId"
        bad[try h.add(#"{"type":"track","userId":"u","event":7}"#)] = "event must be a string"
        bad[try h.add(#"{"type":"track","userId":"u","event":"big","properties":{"x":""# + String(repeating: "b", count: 70 * 1024) + #""}}"#)] = "over 64 KiB"
        bad[try h.redis.execute(RedisCommand("XADD", .string(h.stream), "*", "other", "x")).string!] = "entry has no payload field"
        // A value JSON accepts and PostgreSQL rejects (NUL in jsonb): found by bisection, dead-lettered alone.
        bad[try h.add(#"{"type":"track","userId":"u","event":"nul","properties":{"x":"a\u0000b"}}"#)] = "rejected by PostgreSQL"
        try h.add(#"{"type":"track","userId":"u","event":"ok-3"}"#)
        let engine = try h.engine()
        try engine.start()
        let done = try await eventually(within: 30) { engine.ingested >= 3 && engine.deadLettered >= bad.count }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested), dead \(engine.deadLettered)")
        let names = try h.db.query("SELECT name FROM events ORDER BY id").rows.map { $0[0].string ?? "" }
        #expect(Set(names) == ["ok-1", "ok-2", "ok-3"])
        let letters = try h.deadLetters()
        #expect(letters.count == bad.count)
        for letter in letters {
            #expect(letter.queue == "events" && letter.kind == "event")
            let expected = try #require(bad[letter.id], "unexpected dead letter \(letter.id)")
            #expect(letter.reason.hasPrefix(expected), "\(letter.id): \(letter.reason)")
            #expect(letter.payload.utf8.count <= 64 * 1024)
        }
        #expect(letters.first { $0.reason == "rejected by PostgreSQL" }?.lastError.contains("22P05") == true
                || letters.first { $0.reason == "rejected by PostgreSQL" }?.lastError.isEmpty == false)
        #expect(try h.streamLength() == 0)
    }

    @Test func missingTimestampAndMessageIdComeFromTheEntry() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let entry = try h.add(#"{"type":"track","userId":"u","event":"No Time"}"#)
        let engine = try h.engine()
        try engine.start()
        #expect(try await eventually(within: 20) { engine.ingested >= 1 })
        await blocking { engine.stop() }
        let row = try #require(try h.db.query("SELECT occurred_at, message_id FROM events").rows.first)
        let ms = Int64(entry.split(separator: "-")[0])!
        let occurred = try #require(row[0].date)
        #expect(abs(occurred.timeIntervalSince1970 - Double(ms) / 1000) < 0.0005, "\(occurred) vs entry \(entry)")
        #expect(row[1].string == "stream:\(entry)")
    }

    @Test func fiveThousandEventsInBatches() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let total = 5_000
        for chunk in stride(from: 0, to: total, by: 500) {
            let commands = (chunk..<chunk + 500).map { n in
                RedisCommand("XADD", .string(h.stream), "*", "payload",
                             .string(#"{"type":"track","userId":"user-\#(n % 300)","event":"E\#(n % 7)","messageId":"m-\#(n)"}"#))
            }
            _ = try h.redis.pipeline(commands)
        }
        let engine = try h.engine(batch: 500)
        try engine.start()
        let done = try await eventually(within: 120) { engine.ingested >= total }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested)")
        #expect(try h.count("SELECT count(*) FROM events") == Int64(total))
        #expect(try h.count("SELECT count(*) FROM contacts") == 300)
        #expect(try h.streamLength() == 0)
        let pending = try h.redis.execute(RedisCommand("XPENDING", .string(h.stream), .string(IngestOptions.group))).array?.first?.int
        #expect(pending == 0)
    }

    @Test func entriesPendingForADeadConsumerAreClaimed() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try h.redis.execute(RedisCommand("XGROUP", "CREATE", .string(h.stream), .string(IngestOptions.group), "0", "MKSTREAM"))
        for n in 0..<20 { try h.add(#"{"type":"track","userId":"u","event":"E","messageId":"k-\#(n)"}"#) }
        // A consumer reads them and dies before committing.
        let read = try h.redis.execute(RedisCommand("XREADGROUP", "GROUP", .string(IngestOptions.group), "dead-consumer",
                                                    "COUNT", 100, "STREAMS", .string(h.stream), ">"))
        #expect(read.array?.first?.array?[1].array?.count == 20)
        let engine = try h.engine(consumer: "survivor")
        try engine.start()
        let done = try await eventually(within: 30) { engine.ingested >= 20 }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested)")
        #expect(try h.count("SELECT count(*) FROM events") == 20)
        #expect(try h.streamLength() == 0)
    }

    @Test func survivesAFlushedRedis() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let engine = try h.engine()
        try engine.start()
        try h.add(#"{"type":"track","userId":"u","event":"before"}"#)
        #expect(try await eventually(within: 20) { engine.ingested >= 1 })
        try h.redis.execute(RedisCommand("DEL", .string(h.stream)))   // as after FLUSHALL: stream and group gone
        try await Task.sleep(nanoseconds: 1_500_000_000)
        try h.add(#"{"type":"track","userId":"u","event":"after"}"#)
        let done = try await eventually(within: 20) { engine.ingested >= 2 }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested)")
    }

    @Test func twoIngestersAtOnceCreateEachContactOnce() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let total = 2_000
        for chunk in stride(from: 0, to: total, by: 500) {
            _ = try h.redis.pipeline((chunk..<chunk + 500).map { n in
                RedisCommand("XADD", .string(h.stream), "*", "payload",
                             .string(#"{"type":"track","userId":"cu-\#(n % 50)","anonymousId":"ca-\#(n % 50)","event":"E","messageId":"c-\#(n)"}"#))
            })
        }
        let a = try h.engine(batch: 50, consumer: "a"), b = try h.engine(batch: 50, consumer: "b")
        try a.start()
        try b.start()
        let done = try await eventually(within: 60) { a.ingested + b.ingested >= total }
        await blocking { a.stop() }
        await blocking { b.stop() }
        #expect(done, "ingested \(a.ingested) + \(b.ingested)")
        #expect(a.ingested > 0 && b.ingested > 0)
        #expect(try h.count("SELECT count(*) FROM events") == Int64(total))
        #expect(try h.count("SELECT count(*) FROM contacts WHERE merged_into IS NULL") == 50)
        #expect(try h.count("SELECT count(*) FROM contacts") == 50, "no contact was created twice and merged")
    }

    @Test func storeReportsOutcomesPerRecordIncludingDuplicatesInOneBatch() throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        let at = Date(timeIntervalSince1970: 1_795_341_600)
        let records = [
            IngestRecord(messageId: "s1", type: "track", userId: "u", eventName: "A", occurredAt: at),
            IngestRecord(messageId: "s1", type: "track", userId: "u", eventName: "A", occurredAt: at),
            IngestRecord(messageId: "s2", type: "identify", userId: "u", traitsJSON: #"{"plan":"pro"}"#, occurredAt: at),
            IngestRecord(messageId: "s3", type: "track", anonymousId: "x", eventName: "B", occurredAt: at),
        ]
        let first = try IngestStore().ingest(records, receivedAt: at, on: h.db)
        #expect(first.outcomes == [.new, .duplicate, .new, .new])
        #expect(first.contactIDs[1] == nil && first.contactIDs[0] == first.contactIDs[2])
        #expect(first.affectedContacts.count == 2 && first.merges.isEmpty)
        let second = try IngestStore().ingest(records + [
            IngestRecord(messageId: "s4", type: "alias", userId: "u", previousId: "x", occurredAt: at),
        ], receivedAt: at, on: h.db)
        #expect(second.outcomes == [.duplicate, .duplicate, .duplicate, .duplicate, .new])
        #expect(second.merges.count == 1 && second.merges[0].survivor == first.contactIDs[0])
        #expect(try h.count("SELECT count(*) FROM events WHERE contact_id = $1", [.int(first.contactIDs[0]!)]) == 2)
        #expect(try h.db.query("SELECT attributes->>'plan' FROM contacts WHERE id = $1", [.int(first.contactIDs[0]!)]).rows.first?[0].string == "pro")
    }

    @Test func missingTimestampUsesTheInstallationClockOffset() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        try h.db.execute("UPDATE installation_clock SET offset_ms = 86400000")
        let engine = IngestEngine(options: try h.options(), clock: InstallationClock(timeTravelAllowed: true))
        try engine.start()
        let entry = try h.add(#"{"type":"track","userId":"u","event":"Later"}"#)
        #expect(try await eventually(within: 20) { engine.ingested >= 1 })
        await blocking { engine.stop() }
        let occurred = try #require(try h.db.query("SELECT occurred_at FROM events").rows.first?[0].date)
        let ms = Int64(entry.split(separator: "-")[0])!
        #expect(abs(occurred.timeIntervalSince1970 - (Double(ms) / 1000 + 86_400)) < 0.0005)
    }

    @Test func survivesLosingItsPostgresConnection() async throws {
        let h = try IngestHarness()
        defer { h.cleanUp() }
        var options = try h.options()
        let application = "ingest_\(h.namespace)"
        options.databaseURL += "&application_name=\(application)"
        let engine = IngestEngine(options: options, clock: h.clock)
        try engine.start()
        try h.add(#"{"type":"track","userId":"u","event":"one"}"#)
        #expect(try await eventually(within: 20) { engine.ingested >= 1 })
        let killed = try h.count("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", [.text(application)])
        #expect(killed == 1)
        try h.add(#"{"type":"track","userId":"u","event":"two"}"#)
        try h.add(#"{"type":"track","userId":"u","event":"three"}"#)
        let done = try await eventually(within: 30) { engine.ingested >= 3 }
        await blocking { engine.stop() }
        #expect(done, "ingested \(engine.ingested)")
        #expect(try h.count("SELECT count(*) FROM events") == 3)
    }
}
