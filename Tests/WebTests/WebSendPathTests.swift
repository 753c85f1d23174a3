import Channels
import Domain
import Foundation
import NurtureCore
import Postgres
import Redis
import Testing
import TestSupport

/// The whole loop on real processes: a worker and a scheduler run a workflow whose send is already scheduled; the
/// contact unsubscribes through `nurture web` (one-click POST); when the send comes due it is suppressed, while
/// another contact's goes out. The web role's `Unsubscribed` event is ingested by the worker like an app server's.
@Suite struct WebSendPathTests {
    @Test func unsubscribeStopsASendAlreadyScheduled() throws {
        let h = try WebHarness()
        let sink = try SinkProcess(script: "http_sink.py")
        let file = h.scratch + "/defs.yaml"
        try """
            kind: provider
            name: email
            channel: email
            type: http
            url: http://127.0.0.1:\(sink.port)/email
            ---
            kind: template
            name: news
            channel: email
            subject: "News"
            html: '<p>News</p>'
            ---
            kind: workflow
            name: later
            trigger:
              event: Signed Up
            steps:
              - wait: 1h
              - send: news

            """.write(toFile: file, atomically: true, encoding: .utf8)
        try h.cli(["apply", file])
        try h.startRole("worker", ["worker", "--concurrency", "2"])
        try h.startRole("scheduler", ["scheduler", "--scan-interval", "5s"])
        for user in ["u-ann", "u-bob"] {
            try h.cli(["events", "identify", "--user", user, "--traits", #"{"email":"\#(user.dropFirst(2))@example.com"}"#])
            try h.cli(["events", "send", "--user", user, "--event", "Signed Up"])
        }
        // Both enrolled and waiting for their send.
        try waitFor("both enrollments waiting", h) {
            try h.db.query("SELECT count(*) FROM enrollments WHERE workflow = 'later' AND state = 'active' AND step_path <> '0'").rows[0][0].int == 2
        }
        let ann = try #require(try h.db.query("SELECT id FROM contacts WHERE external_id = 'u-ann'").rows.first?[0].int)
        #expect(try h.post(path(h.links.unsubscribeURL(contactId: ann, deliveryId: nil)), form: "List-Unsubscribe=One-Click").status == 200)

        try h.cli(["clock", "advance", "2h"])
        try waitFor("both enrollments finished", h) {
            try h.db.query("SELECT count(*) FROM enrollments WHERE workflow = 'later' AND state <> 'active'").rows[0][0].int == 2
        }
        let sent = try sink.records(HTTPRecord.self).filter { $0.path == "/email" }
        #expect(sent.count == 1)
        #expect(sent.allSatisfy { String(decoding: $0.body, as: UTF8.self).contains("bob@example.com") })
        let outcomes = try h.db.query("""
            SELECT c.external_id, s.outcome FROM enrollment_steps s JOIN enrollments e ON e.id = s.enrollment_id
            JOIN contacts c ON c.id = e.contact_id WHERE s.outcome IN ('sent', 'suppressed') ORDER BY 1
            """).rows.map { "\($0[0].string ?? "") \($0[1].string ?? "")" }
        #expect(outcomes == ["u-ann suppressed", "u-bob sent"])
        // The web role's event went through ingestion into PostgreSQL like any app server's.
        try waitFor("the Unsubscribed event ingested", h) {
            try h.db.query("SELECT count(*) FROM events WHERE contact_id = $1 AND name = 'Unsubscribed'", [.int(ann)]).rows[0][0].int == 1
        }
    }

    func waitFor(_ what: String, _ h: WebHarness, seconds: Int = 60, _ condition: () throws -> Bool) throws {
        let deadline = monotonicMilliseconds() + Int64(seconds) * 1_000
        while monotonicMilliseconds() < deadline {
            if try condition() { return }
            usleep(100_000)
        }
        let logs = ["worker", "scheduler"].map { name in
            "\(name):\n" + ((try? String(contentsOfFile: h.scratch + "/\(name).log", encoding: .utf8)) ?? "").split(separator: "\n").suffix(20).joined(separator: "\n")
        }.joined(separator: "\n")
        throw WebTestFailure("timed out waiting for \(what)\n\(logs)")
    }
}
