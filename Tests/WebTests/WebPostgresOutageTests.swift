import Channels
import Domain
import Foundation
import Postgres
import Testing
import TestSupport

/// `nurture web` after PostgreSQL dropped its connections (a restart, a failover): the next requests reconnect and
/// work; no request is answered with an error because a pooled connection had gone stale.
@Suite struct WebPostgresOutageTests {
    @Test func pagesAndUnsubscribesWorkRightAfterPostgresDroppedTheConnections() throws {
        let h = try WebHarness()
        try h.applyTemplates()
        let ivy = try h.contact("u-ivy", email: "ivy@example.com")
        let delivery = try h.delivery(contact: ivy, sentAt: Date().addingTimeInterval(-3_600))
        let preferences = path(h.links.preferencesURL(contactId: ivy))
        // Warm the pool: several connections open and idle.
        for _ in 0..<6 { #expect(try h.get(preferences).status == 200) }

        func killWebConnections() throws -> Int64 {
            try h.db.query("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                           [.text(h.namespace)]).rows.first?[0].int ?? 0
        }
        #expect(try killWebConnections() > 0)
        // Every request right after answers as usual (each stale connection reconnects; nothing is half done).
        for _ in 0..<6 {
            let page = try h.get(preferences)
            #expect(page.status == 200, "\(page)")
        }
        #expect(try killWebConnections() > 0)
        let unsubscribe = try h.post(path(h.links.unsubscribeURL(contactId: ivy, deliveryId: delivery)), form: "List-Unsubscribe=One-Click")
        #expect(unsubscribe.status == 200, "\(unsubscribe)")
        #expect(try h.unsubscribedAt(ivy) != nil)
        #expect(try h.eventNames() == ["Unsubscribed"])
    }
}
