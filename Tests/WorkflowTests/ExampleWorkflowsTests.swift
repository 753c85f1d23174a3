import Domain
import Foundation
import NurtureCore
import Postgres
import Testing
import TestSupport

/// The nine example workflows (`examples/`, as shipped in ../shared/examples) end to end: real scheduler and
/// worker processes, a real HTTP sink, the CLI, and the installation clock fast-forwarded through two months.
/// After each step of the story the sink must hold exactly the expected messages (`userId template`), no more.
@Suite(.serialized) struct ExampleWorkflowsTests {
    static let hour = 3_600.0
    static let day = 86_400.0

    /// Moves the installation clock to the next 10:00 in Paris (the examples' quiet hours are 21:00–08:00 there),
    /// so the story's times of day do not depend on when the test runs.
    static func startAtTenInParis(_ h: WorkflowHarness) throws -> Date {
        let now = try h.now()
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "Europe/Paris")!
        var target = calendar.date(bySettingHour: 10, minute: 0, second: 0, of: now)!
        if target <= now.addingTimeInterval(60) { target = calendar.date(byAdding: .day, value: 1, to: target)! }
        try h.advance(seconds: target.timeIntervalSince(now).rounded(.up))
        return target
    }

    static func importContacts(_ h: WorkflowHarness, birthday: String) throws {
        let csv = """
            id,email,first_name,phone,timezone,tags,birthday
            ann,ann@example.com,Ann,,Europe/Paris,newsletter,
            bob,bob@example.com,Bob,,Europe/Paris,newsletter,
            carl,carl@example.com,Carl,+33600000001,Europe/Paris,,
            dana,dana@example.com,Dana,,Europe/Paris,,
            erin,erin@example.com,Erin,,Europe/Paris,,\(birthday)
            frank,frank@example.com,Frank,,Europe/Paris,newsletter,
            gina,gina@example.com,Gina,,Europe/Paris,,
            hank,hank@example.com,Hank,,Europe/Paris,,
            ivan,ivan@example.com,Ivan,,Europe/Paris,,

            """
        let path = h.scratch + "/contacts.csv"
        try csv.write(toFile: path, atomically: true, encoding: .utf8)
        try h.cli(["contacts", "import", path])
    }

    @Test func theNineExampleWorkflowsSendExactlyTheRightMessages() async throws {
        let h = try WorkflowHarness()
        defer { h.cleanUp() }
        try h.cli(["apply", NurtureBinary.repositoryRoot + "/examples"])
        let t0 = try Self.startAtTenInParis(h)
        var paris = Calendar(identifier: .gregorian)
        paris.timeZone = TimeZone(identifier: "Europe/Paris")!
        let tomorrow = paris.dateComponents([.month, .day], from: t0.addingTimeInterval(Self.day))
        try Self.importContacts(h, birthday: String(format: "1990-%02d-%02d", tomorrow.month!, tomorrow.day!))
        // A bounced address: on the suppression list, so Gina gets nothing (even transactional would be refused).
        try h.db.execute("INSERT INTO suppressions (channel, address, reason, created_at) VALUES ('email', 'gina@example.com', 'bounce', now())")

        try h.start("scheduler", ["scheduler", "--scan-interval", "10m"])
        try h.start("worker-1", ["worker", "--concurrency", "4"])
        try h.start("worker-2", ["worker", "--concurrency", "4"])

        // ── day 0, 10:00 ──
        let organic: [String: Value] = ["campaign": .object(["medium": "organic", "source": "google"])]
        try h.track("ann", "Signed Up", at: t0)
        try h.track("bob", "Signed Up", at: t0)
        try h.track("carl", "Product Added", ["price": 50, "product_name": "Desk Lamp", "currency": "eur"], at: t0)
        try h.track("dana", "Product Added", ["price": 20, "product_name": "Mug"], at: t0)
        try h.track("dana", "Order Completed", ["total": 20], at: t0.addingTimeInterval(60))
        for i in 0..<5 {
            try h.track("frank", "Page Viewed", ["path": "/pricing"], context: organic, at: t0.addingTimeInterval(Double(i)))
        }
        try h.track("hank", "Signed Up", at: t0)
        try h.track("hank", "Product Added", ["price": 10, "product_name": "Pen"], at: t0.addingTimeInterval(1))
        for i in 0..<3 { try h.track("hank", "Page Viewed", ["path": "/pricing"], at: t0.addingTimeInterval(2 + Double(i))) }
        try h.track("gina", "Signed Up", at: t0)
        var expected = [
            "ann welcome-1", "bob welcome-1", "hank welcome-1",     // welcome series (gina: suppressed)
            "dana first-purchase-voucher",                           // post-purchase; her cart exited on the order
            "frank notify-sales", "frank newsletter-invite",         // score 55 ≥ 50 (when:), organic
        ]
        try await h.expectReceived(expected, "day 0 10:00: welcome-1, voucher, sales hand-off, newsletter invite")
        // The catalogue's price drop fans out to the `subscribed` segment (email + tag newsletter).
        try h.track("catalog", "Price Dropped", ["discount_pct": 20, "product_name": "Desk Lamp", "new_price": 40], at: t0.addingTimeInterval(5))
        expected += ["ann price-drop", "bob price-drop", "frank price-drop"]
        try await h.expectReceived(expected, "day 0 10:00: price drop to the subscribed segment")

        // ── 11:00: pricing follow-ups (30 min), cart-1 + retargeting (1 h); Bob buys ──
        try h.advance(seconds: Self.hour)
        try h.track("bob", "Order Completed", ["total": 80], at: t0.addingTimeInterval(Self.hour))
        expected += ["frank pricing-followup", "hank pricing-followup", "carl cart-1", "carl retargeting-add",
                     "hank cart-1", "hank retargeting-add", "bob first-purchase-voucher"]
        try await h.expectReceived(expected, "day 0 11:00")

        // ── 17:00: cart-2; Hank already had 3 marketing emails today (cap email 3/1d) ──
        try h.advance(seconds: 6 * Self.hour)
        expected += ["carl cart-2"]
        try await h.expectReceived(expected, "day 0 17:00: cart-2, Hank capped")

        // ── 22:00: Ivan signs up in quiet hours: welcome-1 waits for 08:00 ──
        try h.advance(seconds: 5 * Self.hour)
        try h.track("ivan", "Signed Up", at: t0.addingTimeInterval(12 * Self.hour))
        try await h.expectReceived(expected, settle: 3, "day 0 22:00: quiet hours hold Ivan's welcome")
        #expect(try h.db.query("SELECT count(*) FROM enrollment_steps WHERE outcome = 'deferred_quiet_hours'").rows.first?[0].int ?? 0 >= 1)

        // ── day 1, 08:00: the quiet window ends ──
        try h.advance(seconds: 10 * Self.hour)
        expected += ["ivan welcome-1"]
        try await h.expectReceived(expected, "day 1 08:00: Ivan's welcome after quiet hours")

        // ── day 1, 10:00: cart-3 (score < 40: SMS; Hank has no phone), Erin's birthday (09:00 her time) ──
        try h.advance(seconds: 2 * Self.hour)
        expected += ["carl cart-3-sms", "erin birthday-offer"]
        try await h.expectReceived(expected, "day 1 10:00: cart-3 and birthday")

        // ── day 2, 10:00: welcome-2 (Bob left the series when he bought) ──
        try h.advance(seconds: Self.day)
        expected += ["ann welcome-2", "hank welcome-2"]
        try await h.expectReceived(expected, "day 2: welcome-2")

        // ── day 5, 10:00: welcome-3 for those who never ordered; Ivan's welcome-2; Ann signs up again (reentry: never) ──
        try h.advance(seconds: 3 * Self.day)
        try h.track("ann", "Signed Up", at: t0.addingTimeInterval(5 * Self.day))
        expected += ["ann welcome-3-offer", "hank welcome-3-offer", "ivan welcome-2"]
        try await h.expectReceived(expected, settle: 2, "day 5: welcome-3, no second welcome series for Ann")

        // ── day 8: review requests (7 days after the vouchers), Ivan's welcome-3 ──
        try h.advance(seconds: 3 * Self.day)
        expected += ["bob review-request", "dana review-request", "ivan welcome-3-offer"]
        try await h.expectReceived(expected, "day 8: review requests")

        // ── day 15: related products ──
        try h.advance(seconds: 7 * Self.day)
        expected += ["bob related-products", "dana related-products"]
        try await h.expectReceived(expected, "day 15: related products")

        // ── day 65: newsletter subscribers silent for 60 days are dormant: win-back ──
        try h.advance(seconds: 50 * Self.day)
        expected += ["ann winback-1", "bob winback-1", "frank winback-1"]
        try await h.expectReceived(expected, within: 90, "day 65: win-back")
        // Ann opens it: exit_when ends her win-back.
        try h.track("ann", "Email Opened", at: t0.addingTimeInterval(65 * Self.day + Self.hour))
        try await Task.sleep(nanoseconds: 2_000_000_000)
        try h.advance(seconds: 7 * Self.day)
        expected += ["bob winback-2", "frank winback-2"]
        try await h.expectReceived(expected, "day 72: winback-2 except for Ann, who opened")

        // ── day 79: win-back's last step untags the newsletter: Bob and Frank leave `subscribed` at once ──
        try h.advance(seconds: 7 * Self.day)
        var subscribed: [String] = []
        for _ in 0..<100 {
            subscribed = try h.db.query("""
                SELECT c.external_id FROM segment_memberships m JOIN contacts c ON c.id = m.contact_id
                WHERE m.segment = 'subscribed' ORDER BY 1
                """).rows.map { $0[0].string ?? "" }
            if subscribed == ["ann"] { break }
            try await Task.sleep(nanoseconds: 200_000_000)
        }
        #expect(subscribed == ["ann"])
        try await h.expectReceived(expected, settle: 0.5, "day 79: nothing more")

        // Every delivery id reached the sink once.
        let ids = try h.sunk().map(\.deliveryId)
        #expect(ids.count == Set(ids).count, "a delivery id reached the sink twice")
    }
}
